package linux

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/onsi/gomega"
	"golang.org/x/crypto/ssh"

	"github.com/fwops/firmware-operator/internal/agent/driver"
	"github.com/fwops/firmware-operator/internal/testutil/sshd"
	"github.com/fwops/firmware-operator/internal/testutil/syncbuf"
)

// gated is a Smart Component stand-in that the test holds mid-run: each start appends a line
// to runs ("pid uid sudo-user cwd"), unpacks a file into $TMPDIR as real components do, then
// waits until the gate file exists, appends to finished and exits with code.
type gated struct {
	path, runs, gate, finished string
}

func gatedComponent(t *testing.T, code int) gated {
	t.Helper()
	dir := t.TempDir()
	g := gated{path: filepath.Join(dir, "cp099999.scexe"), runs: filepath.Join(dir, "runs"),
		gate: filepath.Join(dir, "gate"), finished: filepath.Join(dir, "finished")}
	script := fmt.Sprintf(`#!/bin/sh
echo "$$ $(id -u) ${SUDO_USER:-nosudo} $PWD" >> %s
mkdir -p "$TMPDIR/unpacked" && : > "$TMPDIR/unpacked/payload"
while [ ! -e %s ]; do sleep 0.05; done
echo done >> %s
echo 'component says bye'
exit %d
`, strconv.Quote(g.runs), strconv.Quote(g.gate), strconv.Quote(g.finished), code)
	if err := os.WriteFile(g.path, []byte(script), 0o600); err != nil {
		t.Fatal(err)
	}
	// Whatever the test's outcome, let a component still waiting finish, so nothing lingers.
	t.Cleanup(func() { g.release(t) })
	return g
}

func (g gated) release(t *testing.T) {
	t.Helper()
	if err := os.WriteFile(g.gate, nil, 0o600); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Error(err)
	}
}

// lines is the number of lines in file, 0 when it does not exist.
func lines(t *testing.T, file string) int {
	t.Helper()
	b, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "\n")
}

// waitUntil waits until cond holds, failing the test with what when it does not within a
// minute. cond runs on the test's goroutine.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	gomega.NewWithT(t).Eventually(cond).WithTimeout(time.Minute).Should(gomega.BeTrue(), what)
}

func (g gated) firmware() driver.Firmware {
	return driver.Firmware{Component: driver.ComponentSmartComponent, LocalPath: g.path,
		FileName: filepath.Base(g.path), Version: "4.5.6"}
}

// An agent whose context ends (pod deleted, node drained, GitOps prune) mid-flash leaves the
// Smart Component running and its files in place; the next agent for the same target picks up
// its result and does not start it again.
func TestAgentStopsMidFlashNextAgentReadsResult(t *testing.T) {
	s := sshd.Start(t)
	logs := &syncbuf.Buffer{}
	opts := options(t, logs)
	g := gatedComponent(t, ExitInstalledReboot)

	first, err := Open(context.Background(), target(s), opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := first.Update(ctx, g.firmware(), nil); done <- err }()
	waitUntil(t, "the component never started", func() bool { return lines(t, g.runs) == 1 })
	stop() // the agent's context ends mid-flash
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Update after cancel: %v, want context.Canceled", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Update did not return after its context ended")
	}
	first.Close() // the agent exits: its SSH connection goes

	g.release(t)
	waitUntil(t, "the component was killed when the agent stopped: it never finished", func() bool {
		return lines(t, g.finished) == 1
	})

	next, err := Open(context.Background(), target(s), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer next.Close()
	res, err := next.Update(context.Background(), g.firmware(), nil)
	if err != nil {
		t.Fatalf("next agent's Update: %v\n%s", err, logs)
	}
	if n := lines(t, g.runs); n != 1 {
		t.Fatalf("the component started %d times, want once", n)
	}
	if !res.RebootRequired || res.VersionAfter != "4.5.6" {
		t.Fatalf("result %+v, want the first run's exit code 1 (installed, reboot needed)", res)
	}
}

// host is a real sshd with a target whose staging directory is the test's, and the
// driver's options and logs.
type host struct {
	s    *sshd.Server
	tg   driver.Target
	opts Options
	logs *syncbuf.Buffer
}

