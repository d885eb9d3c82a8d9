package runner

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
	"github.com/fwops/firmware-operator/internal/agent/config"
	"github.com/fwops/firmware-operator/internal/simulator/fwimage"
	"github.com/fwops/firmware-operator/internal/simulator/fwpkg"
	similo "github.com/fwops/firmware-operator/internal/simulator/ilo"
	"github.com/fwops/firmware-operator/internal/testutil/shared"
)

// fastILO are simulator timings for end-to-end runs: the iLO resets after flashing itself
// (about a second) and stages system ROMs until the host reboots, as real ones do.
var fastILO = similo.Timings{Upload: 10 * time.Millisecond, Verify: 10 * time.Millisecond, Write: 10 * time.Millisecond,
	Update: 60 * time.Millisecond, Steps: 4, ResetDelay: 50 * time.Millisecond, ILOReset: time.Second,
	HalfUp: 300 * time.Millisecond, POST: 300 * time.Millisecond}

// xl675dMockup is the second iLO 5 capture, a server model other than shared.DL325's.
const xl675dMockup = "ilo5-xl675d-gen10plus-v2.55"

// startILO starts an iLO simulator on 127.0.0.1 from the capture mockup (a directory of
// ../shared/testdata/redfish-mockups), with the end-to-end credentials, closed when t ends.
func startILO(t testing.TB, mockup string, cfg similo.Config) *similo.Sim {
	t.Helper()
	cfg.MockupDir, cfg.Username, cfg.Password = shared.Mockup(mockup), "Administrator", e2ePassword
	s, err := similo.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// iloTarget is the agent's target for s, its certificate pinned.
func iloTarget(name, typ string, s *similo.Sim) config.Target {
	return config.Target{Name: name, Type: typ, Address: s.Addr(), CertificateSHA256: s.CertFingerprint()}
}

// mountILOCredentials mounts the simulators' credentials for every target of cfg.
func mountILOCredentials(t *testing.T, cfg config.Config) {
	for _, tg := range cfg.Targets {
		mountCredentials(t, cfg, tg.Name, "Administrator", e2ePassword)
	}
}

// dl325NICTarget is the payload.json device Target of the DL325's Marvell OCP3 adapter.
const dl325NICTarget = "a6b1a447-382a-5a4f-1077-807010770073"

// dl325NICPackage is a generated Smart Component for that adapter, 08.60.12, that UEFI
// flashes at the next reboot (UpdatableBy Uefi, not DirectFlashOk), signed.
func dl325NICPackage() []byte {
	p := fwpkg.Payload{Name: "Marvell FastLinQ firmware", Version: "08.60.12", UpdatableBy: []string{fwpkg.Uefi}}
	img := fwpkg.Image{FileName: "nic_086012.bin", DirectFlashOk: fwpkg.Flag(false), UefiFlashable: true}
	p.Devices.Device = []fwpkg.Device{{DeviceName: "Marvell 2P 25GbE OCP3", Target: dl325NICTarget, Version: "08.60.12",
		FirmwareImages: []fwpkg.Image{img}}}
	return fwpkg.Build(p, map[string][]byte{
		img.FileName:       fwimage.BuildHeader(fwimage.Header{Component: "SmartComponent", Version: "08.60.12"}, []byte("NIC firmware")),
		"cp900100.compsig": []byte("signature"),
	})
}

// component is a baseline component of kind at version for targetTypes, from file as e's
// image server at imgURL serves it (put it in e.images first: its digest is taken here).
func (e *e2e) component(imgURL, name string, kind fwv1.BaselineComponentKind, file, version string, targetTypes ...fwv1.TargetType) fwv1.BaselineComponent {
	e.mu.Lock()
	b, ok := e.images[file]
	e.mu.Unlock()
	if !ok {
		e.t.Fatalf("component %s: no image %s to serve", name, file)
	}
	return fwv1.BaselineComponent{Name: name, Kind: kind,
		Firmware:  fwv1.FirmwareSource{URL: imgURL + "/" + file, SHA256: digest(b), Version: version},
		AppliesTo: fwv1.ComponentApplicability{TargetTypes: targetTypes}}
}

// iloAndROMBaseline creates FirmwareBaseline spp of two components for the DL325's iLO 5,
// served by a new image server of e: its iLO (ilo5, 2.78), then its system ROM (rom-a43,
// 2.68), which activates at the next reboot.
func (e *e2e) iloAndROMBaseline() *fwv1.FirmwareBaseline {
	imgSrv := e.serveImages()
	e.mu.Lock()
	e.images["ilo5_278.bin"] = fwimage.Build("iLO", "2.78", []byte("iLO 5 firmware"))
	e.images["a43_268.fwpkg"] = fwimage.Build("SystemROM", "2.68", []byte("DL325 system ROM"))
	e.mu.Unlock()
	b := &fwv1.FirmwareBaseline{ObjectMeta: metav1.ObjectMeta{Name: "spp", Namespace: testNS},
		Spec: fwv1.FirmwareBaselineSpec{Version: "2026.09", Components: []fwv1.BaselineComponent{
			e.component(imgSrv.URL, "ilo5", fwv1.BaselineKindILO, "ilo5_278.bin", "2.78", fwv1.TargetTypeILO5),
			e.component(imgSrv.URL, "rom-a43", fwv1.BaselineKindSystemROM, "a43_268.fwpkg", "2.68", fwv1.TargetTypeILO5),
		}}}
	if err := e.c.Create(context.Background(), b); err != nil {
		e.t.Fatalf("the API server refused the baseline: %v", err)
	}
	return b
}
