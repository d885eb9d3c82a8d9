package linux

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fwops/firmware-operator/internal/agent/driver"
	"github.com/fwops/firmware-operator/internal/testutil/sshd"
	"github.com/fwops/firmware-operator/internal/testutil/syncbuf"
)

// BenchmarkLinuxCallBack measures, over a real sshd on loopback with the driver's default
// intervals (2 s polls; 10 s fallback polls with the call-back), the time from a Smart
// Component's exit to Update learning it, and the reads of the run's state per run: with the
// rule P5 call-back (impl=callback) and with the receive port missing (impl=poll, the driver
// before the call-back, and what AllowTcpForwarding no gives). make bench, section callback.
func BenchmarkLinuxCallBack(b *testing.B) {
	const runs = 5 // per sub-benchmark: the poll's wait spreads over its interval
	for _, impl := range []string{"callback", "poll"} {
		b.Run("impl="+impl, func(b *testing.B) {
			s := sshd.Start(b)
			for range b.N {
				var wait time.Duration
				var reads int64
				for range runs {
					w, r := oneTimedRun(b, s, impl == "callback")
					wait += w
					reads += r
				}
				b.ReportMetric(float64(wait.Milliseconds())/runs, "ms-exit-to-result")
				b.ReportMetric(float64(reads)/runs, "state-reads/run")
			}
		})
	}
}

// oneTimedRun runs a component that exits when told, writing its exit time, and returns the
// time from that exit to Update's return (the result file's tail and the removal of the run
// directory included, the same for both), and the state reads made.
func oneTimedRun(b *testing.B, s *sshd.Server, callback bool) (time.Duration, int64) {
	h := host{s: s, logs: &syncbuf.Buffer{}}
	h.tg = target(h.s)
	h.tg.Linux.StagingDirectory = b.TempDir()
	counters := &CallbackCounters{}
	following := make(chan struct{})
	h.opts = Options{StateDir: filepath.Join(b.TempDir(), "state"), Callbacks: counters,
		Logger: slog.New(&signalOn{Handler: slog.NewTextHandler(h.logs, nil), msg: followLoopBegins, ch: following, once: &sync.Once{}})}
	if callback {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		defer l.Close()
		h.tg.Receive = &driver.Receive{Listener: l}
	}
	exited := filepath.Join(b.TempDir(), "exited")
	fw, gate := exitOnGate(b, "date +%s.%N > "+strconv.Quote(exited))
	done, _ := updateInBackground(b, h.tg, h.opts, fw)
	// Let the run reach the follow loop first, as a real flash of minutes does.
	select {
	case <-following:
	case err := <-done:
		b.Fatalf("Update returned before it followed the run: %v\n%s", err, h.logs)
	}
	// A real component exits at any point of a poll interval, not just after a read: this
	// pause is the measured case, not a wait for something.
	time.Sleep(rand.N(DefaultPollInterval))
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		b.Fatal(err)
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	learnt := time.Now()
	raw, err := os.ReadFile(exited)
	if err != nil {
		b.Fatal(err)
	}
	sec, err := strconv.ParseFloat(strings.TrimSpace(string(raw)), 64)
	if err != nil {
		b.Fatal(err)
	}
	exit := time.Unix(0, int64(sec*1e9))
	if callback && counters.Accepted.Load() != 1 {
		b.Fatalf("the call-back did not arrive (accepted %d)", counters.Accepted.Load())
	}
	return learnt.Sub(exit), counters.StateReads.Load()
}

// followLoopBegins is what the driver logs as it begins to follow a run (follow).
const followLoopBegins = "waiting for the smart component to finish"

// signalOn is a log handler that closes ch at the first record whose message is msg.
type signalOn struct {
	slog.Handler
	msg  string
	ch   chan struct{}
	once *sync.Once
}

func (h *signalOn) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.once.Do(func() { close(h.ch) })
	}
	return h.Handler.Handle(ctx, r)
}

func (h *signalOn) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &signalOn{Handler: h.Handler.WithAttrs(attrs), msg: h.msg, ch: h.ch, once: h.once}
}

func (h *signalOn) WithGroup(name string) slog.Handler {
	return &signalOn{Handler: h.Handler.WithGroup(name), msg: h.msg, ch: h.ch, once: h.once}
}
