// Package ilo is the agent's driver for HPE iLO 4, 5 and 6 over Redfish: it reads versions,
// flashes iLO, system ROM and Smart Components, follows the iLO's progress and verifies the
// version afterwards.
package ilo

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/fwops/firmware-operator/internal/agent/driver"
	"github.com/fwops/firmware-operator/internal/agent/redfish"
)

// Options tune the driver; zero values take the defaults.
type Options struct {
	// PollInterval is the time between progress reads (default 2s, as HPE's tools do).
	PollInterval time.Duration
	// FlashTimeout bounds a flash from the request to Complete (default 30m).
	FlashTimeout time.Duration
	// VerifyTimeout bounds the wait for the new version to show (default 5m: an iLO resets
	// after flashing itself and answers again only later).
	VerifyTimeout time.Duration
	// StaleTerminalPolls is how many polls a Complete or Error state seen before any activity
	// is taken as stale, left over from an earlier flash (default 5).
	StaleTerminalPolls int
}

func (o Options) withDefaults() Options {
	if o.PollInterval <= 0 {
		o.PollInterval = 2 * time.Second
	}
	if o.FlashTimeout <= 0 {
		o.FlashTimeout = 30 * time.Minute
	}
	if o.VerifyTimeout <= 0 {
		o.VerifyTimeout = 5 * time.Minute
	}
	if o.StaleTerminalPolls <= 0 {
		o.StaleTerminalPolls = 5
	}
	return o
}

// Register adds the iLO factory for iLO 4, 5 and 6 to r.
func Register(r driver.Registry, opts Options) {
	f := NewFactory(opts)
	for _, t := range []driver.Type{driver.TypeILO4, driver.TypeILO5, driver.TypeILO6} {
		r[t] = f
	}
}

// NewFactory returns a driver.Factory for iLO targets; it logs in when opening.
func NewFactory(opts Options) driver.Factory {
	opts = opts.withDefaults()
	return func(ctx context.Context, t driver.Target) (driver.Driver, error) {
		switch t.Type {
		case driver.TypeILO4, driver.TypeILO5, driver.TypeILO6:
		default:
			return nil, fmt.Errorf("target %s: %w %q", t.Name, driver.ErrUnsupported, t.Type)
		}
		c, err := redfish.New(redfish.Options{
			Endpoint: t.Address,
			Username: t.Credentials.Username,
			Password: t.Credentials.Password,
			TLS: redfish.TLSOptions{
				CABundle:           t.TLS.CABundle,
				FingerprintSHA256:  t.TLS.FingerprintSHA256,
				InsecureSkipVerify: t.TLS.InsecureSkipVerify,
			},
			LocalAddress: t.LocalAddress,
			LocalPort:    t.LocalPort, // rule P4
		})
		if err != nil {
			return nil, fmt.Errorf("target %s: %w", t.Name, err)
		}
		if err := c.Login(ctx); err != nil {
			c.Close()
			return nil, fmt.Errorf("target %s: %w", t.Name, err)
		}
		return &Driver{c: c, t: t, opts: opts}, nil
	}
}

// Driver drives one iLO. It is not safe for concurrent use.
type Driver struct {
	c    *redfish.Client
	t    driver.Target
	opts Options
}

// Client exposes the Redfish client, for diagnostics.
func (d *Driver) Client() *redfish.Client { return d.c }

// Close ends the Redfish session.
func (d *Driver) Close() error { return d.c.Close() }

// Version reads the installed version of the component: iLO from Managers/1 (or its inventory
// entry), SystemROM from the inventory's "System ROM". Versions are normalised (see
// NormalizeVersion).
func (d *Driver) Version(ctx context.Context, component driver.Component) (string, error) {
	raw, err := d.rawVersion(ctx, component, "")
	if err != nil {
		return "", err
	}
	return NormalizeVersion(raw), nil
}