func newHost(t *testing.T) host {
	h := host{s: sshd.Start(t), logs: &syncbuf.Buffer{}}
	h.opts = options(t, h.logs)
	h.tg = target(h.s)
	h.tg.Linux.StagingDirectory = t.TempDir()
	return h
}

// startGated opens a driver and runs g's Update in the background until g has started.
// It returns the driver's SSH connection too, read before Update could replace it.
func startGated(t *testing.T, tg driver.Target, opts Options, g gated) (*ssh.Client, context.CancelFunc, <-chan error) {
	t.Helper()
	d, err := Open(context.Background(), tg, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	ctx, stop := context.WithCancel(context.Background())
	t.Cleanup(stop)
	done := make(chan error, 1)
	c := d.client
	go func() { _, err := d.Update(ctx, g.firmware(), nil); done <- err }()
	waitUntil(t, "the component never started", func() bool { return lines(t, g.runs) == 1 })
	return c, stop, done
}

func wait(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(60 * time.Second):
		t.Fatal("Update did not return")
		return nil
	}
}

// The next agent arrives while the component still runs: it follows the run to its end.
func TestNextAgentFollowsRunInProgress(t *testing.T) {
	h := newHost(t)
	logs, opts, tg := h.logs, h.opts, h.tg
	g := gatedComponent(t, ExitInstalled)
	first, stop, done := startGated(t, tg, opts, g)
	stop()
	if err := wait(t, done); !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "left running") {
		t.Fatalf("first agent: %v, want context.Canceled saying the component is left running", err)
	}
	first.Close()

	next, err := Open(context.Background(), tg, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer next.Close()
	var msgs []string
	resc := make(chan driver.Result, 1)
	errc := make(chan error, 1)
	go func() {
		res, err := next.Update(context.Background(), g.firmware(), func(p driver.Progress) { msgs = append(msgs, p.Message) })
		resc <- res
		errc <- err
	}()
	waitUntil(t, "the next agent did not say it follows the run", func() bool {
		return strings.Contains(logs.String(), "following the smart component run an earlier agent started")
	})
	g.release(t)
	if err := wait(t, errc); err != nil {
		t.Fatalf("next agent: %v", err)
	}
	res := <-resc
	if n := lines(t, g.runs); n != 1 {
		t.Fatalf("the component started %d times, want once", n)
	}
	if res.RebootRequired || res.NotNeeded || res.VersionAfter != "4.5.6" {
		t.Fatalf("result %+v, want installed at 4.5.6", res)
	}
	if len(msgs) == 0 || !strings.Contains(msgs[0], "an earlier agent started") {
		t.Errorf("progress %q should say the run is followed", msgs)
	}
	assertNoRunDirs(t, tg.Linux.StagingDirectory)
}

// assertNoRunDirs checks that the staging directory holds no run directory any more.
func assertNoRunDirs(t *testing.T, staging string) {
	t.Helper()
	left, err := filepath.Glob(filepath.Join(staging, runDirPrefix+"*"))
	if err != nil || len(left) != 0 {
		t.Fatalf("run directories left after the result was read: %v %v", left, err)
	}
}

// The SSH connection drops mid-run: the component carries on, the driver reconnects (from
// the same source port, rule P4) and reads its result.
func TestConnectionDropMidRun(t *testing.T) {
	h := newHost(t)
	logs, s, tg := h.logs, h.s, h.tg
	tg.LocalAddress, tg.LocalPort = "127.0.0.1", freePort(t)
	g := gatedComponent(t, ExitInstalled)
	conn, _, done := startGated(t, tg, h.opts, g)
	waitUntil(t, "the driver never waited for the component", func() bool {
		return strings.Contains(logs.String(), "waiting for the smart component to finish")
	})
	conn.Close()
	waitUntil(t, "the driver did not notice the dropped connection", func() bool {
		return strings.Contains(logs.String(), "reconnecting")
	})
	g.release(t)
	if err := wait(t, done); err != nil {
		t.Fatalf("Update across a dropped connection: %v\n%s", err, logs)
	}
	if n := lines(t, g.runs); n != 1 {
		t.Fatalf("the component started %d times, want once", n)
	}
	for _, p := range s.SourcePorts() {
		if p != tg.LocalPort {
			t.Fatalf("a connection came from port %d, want all from %d (rule P4)", p, tg.LocalPort)
		}
	}
}

