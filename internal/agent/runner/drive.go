package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
	"github.com/fwops/firmware-operator/internal/agent/agentcert"
	"github.com/fwops/firmware-operator/internal/agent/driver"
	"github.com/fwops/firmware-operator/internal/agent/firmware"
	"github.com/fwops/firmware-operator/internal/agent/fwserver"
	"github.com/fwops/firmware-operator/internal/fwversion"
	"github.com/fwops/firmware-operator/internal/rollout"
)

// drive takes one target from its current state to a final one.
func (a *agent) drive(ctx context.Context, tk *task, img firmware.Image) {
	r, t := tk.rep, tk.target
	log := a.log.With("target", t.Name, "type", t.Type, "address", t.Address)
	started := a.deps.Now()
	fail := func(msg string) {
		log.Error("target failed", "reason", msg)
		a.metrics.ObserveFlash(a.deps.Now().Sub(started), "failed")
		r.finish(ctx, fwv1.TargetPhaseFailed, msg, nil)
	}
	if err := tk.err; err != nil {
		fail(err.Error())
		return
	}
	resumedPhase := r.phase() // Flashing or Verifying when an earlier agent was interrupted
	// The version an earlier attempt of this job read before it asked for the flash: a retry
	// starts Downloading again, and this is what is left to tell that it may have flashed.
	earlierBefore := r.versionBefore()

	tctx, cancel := context.WithTimeout(ctx, a.cfg.Timeout)
	defer cancel()
	explain := func(what string, err error) string { return a.explain(ctx, tctx, what, err) }
	interrupted := func() bool { return a.leftForNextAgent(ctx, r, log) }

	fw := driver.Firmware{
		Component: driver.Component(a.cfg.Firmware.Component), LocalPath: img.Path,
		FileName: img.FileName, SHA256: img.SHA256, Version: a.cfg.Firmware.Version,
		RebootIfRequired: a.cfg.RebootIfRequired, KeepInRepository: a.cfg.Firmware.KeepInRepository,
		EarlierAttempt: resumedPhase.InProgress() || earlierBefore != "",
	}
	if fw.RebootIfRequired {
		fw.RebootBy = a.rebootBy(log)
	}

	d, dctx, progress, closeTarget, err := a.connect(tctx, tk)
	if err != nil {
		if interrupted() {
			return
		}
		msg := explain("connecting to "+t.Address, err)
		if a := advice(err); a != "" {
			msg += "; " + a
		}
		fail(msg)
		return
	}
	defer closeTarget()

	current, err := d.Version(dctx, fw.Component)
	if err != nil {
		if interrupted() {
			return
		}
		fail(explain("reading the current "+string(fw.Component)+" version", err))
		return
	}
	log.Info("current version read", "version", current, "wanted", fw.Version)

	// Resume safety: a target already at the wanted version is not flashed again.
	if fw.Version != "" && !a.cfg.Force && fwversion.Same(current, fw.Version) {
		if resumedPhase == fwv1.TargetPhaseFlashing || resumedPhase == fwv1.TargetPhaseVerifying {
			log.Info("flash finished while no agent was watching", "version", current)
			r.finish(ctx, fwv1.TargetPhaseSucceeded, fmt.Sprintf("at version %s: the flash finished while no agent was watching", current),
				func(s *fwv1.TargetUpdateStatus) { s.VersionAfter = current })
			return
		}
		if earlierBefore != "" && !fwversion.Same(earlierBefore, current) {
			// An earlier attempt found the target at another version and its agent ended
			// before it could report (killed, its pod deleted): the job flashed it.
			log.Info("an earlier attempt's flash took effect", "versionBefore", earlierBefore, "version", current)
			r.finish(ctx, fwv1.TargetPhaseSucceeded, fmt.Sprintf("at version %s (was %s): the flash of an earlier attempt took effect after its agent ended",
				current, earlierBefore), func(s *fwv1.TargetUpdateStatus) { s.VersionAfter = current })
			return
		}
		log.Info("already at the wanted version, skipping", "version", current)
		r.finish(ctx, fwv1.TargetPhaseSkipped, "already at version "+current,
			func(s *fwv1.TargetUpdateStatus) { s.VersionBefore, s.VersionAfter = current, current })
		return
	}

	// The image is served from here on (the firmware server starts with the first target to
	// get this far): the login and reads above did not wait for the agent's certificate.
	urlPath, err := a.served(img)
	if err != nil {
		fail(err.Error())
		return
	}
	if err := a.setImageURLs(tctx, r, t, urlPath, &fw); err != nil {
		fail("cannot build the firmware URL for the target: " + err.Error())
		return
	}
	r.update(tctx, true, func(s *fwv1.TargetUpdateStatus) {
		s.Phase, s.Percent = fwv1.TargetPhaseStaging, 0
		s.FirmwareServerCertificateSHA256 = "" // set when the driver gives the https URL
		if s.VersionBefore == "" || !resumedPhase.InProgress() {
			s.VersionBefore = current
		}
		s.Message = fmt.Sprintf("at version %s; installing %s %s", orUnknown(current), fw.Component, orUnknown(fw.Version))
	})
	// A driver may quote the image URL (an OA's output echoes it); the redactor keeps its token
	// out of every status message and log line, as it does the credentials.
	a.red.add(fwserver.Token(fw.URL))
	log.Info("updating", "from", current, "to", fw.Version, "imageURL", fwserver.Redact(fw.URL), "https", fw.SecureURL != "")
	res, err := d.Update(dctx, fw, progress)
	if err != nil {
		if interrupted() {
			return
		}
		fail(explain("updating", err))
		return
	}
	a.metrics.ObserveFlash(a.deps.Now().Sub(started), "succeeded")
	set := func(s *fwv1.TargetUpdateStatus) {
		// A resumed flash keeps the version read before the first attempt.
		if res.VersionBefore != "" && (s.VersionBefore == "" || !resumedPhase.InProgress()) {
			s.VersionBefore = res.VersionBefore
		}
		s.VersionAfter, s.RebootRequired = res.VersionAfter, res.RebootRequired
	}
	if res.NotNeeded {
		msg := res.Message
		if msg == "" {
			msg = "the target said the update was not needed"
		}
		log.Info("update not needed", "message", msg)
		r.finish(ctx, fwv1.TargetPhaseSkipped, msg, set)
		return
	}
	msg := res.Message
	if msg == "" {
		msg = fmt.Sprintf("updated from %s to %s", orUnknown(res.VersionBefore), orUnknown(res.VersionAfter))
	}
	if res.RebootRequired && !strings.Contains(strings.ToLower(msg), "reboot") {
		msg += "; a reboot is needed for it to take effect"
	}
	log.Info("target updated", "versionBefore", res.VersionBefore, "versionAfter", res.VersionAfter, "rebootRequired", res.RebootRequired)
	r.finish(ctx, fwv1.TargetPhaseSucceeded, msg, set)
}

