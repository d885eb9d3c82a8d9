// Package linux installs HPE Smart Components on Linux hosts over SSH (rule P3): copy the
// component into a private temporary directory on the host (SFTP), run it silently, map its
// exit code, and always remove what was copied.
package linux

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/pkg/sftp"
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

// cleanupTimeout bounds the removal of the copied files, which runs even after ctx ended.
const cleanupTimeout = 30 * time.Second

// Options tune the driver; the zero value is ready to use.
type Options struct {
	// Timeouts.Connect bounds the dial and handshake; Timeouts.Flash bounds one Update.
	Timeouts driver.Timeouts
	// StateDir is the directory on the host holding "<component>.version" files;
	// default DefaultStateDir.
	StateDir string
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
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	c, err := sshconn.Dial(ctx, t, sshconn.Options{Timeout: opts.Timeouts.Connect, Logger: opts.Logger})
	if err != nil {
		return nil, err
	}
	return &Driver{t: t, opts: opts, log: opts.Logger.With("target", t.Name), client: c,
		known: map[driver.Component]string{}}, nil
}

// LocalAddr is the agent's end of the SSH connection (its port is rule P4's session port).
func (d *Driver) LocalAddr() net.Addr { return d.client.LocalAddr() }

// Close ends the SSH session.
func (d *Driver) Close() error { return d.client.Close() }

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

// Update copies fw.LocalPath to the host, runs it with -s and maps its exit code.
func (d *Driver) Update(ctx context.Context, fw driver.Firmware, report func(driver.Progress)) (res driver.Result, err error) {
	if report == nil {
		report = func(driver.Progress) {}
	}
	name := fw.FileName
	if name == "" {
		name = filepath.Base(fw.LocalPath)
	}
	if !safeName.MatchString(name) {
		return res, fmt.Errorf("target %s: file name %q is not a plain file name", d.t.Name, name)
	}
	local, err := os.Open(fw.LocalPath)
	if err != nil {
		return res, fmt.Errorf("target %s: open firmware: %w", d.t.Name, err)
	}
	defer local.Close()
	ctx, cancel := context.WithTimeout(ctx, d.opts.Timeouts.Flash)
	defer cancel()
	if fw.Component != "" {
		res.VersionBefore, _ = d.Version(ctx, fw.Component) // unknown is fine: see Driver
	}

	report(driver.Progress{Phase: driver.PhaseStaging, Message: "copying " + name})
	var out limitedBuffer
	if err := exec(ctx, d.client, "mktemp -d /tmp/fwops.XXXXXXXXXX", &out); err != nil {
		return res, fmt.Errorf("target %s: mktemp -d: %w%s", d.t.Name, err, tail(out.String()))
	}
	dir := strings.TrimSpace(out.String())
	if !strings.HasPrefix(dir, "/tmp/fwops.") || strings.ContainsAny(dir, " \t\n'\"") {
		return res, fmt.Errorf("target %s: unexpected mktemp output %q", d.t.Name, dir)
	}
	// Whatever happens next, remove what was copied; ctx may be over by then.
	defer func() {
		cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer ccancel()
		var cout limitedBuffer
		if cerr := exec(cctx, d.client, "rm -rf -- "+quote(dir), &cout); cerr != nil {
			d.log.Error("could not remove the copied component", "dir", dir, "err", cerr.Error())
			err = errors.Join(err, fmt.Errorf("target %s: remove %s: %w", d.t.Name, dir, cerr))
		}
	}()
	remote := path.Join(dir, name)
	if err := d.copy(ctx, local, remote); err != nil {
		return res, err
	}

	report(driver.Progress{Phase: driver.PhaseFlashing, Message: "running " + name + " -s"})
	d.log.Info("running smart component", "file", name, "dir", dir)
	out.Reset()
	runErr := exec(ctx, d.client, quote(remote)+" -s", &out)
	code := 0
	var exitErr *ssh.ExitError
	switch {
	case runErr == nil:
	case errors.As(runErr, &exitErr):
		code = exitErr.ExitStatus()
	default:
		return res, fmt.Errorf("target %s: run %s: %w", d.t.Name, name, runErr)
	}
	d.log.Info("smart component finished", "file", name, "exitCode", code)
	switch code {
	case ExitInstalled:
		res.Message = name + " installed"
	case ExitInstalledReboot:
		res.RebootRequired = true
		res.Message = name + " installed; reboot needed"
	case ExitNotNeeded:
		res.NotNeeded = true
		res.Message = name + " not needed (already current, or hardware absent)"
	case ExitFailed:
		return res, fmt.Errorf("target %s: %s failed (exit code 3)%s", d.t.Name, name, tail(out.String()))
	default:
		return res, fmt.Errorf("target %s: %s failed with undocumented exit code %d%s", d.t.Name, name, code, tail(out.String()))
	}
	report(driver.Progress{Phase: driver.PhaseVerifying, Percent: 100, Message: res.Message})
	res.VersionAfter = res.VersionBefore
	// Exit code 2 may mean "hardware absent": recording the version then would be a lie.
	if fw.Component != "" && fw.Version != "" && !res.NotNeeded {
		res.VersionAfter = fw.Version
		d.record(ctx, fw.Component, fw.Version)
	}
	return res, nil
}

