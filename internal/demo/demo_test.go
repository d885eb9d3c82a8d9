package demo

import (
	"bytes"
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
	"github.com/fwops/firmware-operator/internal/fleet"
	"github.com/fwops/firmware-operator/internal/testutil/apiserver"
)

// TestDemo runs the demo as `make demo` did before baselines, one UpdateJob per component,
// with a smaller fleet and shorter flashes, and checks that it succeeds and that its summary
// table lists every target as Succeeded, flashed once.
func TestDemo(t *testing.T) {
	text := runDemo(t, "--baseline=false")
	for _, job := range []string{"demo-ilo", "demo-oa"} {
		if !strings.Contains(text, "UpdateJob "+job+": Succeeded") {
			t.Errorf("no line for UpdateJob %s Succeeded:\n%s", job, text)
		}
	}
}

// TestDemoBaseline runs the demo as `make demo` does: one FirmwareBaseline over the mixed
// fleet, each target's plan shown from a dry run before anything runs, one UpdateJob, every
// target flashed once, and the compliance view green at the end.
func TestDemoBaseline(t *testing.T) {
	text := runDemo(t)
	plan := text[strings.Index(text, "Applying UpdateJob "+PlanJobName):]
	rollout := strings.Index(plan, "Applying UpdateJob "+BaselineJobName)
	if rollout < 0 {
		t.Fatalf("the baseline job was not applied after the dry run:\n%s", text)
	}
	plan = plan[:rollout]
	for _, name := range demoTargets(t) {
		if !strings.Contains(plan, name+" ") || !regexp.MustCompile(name+` +dry run: would install 1 of 1 components, in this order: [a-z-]+ `).MatchString(plan) {
			t.Errorf("no plan line for %s before the rollout:\n%s", name, plan)
		}
	}
	if !strings.Contains(text, "UpdateJob "+BaselineJobName+": Succeeded") {
		t.Errorf("no line for UpdateJob %s Succeeded:\n%s", BaselineJobName, text)
	}
	if strings.Contains(text, "UpdateJob "+PlanJobName+":") {
		t.Errorf("the dry run is in the summary:\n%s", text)
	}
	want := fmt.Sprintf("FirmwareBaseline %s: %d compliant, 0 drifting, 0 unknown", BaselineName, len(demoTargets(t)))
	if !strings.Contains(text, want) {
		t.Errorf("the compliance view did not turn green (want %q):\n%s", want, text)
	}
	for _, r := range summaryRows(t, text) {
		if !strings.Contains(r[2], "→") {
			t.Errorf("%s: the versions cell %q does not show the installed component's before → after", r[0], r[2])
		}
	}
}

// demoTargets are the targets of the demo fleet the tests run.
func demoTargets(t *testing.T) []string {
	want := []string{"demo-ilo4-01", "demo-ilo5-01", "demo-ilo6-01", "demo-oa-01"}
	if err := fleet.Available(); err == nil {
		want = append(want, "demo-linux-01")
	} else if apiserver.InCI() {
		t.Fatal(err)
	}
	return want
}

// runDemo runs the demo with a smaller fleet and shorter flashes, and checks what every run
// must show: success, the kubeconfig, and each target Succeeded, flashed once, through the
// P2 and P4 ports. It returns the output.
func runDemo(t *testing.T, args ...string) string {
	t.Helper()
	if _, err := apiserver.AssetsDir(); err != nil {
		if apiserver.InCI() {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	want := demoTargets(t)

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Second)
	defer cancel()
	var out bytes.Buffer
	err := Run(ctx, append([]string{"--ilo4=1", "--ilo5=1", "--ilo6=1", "--oa=1", "--max-concurrent=2", "--flash-time=1s",
		"--timeout=75s", "--dir", t.TempDir()}, args...), &out, &out)
	if err != nil {
		t.Fatalf("demo failed: %v\n%s", err, out.String())
	}
	text := out.String()
	if strings.Contains(text, "\x1b[") {
		t.Errorf("ANSI sequences in output that is not a terminal")
	}
	if !strings.Contains(text, "kubeconfig: ") || !strings.Contains(text, "get updatejobs,updatetargets -w") {
		t.Errorf("the kubeconfig and the kubectl hint are not printed:\n%s", text)
	}

	rows := summaryRows(t, text)
	got := map[string][]string{}
	for _, r := range rows {
		got[r[0]] = r
	}
	for _, name := range want {
		r, ok := got[name]
		if !ok {
			t.Errorf("summary has no row for %s:\n%s", name, text)
			continue
		}
		if res := r[len(r)-1]; res != string(fwv1.TargetPhaseSucceeded) {
			t.Errorf("%s ended %s, want Succeeded:\n%s", name, res, text)
		}
		if n := r[len(r)-2]; n != "1" {
			t.Errorf("%s: the simulator saw %s flashes, want 1:\n%s", name, n, text)
		}
	}
	if len(rows) != len(want) {
		t.Errorf("summary has %d rows, want %d:\n%s", len(rows), len(want), text)
	}
	for _, r := range rows {
		// Every iLO and OA pulled the image from an agent's firmware server (rule P2), and
		// every target was reached from a session port (rule P4).
		if typ := r[1]; typ != string(fwv1.TargetTypeLinux) && r[3] == "-" {
			t.Errorf("%s: no P2 firmware server port in the summary", r[0])
		}
		if r[4] == "-" {
			t.Errorf("%s: no P4 session port in the summary", r[0])
		}
	}
	return text
}

// summaryRows returns the cells of the summary table's rows: the lines after the header up
// to the first blank line, split on runs of two or more spaces.
func summaryRows(t *testing.T, text string) [][]string {
	t.Helper()
	lines := strings.Split(text, "\n")
	header := strings.Join(SummaryHeader, "")
	for i, l := range lines {
		if strings.ReplaceAll(l, " ", "") != strings.ReplaceAll(header, " ", "") {
			continue
		}
		var rows [][]string
		for _, l := range lines[i+1:] {
			if strings.TrimSpace(l) == "" {
				return rows
			}
			rows = append(rows, splitCells(l))
		}
		return rows
	}
	t.Fatalf("no summary table in the output:\n%s", text)
	return nil
}

func splitCells(l string) []string {
	var cells []string
	for _, c := range strings.Split(strings.TrimSpace(l), "  ") {
		if c = strings.TrimSpace(c); c != "" {
			cells = append(cells, c)
		}
	}
	return cells
}
