package demo

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"sigs.k8s.io/controller-runtime/pkg/client"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
	"github.com/fwops/firmware-operator/internal/fleet"
)

// ANSI sequences. Only used when stdout is a terminal.
const (
	ansiReset  = "\x1b[0m"
	ansiBold   = "\x1b[1m"
	ansiDim    = "\x1b[2m"
	ansiRed    = "\x1b[31m"
	ansiGreen  = "\x1b[32m"
	ansiYellow = "\x1b[33m"
	ansiCyan   = "\x1b[36m"
)

// printer writes the demo's output: steps with their elapsed time, and a view redrawn in
// place on a terminal.
type printer struct {
	w     io.Writer
	start time.Time
	ansi  bool
	// drawn is how many lines the last redraw left on screen, to move back over them.
	drawn int
}

func (p *printer) elapsed() string {
	return fmt.Sprintf("[%5.1fs]", time.Since(p.start).Seconds())
}

// step announces what the demo does next.
func (p *printer) step(format string, args ...any) {
	p.drawn = 0
	msg := fmt.Sprintf(format, args...)
	if p.ansi {
		fmt.Fprintf(p.w, "%s%s%s %s==>%s %s\n", ansiDim, p.elapsed(), ansiReset, ansiCyan, ansiReset, msg)
		return
	}
	fmt.Fprintf(p.w, "%s ==> %s\n", p.elapsed(), msg)
}

// say prints a line as is.
func (p *printer) say(format string, args ...any) {
	p.drawn = 0
	fmt.Fprintf(p.w, format+"\n", args...)
}

