package runner

import (
	"fmt"
	"testing"
	"time"

	"github.com/fwops/firmware-operator/internal/agent/ilo"
	similo "github.com/fwops/firmware-operator/internal/simulator/ilo"
)

// BenchmarkP5EventsEndToEnd is TestP5_EndToEndEvents's figures as a benchmark (make bench,
// section events): an agent run through Main against a real API server and the iLO 5
// simulator flashes one system ROM (2.3 s) with the iLO's Redfish events on a rule P5 receive
// port (impl=events) and polling only (impl=polling). Metrics: the Redfish requests the
// simulator served per flash, and the time from the iLO's Complete to the end of the agent's
// run (the TargetUpdate's final phase written). 20 ms polls give the ratio of 2 s polls to a
// flash of four minutes (the request count); 500 ms polls show the wait after Complete.
func BenchmarkP5EventsEndToEnd(b *testing.B) {
	const runs = 3 // per sub-benchmark, averaged
	slow := similo.Timings{Upload: 100 * time.Millisecond, Verify: 100 * time.Millisecond, Write: 100 * time.Millisecond,
		Update: 2 * time.Second, Steps: 4, POST: 300 * time.Millisecond}
	e := newE2E(b)
	for _, poll := range []time.Duration{20 * time.Millisecond, 500 * time.Millisecond} {
		for _, impl := range []string{"events", "polling"} {
			b.Run(fmt.Sprintf("poll=%s/impl=%s", poll, impl), func(b *testing.B) {
				e.t = b
				for n := range b.N {
					var requests int
					var wait time.Duration
					for i := range runs {
						r := e.runROMJob(fmt.Sprintf("bench-%s-%d-%d-%d", impl, poll.Milliseconds(), n, i), impl == "events", slow,
							ilo.Options{PollInterval: poll, FlashTimeout: time.Minute, VerifyTimeout: time.Minute}, nil)
						if (r.delivered > 0) != (impl == "events") || r.sim.Stats().Subscriptions != 0 {
							b.Fatalf("%s: %d events delivered, %d subscriptions left", impl, r.delivered, r.sim.Stats().Subscriptions)
						}
						requests += r.requests
						wait += r.completeToDone
					}
					b.ReportMetric(float64(requests)/runs, "requests/flash")
					b.ReportMetric(float64(wait.Milliseconds())/runs, "ms-complete-to-final")
				}
			})
		}
	}
}
