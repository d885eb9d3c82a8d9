package linux

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/fwops/firmware-operator/internal/agent/driver"
	"github.com/fwops/firmware-operator/internal/agent/sshconn"
)

// stagingDirectory is the target's staging directory (spec.linux.stagingDirectory), checked
// again here although the API server already refuses a relative path or one with "..".
func stagingDirectory(t driver.Target) (string, error) {
	s := t.Linux.StagingDirectory
	if s == "" {
		return DefaultStagingDirectory, nil
	}
	if !path.IsAbs(s) || slices.Contains(strings.Split(s, "/"), "..") {
		return "", fmt.Errorf("target %s: staging directory %q must be an absolute path without '..' (spec.linux.stagingDirectory)", t.Name, s)
	}
	return path.Clean(s), nil
}

// Update runs fw on the host and maps its exit code. It starts the component only when no
// run of this image is on record in the staging directory; otherwise it follows the run in
// progress, or reads the result of a run that ended while no agent watched. When ctx ends
// while the component runs, Update returns at once and leaves it running, files and all.
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
	sum, err := digest(fw.SHA256, local)
	if err != nil {
		return res, fmt.Errorf("target %s: hash firmware: %w", d.t.Name, err)
	}
	staging, err := stagingDirectory(d.t)
	if err != nil {
		return res, err
	}
	dir := runDir(staging, sum)
	ctx, cancel := context.WithTimeout(ctx, d.opts.Timeouts.Flash)
	defer cancel()
	if fw.Component != "" {
		res.VersionBefore, _ = d.Version(ctx, fw.Component) // unknown is fine: see Driver
	}

	st, err := d.state(ctx, dir)
	if err != nil {
		return res, fmt.Errorf("target %s: read the state of %s: %w", d.t.Name, dir, err)
	}
	switch st.kind {
	case "foreign":
		return res, fmt.Errorf("target %s: %s exists on the host but is not a directory owned by %s; remove it, or set spec.linux.stagingDirectory to a directory only trusted users write to",
			d.t.Name, dir, d.t.Credentials.Username)
	case "died":
		return res, d.died(dir)
	case "running":
		d.log.Info("following the smart component run an earlier agent started", "file", name, "dir", dir)
		report(driver.Progress{Phase: driver.PhaseFlashing, Message: fmt.Sprintf("following the run of %s an earlier agent started (in %s on the host)", name, dir)})
	case "finished":
		d.log.Info("picking up the result of a smart component run that ended while no agent watched", "file", name, "dir", dir)
	case "staged":
		// An earlier agent stopped while copying: the copy may be partial, and it never ran.
		if err := d.remove(ctx, dir, false); err != nil {
			return res, err
		}
		fallthrough
	case "absent":
		if err := d.start(ctx, staging, dir, name, local, report); err != nil {
			return res, err
		}
	}
	if st.kind != "finished" {
		if st, err = d.follow(ctx, dir, name); err != nil {
			return res, err
		}
	}
	return d.result(ctx, fw, dir, name, st, res, report)
}