func (d *Driver) rawVersion(ctx context.Context, component driver.Component, want string) (string, error) {
	switch component {
	case driver.ComponentILO:
		m, err := d.c.Manager(ctx)
		if err == nil && m.FirmwareVersion != "" {
			return m.FirmwareVersion, nil
		}
		inv, ierr := d.c.FirmwareInventory(ctx)
		if ierr != nil {
			return "", errors.Join(err, ierr)
		}
		for _, e := range inv {
			if e.Description == "SystemBMC" || strings.HasPrefix(e.Name, "iLO") {
				return e.Version, nil
			}
		}
		return "", fmt.Errorf("target %s: no iLO entry in the firmware inventory", d.t.Name)
	case driver.ComponentSystemROM:
		inv, err := d.c.FirmwareInventory(ctx)
		if err != nil {
			return "", err
		}
		for _, e := range inv {
			if strings.EqualFold(e.Name, "System ROM") || e.Description == "SystemRomActive" {
				return e.Version, nil
			}
		}
		return "", fmt.Errorf("target %s: no \"System ROM\" entry in the firmware inventory", d.t.Name)
	case driver.ComponentSmartComponent:
		// A Smart Component has no fixed inventory entry; with a wanted version, report it
		// when some entry carries it.
		if want == "" {
			return "", nil
		}
		inv, err := d.c.FirmwareInventory(ctx)
		if err != nil {
			return "", err
		}
		for _, e := range inv {
			if NormalizeVersion(e.Version) == NormalizeVersion(want) {
				return e.Version, nil
			}
		}
		return "", nil
	}
	return "", fmt.Errorf("target %s: component %q: %w", d.t.Name, component, driver.ErrUnsupported)
}

var versionToken = regexp.MustCompile(`^v?(\d+(?:\.\d+)+)`)

// NormalizeVersion extracts the version number from the ways iLO writes it: "iLO 5 v2.46",
// "2.46 May 11 2021", "A43 v2.52 (10/29/2021)" all give the dotted number; anything without
// one comes back trimmed.
func NormalizeVersion(s string) string {
	for _, f := range strings.Fields(s) {
		if m := versionToken.FindStringSubmatch(f); m != nil {
			return m[1]
		}
	}
	return strings.TrimSpace(s)
}

// FlashError is a flash that ended in the iLO's Error state.
type FlashError struct {
	Target    string
	MessageID string
}

func (e *FlashError) Error() string {
	id := e.MessageID
	if id == "" {
		id = "no MessageId given"
	}
	return fmt.Sprintf("target %s: the iLO reported the flash failed: %s; see the iLO event log, check the image matches this server and retry", e.Target, id)
}

// ErrVersionUnchanged is returned (wrapped) when the flash completed but the version did not
// move to the wanted one.
var ErrVersionUnchanged = errors.New("firmware version unchanged after the flash")

// Update flashes fw, reporting progress, and verifies the new version.
func (d *Driver) Update(ctx context.Context, fw driver.Firmware, report func(driver.Progress)) (driver.Result, error) {
	if report == nil {
		report = func(driver.Progress) {}
	}
	if fw.Component == driver.ComponentSmartComponent && isFwpkg(fw) {
		return d.updateSmartComponent(ctx, fw, report) // fwpkg.go
	}
	before, err := d.rawVersion(ctx, fw.Component, fw.Version)
	if err != nil {
		return driver.Result{}, fmt.Errorf("reading the version before the flash: %w", err)
	}
	res := driver.Result{VersionBefore: NormalizeVersion(before)}
	if fw.Version != "" && res.VersionBefore != "" && res.VersionBefore == NormalizeVersion(fw.Version) {
		res.VersionAfter, res.NotNeeded = res.VersionBefore, true
		res.Message = "already at version " + res.VersionBefore
		return res, nil
	}

	report(driver.Progress{Phase: driver.PhaseFlashing, Message: "requesting the flash"})
	ilo4 := d.t.Type == driver.TypeILO4
	var acc redfish.UpdateAccepted
	switch {
	case fw.Component == driver.ComponentSmartComponent:
		if ilo4 {
			return res, fmt.Errorf("target %s: Smart Components are installed through the host on iLO 4, not Redfish: %w", d.t.Name, driver.ErrUnsupported)
		}
		err = d.c.AddFromURI(ctx, redfish.AddFromURIRequest{ImageURI: fw.URL, UpdateRepository: true, UpdateTarget: true})
	case fw.Component != driver.ComponentILO && fw.Component != driver.ComponentSystemROM:
		return res, fmt.Errorf("target %s: component %q: %w", d.t.Name, fw.Component, driver.ErrUnsupported)
	case ilo4:
		err = d.c.InstallFromURI(ctx, fw.URL)
	default:
		acc, err = d.c.SimpleUpdate(ctx, fw.URL)
	}
	if err != nil {
		return res, fmt.Errorf("target %s: %w", d.t.Name, err)
	}
	if err := d.follow(ctx, ilo4, acc, report); err != nil {
		return res, err
	}

	report(driver.Progress{Phase: driver.PhaseVerifying, Percent: 100, Message: "reading the new version"})
	after, err := d.verify(ctx, fw, res.VersionBefore)
	res.VersionAfter = after
	if err != nil {
		return res, err
	}
	res.RebootRequired = fw.Component == driver.ComponentSystemROM || fw.Component == driver.ComponentSmartComponent
	res.Message = fmt.Sprintf("%s updated from %s to %s", fw.Component, orNone(res.VersionBefore), after)
	return res, nil
}