// setImageURLs sets where the target pulls the image registered at urlPath from (rule P2):
// fw.URL over HTTP and, when the agent serves HTTPS, fw.SecureURL, the same path on the same
// port with the agent's certificate, which the status names once the target is to see it.
func (a *agent) setImageURLs(tctx context.Context, r *reporter, t driver.Target, urlPath string, fw *driver.Firmware) error {
	url, err := imageURL("http", a.cfg.Address, t.Address, a.bound.Firmware, urlPath)
	if err != nil {
		return err
	}
	var secureURL, certSHA256 string
	if a.fw.Certificate != nil {
		secureURL = "https://" + strings.TrimPrefix(url, "http://")
		certSHA256 = agentcert.FingerprintSHA256(*a.fw.Certificate)
	}
	fw.URL, fw.SecureURL, fw.RequireHTTPS = url, secureURL, a.cfg.FirmwareTLS == fwv1.FirmwareServerTLSRequired
	// The certificate goes out with the write that follows the driver's choice of URL: the
	// Flashing report of the flash request, written before the request (a phase change).
	fw.OnImageURL = func(secure bool) {
		r.note(func(s *fwv1.TargetUpdateStatus) {
			s.FirmwareServerCertificateSHA256 = ""
			if secure {
				s.FirmwareServerCertificateSHA256 = certSHA256
			}
		})
	}
	return nil
}

