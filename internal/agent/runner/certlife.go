package runner

import (
	"time"

	"github.com/fwops/firmware-operator/internal/agent/config"
)

// certificateNotAfter is when the certificate the agent makes at now expires: once its pod can
// no longer run (cfg.Lifetime, the pod's active deadline, counted from the pod's start, before
// now), or for an agent without a pod one target's timeout; and a day more, for the clocks of
// the targets. A pod that lives for the job runs many timeouts one after the other: waves ×
// spec.rollout.timeout, which can be days (controllers, startAgent).
func certificateNotAfter(now time.Time, cfg config.Config) time.Time {
	return now.Add(max(cfg.Lifetime, cfg.Timeout) + 24*time.Hour)
}
