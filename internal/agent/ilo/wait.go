package ilo

import (
	"context"
	"fmt"
	"time"

	"github.com/fwops/firmware-operator/internal/agent/driver"
	"github.com/fwops/firmware-operator/internal/agent/redfish"
)

// whenUp runs op and, while it fails because the iLO is not answering (redfish.Unavailable: the
// connection refused or dropped, or a 502/503/504, as an iLO does for minutes while it resets
// after flashing itself and while it comes back half up), runs it again, waiting ComeBackBackoff
// between attempts, doubled up to MaxComeBackBackoff, for at most ComeBackTimeout and never past
// ctx. An agent that comes to an iLO another agent has just flashed meets it resetting: reading
// it once and failing would fail a target that is fine. what names the step, for the messages.
func (d *Driver) whenUp(ctx context.Context, what string, report func(driver.Progress), op func(context.Context) error) error {
	err := op(ctx)
	if err == nil || ctx.Err() != nil || !redfish.Unavailable(err) {
		return err
	}
	start := time.Now()
	report(driver.Progress{Message: fmt.Sprintf("the iLO is not answering while %s (%v); it may be resetting after a flash: waiting up to %s for it to come back",
		what, err, d.opts.ComeBackTimeout)})
	wctx, cancel := context.WithTimeout(ctx, d.opts.ComeBackTimeout)
	defer cancel()
	wait := d.opts.ComeBackBackoff
	for {
		t := time.NewTimer(wait)
		select {
		case <-wctx.Done():
			t.Stop()
			if ctx.Err() != nil {
				return fmt.Errorf("%s: the iLO was not answering for %s when the time ran out (last: %w): %w",
					what, time.Since(start).Round(time.Second), err, ctx.Err())
			}
			return fmt.Errorf("%s: the iLO has not answered for %s (last: %w); check that it is powered, reachable from the agent's node and not stuck in its reset (an iLO can be reset from the server's front panel or its host OS)",
				what, d.opts.ComeBackTimeout, err)
		case <-t.C:
		}
		wait = min(2*wait, d.opts.MaxComeBackBackoff)
		if err = op(wctx); err == nil {
			report(driver.Progress{Message: fmt.Sprintf("the iLO answers again after %s; %s", time.Since(start).Round(time.Second), what)})
			return nil
		}
		if wctx.Err() == nil && !redfish.Unavailable(err) {
			return err
		}
	}
}
