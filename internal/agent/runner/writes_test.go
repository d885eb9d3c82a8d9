package runner

import (
	"context"
	"testing"
	"time"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
	"github.com/fwops/firmware-operator/internal/agent/driver"
)

// agentWrites are the agent's writes of target's TargetUpdate: those after the controller's
// claim, the fixture's first write.
func (f *fixture) agentWrites(t *testing.T, target string) []fwv1.TargetUpdateStatus {
	t.Helper()
	w := f.statusWrites(testJob + "-" + target)
	if len(w) == 0 || w[0].Phase != fwv1.TargetPhaseDownloading || w[0].ControlPort != 0 {
		t.Fatalf("%s: the first write is not the controller's claim: %+v", target, w)
	}
	return w[1:]
}

// The controller's claim already says Downloading on this pod and node: the agent's first
// write is the version it read (Staging), and it carries the ports the agent bound, which
// the controller shows in the job's status.agents (issue 13: at most 8 agent writes per
// target, each paid by every target of a 10,000-target job).
func TestFollowFirstWriteCarriesPortsWithTheVersion(t *testing.T) {
	f := newFixture(t, 1, driver.FakeBehavior{Version: "1.0", Delay: 20 * time.Millisecond})
	cancel, done := f.followClaimed(t)
	f.waitPhase(t, "t0", fwv1.TargetPhaseSucceeded)
	cancel()
	<-done

	w := f.agentWrites(t, "t0")
	if len(w) == 0 {
		t.Fatal("the agent wrote nothing")
	}
	for i, s := range w {
		if s.Phase == fwv1.TargetPhaseDownloading {
			t.Errorf("agent write %d of %d says Downloading again, as the claim did: %+v", i+1, len(w), s)
		}
	}
	first := w[0]
	if first.Phase != fwv1.TargetPhaseStaging || first.VersionBefore != "1.0" {
		t.Errorf("the agent's first write: phase %q, versionBefore %q; want Staging at 1.0", first.Phase, first.VersionBefore)
	}
	if int(first.ControlPort) != f.cfg.Ports.Control || int(first.SessionPort) != f.cfg.Ports.Sessions[0] ||
		int(first.FirmwareServerPort) != f.cfg.Ports.FirmwareServer || first.AgentPod != "agent-pod" || first.StartTime == nil {
		t.Errorf("the agent's first write does not report its ports and start: %+v", first)
	}
}

// imageURLFirst is a driver that picks the image URL, then says it requests the flash, as
// the iLO driver does (request), before the fake's update.
type imageURLFirst struct{ driver.Driver }

func (d imageURLFirst) Update(ctx context.Context, fw driver.Firmware, report func(driver.Progress)) (driver.Result, error) {
	if _, err := fw.ImageURL(true, "test"); err != nil {
		return driver.Result{}, err
	}
	report(driver.Progress{Phase: driver.PhaseFlashing, Message: "requesting the flash"})
	return d.Driver.Update(ctx, fw, report)
}

// The certificate the target is given the image with (rule P2, HTTPS) goes out with the
// Flashing write of the flash request, not in a write of its own.
func TestCertificateGoesOutWithTheFlashRequest(t *testing.T) {
	f := newFixture(t, 1, driver.FakeBehavior{Version: "1.0"})
	f.cfg.FirmwareTLS = fwv1.FirmwareServerTLSPreferred
	f.cfg.Follow = true
	assigned := f.cfg.Targets
	f.cfg.Targets = nil
	pc, _ := followPod(t, assigned)
	f.claim(t, "agent-pod", assigned...)
	reg := driver.Registry{}
	for typ, open := range f.fake.Registry() {
		reg[typ] = func(ctx context.Context, tg driver.Target) (driver.Driver, error) {
			d, err := open(ctx, tg)
			if err != nil {
				return nil, err
			}
			return imageURLFirst{d}, nil
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, f.cfg, Deps{Client: f.c, Drivers: reg, MinWriteInterval: time.Hour,
			Assignments: PodAssignments{Client: pc, Namespace: testNS, Pod: "agent-pod"}})
	}()
	f.waitPhase(t, "t0", fwv1.TargetPhaseSucceeded)
	cancel()
	<-done

	w := f.agentWrites(t, "t0")
	var before []fwv1.TargetUpdateStatus // the writes before the flash request's
	flashing := -1
	for i, s := range w {
		if s.Phase == fwv1.TargetPhaseFlashing {
			flashing = i
			break
		}
		before = append(before, s)
	}
	if flashing < 0 {
		t.Fatalf("no Flashing write: %+v", w)
	}
	if len(before) != 1 || before[0].FirmwareServerCertificateSHA256 != "" {
		t.Errorf("%d writes before the flash request's, want one (Staging, no certificate yet): %+v", len(before), before)
	}
	if len(w[flashing].FirmwareServerCertificateSHA256) != 64 {
		t.Errorf("the flash request's write names certificate %q, want the agent's SHA-256", w[flashing].FirmwareServerCertificateSHA256)
	}
}