// digest is the image's SHA-256: the verified one the agent passes, else computed.
func digest(given string, f io.ReadSeeker) (string, error) {
	given = strings.ToLower(given)
	if b, err := hex.DecodeString(given); err == nil && len(b) == sha256.Size {
		return given, nil
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// start makes the run directory, copies the component and its wrapper, checks sudo and
// launches the run detached.
func (d *Driver) start(ctx context.Context, staging, dir, name string, local io.Reader, report func(driver.Progress)) error {
	report(driver.Progress{Phase: driver.PhaseStaging, Message: fmt.Sprintf("copying %s to %s on the host", name, dir)})
	var out limitedBuffer
	if err := exec(ctx, d.client, prepareScript(staging, dir), &out); err != nil {
		return fmt.Errorf("target %s: prepare %s: %w%s", d.t.Name, dir, err, tail(out.String()))
	}
	if err := d.stagingProblem(staging, strings.TrimSpace(out.String())); err != nil {
		return err
	}
	// Nothing ran yet: any failure before the launch removes the directory again.
	abandon := func(err error) error {
		return errors.Join(err, d.remove(ctx, dir, false))
	}
	if err := d.upload(ctx, dir, name, local); err != nil {
		return abandon(err)
	}
	if d.t.Linux.Sudo {
		if err := d.checkSudo(ctx); err != nil {
			return abandon(err)
		}
	}
	report(driver.Progress{Phase: driver.PhaseFlashing, Message: fmt.Sprintf("running %s -s on the host, detached (in %s)", name, dir)})
	d.log.Info("launching smart component", "file", name, "dir", dir, "sudo", d.t.Linux.Sudo)
	// Once begun, the launch completes even if ctx ends: half a launch is a run nobody can follow.
	lctx, lcancel := context.WithTimeout(context.WithoutCancel(ctx), hostTimeout)
	defer lcancel()
	out.Reset()
	if err := exec(lctx, d.client, launchScript(dir, name, d.t.Linux.Sudo), &out); err != nil {
		var exitErr *ssh.ExitError
		if errors.As(err, &exitErr) {
			return fmt.Errorf("target %s: launch %s in %s: %w%s", d.t.Name, name, dir, err, tail(out.String()))
		}
		// The connection went mid-launch: whether the run started, its state on the host says.
		d.log.Warn("lost the SSH session while launching; reading the run's state to learn whether it started", "dir", dir, "err", err.Error())
		return nil
	}
	// The launching shell may add job notices: the verdict is a line of its own.
	verdict := strings.Fields(out.String())
	switch {
	case slices.Contains(verdict, "launched"):
	case slices.Contains(verdict, "claimed"):
		d.log.Info("another agent launched this run first; following it", "dir", dir)
	default:
		return fmt.Errorf("target %s: the detached run of %s did not start%s; its files stay in %s on the host: check there, and remove it to allow a new attempt",
			d.t.Name, name, tail(out.String()), dir)
	}
	return nil
}

// stagingProblem turns prepareScript's verdict into an error that names the directory.
func (d *Driver) stagingProblem(staging, verdict string) error {
	user := d.t.Credentials.Username
	kind, detail, _ := strings.Cut(verdict, " ")
	switch kind {
	case "ok":
		return nil
	case "missing":
		return fmt.Errorf("target %s: staging directory %s does not exist on the host and %s cannot create it: create it, writable by %s, or set spec.linux.stagingDirectory",
			d.t.Name, staging, user, user)
	case "notwritable":
		return fmt.Errorf("target %s: staging directory %s is not writable by %s on the host (read-only, or owned by another user): make it writable by %s, or set spec.linux.stagingDirectory to a directory that is",
			d.t.Name, staging, user, user)
	case "noexec":
		mount := ""
		if detail = strings.TrimSpace(detail); detail != "" {
			mount = " (mount: " + detail + ")"
		}
		return fmt.Errorf("target %s: staging directory %s does not allow running programs%s, as on CIS-hardened hosts that mount /tmp and /var/tmp noexec: set spec.linux.stagingDirectory to a directory on a file system mounted with exec and writable by %s, such as /var/lib/fwops/staging",
			d.t.Name, staging, mount, user)
	case "exists":
		return fmt.Errorf("target %s: a run directory appeared in %s while this agent prepared it (another agent on the same host?); the next attempt follows that run", d.t.Name, staging)
	}
	return fmt.Errorf("target %s: unexpected answer %q while preparing %s", d.t.Name, verdict, staging)
}

// upload writes the component and its wrapper through SFTP, executable by their owner only.
func (d *Driver) upload(ctx context.Context, dir, name string, local io.Reader) error {
	sc, err := sftp.NewClient(d.client)
	if err != nil {
		return fmt.Errorf("target %s: sftp: %w", d.t.Name, err)
	}
	defer sc.Close()
	stop := context.AfterFunc(ctx, func() { sc.Close() })
	defer stop()
	put := func(remote string, r io.Reader) error {
		f, err := sc.OpenFile(remote, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
		if err != nil {
			return fmt.Errorf("target %s: create %s: %w", d.t.Name, remote, err)
		}
		if _, err := io.Copy(f, r); err != nil {
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
	if err := put(path.Join(dir, name), local); err != nil {
		return err
	}
	if err := put(path.Join(dir, "report.sh"), strings.NewReader(reportScript)); err != nil {
		return err
	}
	return put(path.Join(dir, "run.sh"), strings.NewReader(runWrapper))
}

// checkSudo asks sudo, without a password, whether it runs commands for the SSH user.
func (d *Driver) checkSudo(ctx context.Context) error {
	var out limitedBuffer
	err := exec(ctx, d.client, "sudo -n true", &out)
	var exitErr *ssh.ExitError
	if err == nil {
		return nil
	}
	if !errors.As(err, &exitErr) {
		return fmt.Errorf("target %s: sudo -n true: %w", d.t.Name, err)
	}
	return d.sudoRefused(exitErr.ExitStatus(), out.String())
}

// sudoRefused explains why sudo -n did not run a command (its exit code and output).
func (d *Driver) sudoRefused(code int, output string) error {
	user := d.t.Credentials.Username
	said := strings.TrimSpace(output)
	switch {
	case code == 127 || strings.Contains(said, "not found"):
		return fmt.Errorf("target %s: spec.linux.sudo is set but sudo is not installed on the host%s; nothing was run", d.t.Name, tail(said))
	case strings.Contains(said, "password is required"):
		return fmt.Errorf("target %s: spec.linux.sudo is set but sudo asks %s for a password (sudo -n said %q): allow %s to run commands without a password (NOPASSWD in /etc/sudoers.d), or connect as root and unset spec.linux.sudo; nothing was run",
			d.t.Name, user, said, user)
	}
	return fmt.Errorf("target %s: sudo -n refused to run commands for %s (exit code %d)%s: check the host's sudoers; nothing was run", d.t.Name, user, code, tail(said))
}

// state reads the run's state on the host.
func (d *Driver) state(ctx context.Context, dir string) (runState, error) {
	var out limitedBuffer
	defer d.opts.Callbacks.StateReads.Add(1) // once read: a test can tell a read that began from one that ended
	if err := exec(ctx, d.client, statusScript(dir), &out); err != nil {
		return runState{}, fmt.Errorf("%w%s", err, tail(out.String()))
	}
	return parseState(out.String())
}

// follow waits until the run ends, reconnecting when the SSH connection drops. The host
// reports the end through the SSH session when it can (callback.go); the run's state is read
// as well, every FallbackPollInterval then, every PollInterval when it cannot. When ctx ends
// first it returns at once and leaves the component running.
func (d *Driver) follow(ctx context.Context, dir, name string) (runState, error) {
	defer d.disarm()
	every := func() time.Duration {
		if d.arm(ctx, dir) {
			return d.opts.FallbackPollInterval
		}
		return d.opts.PollInterval
	}
	interval := every()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	started := time.Now()
	d.log.Info("waiting for the smart component to finish", "file", name, "dir", dir, "every", interval)
	reconnected := false
	for {
		st, err := d.state(ctx, dir)
		switch {
		case err != nil && ctx.Err() == nil:
			d.log.Warn("could not read the run's state; reconnecting, the component keeps running", "dir", dir, "err", err.Error())
			if rerr := d.reconnect(ctx); rerr != nil {
				d.log.Warn("reconnect failed; trying again", "err", rerr.Error())
				break
			}
			// The forward went with the old connection: ask again, then read the state at
			// once, as the run may have ended while no report could reach the agent.
			interval = every()
			tick.Reset(interval)
			if !reconnected {
				reconnected = true
				continue
			}
		case err != nil:
		case st.kind == "running":
			reconnected = false
		case st.kind == "finished":
			return st, nil
		case st.kind == "died":
			return st, d.died(dir)
		case st.kind == "staged":
			return st, fmt.Errorf("target %s: the launch of %s did not happen (the SSH connection dropped); it never ran, and the next attempt starts it", d.t.Name, name)
		default:
			return st, fmt.Errorf("target %s: the run in %s on the host is in state %q while it should be running", d.t.Name, dir, st.kind)
		}
		var dropped <-chan struct{} // once the connection is known to be gone, the tick paces the retries
		if err == nil {
			dropped = d.dropped
		}
		select {
		case <-ctx.Done():
			return st, d.leftRunning(ctx, dir, name, time.Since(started))
		case st := <-d.reports():
			d.log.Info("the host reported the run's end through the SSH session (rule P5 call-back)", "dir", dir)
			return st, nil
		case <-dropped:
			d.log.Debug("the SSH connection ended")
			// Read the state now: it fails, and the driver reconnects.
		case <-tick.C:
			d.log.Debug("fallback read of the run's state")
		}
	}
}

// reconnect replaces a dropped SSH connection (from the same source port, rule P4).
func (d *Driver) reconnect(ctx context.Context) error {
	_ = d.client.Close()
	c, err := sshconn.Dial(ctx, d.t, sshconn.Options{Timeout: d.opts.Timeouts.Connect, Logger: d.opts.Logger})
	if err != nil {
		return err
	}
	d.client, d.dropped = c, watch(c)
	return nil
}

func (d *Driver) leftRunning(ctx context.Context, dir, name string, waited time.Duration) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("target %s: %s still running after %s (in %s on the host); it is left running, as a flash is never interrupted, and the next attempt follows it: %w",
			d.t.Name, name, waited.Round(time.Second), dir, ctx.Err())
	}
	return fmt.Errorf("target %s: stopped watching %s (in %s on the host); it is left running and the next agent follows it: %w", d.t.Name, name, dir, ctx.Err())
}

// died is the error for a run that ended without its exit code. It may have flashed part of
// the firmware, so it is not run again until a person has looked.
func (d *Driver) died(dir string) error {
	return fmt.Errorf("target %s: the Smart Component run in %s on the host ended without leaving its exit code (the host rebooted, or the process was killed); the firmware may be partly flashed, so it is not run again: check the host (the component's output is in %s), then remove %s to allow a new attempt",
		d.t.Name, dir, path.Join(dir, "output"), dir)
}

// result maps a finished run's exit code, then removes the run directory: its result is read.
func (d *Driver) result(ctx context.Context, fw driver.Firmware, dir, name string, st runState, res driver.Result, report func(driver.Progress)) (_ driver.Result, err error) {
	if !st.hasResult && st.began {
		return res, d.died(dir) // the files stay for a person to look at
	}
	output := d.readTail(ctx, dir, "output")
	launchLog := d.readTail(ctx, dir, "launch.log")
	defer func() {
		err = errors.Join(err, d.remove(ctx, dir, st.began))
	}()
	if !st.hasResult {
		// The wrapper stopped before the component started: sudo refused, most likely.
		if d.t.Linux.Sudo {
			return res, d.sudoRefused(st.wrapperExit, launchLog)
		}
		return res, fmt.Errorf("target %s: %s did not start (its wrapper exited with code %d)%s", d.t.Name, name, st.wrapperExit, tail(launchLog))
	}
	code := st.componentExit
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
		return res, fmt.Errorf("target %s: %s failed (exit code 3)%s", d.t.Name, name, tail(output))
	default:
		return res, fmt.Errorf("target %s: %s failed with undocumented exit code %d%s", d.t.Name, name, code, tail(output))
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

// readTail is the end of a file of the run, "" when it cannot be read.
func (d *Driver) readTail(ctx context.Context, dir, file string) string {
	var out limitedBuffer
	_ = exec(ctx, d.client, "tail -c 65536 -- "+quote(path.Join(dir, file))+" 2>/dev/null", &out)
	return out.String()
}

// remove deletes the run directory. Once the component ran (ran), that takes the privilege the
// run had, as it may leave files of root's in its TMPDIR; before, the SSH user's own files are
// all there is, and sudo is not asked (it may be what failed). It completes even when ctx has
// ended.
func (d *Driver) remove(ctx context.Context, dir string, ran bool) error {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), hostTimeout)
	defer cancel()
	var out limitedBuffer
	cmd := "rm -rf -- " + quote(dir)
	if ran {
		cmd = d.privileged(cmd)
	}
	if err := exec(cctx, d.client, cmd, &out); err != nil {
		d.log.Error("could not remove the run directory", "dir", dir, "err", err.Error(), "output", tail(out.String()))
		return fmt.Errorf("target %s: remove %s: %w%s", d.t.Name, dir, err, tail(out.String()))
	}
	return nil
}

// privileged runs cmd through sudo -n when the target says so.
func (d *Driver) privileged(cmd string) string {
	if !d.t.Linux.Sudo {
		return cmd
	}
	return "sudo -n sh -c " + quote(cmd)
}
