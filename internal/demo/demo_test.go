package demo

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
	"github.com/fwops/firmware-operator/internal/fleet"
	"github.com/fwops/firmware-operator/internal/testutil/apiserver"
)

// TestDemo runs the demo as `make demo` does, with a smaller fleet and shorter flashes, and
// checks that it succeeds and that its summary table lists every target as Succeeded.
func TestDemo(t *testing.T) {
	if _, err := apiserver.AssetsDir(); err != nil {
		if apiserver.InCI() {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	want := []string{"demo-ilo4-01", "demo-ilo5-01", "demo-ilo6-01", "demo-oa-01"}
	if err := fleet.Available(); err == nil {
		want = append(want, "demo-linux-01")
	} else if apiserver.InCI() {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Second)
	defer cancel()
	var out bytes.Buffer
	err := Run(ctx, []string{"--ilo4=1", "--ilo5=1", "--ilo6=1", "--oa=1", "--max-concurrent=2", "--flash-time=1s",
		"--timeout=75s", "--dir", t.TempDir()}, &out, &out)
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
