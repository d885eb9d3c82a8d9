package runner

import (
	"strings"
	"testing"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
	"github.com/fwops/firmware-operator/internal/agent/config"
	similo "github.com/fwops/firmware-operator/internal/simulator/ilo"
	"github.com/fwops/firmware-operator/internal/testutil/shared"
)

// TestEndToEndInventoryOnly: a read-only job (spec.inventoryOnly) on a DL325 that drifts from
// the baseline (iLO 2.46, baseline 2.78) reads and records the inventory as a rollout does,
// shows what a rollout would install, and asks the iLO for no flash and no reboot.
func TestEndToEndInventoryOnly(t *testing.T) {
	e := newE2E(t)
	b := e.iloAndROMBaseline()
	sim := startILO(t, shared.DL325, similo.Config{Timings: fastILO})
	cfg := e.job("read", config.Firmware{Component: "iLO"}, []config.Target{iloTarget("dl325", "iLO5", sim)})
	cfg.Baseline, cfg.BaselineGeneration, cfg.InventoryOnly = b.Name, b.Generation, true
	cfg.RebootIfRequired = true // even allowed, a read-only job reboots nothing
	mountCredentials(t, cfg, "dl325", "Administrator", e2ePassword)
	if err := e.run(cfg); err != nil {
		t.Fatalf("agent: %v\n%s", err, e.out.String())
	}
	s := e.status("read", "dl325")
	if s.Phase != fwv1.TargetPhaseSucceeded || s.RebootRequired || !strings.Contains(s.Message, "inventory only") {
		t.Errorf("target %s rebootRequired=%v (%s); want Succeeded, inventory only, nothing staged", s.Phase, s.RebootRequired, s.Message)
	}
	var got []string
	for _, c := range s.Components {
		got = append(got, c.Name+" "+string(c.Phase)+" "+c.From+"->"+c.To+": "+c.Message)
	}
	want := []string{
		"ilo5 Skipped 2.46->2.78: inventory only: would install 2.46 -> 2.78",
		"rom-a43 Skipped 2.52->2.68: inventory only: would install 2.52 -> 2.68",
	}
	if strings.Join(got, "; ") != strings.Join(want, "; ") {
		t.Errorf("components %q, want %q", got, want)
	}
	if s.Model != "ProLiant DL325 Gen10 Plus" || s.InventoryTime == nil || s.ComponentsProgress != "2/2" {
		t.Errorf("model %q, inventoryTime %v, progress %q; want the DL325's model, the time read, 2/2", s.Model, s.InventoryTime, s.ComponentsProgress)
	}
	if st := sim.Stats(); st.FlashRequests != 0 || st.FlashesStarted != 0 || st.HostBoots != 0 {
		t.Errorf("simulator saw %d flash requests, %d flashes, %d boots; want none", st.FlashRequests, st.FlashesStarted, st.HostBoots)
	}
	if v := sim.Version("iLO"); !strings.Contains(v, "2.46") {
		t.Errorf("iLO runs %q after a read-only job, want still 2.46", v)
	}
}
