package ilo

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/fwops/firmware-operator/internal/agent/driver"
	"github.com/fwops/firmware-operator/internal/agent/redfish"
	"github.com/fwops/firmware-operator/internal/fwversion"
)

// Update flashes fw, reporting progress, and verifies the new version. A flash already running
// on the iLO (an earlier agent's) is followed, never started again; a system ROM that is flashed
// but runs only after the next reboot ends staged (RebootRequired), or, with RebootIfRequired,
// after a graceful reboot and POST.
func (d *Driver) Update(ctx context.Context, fw driver.Firmware, report func(driver.Progress)) (driver.Result, error) {
	if report == nil {
		report = func(driver.Progress) {}
	}
	if fw.Component == driver.ComponentSmartComponent && isFwpkg(fw) {
		return d.updateSmartComponent(ctx, fw, report) // fwpkg.go
	}
	// Every read before the request waits for an iLO that is not answering (whenUp): one
	// flashed a moment ago by another job resets, and no flash is requested before the update
	// state was read.
	var before string
	err := d.whenUp(ctx, "reading the version before the flash", report, func(ctx context.Context) (err error) {
		before, err = d.rawVersion(ctx, fw.Component, fw.Version)
		return err
	})
	if err != nil {
		return driver.Result{}, fmt.Errorf("reading the version before the flash: %w", err)
	}
	res := driver.Result{VersionBefore: NormalizeVersion(before)}
	want := NormalizeVersion(fw.Version)
	if want != "" && fwversion.Same(res.VersionBefore, want) {
		res.VersionAfter, res.NotNeeded = res.VersionBefore, true
		res.Message = "already at version " + res.VersionBefore
		return res, nil
	}
	rom := fw.Component == driver.ComponentSystemROM
	stagedBefore := ""
	if rom {
		err := d.whenUp(ctx, "reading the redundant system ROM", report, func(ctx context.Context) (err error) {
			stagedBefore, err = d.stagedROM(ctx)
			return err
		})
		if err != nil {
			return res, fmt.Errorf("target %s: reading the redundant system ROM before the flash: %w", d.t.Name, err)
		}
		if want != "" && fwversion.Same(stagedBefore, want) {
			// An earlier flash staged it: flashing again would change nothing until a reboot.
			return d.finishStagedROM(ctx, fw, res, stagedBefore, "staged by an earlier flash", report)
		}
	}

	ilo4 := d.t.Type == driver.TypeILO4
	var acc redfish.UpdateAccepted
	var running redfish.UpdateStatus
	err = d.whenUp(ctx, "reading the update state before the flash", report, func(ctx context.Context) (err error) {
		running, err = d.status(ctx, ilo4)
		return err
	})
	if err != nil {
		return res, fmt.Errorf("target %s: reading the update state before the flash: %w", d.t.Name, err)
	}
	d.subscribe(ctx) // rule P5 events (events.go): before the flash, removed after it
	defer d.unsubscribe(ctx)
	following := running.Active()
	if !following && fw.EarlierAttempt && fw.Component == driver.ComponentILO && running.State == redfish.StateComplete {
		if following, err = d.earlierFlashRan(ctx, fw, res.VersionBefore, report); err != nil {
			return res, err
		}
	}
	if following {
		// An earlier agent's flash (or someone else's) is running, or completed and the iLO is
		// resetting into it: follow it, never start a second one.
		report(driver.Progress{Phase: driver.PhaseFlashing, Message: fmt.Sprintf("a flash is already running on the iLO (%s), or completed and resetting into it; following it instead of starting another", running.State)})
	} else {
		if acc, err = d.request(ctx, fw, ilo4, running, report); err != nil {
			return res, err
		}
	}
	if err := d.follow(ctx, ilo4, acc, following, report); err != nil {
		return res, err
	}

	report(driver.Progress{Phase: driver.PhaseVerifying, Percent: 100, Message: "reading the new version"})
	if rom {
		return d.verifyROM(ctx, fw, res, stagedBefore, report)
	}
	after, err := d.verify(ctx, fw, res.VersionBefore)
	res.VersionAfter = after
	if err != nil {
		return res, err
	}
	res.RebootRequired = fw.Component == driver.ComponentSmartComponent
	res.Message = fmt.Sprintf("%s updated from %s to %s", fw.Component, orNone(res.VersionBefore), after)
	return res, nil
}