// expiring is a context whose deadline passes when the test says so, not at a time that a
// loaded machine might reach before the component even started.
type expiring struct {
	context.Context
	done chan struct{}
}

func newExpiring() *expiring {
	return &expiring{Context: context.Background(), done: make(chan struct{})}
}

func (e *expiring) Done() <-chan struct{} { return e.done }

func (e *expiring) Err() error {
	select {
	case <-e.done:
		return context.DeadlineExceeded
	default:
		return nil
	}
}

func (e *expiring) expire() { close(e.done) }

// The job's timeout strikes while the component runs: Update fails and says so, the component
// is not interrupted, its files stay, and the next attempt picks up its result.
func TestTimeoutLeavesComponentRunning(t *testing.T) {
	h := newHost(t)
	opts, tg := h.opts, h.tg
	g := gatedComponent(t, ExitInstalled)
	d, err := Open(context.Background(), tg, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx := newExpiring()
	done := make(chan error, 1)
	go func() { _, err := d.Update(ctx, g.firmware(), nil); done <- err }()
	waitUntil(t, "the component never started", func() bool { return lines(t, g.runs) == 1 })
	ctx.expire()
	err = wait(t, done)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "still running") || !strings.Contains(err.Error(), "next attempt follows it") {
		t.Fatalf("err = %v, want deadline exceeded saying the component is still running and followed next time", err)
	}
	runs, _ := filepath.Glob(filepath.Join(tg.Linux.StagingDirectory, runDirPrefix+"*", "cp099999.scexe"))
	if len(runs) != 1 {
		t.Fatalf("the component's files were removed under it: %v", runs)
	}
	g.release(t)
	waitUntil(t, "the component was interrupted: it never finished", func() bool { return lines(t, g.finished) == 1 })
	res, err := d.Update(context.Background(), g.firmware(), nil)
	if err != nil || res.VersionAfter != "4.5.6" {
		t.Fatalf("next attempt: %+v, %v", res, err)
	}
	if n := lines(t, g.runs); n != 1 {
		t.Fatalf("the component started %d times, want once", n)
	}
	assertNoRunDirs(t, tg.Linux.StagingDirectory)
}

// The run's process is killed (or the host rebooted) before it left an exit code: the driver
// does not run the component again, keeps its files, and says what to do.
func TestRunThatDiedIsNotRunAgain(t *testing.T) {
	h := newHost(t)
	opts, tg := h.opts, h.tg
	g := gatedComponent(t, ExitInstalled)
	_, _, done := startGated(t, tg, opts, g)
	pids, _ := filepath.Glob(filepath.Join(tg.Linux.StagingDirectory, runDirPrefix+"*", "pid"))
	if len(pids) != 1 {
		t.Fatalf("pid files %v", pids)
	}
	b, err := os.ReadFile(pids[0])
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.Fields(string(b))[0])
	if err != nil {
		t.Fatal(err)
	}
	// setsid made the wrapper a process group leader: kill the group, wrapper and component.
	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err = wait(t, done)
	if err == nil || !strings.Contains(err.Error(), "ended without leaving its exit code") || !strings.Contains(err.Error(), "remove "+filepath.Dir(pids[0])) {
		t.Fatalf("err = %v, want a run that died, naming the directory to remove", err)
	}
	next, err := Open(context.Background(), tg, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer next.Close()
	if _, err := next.Update(context.Background(), g.firmware(), nil); err == nil || !strings.Contains(err.Error(), "not run again") {
		t.Fatalf("next agent: %v, want the same refusal", err)
	}
	if n := lines(t, g.runs); n != 1 {
		t.Fatalf("the component started %d times, want once", n)
	}
	if _, err := os.Stat(filepath.Dir(pids[0])); err != nil {
		t.Fatalf("the run directory should stay for a person to look at: %v", err)
	}
}
