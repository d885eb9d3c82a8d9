// Package linux installs HPE Smart Components on Linux hosts over SSH (rule P3): copy the
// component into a private run directory in the target's staging directory (SFTP), run it
// silently and detached from the SSH session (through sudo -n when the target says so), follow
// it until it leaves its exit code, map that, and then remove what was copied. An agent that
// stops mid-flash leaves the run alone; the next one follows it or reads its result.
package linux

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"path"
	"regexp"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/fwops/firmware-operator/internal/agent/driver"
	"github.com/fwops/firmware-operator/internal/agent/sshconn"
)

// Smart Component exit codes (single target), from HPE's documentation.
const (
	ExitInstalled       = 0
	ExitInstalledReboot = 1
	ExitNotNeeded       = 2
	ExitFailed          = 3
)

// DefaultStateDir is where the driver records, on the host, the version it installed.
const DefaultStateDir = "/var/lib/fwops"

// DefaultFlashTimeout bounds one Update when Options.Timeouts.Flash is zero.
const DefaultFlashTimeout = 30 * time.Minute

// DefaultStagingDirectory is where components are copied and run when the target does not
// name a directory: unlike /tmp it is rarely a tmpfs, so a run's result survives a reboot of
// the host, and it is writable by every user. CIS-hardened hosts mount it noexec: those name
// another directory in the UpdateTarget's spec.linux.stagingDirectory.
const DefaultStagingDirectory = "/var/tmp"

// DefaultPollInterval is how often a running component's state is read when
// Options.PollInterval is zero.
const DefaultPollInterval = 2 * time.Second

// hostTimeout bounds the short commands that must not be cut short by the end of the agent's
// context: the launch (a launch half done leaves a run nobody can follow) and the removal of
// the run directory after its result was read.
const hostTimeout = 30 * time.Second

// Options tune the driver; the zero value is ready to use.
type Options struct {
	// Timeouts.Connect bounds the dial and handshake; Timeouts.Flash bounds one Update.
	Timeouts driver.Timeouts
	// StateDir is the directory on the host holding "<component>.version" files;
	// default DefaultStateDir.
	StateDir string
	// PollInterval is how often the state of a running component is read; default
	// DefaultPollInterval.
	PollInterval time.Duration
	// FallbackPollInterval is how often the state is read while the host can report the
	// run's end through the SSH session (rule P5 call-back); default 5 × PollInterval.
	FallbackPollInterval time.Duration
	// Callbacks counts call-backs and state reads; nil: the driver keeps its own.
	Callbacks *CallbackCounters
	// Logger receives progress; nil discards it. Credentials are never logged.
	Logger *slog.Logger
}

// Driver installs Smart Components on one Linux host.
//
// Version: a Smart Component has no standard version query, so Version returns the
// version this driver installed last (exit code 0 or 1; recorded in memory and, best effort, on the host in
// StateDir/<component>.version so that a later agent finds it), else what that file says,
// else "" with no error: an unknown version is not a failure, the job then simply flashes.
type Driver struct {
	t      driver.Target
	opts   Options
	log    *slog.Logger
	client *ssh.Client
	known  map[driver.Component]string
	// recv serves the target's rule P5 receive port (nil without one), fwd is the host's
	// remote port forward to it while a run is followed, and dropped closes when client's
	// connection ends.
	recv    *receiver
	fwd     net.Listener
	dropped <-chan struct{}
}

// NewFactory returns a driver.Factory for Linux targets.
func NewFactory(opts Options) driver.Factory {
	return func(ctx context.Context, t driver.Target) (driver.Driver, error) {
		return Open(ctx, t, opts)
	}
}

// Open connects to the host (port Target.SSH.Port, 22 by default: rule P3).
func Open(ctx context.Context, t driver.Target, opts Options) (*Driver, error) {
	if t.Type != "" && t.Type != driver.TypeLinux {
		return nil, fmt.Errorf("target %s: %w %q for the Linux driver", t.Name, driver.ErrUnsupported, t.Type)
	}
	if opts.StateDir == "" {
		opts.StateDir = DefaultStateDir
	}
	if opts.Timeouts.Flash <= 0 {
		opts.Timeouts.Flash = DefaultFlashTimeout
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = DefaultPollInterval
	}
	if opts.FallbackPollInterval <= 0 {
		opts.FallbackPollInterval = 5 * opts.PollInterval
	}
	if opts.Callbacks == nil {
		opts.Callbacks = &CallbackCounters{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if _, err := stagingDirectory(t); err != nil {
		return nil, err
	}
	c, err := sshconn.Dial(ctx, t, sshconn.Options{Timeout: opts.Timeouts.Connect, Logger: opts.Logger})
	if err != nil {
		return nil, err
	}
	d := &Driver{t: t, opts: opts, log: opts.Logger.With("target", t.Name), client: c,
		known: map[driver.Component]string{}, dropped: watch(c)}
	if t.Receive != nil {
		if d.recv, err = newReceiver(t.Receive.Listener, d.log, opts.Callbacks); err != nil {
			_ = c.Close()
			return nil, fmt.Errorf("target %s: call-back token: %w", t.Name, err)
		}
	}
	return d, nil
}

// LocalAddr is the agent's end of the SSH connection (its port is rule P4's session port).
func (d *Driver) LocalAddr() net.Addr { return d.client.LocalAddr() }

// Close ends the SSH session and stops serving the receive port.
func (d *Driver) Close() error {
	d.disarm()
	if d.recv != nil {
		_ = d.recv.l.Close()
	}
	return d.client.Close()
}

var safeName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]*$`)

func (d *Driver) versionFile(c driver.Component) (string, error) {
	if !safeName.MatchString(string(c)) {
		return "", fmt.Errorf("target %s: component name %q not usable as a file name", d.t.Name, c)
	}
	return path.Join(d.opts.StateDir, string(c)+".version"), nil
}

// Version returns the recorded version of component, or "" when none is known (see Driver).
func (d *Driver) Version(ctx context.Context, component driver.Component) (string, error) {
	if v, ok := d.known[component]; ok {
		return v, nil
	}
	f, err := d.versionFile(component)
	if err != nil {
		return "", err
	}
	var out limitedBuffer
	// A missing file is "unknown", not an error; only a broken session is.
	if err := exec(ctx, d.client, "cat "+quote(f)+" 2>/dev/null || true", &out); err != nil {
		return "", fmt.Errorf("target %s: read %s: %w", d.t.Name, f, err)
	}
	return strings.TrimSpace(out.String()), nil
}

// record keeps the installed version in memory and, best effort, on the host.
func (d *Driver) record(ctx context.Context, c driver.Component, v string) {
	d.known[c] = v
	f, err := d.versionFile(c)
	if err != nil {
		return
	}
	cmd := d.privileged(fmt.Sprintf("mkdir -p %s && printf '%%s\\n' %s > %s", quote(d.opts.StateDir), quote(v), quote(f)))
	var out limitedBuffer
	if err := exec(ctx, d.client, cmd, &out); err != nil {
		d.log.Info("could not record the version on the host", "file", f, "err", err.Error(), "output", tail(out.String()))
	}
}
