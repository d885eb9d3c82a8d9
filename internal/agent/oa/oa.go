// Package oa drives an HPE BladeSystem C-Class Onboard Administrator over its SSH command
// line: each command is one exec request, as real OAs accept `ssh user@oa "SHOW OA INFO"`,
// which is simpler and sturdier than scripting the interactive shell.
//
// The OA itself is flashed with UPDATE IMAGE (it downloads the image from the agent's
// firmware server, rule P2, then restarts); a blade's iLO is flashed through the OA with
// UPDATE ILO <bay> when Target.Bay is set.
package oa

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/fwops/firmware-operator/internal/agent/driver"
	"github.com/fwops/firmware-operator/internal/agent/fwserver"
	"github.com/fwops/firmware-operator/internal/agent/sshconn"
	"github.com/fwops/firmware-operator/internal/fwversion"
)

// Defaults for Options' zero values.
const (
	DefaultFlashTimeout     = 20 * time.Minute
	DefaultDownWait         = 2 * time.Minute
	DefaultReconnectBackoff = 2 * time.Second
	DefaultMaxBackoff       = 30 * time.Second
	DefaultILOVerifyTimeout = 5 * time.Minute
)

// Options tune the driver; the zero value is ready to use.
type Options struct {
	// Timeouts.Connect bounds each dial and handshake; Timeouts.Flash bounds one Update,
	// restart and verification included.
	Timeouts driver.Timeouts
	// DownWait bounds the wait for the OA to drop the session after it says it restarts.
	DownWait time.Duration
	// ReconnectBackoff is the first pause between reconnection attempts; it doubles up to
	// MaxBackoff.
	ReconnectBackoff time.Duration
	MaxBackoff       time.Duration
	// ILOVerifyTimeout bounds how long a blade iLO's new version may take to show in
	// SHOW SERVER INFO after UPDATE ILO.
	ILOVerifyTimeout time.Duration
	// Logger receives progress; nil discards it. Credentials are never logged.
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.Timeouts.Flash <= 0 {
		o.Timeouts.Flash = DefaultFlashTimeout
	}
	if o.DownWait <= 0 {
		o.DownWait = DefaultDownWait
	}
	if o.ReconnectBackoff <= 0 {
		o.ReconnectBackoff = DefaultReconnectBackoff
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = DefaultMaxBackoff
	}
	if o.ILOVerifyTimeout <= 0 {
		o.ILOVerifyTimeout = DefaultILOVerifyTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Driver drives one Onboard Administrator (or one blade iLO through it). Not safe for
// concurrent use, as driver.Driver says.
type Driver struct {
	t    driver.Target
	opts Options
	log  *slog.Logger

	mu     sync.Mutex // guards client against the watcher of a restart
	client *ssh.Client
}

// NewFactory returns a driver.Factory for OA targets.
func NewFactory(opts Options) driver.Factory {
	return func(ctx context.Context, t driver.Target) (driver.Driver, error) {
		return Open(ctx, t, opts)
	}
}

// Open connects to the OA, so that a wrong host key or password shows at once.
func Open(ctx context.Context, t driver.Target, opts Options) (*Driver, error) {
	if t.Type != "" && t.Type != driver.TypeOA {
		return nil, fmt.Errorf("target %s: %w %q for the OA driver", t.Name, driver.ErrUnsupported, t.Type)
	}
	opts = opts.withDefaults()
	d := &Driver{t: t, opts: opts, log: opts.Logger.With("target", t.Name)}
	if _, err := d.connect(ctx); err != nil {
		return nil, err
	}
	return d, nil
}

// Close ends the SSH session.
func (d *Driver) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.client == nil {
		return nil
	}
	err := d.client.Close()
	d.client = nil
	return err
}

func (d *Driver) connect(ctx context.Context) (*ssh.Client, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.client != nil {
		return d.client, nil
	}
	c, err := sshconn.Dial(ctx, d.t, sshconn.Options{Timeout: d.opts.Timeouts.Connect, Logger: d.opts.Logger})
	if err != nil {
		return nil, err
	}
	d.client = c
	return c, nil
}

// drop forgets a client whose connection is gone, so that the next command reconnects.
func (d *Driver) drop(c *ssh.Client) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if c != nil && d.client == c {
		d.client.Close()
		d.client = nil
	}
}

