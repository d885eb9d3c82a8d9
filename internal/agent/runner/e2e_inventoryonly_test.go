package runner

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
	"github.com/fwops/firmware-operator/internal/agent/config"
	"github.com/fwops/firmware-operator/internal/simulator/fwimage"
	similo "github.com/fwops/firmware-operator/internal/simulator/ilo"
	"github.com/fwops/firmware-operator/internal/testutil/shared"
)

// TestEndToEndInventoryOnly: a read-only job (spec.inventoryOnly) on a DL325 that drifts from
// the baseline (iLO 2.46, baseline 2.78) reads and records the inventory as a rollout does,
// shows what a rollout would install, and asks the iLO for no flash and no reboot.
func TestEndToEndInventoryOnly(t *testing.T) {
	e := newE2E(t)
	b, sim := dl325Baseline(t, e)
	cfg := e.job("read", config.Firmware{Component: "iLO"}, []config.Target{{Name: "dl325", Type: "iLO5", Address: sim.Addr(), CertificateSHA256: sim.CertFingerprint()}})
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

// dl325Baseline creates, on e's API server, the FirmwareBaseline "spp" (iLO 5 2.78, system
// ROM 2.68, their images served by e) and starts a simulated DL325 below it (iLO 2.46, ROM
// 2.52).
func dl325Baseline(t *testing.T, e *e2e) (*fwv1.FirmwareBaseline, *similo.Sim) {
	t.Helper()
	imgSrv := e.serveImages()
	ilo5 := fwimage.Build("iLO", "2.78", []byte("iLO 5 firmware"))
	rom := fwimage.Build("SystemROM", "2.68", []byte("DL325 system ROM"))
	e.images["ilo5_278.bin"], e.images["a43_268.fwpkg"] = ilo5, rom
	b := &fwv1.FirmwareBaseline{ObjectMeta: metav1.ObjectMeta{Name: "spp", Namespace: testNS},
		Spec: fwv1.FirmwareBaselineSpec{Version: "2026.09", Components: []fwv1.BaselineComponent{
			{Name: "ilo5", Kind: fwv1.BaselineKindILO,
				Firmware:  fwv1.FirmwareSource{URL: imgSrv.URL + "/ilo5_278.bin", SHA256: digest(ilo5), Version: "2.78"},
				AppliesTo: fwv1.ComponentApplicability{TargetTypes: []fwv1.TargetType{fwv1.TargetTypeILO5}}},
			{Name: "rom-a43", Kind: fwv1.BaselineKindSystemROM,
				Firmware:  fwv1.FirmwareSource{URL: imgSrv.URL + "/a43_268.fwpkg", SHA256: digest(rom), Version: "2.68"},
				AppliesTo: fwv1.ComponentApplicability{TargetTypes: []fwv1.TargetType{fwv1.TargetTypeILO5}}},
		}}}
	if err := e.c.Create(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	fast := similo.Timings{Upload: 10 * time.Millisecond, Verify: 10 * time.Millisecond, Write: 10 * time.Millisecond, Update: 60 * time.Millisecond, Steps: 4,
		ResetDelay: 50 * time.Millisecond, ILOReset: time.Second, HalfUp: 300 * time.Millisecond, POST: 300 * time.Millisecond}
	sim, err := similo.New(similo.Config{MockupDir: shared.Mockup(shared.DL325), Username: "Administrator", Password: e2ePassword, Timings: fast})
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	return b, sim
}
