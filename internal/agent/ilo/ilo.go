// Package ilo is the agent's driver for HPE iLO 4, 5 and 6 over Redfish: it reads versions,
// flashes iLO, system ROM and Smart Components, follows the iLO's progress and verifies the
// version afterwards.
package ilo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"time"

	"github.com/fwops/firmware-operator/internal/agent/driver"
	"github.com/fwops/firmware-operator/internal/agent/redfish"
	"github.com/fwops/firmware-operator/internal/fwversion"
)

// Options tune the driver; zero values take the defaults.
type Options struct {
	// PollInterval is the time between progress reads (default 2s, as HPE's tools do).
	PollInterval time.Duration
	// FlashTimeout bounds a flash from the request to Complete (default 30m).
	FlashTimeout time.Duration
	// VerifyTimeout bounds the wait for the new version to show (default 10m: an iLO that
	// flashed itself resets, is gone for one to three minutes, and comes back half up).
	VerifyTimeout time.Duration
	// VerifyReads is how many reads in a row must show the new version before it counts as
	// verified (default 3): an iLO coming back from its reset can answer one read and drop the
	// next.
	VerifyReads int
	// RebootTimeout bounds a host reboot asked for by rollout.reboot, from the request to the
	// end of POST with the new version showing (default 20m).
	RebootTimeout time.Duration
	// StaleTerminalPolls is how many polls a Complete or Error state seen before any activity
	// is taken as stale, left over from an earlier flash (default 5).
	StaleTerminalPolls int
	// ReloginBackoff and MaxReloginBackoff pace logging in again after the iLO forgot the
	// session (redfish.Options; defaults 1s and 30s).
	ReloginBackoff, MaxReloginBackoff time.Duration
	// NoRelogin never logs in again; only for the tests that show why the driver does.
	NoRelogin bool
	// ComeBackTimeout bounds the wait for an iLO that does not answer when the driver comes
	// to it (default 10m: one that flashed itself is gone for one to three minutes, then half
	// up); ComeBackBackoff is the first pause between attempts, doubled up to
	// MaxComeBackBackoff (defaults 2s and 15s).
	ComeBackTimeout, ComeBackBackoff, MaxComeBackBackoff time.Duration
	// EarlierFlashWait bounds the wait, on a retry that finds the iLO at Complete with its old
	// version, for the reset that shows an earlier attempt's flash did run (default 3m; a real
	// iLO resets within seconds of Complete). A Complete that outlasts it is stale, left by an
	// earlier flash of another component, and the flash is asked for.
	EarlierFlashWait time.Duration
	// EventPollInterval is the fallback poll interval once Redfish events arrive on the
	// target's receive port (events.go; default 5 x PollInterval).
	EventPollInterval time.Duration
	// Events, when set, counts the events of every driver made with these options.
	Events *EventCounters
	// Log receives the event listener's lines; nil discards.
	Log *slog.Logger
}

func (o Options) withDefaults() Options {
	orDefault(&o.PollInterval, 2*time.Second)
	orDefault(&o.FlashTimeout, 30*time.Minute)
	orDefault(&o.VerifyTimeout, 10*time.Minute)
	orDefault(&o.VerifyReads, 3)
	orDefault(&o.RebootTimeout, 20*time.Minute)
	orDefault(&o.StaleTerminalPolls, 5)
	orDefault(&o.ComeBackTimeout, 10*time.Minute)
	orDefault(&o.ComeBackBackoff, 2*time.Second)
	orDefault(&o.MaxComeBackBackoff, 15*time.Second)
	orDefault(&o.EarlierFlashWait, 3*time.Minute)
	if o.EventPollInterval <= 0 {
		o.EventPollInterval = 5 * o.PollInterval
	}
	if o.Events == nil {
		o.Events = &EventCounters{}
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return o
}

// orDefault sets *v to def when it is zero or negative.
func orDefault[T time.Duration | int](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// Register adds the iLO factory for iLO 4, 5 and 6 to r.
func Register(r driver.Registry, opts Options) {
	f := NewFactory(opts)
	for _, t := range []driver.Type{driver.TypeILO4, driver.TypeILO5, driver.TypeILO6} {
		r[t] = f
	}
}

// NewFactory returns a driver.Factory for iLO targets; it logs in when opening, waiting for an
// iLO that is not answering (resetting, say) to come back, and tells so through
// driver.ReporterFrom(ctx).
func NewFactory(opts Options) driver.Factory {
	opts = opts.withDefaults()
	return func(ctx context.Context, t driver.Target) (driver.Driver, error) {
		switch t.Type {
		case driver.TypeILO4, driver.TypeILO5, driver.TypeILO6:
		default:
			return nil, fmt.Errorf("target %s: %w %q", t.Name, driver.ErrUnsupported, t.Type)
		}
		ep, err := endpoint(t.Address)
		if err != nil {
			return nil, fmt.Errorf("target %s: %w", t.Name, err)
		}
		c, err := redfish.New(redfish.Options{
			Endpoint: ep,
			Username: t.Credentials.Username,
			Password: t.Credentials.Password,
			TLS: redfish.TLSOptions{
				CABundle:           t.TLS.CABundle,
				FingerprintSHA256:  t.TLS.FingerprintSHA256,
				InsecureSkipVerify: t.TLS.InsecureSkipVerify,
			},
			LocalAddress:      t.LocalAddress,
			LocalPort:         t.LocalPort, // rule P4
			ReloginBackoff:    opts.ReloginBackoff,
			MaxReloginBackoff: opts.MaxReloginBackoff,
			NoRelogin:         opts.NoRelogin,
		})
		if err != nil {
			return nil, fmt.Errorf("target %s: %w", t.Name, err)
		}
		d := &Driver{c: c, t: t, opts: opts}
		if err := d.whenUp(ctx, "logging in", driver.ReporterFrom(ctx), c.Login); err != nil {
			c.Close()
			return nil, fmt.Errorf("target %s: %w", t.Name, err)
		}
		d.listen(ctx) // events.go: rule P5
		return d, nil
	}
}

// Driver drives one iLO. It is not safe for concurrent use.
type Driver struct {
	c    *redfish.Client
	t    driver.Target
	opts Options
	ev   *eventListener // nil: polling only (events.go)
}

// Client exposes the Redfish client, for diagnostics.
func (d *Driver) Client() *redfish.Client { return d.c }

// Close removes a subscription left behind, stops the event listener and ends the Redfish
// session.
func (d *Driver) Close() error {
	d.stopEvents()
	return d.c.Close()
}

// Version reads the installed version of the component: iLO from Managers/1 (or its inventory
// entry), SystemROM from the inventory's "System ROM". Versions are normalised (see
// NormalizeVersion).
func (d *Driver) Version(ctx context.Context, component driver.Component) (string, error) {
	var raw string
	err := d.whenUp(ctx, "reading the "+string(component)+" version", driver.ReporterFrom(ctx), func(ctx context.Context) (err error) {
		raw, err = d.rawVersion(ctx, component, "")
		return err
	})
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
			if fwversion.Same(NormalizeVersion(e.Version), NormalizeVersion(want)) {
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