// run execs one OA command and returns its output (stdout and stderr together). The OA's
// exit status is not trusted: its text says what happened. onLine sees each line as it comes.
func (d *Driver) run(ctx context.Context, cmd string, onLine func(string)) (string, error) {
	c, err := d.connect(ctx)
	if err != nil {
		return "", err
	}
	sess, err := c.NewSession()
	if err != nil {
		// A session that cannot open means the connection is gone (e.g. the OA restarted).
		d.drop(c)
		if c, err = d.connect(ctx); err != nil {
			return "", err
		}
		if sess, err = c.NewSession(); err != nil {
			d.drop(c)
			return "", fmt.Errorf("target %s: open ssh session: %w", d.t.Name, err)
		}
	}
	defer sess.Close()
	pr, pw := io.Pipe()
	sess.Stdout = pw
	sess.Stderr = pw
	var out strings.Builder
	read := make(chan struct{})
	go func() {
		defer close(read)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			line := strings.TrimRight(sc.Text(), "\r")
			out.WriteString(line + "\n")
			if onLine != nil {
				onLine(line)
			}
		}
		_, _ = io.Copy(io.Discard, pr) // an overlong line must not block the session
	}()
	done := make(chan error, 1)
	go func() { done <- sess.Run(cmd) }()
	select {
	case err = <-done:
	case <-ctx.Done():
		// Do not wait for the OA to end the command: the connection is dropped instead.
		d.drop(c)
		err = <-done
	}
	pw.Close()
	<-read
	if ctx.Err() != nil {
		return out.String(), fmt.Errorf("target %s: %q: %w", d.t.Name, cmd, ctx.Err())
	}
	var exitErr *ssh.ExitError
	var missing *ssh.ExitMissingError
	if err == nil || errors.As(err, &exitErr) || errors.As(err, &missing) {
		return out.String(), nil
	}
	// The connection broke mid-command; the output so far may still tell the story.
	d.drop(c)
	return out.String(), fmt.Errorf("target %s: %q: %w", d.t.Name, cmd, err)
}

// Version reads the OA firmware version (SHOW OA INFO), or with Target.Bay set the blade
// iLO's (SHOW SERVER INFO <bay>).
func (d *Driver) Version(ctx context.Context, component driver.Component) (string, error) {
	if d.t.Bay > 0 {
		if component != "" && component != driver.ComponentILO {
			return "", fmt.Errorf("target %s bay %d: %w component %q through an OA", d.t.Name, d.t.Bay, driver.ErrUnsupported, component)
		}
		return d.iloVersion(ctx)
	}
	if component != "" && component != driver.ComponentOA {
		return "", fmt.Errorf("target %s: %w component %q on an OA", d.t.Name, driver.ErrUnsupported, component)
	}
	return d.oaVersion(ctx)
}

var (
	oaVersionRE  = regexp.MustCompile(`(?m)^\s*Firmware Ver\.?\s*:\s*(\S+)`)
	iloVersionRE = regexp.MustCompile(`(?m)^\s*Firmware Version\s*:\s*(\S+)`)
	percentRE    = regexp.MustCompile(`(\d{1,3})%`)
)

func (d *Driver) oaVersion(ctx context.Context) (string, error) {
	out, err := d.run(ctx, "SHOW OA INFO", nil)
	if err != nil {
		return "", err
	}
	return ParseOAVersion(out, d.t.Name)
}

// ParseOAVersion finds the version in SHOW OA INFO output: the first word of the
// "Firmware Ver." line ("Firmware Ver. : 4.97 Apr 28 2021" gives "4.97").
func ParseOAVersion(out, target string) (string, error) {
	m := oaVersionRE.FindStringSubmatch(out)
	if m == nil {
		return "", fmt.Errorf("target %s: no Firmware Ver line in SHOW OA INFO: %s", target, oaMessage(out))
	}
	return m[1], nil
}

func (d *Driver) iloVersion(ctx context.Context) (string, error) {
	out, err := d.run(ctx, fmt.Sprintf("SHOW SERVER INFO %d", d.t.Bay), nil)
	if err != nil {
		return "", err
	}
	return ParseILOVersion(out, d.t.Name, d.t.Bay)
}

// ParseILOVersion finds the blade iLO's version in SHOW SERVER INFO output: the first
// "Firmware Version" line after "Management Processor Information" (the blade's own lines
// before it are about the system ROM).
func ParseILOVersion(out, target string, bay int) (string, error) {
	rest := out
	if i := strings.Index(out, "Management Processor Information"); i >= 0 {
		rest = out[i:]
	}
	m := iloVersionRE.FindStringSubmatch(rest)
	if m == nil {
		return "", fmt.Errorf("target %s bay %d: no iLO Firmware Version in SHOW SERVER INFO: %s", target, bay, oaMessage(out))
	}
	return m[1], nil
}

