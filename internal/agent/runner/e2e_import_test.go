package runner

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
	"github.com/fwops/firmware-operator/internal/agent/config"
	"github.com/fwops/firmware-operator/internal/baselineimport"
	"github.com/fwops/firmware-operator/internal/simulator/fwimage"
	"github.com/fwops/firmware-operator/internal/simulator/fwpkg"
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

	const nicTarget = "a6b1a447-382a-5a4f-1077-807010770073" // the DL325's Marvell OCP3 adapter
	p := fwpkg.Payload{Name: "Marvell FastLinQ firmware", Version: "08.60.12", UpdatableBy: []string{fwpkg.Uefi}}
	img := fwpkg.Image{FileName: "nic_086012.bin", DirectFlashOk: fwpkg.Flag(false), UefiFlashable: true}
	p.Devices.Device = []fwpkg.Device{{DeviceName: "Marvell 2P 25GbE OCP3", Target: nicTarget, Version: "08.60.12", FirmwareImages: []fwpkg.Image{img}}}
	files := map[string][]byte{
		"cp900100.fwpkg": fwpkg.Build(p, map[string][]byte{
			img.FileName:       fwimage.BuildHeader(fwimage.Header{Component: "SmartComponent", Version: "08.60.12"}, []byte("NIC firmware")),
			"cp900100.compsig": []byte("signature"),
		}),
		"ilo5_278.bin": fwimage.Build("iLO", "2.78", []byte("iLO 5 firmware")),
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

	timings := similo.Timings{Upload: 10 * time.Millisecond, Verify: 10 * time.Millisecond, Write: 10 * time.Millisecond,
		Update: 60 * time.Millisecond, Steps: 4, ResetDelay: 50 * time.Millisecond, ILOReset: time.Second, HalfUp: 300 * time.Millisecond,
		POST: 200 * time.Millisecond}
	sims := map[string]*similo.Sim{}
	var targets []config.Target
	for _, n := range []struct{ name, mockup string }{{"dl325", shared.DL325}, {"xl675d", "ilo5-xl675d-gen10plus-v2.55"}} {
		s, err := similo.New(similo.Config{MockupDir: shared.Mockup(n.mockup), Username: "Administrator", Password: e2ePassword, Timings: timings})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Start("127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		sims[n.name] = s
		targets = append(targets, config.Target{Name: n.name, Type: "iLO5", Address: s.Addr(), CertificateSHA256: s.CertFingerprint()})
	}
	cfg := e.job("imported", config.Firmware{Component: "iLO"}, targets)
	cfg.Baseline, cfg.BaselineGeneration, cfg.RebootIfRequired = b.Name, b.Generation, true
	for _, tg := range cfg.Targets {
		mountCredentials(t, cfg, tg.Name, "Administrator", e2ePassword)
	}
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
	if d := e.status("imported", "dl325").Devices; !slices.Contains(d, fwv1.DeviceVersion{Target: nicTarget, Version: "08.60.12"}) {
		t.Errorf("dl325: devices %v, want the NIC %s recorded at 08.60.12, which the reboot activated", d, nicTarget)
	}

	t.Run("the compliance view turns green, the NIC judged by its device", func(t *testing.T) {
		// Compliant, not unknown: the UpdateTargets record the devices the agent read, so
		// the .fwpkg is judged on the DL325 and found not to apply on the XL675d.
		expectCompliance(t, e, b, targets)
	})
}