// explain turns an error into a status message, naming the job's per-target timeout when it
// struck (tctx is the target's context, ctx the agent's).
func (a *agent) explain(ctx, tctx context.Context, what string, err error) string {
	msg := what + ": " + err.Error()
	if errors.Is(tctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil {
		msg = fmt.Sprintf("timed out after %s (the job's per-target timeout) while %s: %v", a.cfg.Timeout, what, err)
	}
	return msg
}

// leftForNextAgent reports whether the agent is stopping (pod deleted, node drained); if so
// it keeps the target's phase, so that the next agent resumes from it, and says so.
func (a *agent) leftForNextAgent(ctx context.Context, r *reporter, log *slog.Logger) bool {
	if ctx.Err() == nil {
		return false
	}
	log.Warn("agent stopping; target left for the next agent to resume", "phase", r.phase())
	r.update(context.WithoutCancel(ctx), true, func(s *fwv1.TargetUpdateStatus) {
		s.Message = "agent stopped while " + strings.ToLower(string(s.Phase)) + "; the next agent resumes this target"
	})
	return true
}

// connect opens the target's driver from its rule P4 session port, with its rule P5 receive
// port, and a context whose reporter writes what the driver says to the target's status.
// closeTarget ends the session and frees the receive port.
func (a *agent) connect(tctx context.Context, tk *task) (d driver.Driver, dctx context.Context, progress func(driver.Progress), closeTarget func(), err error) {
	r, t := tk.rep, tk.target
	// rule P4: free the held session port of the target's slot just before the driver dials
	// from it (the slot's later targets dial from it too).
	t.LocalPort = a.bound.session(tk.slot)
	if t.LocalPort != 0 {
		a.held.release(t.LocalPort)
	}
	// rule P5: the slot's receive port, for drivers told of progress (Redfish events).
	var rc *driver.Receive
	if rc = a.receiveFor(tctx, tk); rc != nil {
		t.Receive = rc
	}
	progress = func(p driver.Progress) {
		r.update(tctx, false, func(s *fwv1.TargetUpdateStatus) {
			if p.Phase != "" {
				s.Phase = fwv1.TargetPhase(p.Phase)
			}
			s.Percent = int32(min(max(p.Percent, 0), 100))
			if p.Message != "" {
				s.Message = p.Message
			}
		})
	}
	// What the driver says before Update (waiting for a target that resets, say) reaches the
	// status too.
	dctx = driver.WithReporter(tctx, progress)
	d, err = a.deps.Drivers.Open(dctx, t)
	closeReceive := func() {
		if rc != nil {
			rc.Listener.Close()
		}
	}
	if err != nil {
		closeReceive()
		return nil, nil, nil, nil, err
	}
	return d, dctx, progress, func() { d.Close(); closeReceive() }, nil
}

// rebootBy is when a reboot the job allows must end: when its maintenance window closes (zero
// without a window). A target started inside the window may outlast it; one whose window is
// already over, or cannot be read, gets now: no time for a reboot.
func (a *agent) rebootBy(log *slog.Logger) time.Time {
	now := a.deps.Now()
	open, closes, err := rollout.WindowCloses(a.cfg.Window, now)
	switch {
	case err != nil:
		log.Warn("no reboot: the job's maintenance window cannot be read", "error", err)
		return now
	case !open:
		return now
	}
	return closes
}

func orUnknown(s string) string {
	if s == "" {
		return "(unknown)"
	}
	return s
}
