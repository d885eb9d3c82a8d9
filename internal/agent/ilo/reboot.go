package ilo

import (
	"context"
	"fmt"
	"time"

	"github.com/fwops/firmware-operator/internal/agent/driver"
	"github.com/fwops/firmware-operator/internal/agent/redfish"
)

// rebootToActivate reboots the server gracefully so that firmware which activates at the next
// reboot (what: "System ROM 2.68", say) runs, when the job allows it (rollout.reboot:
// IfRequired) and its maintenance window leaves room for a reboot and POST (RebootTimeout);
// then it waits for POST to finish and for active to hold in VerifyReads reads in a row. active
// also returns what runs now, for the message when it never holds.
//
// When it does not reboot, rebooted is false and why, when not empty, is a sentence that says
// why, for the target's message; a job that never reboots needs none.
func (d *Driver) rebootToActivate(ctx context.Context, fw driver.Firmware, what string, active func(context.Context) (bool, string, error),
	report func(driver.Progress)) (rebooted bool, why string, err error) {
	if !fw.RebootIfRequired {
		return false, "", nil
	}
	if !fw.RebootBy.IsZero() && time.Until(fw.RebootBy) < d.opts.RebootTimeout {
		// A reboot and POST may take up to RebootTimeout: started now, it could run past the
		// window, and a server rebooting outside its window is what the window is there to
		// prevent.
		return false, fmt.Sprintf("The server was not rebooted (rollout.reboot: IfRequired) because the job's maintenance window ends at %s, too soon for a reboot and POST (up to %s): reboot it in a later window",
			fw.RebootBy.UTC().Format(time.RFC3339), d.opts.RebootTimeout), nil
	}
	sys, err := d.c.System(ctx)
	if err != nil {
		return false, "", fmt.Errorf("target %s: reading the server's power state before rebooting it: %w", d.t.Name, err)
	}
	if sys.PowerState != "On" {
		return false, fmt.Sprintf("The server is off (PowerState %s) and runs it from its next power-on", orNone(sys.PowerState)), nil
	}
	report(driver.Progress{Phase: driver.PhaseVerifying, Percent: 100, Message: "rebooting the server gracefully to activate " + what + " (rollout.reboot: IfRequired)"})
	if err := d.c.ResetSystem(ctx, "GracefulRestart"); err != nil {
		return false, "", fmt.Errorf("target %s: %s is staged, but asking the server to reboot failed: %w; reboot it to activate it", d.t.Name, what, err)
	}
	var now, post string
	err = d.pollReads(ctx, d.opts.RebootTimeout, func(ctx context.Context) (bool, error) {
		sys, err := d.c.System(ctx)
		if err != nil {
			return false, err
		}
		post = sys.Oem.Hpe.PostState
		ok, runs, err := active(ctx)
		now = runs
		return err == nil && ok && post == redfish.PostStateFinished, err
	})
	if err != nil {
		return true, "", fmt.Errorf("target %s: the server was asked to reboot to activate %s, but after %s it %s (PostState %s): %w; check the server's console and its Integrated Management Log",
			d.t.Name, what, d.opts.RebootTimeout, now, orNone(post), err)
	}
	return true, "", nil
}