// redraw replaces the previous frame with lines (terminal only).
func (p *printer) redraw(lines []string) {
	var b strings.Builder
	if p.drawn > 0 {
		// Back to the first line of the last frame, then clear to the end of the screen.
		fmt.Fprintf(&b, "\x1b[%dF\x1b[J", p.drawn)
	}
	for _, l := range lines {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	_, _ = io.WriteString(p.w, b.String())
	p.drawn = len(lines)
}

// color wraps s in an ANSI color on a terminal.
func (p *printer) color(code, s string) string {
	if !p.ansi || code == "" {
		return s
	}
	return code + s + ansiReset
}

// phaseColor is the color of a target or job phase.
func phaseColor(phase string) string {
	switch phase {
	case string(fwv1.TargetPhaseSucceeded):
		return ansiGreen
	case string(fwv1.TargetPhaseFailed):
		return ansiRed
	case string(fwv1.TargetPhaseSkipped), string(fwv1.TargetPhasePending), "":
		return ansiDim
	}
	return ansiYellow
}

// Row is one target, as the progress view and the summary show it.
type Row struct {
	Target      string
	Type        fwv1.TargetType
	Job         string
	Phase       fwv1.TargetPhase
	Percent     int32
	Before      string
	After       string
	Node        string
	SessionPort int32 // rule P4
	FWPort      int32 // rule P2
	Attempts    int32
	Duration    time.Duration
	Message     string
	// Components, for a baseline job, are the installed components' versions (name
	// before → after), in place of Before and After.
	Components string
	// Installed is how many images the job installed on the target: each component a
	// baseline job installed (status.components Succeeded), else one.
	Installed int
	// Flashes is how many flashes the target's simulator saw start: the judge of "never
	// flashed twice", counted by the fleet, not by the operator.
	Flashes int
	// Flashed are the image files an iLO's simulator was asked to flash, in order.
	Flashed []string
}

// Summary is how the demo ended, target by target.
type Summary struct {
	Rows []Row
	Jobs []JobLine
	// Compliance is how the fleet stands against the demo's FirmwareBaseline at the end
	// (empty without --baseline).
	Compliance string
}

// JobLine is one UpdateJob at the end of the demo.
type JobLine struct {
	Name   string
	Phase  fwv1.JobPhase
	Counts fwv1.TargetCounts
	// Started and Completed are the job's status.startTime and completionTime (zero when unset).
	Started, Completed time.Time
}

// Succeeded counts the targets that succeeded.
func (s *Summary) Succeeded() int {
	n := 0
	for _, r := range s.Rows {
		if r.Phase == fwv1.TargetPhaseSucceeded {
			n++
		}
	}
	return n
}

// AllSucceeded reports whether every target succeeded (a fresh fleet has nothing to skip).
func (s *Summary) AllSucceeded() bool { return len(s.Rows) > 0 && s.Succeeded() == len(s.Rows) }

// NotFlashedOnce lists the succeeded targets whose simulator did not see exactly one flash
// per image installed.
func (s *Summary) NotFlashedOnce() []string {
	var out []string
	for _, r := range s.Rows {
		if r.Phase == fwv1.TargetPhaseSucceeded && r.Flashes != r.Installed {
			out = append(out, fmt.Sprintf("%s (%d flashes, %d installed)", r.Target, r.Flashes, r.Installed))
		}
	}
	return out
}

// SummaryHeader is the first line of the summary table, which tests look for.
var SummaryHeader = []string{"TARGET", "TYPE", "VERSION BEFORE → AFTER", "P2 FW SERVER", "P4 SESSION", "NODE", "DURATION", "FLASHES", "RESULT"}

// Print writes the summary table, then why each failed target failed.
func (s *Summary) Print(p *printer) {
	rows := [][]string{SummaryHeader}
	var colors []string
	for _, r := range s.Rows {
		dur := "-"
		if r.Duration > 0 {
			dur = r.Duration.Round(100 * time.Millisecond).String()
		}
		fw := port(r.FWPort)
		if r.Type == fwv1.TargetTypeLinux {
			// A Linux host gets the Smart Component over its SSH session (rule P3); it never
			// pulls from the agent's firmware server.
			fw = "(P3 SSH)"
		}
		rows = append(rows, []string{r.Target, string(r.Type), r.versions(), fw, port(r.SessionPort),
			dash(r.Node), dur, strconv.Itoa(r.Flashes), dash(string(r.Phase))})
		colors = append(colors, phaseColor(string(r.Phase)))
	}
	p.say("")
	for i, l := range table(rows) {
		if i == 0 {
			p.say("%s", p.color(ansiBold, l))
			continue
		}
		// The result is the last column: color it alone.
		cut := strings.LastIndex(strings.TrimRight(l, " "), "  ") + 2
		p.say("%s%s", l[:cut], p.color(colors[i-1], l[cut:]))
	}
	p.say("")
	for _, r := range s.Rows {
		if r.Phase != fwv1.TargetPhaseSucceeded && r.Message != "" {
			p.say("  %s: %s", r.Target, r.Message)
		}
	}
	for _, j := range s.Jobs {
		p.say("  UpdateJob %s: %s, %d succeeded, %d failed, %d skipped of %d", j.Name, dash(string(j.Phase)),
			j.Counts.Succeeded, j.Counts.Failed, j.Counts.Skipped, j.Counts.Total)
	}
	if s.Compliance != "" {
		p.say("  %s", s.Compliance)
	}
	if s.Compliance != "" {
		p.say("\nWhat each iLO was asked to flash, in order (the simulators' own record):")
		for _, r := range s.Rows {
			if len(r.Flashed) > 0 {
				p.say("  %-16s %s", r.Target, strings.Join(r.Flashed, " → "))
			}
		}
	}
	verdict := fmt.Sprintf("%d of %d targets succeeded", s.Succeeded(), len(s.Rows))
	if twice := s.NotFlashedOnce(); len(twice) > 0 {
		p.say("\n%s", p.color(ansiRed+ansiBold, "Not flashed exactly once (the simulators' count): "+strings.Join(twice, ", ")+"."))
	} else if s.Succeeded() > 0 {
		p.say("\nEach succeeded target was flashed exactly once per image installed (the simulators' count).")
	}
	if s.AllSucceeded() {
		p.say("\n%s", p.color(ansiGreen+ansiBold, "All "+verdict+"."))
	} else {
		p.say("\n%s", p.color(ansiRed+ansiBold, "Only "+verdict+"."))
	}
}

// versions is the row's version cell: the component's before → after, or for a baseline
// job each installed component's.
func (r Row) versions() string {
	if r.Components != "" {
		return r.Components
	}
	return versions(r.Before, r.After)
}

func versions(before, after string) string {
	if before == "" && after == "" {
		return "-"
	}
	return dash(before) + " → " + dash(after)
}

func port(p int32) string {
	if p == 0 {
		return "-"
	}
	return strconv.Itoa(int(p))
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// table pads columns to their widest cell, two spaces apart. Widths count runes, since
// cells hold arrows.
func table(rows [][]string) []string {
	var widths []int
	for _, r := range rows {
		for i, c := range r {
			if i >= len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	out := make([]string, 0, len(rows))
	for _, r := range rows {
		var b strings.Builder
		for i, c := range r {
			b.WriteString(c)
			if i < len(r)-1 {
				b.WriteString(strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c)+2))
			}
		}
		out = append(out, b.String())
	}
	return out
}

// bar draws done out of total as a fixed-width bar.
func bar(done, inFlight, total int32, width int, ansi bool) string {
	if total <= 0 {
		total = 1
	}
	full := int(int64(done) * int64(width) / int64(total))
	busy := min(int(int64(inFlight)*int64(width)/int64(total)), width-full)
	empty := width - full - busy
	if ansi {
		return "▕" + ansiGreen + strings.Repeat("█", full) + ansiYellow + strings.Repeat("▒", busy) + ansiReset +
			strings.Repeat("░", empty) + "▏"
	}
	return "[" + strings.Repeat("#", full) + strings.Repeat(">", busy) + strings.Repeat(".", empty) + "]"
}

// watcher follows the demo's jobs and their TargetUpdates until every job has finished.
type watcher struct {
	c     client.Client
	fleet *fleet.Fleet
	jobs  []*fwv1.UpdateJob
	p     *printer

	state     []fwv1.UpdateJob
	rows      []Row
	lastPhase map[string]fwv1.TargetPhase
	lastLine  time.Time
}

// run refreshes the view every interval until the jobs end or ctx does.
func (w *watcher) run(ctx context.Context, interval time.Duration) error {
	w.lastPhase = map[string]fwv1.TargetPhase{}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		done, err := w.refresh(ctx)
		if err == nil {
			w.show(done)
		}
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// refresh reads the jobs and TargetUpdates and reports whether every job has finished.
func (w *watcher) refresh(ctx context.Context) (bool, error) {
	var jobs fwv1.UpdateJobList
	if err := w.c.List(ctx, &jobs, client.InNamespace(Namespace)); err != nil {
		return false, err
	}
	var tus fwv1.TargetUpdateList
	if err := w.c.List(ctx, &tus, client.InNamespace(Namespace)); err != nil {
		return false, err
	}
	byJob := map[string]fwv1.UpdateJob{}
	for _, j := range jobs.Items {
		byJob[j.Name] = j
	}
	w.state = w.state[:0]
	done := true
	for _, j := range w.jobs {
		cur, ok := byJob[j.Name]
		if !ok {
			cur = *j
		}
		w.state = append(w.state, cur)
		finished := cur.Status.Phase.Finished() &&
			cur.Status.ObservedGeneration == cur.Generation && cur.Status.Counts.InProgress == 0
		done = done && finished
	}
	byTarget := map[string]fwv1.TargetUpdate{}
	for _, tu := range tus.Items {
		if w.watches(tu.Spec.JobName) {
			byTarget[tu.Spec.TargetName] = tu
		}
	}
	w.rows = w.rows[:0]
	for _, t := range w.fleet.Targets() {
		r := Row{Target: t.Name, Type: t.Type, Job: jobName(fleet.ComponentOf(t.Type))}
		if tu, ok := byTarget[t.Name]; ok {
			st := tu.Status
			r.Job, r.Phase, r.Percent, r.Message = tu.Spec.JobName, st.Phase, st.Percent, st.Message
			r.Before, r.After, r.Node = st.VersionBefore, st.VersionAfter, st.Node
			r.Components = componentVersions(st.Components)
			r.Installed = installed(st)
			r.SessionPort, r.FWPort, r.Attempts = st.SessionPort, st.FirmwareServerPort, st.Attempts
			if st.StartTime != nil {
				end := time.Now()
				if st.CompletionTime != nil {
					end = st.CompletionTime.Time
				}
				r.Duration = end.Sub(st.StartTime.Time)
			}
		}
		w.rows = append(w.rows, r)
	}
	return done, nil
}

// show draws the current state: a table redrawn in place on a terminal; otherwise a line per
// target phase change and a line per job every few seconds.
func (w *watcher) show(final bool) {
	if w.p.ansi {
		w.p.redraw(w.frame())
		return
	}
	for _, r := range w.rows {
		if prev, ok := w.lastPhase[r.Target]; (ok || r.Phase != "") && prev != r.Phase {
			extra := ""
			if r.Node != "" {
				extra = fmt.Sprintf(" on %s, P4 session port %s", r.Node, port(r.SessionPort))
			}
			if r.Phase.Finished() && r.Message != "" {
				extra += ": " + r.Message
			}
			w.p.say("%s     %-16s %-11s → %s%s", w.p.elapsed(), r.Target, dash(string(prev)), r.Phase, extra)
		}
		w.lastPhase[r.Target] = r.Phase
	}
	if final || time.Since(w.lastLine) >= 5*time.Second {
		w.lastLine = time.Now()
		for _, j := range w.state {
			w.p.say("%s     %s", w.p.elapsed(), w.jobLine(j))
		}
	}
}

func (w *watcher) jobLine(j fwv1.UpdateJob) string {
	c := j.Status.Counts
	done := c.Succeeded + c.Failed + c.Skipped
	phase := dash(string(j.Status.Phase))
	return fmt.Sprintf("%-12s %s %3d/%-3d %s  %d in flight (max %d), %d failed",
		j.Name, bar(done, c.InProgress, c.Total, 24, w.p.ansi), done, c.Total, w.p.color(phaseColor(phase), fmt.Sprintf("%-9s", phase)),
		c.InProgress, j.Spec.Rollout.MaxConcurrent, c.Failed)
}

// frame is the terminal view: one progress bar per job, then one row per target.
func (w *watcher) frame() []string {
	lines := []string{"", fmt.Sprintf("  %s rolling out; Ctrl-C stops and cleans up", w.p.elapsed())}
	for _, j := range w.state {
		lines = append(lines, "  "+w.jobLine(j))
	}
	lines = append(lines, "")
	rows := [][]string{{"TARGET", "TYPE", "PHASE", "%", "VERSION BEFORE → AFTER", "NODE", "P4 SESSION"}}
	var colors []string
	for _, r := range w.rows {
		pct := "-"
		if r.Phase != "" && r.Phase != fwv1.TargetPhasePending {
			pct = strconv.Itoa(int(r.Percent))
		}
		rows = append(rows, []string{r.Target, string(r.Type), dash(string(r.Phase)), pct, r.versions(), dash(r.Node), port(r.SessionPort)})
		colors = append(colors, phaseColor(string(r.Phase)))
	}
	tbl := table(rows)
	// Color the phase cell: it starts after the first two padded columns.
	off := utf8.RuneCountInString(tbl[0][:strings.Index(tbl[0], "PHASE")])
	phaseW := strings.Index(tbl[0], "%") - strings.Index(tbl[0], "PHASE")
	for i, l := range tbl {
		if i == 0 {
			lines = append(lines, "  "+w.p.color(ansiBold, l))
			continue
		}
		rs := []rune(l)
		if len(rs) < off+phaseW {
			lines = append(lines, "  "+l)
			continue
		}
		lines = append(lines, "  "+string(rs[:off])+w.p.color(colors[i-1], string(rs[off:off+phaseW]))+string(rs[off+phaseW:]))
	}
	return lines
}

// watches reports whether job is one of the watched jobs (the dry run of a baseline is not).
func (w *watcher) watches(job string) bool {
	for _, j := range w.jobs {
		if j.Name == job {
			return true
		}
	}
	return false
}

// summary is the final state, targets in the order the fleet lists them.
func (w *watcher) summary() *Summary {
	s := &Summary{Rows: append([]Row(nil), w.rows...)}
	for _, j := range w.state {
		line := JobLine{Name: j.Name, Phase: j.Status.Phase, Counts: j.Status.Counts}
		if t := j.Status.StartTime; t != nil {
			line.Started = t.Time
		}
		if t := j.Status.CompletionTime; t != nil {
			line.Completed = t.Time
		}
		s.Jobs = append(s.Jobs, line)
	}
	return s
}