// request asks the iLO to flash fw, over HTTPS where the iLO can fetch it so (rule P2):
// SimpleUpdate on an iLO 5/6 whose UpdateService lists HTTPS in the action's
// TransferProtocol@Redfish.AllowableValues (us, read just before). iLO 4's InstallFromURI and
// the AddFromUri action advertise no protocol, so they get HTTP.
func (d *Driver) request(ctx context.Context, fw driver.Firmware, ilo4 bool, us redfish.UpdateStatus, report func(driver.Progress)) (redfish.UpdateAccepted, error) {
	var acc redfish.UpdateAccepted
	var err error
	url := func(canHTTPS bool, cannot string) (string, error) {
		u, err := fw.ImageURL(canHTTPS, cannot)
		if err != nil {
			return "", fmt.Errorf("target %s: %w", d.t.Name, err)
		}
		over := "HTTP"
		if strings.HasPrefix(u, "https://") {
			over = "HTTPS"
		}
		report(driver.Progress{Phase: driver.PhaseFlashing, Message: "requesting the flash (the image over " + over + ")"})
		return u, nil
	}
	var u string
	switch {
	case fw.Component == driver.ComponentSmartComponent:
		if ilo4 {
			return acc, fmt.Errorf("target %s: Smart Components are installed through the host on iLO 4, not Redfish: %w", d.t.Name, driver.ErrUnsupported)
		}
		if u, err = url(false, "the iLO's AddFromUri action (Smart Components) advertises no HTTPS"); err != nil {
			return acc, err
		}
		err = d.c.AddFromURI(ctx, redfish.AddFromURIRequest{ImageURI: u, UpdateRepository: true, UpdateTarget: true})
	case fw.Component != driver.ComponentILO && fw.Component != driver.ComponentSystemROM:
		return acc, fmt.Errorf("target %s: component %q: %w", d.t.Name, fw.Component, driver.ErrUnsupported)
	case ilo4:
		if u, err = url(false, "iLO 4 downloads firmware over HTTP only (InstallFromURI)"); err != nil {
			return acc, err
		}
		err = d.c.InstallFromURI(ctx, u)
	default:
		if u, err = url(us.SimpleUpdateOffers("HTTPS"), "the iLO's SimpleUpdate does not list HTTPS in TransferProtocol@Redfish.AllowableValues"); err != nil {
			return acc, err
		}
		acc, err = d.c.SimpleUpdate(ctx, u)
	}
	if err != nil {
		return acc, fmt.Errorf("target %s: %w", d.t.Name, err)
	}
	return acc, nil
}

func (d *Driver) status(ctx context.Context, ilo4 bool) (redfish.UpdateStatus, error) {
	if ilo4 {
		return d.c.ILO4UpdateStatus(ctx)
	}
	return d.c.UpdateStatus(ctx)
}

func orNone(s string) string {
	if s == "" {
		return "(unknown)"
	}
	return s
}

// follow polls the update state until the flash ends, reporting progress. following says the
// flash was already running when the driver came (an earlier agent's).
//
// An iLO that flashed itself resets after Complete: it drops connections, then answers 503
// while it comes back, then forgets the flash (Idle) and its task (404). Those are the reset,
// not a failure: follow keeps polling through them (the client logs in again when the iLO has
// forgotten the session) and leaves the verdict to the inventory.
func (d *Driver) follow(ctx context.Context, ilo4 bool, acc redfish.UpdateAccepted, following bool, report func(driver.Progress)) error {
	ctx, cancel := context.WithTimeout(ctx, d.opts.FlashTimeout)
	defer cancel()
	seenActive, outage, polls := following, false, 0
	var last redfish.UpdateStatus
	for {
		st, err := d.status(ctx, ilo4)
		switch {
		case err != nil && ctx.Err() != nil:
			return fmt.Errorf("target %s: flash did not complete (last state %s): %w", d.t.Name, orNone(last.State), ctx.Err())
		case err != nil && redfish.Unavailable(err):
			if !outage {
				report(driver.Progress{Phase: driver.PhaseFlashing, Percent: last.Percent, Message: "the iLO is not answering (it resets after flashing itself); waiting for it"})
			}
			outage = true
			d.eventsLost() // events.go
		case err != nil:
			return fmt.Errorf("target %s: following the flash: %w", d.t.Name, err)
		default:
			last = st
			polls++
			if done, err := d.judge(ctx, st, acc, seenActive || outage, polls, report); done {
				return err
			}
			if outage {
				d.resubscribeAfterReset(ctx) // still following after a reset, which forgets subscriptions
			}
			seenActive = seenActive || st.Active()
		}
		if !d.pause(ctx) { // the poll interval, cut short by an event (events.go)
			return fmt.Errorf("target %s: flash did not complete (last state %s): %w", d.t.Name, orNone(last.State), ctx.Err())
		}
	}
}

