package linux

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fwops/firmware-operator/internal/agent/driver"
	"github.com/fwops/firmware-operator/internal/testutil/sshd"
	"github.com/fwops/firmware-operator/internal/testutil/syncbuf"
)

// callbackHost is a host whose target has a rule P5 receive port, polls that would outlast
// the test (so only a call-back ends a run quickly, or the test's wait fails), and counters.
func callbackHost(t *testing.T, sshdOptions ...string) (host, *CallbackCounters) {
	t.Helper()
	h := host{s: sshd.StartWith(t, sshdOptions...), logs: &syncbuf.Buffer{}}
	h.opts = options(t, h.logs)
	h.tg = target(h.s)
	h.tg.Linux.StagingDirectory = t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	h.tg.Receive = &driver.Receive{Listener: l}
	counters := &CallbackCounters{}
	h.opts.Callbacks = counters
	h.opts.PollInterval, h.opts.FallbackPollInterval = time.Hour, time.Hour
	return h, counters
}

// waitFollowing waits until the driver asked the host n times to report through the SSH
// session and has read the run's state reads times: the run is then known to be running,
// and its end can only be learnt by a call-back or by a fallback read.
func waitFollowing(t *testing.T, logs *syncbuf.Buffer, counters *CallbackCounters, n int, reads int64) {
	t.Helper()
	waitUntil(t, "the driver never asked the host to report through the SSH session", func() bool {
		return strings.Count(logs.String(), "the host reports the run's end through the SSH session") >= n
	})
	waitUntil(t, "the driver never read the run's state", func() bool {
		return counters.StateReads.Load() >= reads
	})
}

// updateInBackground opens a driver on tg and runs fw's Update; done gives its error, after
// which res holds its result.
func updateInBackground(t testing.TB, tg driver.Target, opts Options, fw driver.Firmware) (done <-chan error, res *driver.Result) {
	t.Helper()
	d, err := Open(t.Context(), tg, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	errc := make(chan error, 1)
	res = &driver.Result{}
	go func() { r, err := d.Update(t.Context(), fw, nil); *res = r; errc <- err }()
	return errc, res
}

// exitOnGate writes a component that waits for the file gate, runs then, and exits 0.
func exitOnGate(t testing.TB, then string) (fw driver.Firmware, gate string) {
	t.Helper()
	dir := t.TempDir()
	gate = filepath.Join(dir, "gate")
	comp := filepath.Join(dir, "cp099998.scexe")
	script := fmt.Sprintf("#!/bin/sh\nwhile [ ! -e %s ]; do sleep 0.01; done\n%s\nexit 0\n", strconv.Quote(gate), then)
	if err := os.WriteFile(comp, []byte(script), 0o600); err != nil {
		t.Fatal(err)
	}
	return driver.Firmware{LocalPath: comp, FileName: filepath.Base(comp)}, gate
}

// rule P5: the detached run reports its exit code through the SSH session's remote port
// forward to the receive port; the driver learns it without another read of the run's state
// (polls are an hour apart here).
func TestP5_LinuxCallBackReportsTheEnd(t *testing.T) {
	h, counters := callbackHost(t)
	g := gatedComponent(t, ExitInstalledReboot)
	done, res := updateInBackground(t, h.tg, h.opts, g.firmware())
	waitFollowing(t, h.logs, counters, 1, 2)
	g.release(t)
	if err := wait(t, done); err != nil {
		t.Fatalf("Update: %v\n%s", err, h.logs)
	}
	if !res.RebootRequired || res.VersionAfter != "4.5.6" {
		t.Fatalf("result %+v, want exit code 1 (installed, reboot needed)", res)
	}
	if got := counters.Accepted.Load(); got != 1 {
		t.Fatalf("accepted call-backs = %d, want 1 (refused %d, forwards %d)\n%s", got, counters.Refused.Load(), counters.Forwards.Load(), h.logs)
	}
	// One read before the launch and one as the follow begins: none after the run ended.
	if got := counters.StateReads.Load(); got != 2 {
		t.Fatalf("state reads = %d, want 2 (the end came by call-back)", got)
	}
	if !strings.Contains(h.logs.String(), "reported the run's end through the SSH session") {
		t.Fatalf("the log does not say the end came by call-back:\n%s", h.logs)
	}
	assertNoRunDirs(t, h.tg.Linux.StagingDirectory)
}

// rule P5: a host whose sshd refuses remote forwards (AllowTcpForwarding no, as CIS
// benchmarks ask) is followed by reading the run's state, and the update still succeeds.
func TestP5_LinuxCallBackRefusedFallsBackToTheResultFile(t *testing.T) {
	h, counters := callbackHost(t, "AllowTcpForwarding no")
	h.opts.PollInterval = 50 * time.Millisecond // the fallback; the hour-long one must not be used
	g := gatedComponent(t, ExitInstalled)
	_, _, done := startGated(t, h.tg, h.opts, g)
	// Released once the follow loop read the run as running: only a later read can end it.
	waitUntil(t, "the driver never read the run's state", func() bool { return counters.StateReads.Load() >= 2 })
	g.release(t)
	if err := wait(t, done); err != nil {
		t.Fatalf("Update: %v\n%s", err, h.logs)
	}
	if counters.StateReads.Load() < 3 {
		t.Fatalf("state reads %d: the end was not read from the result file", counters.StateReads.Load())
	}
	if counters.ForwardsRefused.Load() != 1 || counters.Forwards.Load() != 0 || counters.Accepted.Load() != 0 {
		t.Fatalf("forwards refused %d, granted %d, call-backs %d: want 1, 0, 0", counters.ForwardsRefused.Load(),
			counters.Forwards.Load(), counters.Accepted.Load())
	}
	if !strings.Contains(h.logs.String(), "the host refused a remote port forward") {
		t.Fatalf("the log does not say the forward was refused:\n%s", h.logs)
	}
	assertNoRunDirs(t, h.tg.Linux.StagingDirectory)
}

// rule P5: the forward is granted but nothing arrives (here the component removes the
// callback file, as a host without bash never sends): the fallback reads end the run.
func TestP5_LinuxCallBackSilentFallsBackToTheResultFile(t *testing.T) {
	h, counters := callbackHost(t)
	h.opts.FallbackPollInterval = 50 * time.Millisecond
	fw, gate := exitOnGate(t, "rm -f callback")
	done, _ := updateInBackground(t, h.tg, h.opts, fw)
	waitFollowing(t, h.logs, counters, 1, 2)
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := wait(t, done); err != nil {
		t.Fatalf("Update: %v\n%s", err, h.logs)
	}
	if counters.Accepted.Load() != 0 || counters.StateReads.Load() < 3 {
		t.Fatalf("call-backs %d, state reads %d: want 0 and the fallback's reads", counters.Accepted.Load(), counters.StateReads.Load())
	}
}

// callbackFile is the run's "<port> <token>", as the host sees it.
func callbackFile(t *testing.T, staging string) (port, token string) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(staging, runDirPrefix+"*", "callback"))
	if len(files) != 1 {
		t.Fatalf("callback files %v", files)
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		t.Fatalf("callback file %q", b)
	}
	return f[0], f[1]
}