// oaMessage picks the OA's own error line from its output, to quote it: the first line that
// reads like an error, else the last non-empty line.
func oaMessage(out string) string {
	var last string
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(l)
		if l == "" {
			continue
		}
		u := strings.ToUpper(l)
		if strings.HasPrefix(u, "ERROR") || strings.Contains(u, "INVALID") || strings.Contains(u, "FAIL") || strings.Contains(u, "UNABLE") {
			return strconv.Quote(l)
		}
		last = l
	}
	if last == "" {
		return "(no output)"
	}
	return strconv.Quote(last)
}

// Update flashes fw and verifies the version afterwards: it must equal fw.Version when
// given, else differ from the version before. It flashes even when the OA already runs
// fw.Version: skipping (or forcing) is the job's decision, not the driver's.
func (d *Driver) Update(ctx context.Context, fw driver.Firmware, report func(driver.Progress)) (driver.Result, error) {
	if report == nil {
		report = func(driver.Progress) {}
	}
	// HTTP: the OA CLI guide takes https:// URLs in UPDATE IMAGE, but which OA firmware
	// versions fetch them, and whether they check the certificate, is not confirmed yet.
	u, err := fw.ImageURL(false, "an Onboard Administrator is given the image over HTTP (HTTPS is not confirmed for OA firmware)")
	if err != nil {
		return driver.Result{}, fmt.Errorf("target %s: %w", d.t.Name, err)
	}
	fw.URL = u
	if !strings.HasPrefix(fw.URL, "http://") && !strings.HasPrefix(fw.URL, "https://") {
		return driver.Result{}, fmt.Errorf("target %s: firmware URL %q is not http(s); the OA pulls the image (rule P2)", d.t.Name, fw.URL)
	}
	if strings.ContainsAny(fw.URL, " \t\r\n\"'") {
		return driver.Result{}, fmt.Errorf("target %s: firmware URL %q contains whitespace or quotes", d.t.Name, fw.URL)
	}
	ctx, cancel := context.WithTimeout(ctx, d.opts.Timeouts.Flash)
	defer cancel()
	if d.t.Bay > 0 {
		return d.updateILO(ctx, fw, report)
	}
	return d.updateOA(ctx, fw, report)
}

// flashLine reports the OA's "NN% complete" lines as Flashing progress.
func flashLine(report func(driver.Progress)) func(string) {
	return func(l string) {
		if m := percentRE.FindStringSubmatch(l); m != nil {
			if p, err := strconv.Atoi(m[1]); err == nil && p <= 100 {
				report(driver.Progress{Phase: driver.PhaseFlashing, Percent: p, Message: strings.TrimSpace(l)})
			}
		}
	}
}

func (d *Driver) updateOA(ctx context.Context, fw driver.Firmware, report func(driver.Progress)) (driver.Result, error) {
	before, err := d.oaVersion(ctx)
	if err != nil {
		return driver.Result{}, err
	}
	res := driver.Result{VersionBefore: before}
	report(driver.Progress{Phase: driver.PhaseFlashing, Message: "UPDATE IMAGE " + fwserver.Redact(fw.URL)})
	d.log.Info("flashing OA", "from", before, "url", fwserver.Redact(fw.URL))

	// Keep hold of this connection: the OA dropping it is the sign it really restarts.
	c, err := d.connect(ctx)
	if err != nil {
		return res, err
	}
	out, runErr := d.run(ctx, "UPDATE IMAGE "+fw.URL, flashLine(report))
	if !strings.Contains(out, "Restarting Onboard Administrator") {
		if runErr != nil {
			return res, fmt.Errorf("target %s: UPDATE IMAGE: %w (OA said %s)", d.t.Name, runErr, oaMessage(out))
		}
		return res, fmt.Errorf("target %s: UPDATE IMAGE failed: OA said %s", d.t.Name, oaMessage(out))
	}
	report(driver.Progress{Phase: driver.PhaseVerifying, Message: "OA restarting"})
	d.waitDown(ctx, c)
	d.drop(c)

	after, err := d.reconnectVersion(ctx)
	if err != nil {
		return res, err
	}
	res.VersionAfter = after
	if err := verify(d.t.Name, "OA", before, after, fw.Version); err != nil {
		return res, err
	}
	res.Message = fmt.Sprintf("OA firmware %s -> %s", before, after)
	report(driver.Progress{Phase: driver.PhaseVerifying, Percent: 100, Message: res.Message})
	d.log.Info("OA flashed", "from", before, "to", after)
	return res, nil
}

