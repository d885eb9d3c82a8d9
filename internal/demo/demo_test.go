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
// fleet (both server models), each target's plan shown from a dry run before anything runs,
// one UpdateJob, and the compliance view green at the end. The simulators judge what was
// flashed: on each iLO 5 the stepping release before the iLO image that needs it, then the
// system ROM of that server's model and not the other's; every image once.
func TestDemoBaseline(t *testing.T) {
	text := runDemo(t)
	listing := text[strings.Index(text, "Applying FirmwareBaseline "+BaselineName):strings.Index(text, "Applying UpdateJob "+PlanJobName)]
	for _, want := range []string{
		"ilo5-step", "ilo5 ", "needs ilo5-step at 2.78 or later first",
		"rom-a43", "model ProLiant DL325 Gen10 Plus", "rom-a47", "model ProLiant XL675d Gen10 Plus",
	} {
		if !strings.Contains(listing, want) {
			t.Errorf("the baseline listing lacks %q:\n%s", want, listing)
		}
	}
	plan := text[strings.Index(text, "Applying UpdateJob "+PlanJobName):]
	rollout := strings.Index(plan, "Applying UpdateJob "+BaselineJobName)
	if rollout < 0 {
		t.Fatalf("the baseline job was not applied after the dry run:\n%s", text)
	}
	plan = plan[:rollout]
	for _, name := range demoTargets(t) {
		want := name + ` +dry run: would install 1 of 1 components, in this order: [a-z-]+ `
		if strings.Contains(name, "ilo5") || strings.Contains(name, "xl675d") {
			// The stepping release first, the iLO image from it; each model's ROM waits for the
			// agent to read the model.
			want = name + ` +dry run: would install 2 of 4 components, in this order: ilo5-step \(not read\) -> 2\.78, ilo5 2\.78 -> 2\.99; ` +
				`2 more depend on the server's model or devices`
		}
		if !regexp.MustCompile(want).MatchString(plan) {
			t.Errorf("no plan line for %s before the rollout matching %q:\n%s", name, want, plan)
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
	flashed := flashOrder(t, text)
	for name, want := range map[string]string{
		"demo-ilo4-01":   "ilo_2.99.bin",
		"demo-ilo6-01":   "ilo_2.99.bin",
		"demo-ilo5-01":   "ilo5_278.bin → ilo_2.99.bin → a43_268.fwpkg",
		"demo-xl675d-01": "ilo5_278.bin → ilo_2.99.bin → a47_260.fwpkg",
	} {
		if flashed[name] != want {
			t.Errorf("%s was asked to flash %q, want %q (the simulator's record):\n%s", name, flashed[name], want, text)
		}
	}
}

// flashOrder reads, from the lines after the summary's heading, what each iLO's simulator
// was asked to flash, in order.
func flashOrder(t *testing.T, text string) map[string]string {
	t.Helper()
	const heading = "What each iLO was asked to flash, in order (the simulators' own record):"
	i := strings.Index(text, heading)
	if i < 0 {
		t.Fatalf("no %q in the output:\n%s", heading, text)
	}
	out := map[string]string{}
	for _, l := range strings.Split(text[i+len(heading):], "\n")[1:] {
		if !strings.HasPrefix(l, "  ") {
			break
		}
		name, images, _ := strings.Cut(strings.TrimSpace(l), " ")
		out[name] = strings.TrimSpace(images)
	}
	return out
}

// demoTargets are the targets of the demo fleet the tests run.
func demoTargets(t *testing.T) []string {
	want := []string{"demo-ilo4-01", "demo-ilo5-01", "demo-ilo6-01", "demo-xl675d-01", "demo-oa-01"}
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
	err := Run(ctx, append([]string{"--ilo4=1", "--ilo5=1", "--ilo6=1", "--xl675d=1", "--oa=1", "--max-concurrent=2", "--flash-time=1s",
		"--timeout=75s", "--dir", t.TempDir()}, args...), &out, &out)
	if err != nil {
		t.Fatalf("demo failed: %v\n%s", err, out.String())
	}
	text := out.String()
	t.Logf("the demo's output:\n%s", text) // shown with -v, and with a failure
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
		if n := r[len(r)-2]; n == "0" {
			t.Errorf("%s: the simulator saw no flash:\n%s", name, text)
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