// judge reads one update state; it returns true when the flash has ended, with its error.
// started says the flash was seen running (or the iLO went away, as it does once it ran).
func (d *Driver) judge(ctx context.Context, st redfish.UpdateStatus, acc redfish.UpdateAccepted, started bool, polls int, report func(driver.Progress)) (bool, error) {
	fresh := started || polls >= d.opts.StaleTerminalPolls
	switch {
	case st.Active():
		pct := 0
		if st.State == redfish.StateUpdating {
			pct = st.Percent
		}
		report(driver.Progress{Phase: driver.PhaseFlashing, Percent: pct, Message: st.State})
	case st.State == redfish.StateError && fresh:
		return true, &FlashError{Target: d.t.Name, MessageID: st.MessageID}
	case st.State == redfish.StateComplete && fresh:
		if acc.TaskURI != "" {
			// A task the iLO no longer has (404 after its reset) says nothing: the inventory
			// decides.
			if t, err := d.c.Task(ctx, acc.TaskURI); err == nil && strings.EqualFold(t.TaskState, "Exception") {
				id := ""
				if len(t.Messages) > 0 {
					id = t.Messages[0].MessageID
				}
				return true, &FlashError{Target: d.t.Name, MessageID: id}
			}
		}
		report(driver.Progress{Phase: driver.PhaseFlashing, Percent: 100, Message: st.State})
		return true, nil
	case st.State == redfish.StateIdle && started:
		// Back to Idle without a result: the iLO reset after flashing itself and forgot the
		// flash, or a Smart Component sent through SimpleUpdate did this. The inventory decides.
		return true, nil
	}
	return false, nil
}

// verify waits for the version to show the flash — the wanted version when given, else any
// change from before — in VerifyReads reads in a row.
func (d *Driver) verify(ctx context.Context, fw driver.Firmware, before string) (string, error) {
	want := NormalizeVersion(fw.Version)
	var last string
	err := d.pollReads(ctx, d.opts.VerifyTimeout, func(ctx context.Context) (bool, error) {
		raw, err := d.rawVersion(ctx, fw.Component, fw.Version)
		if err != nil {
			return false, err
		}
		last = NormalizeVersion(raw)
		switch {
		case want != "":
			return fwversion.Same(last, want), nil
		case fw.Component == driver.ComponentSmartComponent:
			// Nothing to compare with: Complete is all the iLO tells.
			return true, nil
		}
		return last != "" && last != before, nil
	})
	if err != nil {
		return last, d.unverified(fw, last, err)
	}
	return last, nil
}

// unverified explains a pollReads failure while waiting for fw's version; last is the version
// read last.
func (d *Driver) unverified(fw driver.Firmware, last string, err error) error {
	want := NormalizeVersion(fw.Version)
	switch {
	case !errors.Is(err, errNotYet):
		return fmt.Errorf("target %s: verifying the version: %w", d.t.Name, err)
	case want != "":
		return fmt.Errorf("target %s: %w: %s is at %q, want %q", d.t.Name, ErrVersionUnchanged, fw.Component, orNone(last), want)
	}
	return fmt.Errorf("target %s: %w: %s still at %q", d.t.Name, ErrVersionUnchanged, fw.Component, orNone(last))
}

// errNotYet is pollReads' answer when every read worked and the condition never held long
// enough.
var errNotYet = errors.New("condition not met")

// pollReads calls read every PollInterval until it reports true VerifyReads times in a row, or
// timeout passes. A read error breaks the run and is kept: at the deadline pollReads returns the
// last error when the last read failed, else errNotYet.
func (d *Driver) pollReads(ctx context.Context, timeout time.Duration, read func(context.Context) (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(d.opts.PollInterval)
	defer tick.Stop()
	good := 0
	var lastErr error
	for {
		ok, err := read(ctx)
		switch {
		case err != nil && ctx.Err() != nil:
			// The deadline cut this read short: judge on the reads before it.
		case err != nil:
			// The iLO may be resetting after flashing itself; keep trying until the deadline.
			good, lastErr = 0, err
		case ok:
			good, lastErr = good+1, nil
			if good >= d.opts.VerifyReads {
				return nil
			}
		default:
			good, lastErr = 0, nil
		}
		select {
		case <-ctx.Done():
			if lastErr != nil {
				return lastErr
			}
			return errNotYet
		case <-tick.C:
		}
	}
}
