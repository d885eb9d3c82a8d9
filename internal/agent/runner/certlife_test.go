package runner

import (
	"testing"
	"time"

	"github.com/fwops/firmware-operator/internal/agent/config"
)

// A long-lived agent's certificate outlives its pod: the pod runs one target after another
// for its whole active deadline (config.Lifetime), many times the per-target timeout.
func TestCertificateOutlivesThePod(t *testing.T) {
	now := time.Date(2026, 12, 8, 4, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		cfg  config.Config
		// podEnd is the latest the agent can still serve: its pod's deadline, counted from
		// before the agent started, so at most now + Lifetime.
		podEnd time.Time
	}{
		// 10,000 targets, maxConcurrent 50 on 2 nodes: 25 slots, 200 waves of 30 min.
		{"200 waves of the default timeout", config.Config{Timeout: 30 * time.Minute, Lifetime: 5*time.Minute + 200*30*time.Minute},
			now.Add(5*time.Minute + 200*30*time.Minute)},
		// Two waves at the longest timeout the schema allows.
		{"two waves of 24h", config.Config{Timeout: 24 * time.Hour, Lifetime: 5*time.Minute + 48*time.Hour}, now.Add(5*time.Minute + 48*time.Hour)},
		{"one wave", config.Config{Timeout: 30 * time.Minute, Lifetime: 35 * time.Minute}, now.Add(35 * time.Minute)},
		// An agent outside a pod (tests, the quick demo) knows no lifetime: its targets' timeout.
		{"no lifetime", config.Config{Timeout: 30 * time.Minute}, now.Add(30 * time.Minute)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := certificateNotAfter(now, tc.cfg)
			if !got.After(tc.podEnd) {
				t.Errorf("certificate expires %s, before the agent's end %s", got, tc.podEnd)
			}
			// The margin is for the targets' clocks (a day), not a certificate for ever.
			if limit := tc.podEnd.Add(25 * time.Hour); got.After(limit) {
				t.Errorf("certificate expires %s, long after the agent's end %s", got, tc.podEnd)
			}
		})
	}
}