func orNone(s string) string {
	if s == "" {
		return "(unknown)"
	}
	return s
}

// follow polls the update state until Complete, reporting progress.
func (d *Driver) follow(ctx context.Context, ilo4 bool, acc redfish.UpdateAccepted, report func(driver.Progress)) error {
	ctx, cancel := context.WithTimeout(ctx, d.opts.FlashTimeout)
	defer cancel()
	tick := time.NewTicker(d.opts.PollInterval)
	defer tick.Stop()
	seenActive, polls := false, 0
	var last redfish.UpdateStatus
	for {
		var st redfish.UpdateStatus
		var err error
		if ilo4 {
			st, err = d.c.ILO4UpdateStatus(ctx)
		} else {
			st, err = d.c.UpdateStatus(ctx)
		}
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("target %s: flash did not complete (last state %s): %w", d.t.Name, orNone(last.State), ctx.Err())
			}
			return fmt.Errorf("target %s: following the flash: %w", d.t.Name, err)
		}
		last = st
		polls++
		switch {
		case st.Active():
			seenActive = true
			pct := 0
			if st.State == redfish.StateUpdating {
				pct = st.Percent
			}
			report(driver.Progress{Phase: driver.PhaseFlashing, Percent: pct, Message: st.State})
		case st.State == redfish.StateError && (seenActive || polls >= d.opts.StaleTerminalPolls):
			return &FlashError{Target: d.t.Name, MessageID: st.MessageID}
		case st.State == redfish.StateComplete && (seenActive || polls >= d.opts.StaleTerminalPolls):
			if acc.TaskURI != "" {
				if t, err := d.c.Task(ctx, acc.TaskURI); err == nil && strings.EqualFold(t.TaskState, "Exception") {
					id := ""
					if len(t.Messages) > 0 {
						id = t.Messages[0].MessageID
					}
					return &FlashError{Target: d.t.Name, MessageID: id}
				}
			}
			report(driver.Progress{Phase: driver.PhaseFlashing, Percent: 100, Message: st.State})
			return nil
		case st.State == redfish.StateIdle && seenActive:
			// The iLO went back to Idle without a result (a Smart Component sent through
			// SimpleUpdate does this); verification decides.
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("target %s: flash did not complete (last state %s): %w", d.t.Name, st.State, ctx.Err())
		case <-tick.C:
		}
	}
}

// verify waits for the version to show the flash: the wanted version when given, else any
// change from before.
func (d *Driver) verify(ctx context.Context, fw driver.Firmware, before string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, d.opts.VerifyTimeout)
	defer cancel()
	tick := time.NewTicker(d.opts.PollInterval)
	defer tick.Stop()
	want := NormalizeVersion(fw.Version)
	var last string
	var lastErr error
	for {
		raw, err := d.rawVersion(ctx, fw.Component, fw.Version)
		switch {
		case err != nil && ctx.Err() != nil:
			// The deadline cut this read short: judge on the reads before it.
		case err == nil:
			last, lastErr = NormalizeVersion(raw), nil
			switch {
			case want != "" && last == want:
				return last, nil
			case want == "" && fw.Component == driver.ComponentSmartComponent:
				// Nothing to compare with: Complete is all the iLO tells.
				return last, nil
			case want == "" && last != "" && last != before:
				return last, nil
			}
		default:
			// The iLO may be resetting after flashing itself; keep trying until the deadline.
			lastErr = err
		}
		select {
		case <-ctx.Done():
			if lastErr != nil {
				return last, fmt.Errorf("target %s: verifying the version: %w", d.t.Name, lastErr)
			}
			if want != "" {
				return last, fmt.Errorf("target %s: %w: %s is at %q, want %q", d.t.Name, ErrVersionUnchanged, fw.Component, orNone(last), want)
			}
			return last, fmt.Errorf("target %s: %w: %s still at %q", d.t.Name, ErrVersionUnchanged, fw.Component, orNone(last))
		case <-tick.C:
		}
	}
}
