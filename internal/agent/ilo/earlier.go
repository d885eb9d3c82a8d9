package ilo

import (
	"context"
	"fmt"
	"time"

	"github.com/fwops/firmware-operator/internal/agent/driver"
	"github.com/fwops/firmware-operator/internal/agent/redfish"
)

// earlierFlashRan decides, for a retry that finds the iLO at Complete with its firmware still
// at the version read before (before), whether an earlier attempt's flash completed and the iLO
// is about to reset into it. Asking again then would flash the iLO twice. The iLO resets within
// seconds of Complete, so it waits up to EarlierFlashWait for a sign: the iLO stops answering
// (the reset) or shows another version. A Complete that outlasts the wait is stale, left by an
// earlier flash of another component (a system ROM leaves the iLO at Complete), and the flash is
// asked for as usual.
func (d *Driver) earlierFlashRan(ctx context.Context, fw driver.Firmware, before string, report func(driver.Progress)) (bool, error) {
	report(driver.Progress{Phase: driver.PhaseFlashing, Message: fmt.Sprintf(
		"the iLO shows a completed flash and an earlier attempt of this job may have asked for it; waiting up to %s for its reset before asking for the flash", d.opts.EarlierFlashWait)})
	end := time.Now().Add(d.opts.EarlierFlashWait)
	tick := time.NewTicker(d.opts.PollInterval)
	defer tick.Stop()
	for {
		raw, err := d.rawVersion(ctx, fw.Component, fw.Version)
		switch {
		case err != nil && redfish.Unavailable(err):
			return true, nil // the reset into the earlier flash
		case err != nil && ctx.Err() != nil:
			return false, fmt.Errorf("target %s: waiting for the reset of an earlier flash: %w", d.t.Name, ctx.Err())
		case err != nil:
			return false, fmt.Errorf("target %s: reading the version while waiting for the reset of an earlier flash: %w", d.t.Name, err)
		case NormalizeVersion(raw) != before:
			return true, nil // it took effect already; follow and verify
		}
		if !time.Now().Before(end) {
			return false, nil
		}
		select {
		case <-ctx.Done():
			return false, fmt.Errorf("target %s: waiting for the reset of an earlier flash: %w", d.t.Name, ctx.Err())
		case <-tick.C:
		}
	}
}