// send writes one report line to addr and returns the answer ("" when the receiver hung up).
func send(t *testing.T, addr, line string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := fmt.Fprintln(c, line); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	answer, _ := bufio.NewReader(c).ReadString('\n')
	return answer
}

// rule P5: forged reports are refused and counted: one with the right token sent straight to
// the receive port (not through the target's SSH session), one through the host's forward
// with a wrong token (another user of the host, who cannot read the private run directory).
// The real report that follows is taken.
func TestP5_LinuxForgedCallBackRefused(t *testing.T) {
	h, counters := callbackHost(t)
	g := gatedComponent(t, ExitInstalledReboot)
	done, res := updateInBackground(t, h.tg, h.opts, g.firmware())
	waitFollowing(t, h.logs, counters, 1, 2)
	port, token := callbackFile(t, h.tg.Linux.StagingDirectory)

	if a := send(t, h.tg.Receive.Listener.Addr().String(), "fwops-result "+token+" finished 0 0 began"); a != "" {
		t.Fatalf("a report sent straight to the receive port was answered %q", a)
	}
	if a := send(t, net.JoinHostPort("127.0.0.1", port), "fwops-result 0123456789abcdef0123456789abcdef finished 0 0 began"); a != "" {
		t.Fatalf("a report with a wrong token was answered %q", a)
	}
	waitUntil(t, "the forged reports were not counted", func() bool { return counters.Refused.Load() == 2 })
	select {
	case err := <-done:
		t.Fatalf("Update ended on a forged report: %v", err)
	default:
	}
	for _, why := range []string{"not through the target's SSH session", "wrong token"} {
		if !strings.Contains(h.logs.String(), why) {
			t.Errorf("the log does not name the refusal %q", why)
		}
	}
	if strings.Contains(h.logs.String(), token) {
		t.Errorf("the token is in the log")
	}
	g.release(t)
	if err := wait(t, done); err != nil {
		t.Fatalf("Update: %v\n%s", err, h.logs)
	}
	if !res.RebootRequired || counters.Accepted.Load() != 1 || counters.Refused.Load() != 2 {
		t.Fatalf("result %+v, accepted %d, refused %d: want the real exit code 1, 1 and 2\n%s", res, counters.Accepted.Load(), counters.Refused.Load(), h.logs)
	}
}

// rule P5: the SSH connection drops mid-run, and its forward with it. The driver notices,
// reconnects, asks the host for a new forward and learns the end through that one.
func TestP5_LinuxCallBackAcrossAConnectionDrop(t *testing.T) {
	h, counters := callbackHost(t)
	g := gatedComponent(t, ExitInstalled)
	conn, _, done := startGated(t, h.tg, h.opts, g)
	waitFollowing(t, h.logs, counters, 1, 2)
	conn.Close()
	// The read that fails, then the one after the reconnect.
	waitFollowing(t, h.logs, counters, 2, 4)
	g.release(t)
	if err := wait(t, done); err != nil {
		t.Fatalf("Update across a dropped connection: %v\n%s", err, h.logs)
	}
	if n := lines(t, g.runs); n != 1 {
		t.Fatalf("the component started %d times, want once", n)
	}
	if counters.Forwards.Load() != 2 || counters.Accepted.Load() != 1 {
		t.Fatalf("forwards %d, call-backs %d: want 2 (one per connection) and 1", counters.Forwards.Load(), counters.Accepted.Load())
	}
	assertNoRunDirs(t, h.tg.Linux.StagingDirectory)
}