// waitDown waits until the OA drops c as it restarts, at most DownWait. Reading the version
// before that could still reach the old firmware.
func (d *Driver) waitDown(ctx context.Context, c *ssh.Client) {
	gone := make(chan struct{})
	go func() { _ = c.Wait(); close(gone) }()
	t := time.NewTimer(d.opts.DownWait)
	defer t.Stop()
	select {
	case <-gone:
	case <-t.C:
		d.log.Info("OA did not drop the session after announcing its restart", "waited", d.opts.DownWait)
	case <-ctx.Done():
	}
}

// reconnectVersion retries, with doubling pauses, until the OA answers SHOW OA INFO or ctx
// ends. Each attempt leaves from the same source port (rule P4).
func (d *Driver) reconnectVersion(ctx context.Context) (string, error) {
	wait := d.opts.ReconnectBackoff
	var lastErr error
	for attempt := 1; ; attempt++ {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return "", fmt.Errorf("target %s: OA not back after restart: %w (last error: %w)", d.t.Name, ctx.Err(), lastErr)
		case <-t.C:
		}
		v, err := d.oaVersion(ctx)
		if err == nil {
			return v, nil
		}
		if errors.Is(err, sshconn.ErrHostKeyMismatch) {
			return "", err // a changed key after a restart is not a reason to keep trying
		}
		lastErr = err
		d.log.Info("OA not back yet", "attempt", attempt, "err", err.Error())
		d.drop(d.current())
		wait = min(wait*2, d.opts.MaxBackoff)
	}
}

func (d *Driver) current() *ssh.Client {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.client
}

// verify: the version must equal want when the job names one, else it must have changed.
func verify(target, what, before, after, want string) error {
	if want != "" && !fwversion.Same(after, want) {
		return fmt.Errorf("target %s: %s version after flash is %s, want %s (was %s)", target, what, after, want, before)
	}
	if want == "" && after == before {
		return fmt.Errorf("target %s: %s version unchanged after flash (%s)", target, what, after)
	}
	return nil
}

func (d *Driver) updateILO(ctx context.Context, fw driver.Firmware, report func(driver.Progress)) (driver.Result, error) {
	before, err := d.iloVersion(ctx)
	if err != nil {
		return driver.Result{}, err
	}
	res := driver.Result{VersionBefore: before}
	cmd := fmt.Sprintf("UPDATE ILO %d %s", d.t.Bay, fw.URL)
	report(driver.Progress{Phase: driver.PhaseFlashing, Message: fwserver.Redact(cmd)})
	d.log.Info("flashing blade iLO through OA", "bay", d.t.Bay, "from", before, "url", fwserver.Redact(fw.URL))
	out, runErr := d.run(ctx, cmd, flashLine(report))
	if !strings.Contains(out, "Successful update") {
		if runErr != nil {
			return res, fmt.Errorf("target %s bay %d: UPDATE ILO: %w (OA said %s)", d.t.Name, d.t.Bay, runErr, oaMessage(out))
		}
		return res, fmt.Errorf("target %s bay %d: UPDATE ILO failed: OA said %s", d.t.Name, d.t.Bay, oaMessage(out))
	}
	report(driver.Progress{Phase: driver.PhaseVerifying, Message: "reading the iLO version"})
	// The iLO resets after its flash; the OA may show the old version for a while.
	vctx, cancel := context.WithTimeout(ctx, d.opts.ILOVerifyTimeout)
	defer cancel()
	wait := d.opts.ReconnectBackoff
	after := before
	for {
		v, err := d.iloVersion(vctx)
		if err == nil {
			after = v
			if verify(d.t.Name, "iLO", before, v, fw.Version) == nil {
				break
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-vctx.Done():
			t.Stop()
			res.VersionAfter = after
			if err != nil {
				return res, err
			}
			return res, verify(d.t.Name+" bay "+strconv.Itoa(d.t.Bay), "iLO", before, after, fw.Version)
		case <-t.C:
		}
		wait = min(wait*2, d.opts.MaxBackoff)
	}
	res.VersionAfter = after
	res.Message = fmt.Sprintf("bay %d iLO firmware %s -> %s", d.t.Bay, before, after)
	report(driver.Progress{Phase: driver.PhaseVerifying, Percent: 100, Message: res.Message})
	return res, nil
}
