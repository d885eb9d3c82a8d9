package runner

import (
	"context"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/types"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
	"github.com/fwops/firmware-operator/internal/agent/config"
)

// TestEndToEndBaselineResume: an agent that ends after it staged a DL325's system ROM but
// before it wrote the target's end leaves the target Flashing; the next agent of the job
// finds the ROM still at its old version (it activates at the next reboot) and must not flash
// it again: the component an earlier agent finished is never installed twice.
func TestEndToEndBaselineResume(t *testing.T) {
	e := newE2E(t)
	b, sim := dl325Baseline(t, e)
	cfg := e.job("spp", config.Firmware{Component: "iLO"}, []config.Target{{Name: "dl325", Type: "iLO5", Address: sim.Addr(), CertificateSHA256: sim.CertFingerprint()}})
	cfg.Baseline, cfg.BaselineGeneration = b.Name, b.Generation
	mountCredentials(t, cfg, "dl325", "Administrator", e2ePassword)
	if err := e.run(cfg); err != nil {
		t.Fatalf("agent: %v\n%s", err, e.out.String())
	}
	if s := e.status("spp", "dl325"); s.Phase != fwv1.TargetPhaseSucceeded || !s.RebootRequired || s.ComponentsProgress != "2/2" ||
		!strings.Contains(s.Message, "staged until the server's next reboot: rom-a43") {
		t.Fatalf("first agent: %s rebootRequired=%v %s (%s); want Succeeded, the ROM staged, 2/2", s.Phase, s.RebootRequired, s.ComponentsProgress, s.Message)
	}

	// As if the first agent had ended before its final write: the target is Flashing.
	tu := &fwv1.TargetUpdate{}
	if err := e.c.Get(context.Background(), types.NamespacedName{Namespace: testNS, Name: "spp-dl325"}, tu); err != nil {
		t.Fatal(err)
	}
	tu.Status.Phase, tu.Status.CompletionTime, tu.Status.Conditions = fwv1.TargetPhaseFlashing, nil, nil
	if err := e.c.Status().Update(context.Background(), tu); err != nil {
		t.Fatal(err)
	}
	if err := e.run(cfg); err != nil {
		t.Fatalf("second agent: %v\n%s", err, e.out.String())
	}
	s := e.status("spp", "dl325")
	if s.Phase != fwv1.TargetPhaseSucceeded || !s.RebootRequired {
		t.Errorf("second agent: %s rebootRequired=%v (%s); want Succeeded, the ROM still staged", s.Phase, s.RebootRequired, s.Message)
	}
	if st := sim.Stats(); st.FlashRequests != 2 || st.HostBoots != 0 {
		t.Errorf("simulator saw %d flash requests, %d boots; want 2 (the iLO, the ROM once), none", st.FlashRequests, st.HostBoots)
	}
}
