package runner

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
	"github.com/fwops/firmware-operator/internal/agent/config"
	"github.com/fwops/firmware-operator/internal/baselineimport"
	"github.com/fwops/firmware-operator/internal/simulator/fwimage"
	similo "github.com/fwops/firmware-operator/internal/simulator/ilo"
	"github.com/fwops/firmware-operator/internal/testutil/shared"
)

// TestEndToEndImportedBaseline: `baseline import` on a folder of a generated .fwpkg (the
// DL325's OCP NIC, flashed by UEFI) and an iLO image gives a baseline the API server accepts,
// and that an agent rolls out over both iLO 5 captures: the NIC only where its device is,
// after the iLO, the DL325 rebooted once to apply it.
func TestEndToEndImportedBaseline(t *testing.T) {
	e := newE2E(t)
	imgSrv := e.serveImages()

	files := map[string][]byte{
		"cp900100.fwpkg": dl325NICPackage(),
		"ilo5_278.bin":   fwimage.Build("iLO", "2.78", []byte("iLO 5 firmware")),
	}
	dir := t.TempDir()
	for name, b := range files {
		e.images[name] = b
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	b, skipped, err := baselineimport.Import(dir, baselineimport.Options{Name: "imported", Namespace: testNS, Version: "2026.09", URLPrefix: imgSrv.URL})
	if err != nil || len(skipped) != 0 {
		t.Fatalf("import: %v (skipped %v)", err, skipped)
	}
	if err := e.c.Create(context.Background(), b); err != nil {
		t.Fatalf("the API server refused the imported baseline: %v", err)
	}

	sims := map[string]*similo.Sim{}
	var targets []config.Target
	for _, n := range []struct{ name, mockup string }{{"dl325", shared.DL325}, {"xl675d", xl675dMockup}} {
		sims[n.name] = startILO(t, n.mockup, similo.Config{Timings: fastILO})
		targets = append(targets, iloTarget(n.name, "iLO5", sims[n.name]))
	}
	cfg := e.job("imported", config.Firmware{Component: "iLO"}, targets)
	cfg.Baseline, cfg.BaselineGeneration, cfg.RebootIfRequired = b.Name, b.Generation, true
	mountILOCredentials(t, cfg)
	if err := e.run(cfg); err != nil {
		t.Fatalf("agent: %v\n%s", err, e.out.String())
	}
	for name, want := range map[string]string{
		"dl325":  "ilo5-278 Succeeded, cp900100 Succeeded",
		"xl675d": "ilo5-278 Succeeded",
	} {
		s := e.status("imported", name)
		var got []string
		for _, c := range s.Components {
			got = append(got, c.Name+" "+string(c.Phase))
		}
		if strings.Join(got, ", ") != want || s.Phase != fwv1.TargetPhaseSucceeded {
			t.Errorf("%s: %s, components %q; want Succeeded with %q (%s)", name, s.Phase, got, want, s.Message)
		}
	}
	if st, s := sims["dl325"].Stats(), e.status("imported", "dl325"); st.HostBoots != 1 || s.RebootRequired || st.FlashesStarted != 2 {
		t.Errorf("dl325: %d boots, %d flashes, rebootRequired=%v (%s); want one reboot that applied the NIC, two flashes", st.HostBoots, st.FlashesStarted, s.RebootRequired, s.Message)
	}
	if n := sims["xl675d"].ComponentsAdded(); n != 0 {
		t.Errorf("xl675d: %d components added to its iLO Repository, want none: the NIC is not in it", n)
	}
	if d := e.status("imported", "dl325").Devices; !slices.Contains(d, fwv1.DeviceVersion{Target: dl325NICTarget, Version: "08.60.12"}) {
		t.Errorf("dl325: devices %v, want the NIC %s recorded at 08.60.12, which the reboot activated", d, dl325NICTarget)
	}

	t.Run("the compliance view turns green, the NIC judged by its device", func(t *testing.T) {
		// Compliant, not unknown: the UpdateTargets record the devices the agent read, so
		// the .fwpkg is judged on the DL325 and found not to apply on the XL675d.
		expectCompliance(t, e, b, targets)
	})
}
