package runner

import (
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
	f.cfg.Follow = true
	assigned := f.cfg.Targets
	f.cfg.Targets = nil
	pc, _ := followPod(t, assigned)
	f.claim(t, "agent-pod", assigned...)
	cancel, done := f.follow(t, pc)
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
