package demo

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
)

func TestTableAlignsOnRunes(t *testing.T) {
	got := table([][]string{{"A", "VERSION → AFTER", "Z"}, {"long-name", "1 → 2", "ok"}})
	want := []string{
		"A          VERSION → AFTER  Z",
		"long-name  1 → 2            ok",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("table:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestBar(t *testing.T) {
	for _, tc := range []struct {
		done, busy, total int32
		want              string
	}{
		{0, 0, 0, "[..........]"},
		{5, 2, 10, "[#####>>...]"},
		{10, 0, 10, "[##########]"},
		{9, 5, 10, "[#########>]"}, // never wider than the bar
	} {
		if got := bar(tc.done, tc.busy, tc.total, 10, false); got != tc.want {
			t.Errorf("bar(%d, %d, %d) = %q, want %q", tc.done, tc.busy, tc.total, got, tc.want)
		}
	}
}

func TestSummaryPrintAndVerdict(t *testing.T) {
	s := &Summary{Rows: []Row{
		{Target: "a", Type: fwv1.TargetTypeILO5, Phase: fwv1.TargetPhaseSucceeded, Before: "2.46", After: "2.99",
			FWPort: 80, SessionPort: 60000, Node: "n1", Duration: 3 * time.Second, Installed: 1, Flashes: 1},
		{Target: "b", Type: fwv1.TargetTypeOA, Phase: fwv1.TargetPhaseFailed, Message: "OA refused the image"},
		{Target: "c", Type: fwv1.TargetTypeLinux, Phase: fwv1.TargetPhaseSucceeded, FWPort: 80, SessionPort: 60001, Installed: 1, Flashes: 2},
	}}
	var b bytes.Buffer
	s.Print(&printer{w: &b, start: time.Now()})
	out := b.String()
	for _, want := range []string{
		"a       iLO5   2.46 → 2.99             80            60000       n1    3s        1        Succeeded",
		"b       OA     -                       -             -           -     -         0        Failed",
		"  b: OA refused the image",
		"c       Linux  -                       (P3 SSH)      60001",
		"Not flashed exactly once (the simulators' count): c (2 flashes, 1 installed).",
		"Only 2 of 3 targets succeeded.",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	if s.AllSucceeded() {
		t.Error("AllSucceeded with a failed target")
	}
	if (&Summary{}).AllSucceeded() {
		t.Error("AllSucceeded with no targets at all")
	}
}

func TestRedrawMovesBackOverTheLastFrame(t *testing.T) {
	var b bytes.Buffer
	p := &printer{w: &b, ansi: true}
	p.redraw([]string{"one", "two"})
	p.redraw([]string{"three"})
	if got, want := b.String(), "one\ntwo\n\x1b[2F\x1b[Jthree\n"; got != want {
		t.Errorf("redraw wrote %q, want %q", got, want)
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	var b bytes.Buffer
	if err := Run(context.Background(), []string{"--max-concurrent=0"}, &b, &b); err == nil {
		t.Error("--max-concurrent=0 accepted")
	}
	if err := Run(context.Background(), []string{"extra"}, &b, &b); err == nil {
		t.Error("a stray argument accepted")
	}
}
