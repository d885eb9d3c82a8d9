package runner

import (
	"testing"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/flowcontrol"
)

// An agent's API client lets every slot make its first requests at once (read its
// TargetUpdate, write the version it read, write the flash request) without waiting on the
// client's own rate limiter: client-go's defaults (5 a second, bursts of 10) held the first
// flash of a 100-slot pod for tens of seconds (issue 13).
func TestAgentClientLetsEverySlotStartAtOnce(t *testing.T) {
	for _, slots := range []int{1, 8, 100} {
		in := &rest.Config{Host: "https://127.0.0.1:6443"}
		rc := withRateLimits(in, slots)
		if in.QPS != 0 || in.Burst != 0 {
			t.Fatalf("withRateLimits changed its argument: %v qps, burst %d", in.QPS, in.Burst)
		}
		// The limiter client-go builds from the config (rest.RESTClientFor), starting full.
		rl := flowcontrol.NewTokenBucketRateLimiter(rc.QPS, rc.Burst)
		for i := range 3 * slots {
			if !rl.TryAccept() {
				t.Errorf("%d slots: request %d of the slots' first %d waits on the client's rate limiter (%v qps, burst %d)",
					slots, i+1, 3*slots, rc.QPS, rc.Burst)
				break
			}
		}
		if rc.QPS < float32(slots) {
			t.Errorf("%d slots: %v requests a second, fewer than one per slot", slots, rc.QPS)
		}
	}
}