// copy writes the component through SFTP, executable by its owner only.
func (d *Driver) copy(ctx context.Context, local io.Reader, remote string) error {
	sc, err := sftp.NewClient(d.client)
	if err != nil {
		return fmt.Errorf("target %s: sftp: %w", d.t.Name, err)
	}
	defer sc.Close()
	stop := context.AfterFunc(ctx, func() { sc.Close() })
	defer stop()
	f, err := sc.OpenFile(remote, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return fmt.Errorf("target %s: create %s: %w", d.t.Name, remote, err)
	}
	if _, err := io.Copy(f, local); err != nil {
		f.Close()
		return fmt.Errorf("target %s: copy to %s: %w", d.t.Name, remote, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("target %s: copy to %s: %w", d.t.Name, remote, err)
	}
	if err := sc.Chmod(remote, 0o700); err != nil {
		return fmt.Errorf("target %s: chmod %s: %w", d.t.Name, remote, err)
	}
	return nil
}

// record keeps the installed version in memory and, best effort, on the host.
func (d *Driver) record(ctx context.Context, c driver.Component, v string) {
	d.known[c] = v
	f, err := d.versionFile(c)
	if err != nil {
		return
	}
	cmd := fmt.Sprintf("mkdir -p %s && printf '%%s\\n' %s > %s", quote(d.opts.StateDir), quote(v), quote(f))
	var out limitedBuffer
	if err := exec(ctx, d.client, cmd, &out); err != nil {
		d.log.Info("could not record the version on the host", "file", f, "err", err.Error(), "output", tail(out.String()))
	}
}

// exec runs cmd in a new session, output to w. When ctx ends first the remote command gets
// SIGTERM and exec returns at once: sshd would otherwise hold the session open until the
// command exits by itself.
func exec(ctx context.Context, c *ssh.Client, cmd string, w io.Writer) error {
	sess, err := c.NewSession()
	if err != nil {
		return err
	}
	defer sess.Close()
	sess.Stdout = w
	sess.Stderr = w
	done := make(chan error, 1)
	go func() { done <- sess.Run(cmd) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		_ = sess.Signal(ssh.SIGTERM)
		return ctx.Err()
	}
}

// quote makes s one word for a POSIX shell.
func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// tail is the end of a component's output, for error messages.
func tail(s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return ""
	}
	lines := strings.Split(s, "\n")
	if len(lines) > 3 {
		lines = lines[len(lines)-3:]
	}
	t := strings.Join(lines, " | ")
	if len(t) > 400 {
		t = "…" + t[len(t)-400:]
	}
	return ": " + t
}

// limitedBuffer keeps the last 64 KiB written, so a chatty component cannot fill memory.
// It is safe for the session's stdout and stderr copiers, which write concurrently.
type limitedBuffer struct {
	mu sync.Mutex
	b  []byte
}

const keep = 64 << 10

func (l *limitedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b = append(l.b, p...)
	if len(l.b) > keep {
		l.b = append(l.b[:0], l.b[len(l.b)-keep:]...)
	}
	return len(p), nil
}

func (l *limitedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.b)
}

func (l *limitedBuffer) Reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b = l.b[:0]
}
