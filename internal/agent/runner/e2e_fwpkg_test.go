package runner

import (
	"slices"
	"strings"
	"testing"
	"time"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
	"github.com/fwops/firmware-operator/internal/agent/config"
	"github.com/fwops/firmware-operator/internal/simulator/fwimage"
	"github.com/fwops/firmware-operator/internal/simulator/fwpkg"
	similo "github.com/fwops/firmware-operator/internal/simulator/ilo"
	"github.com/fwops/firmware-operator/internal/testutil/shared"
)

// TestEndToEndSmartComponent runs agents against a real API server and two iLO 5s with the
// task queue on: a UEFI-flashed .fwpkg for the DL325's OCP NIC is queued on the DL325
// (Succeeded, reboot required) and is not applicable to the XL675d (Skipped); after the
// DL325 reboots, a new job finds it applied (Skipped) and cleans the iLO up. One flash in all.
func TestEndToEndSmartComponent(t *testing.T) {
	e := newE2E(t)
	imgSrv := e.serveImages()

	const nicTarget = "a6b1a447-382a-5a4f-1077-807010770073" // the DL325's Marvell OCP3 adapter
	p := fwpkg.Payload{Name: "Marvell FastLinQ firmware", Version: "08.60.12", UpdatableBy: []string{fwpkg.Uefi}}
	img := fwpkg.Image{FileName: "nic_086012.bin", DirectFlashOk: fwpkg.Flag(false), UefiFlashable: true}
	p.Devices.Device = []fwpkg.Device{{DeviceName: "Marvell 2P 25GbE OCP3", Target: nicTarget, Version: "08.60.12", FirmwareImages: []fwpkg.Image{img}}}
	pkg := fwpkg.Build(p, map[string][]byte{
		img.FileName:       fwimage.BuildHeader(fwimage.Header{Component: "SmartComponent", Version: "08.60.12"}, []byte("NIC firmware")),
		"cp900100.compsig": []byte("signature"),
	})
	e.images["cp900100.fwpkg"] = pkg
	fw := config.Firmware{URL: imgSrv.URL + "/cp900100.fwpkg", SHA256: digest(pkg), Component: "SmartComponent"}

	timings := similo.Timings{Upload: 10 * time.Millisecond, Verify: 10 * time.Millisecond, Write: 10 * time.Millisecond,
		Update: 60 * time.Millisecond, Steps: 4, POST: 200 * time.Millisecond}
	sims := map[string]*similo.Sim{}
	for name, mockup := range map[string]string{"dl325": shared.DL325, "xl675d": "ilo5-xl675d-gen10plus-v2.55"} {
		s, err := similo.New(similo.Config{MockupDir: shared.Mockup(mockup), Username: "Administrator", Password: e2ePassword, Timings: timings})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Start("127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		sims[name] = s
	}
	targets := []config.Target{
		{Name: "dl325", Type: "iLO5", Address: sims["dl325"].Addr(), CertificateSHA256: sims["dl325"].CertFingerprint()},
		{Name: "xl675d", Type: "iLO5", Address: sims["xl675d"].Addr(), CertificateSHA256: sims["xl675d"].CertFingerprint()},
	}
	runJob := func(t *testing.T, job string) {
		t.Helper()
		cfg := e.job(job, fw, targets)
		for _, tg := range cfg.Targets {
			mountCredentials(t, cfg, tg.Name, "Administrator", e2ePassword)
		}
		if err := e.run(cfg); err != nil {
			t.Fatalf("agent: %v\n%s", err, e.out.String())
		}
	}

	t.Run("queued for UEFI, not applicable elsewhere", func(t *testing.T) {
		runJob(t, "nic")
		s := e.status("nic", "dl325")
		if s.Phase != fwv1.TargetPhaseSucceeded || !s.RebootRequired || !strings.Contains(s.Message, "activates at the next reboot") {
			t.Errorf("dl325: %s rebootRequired=%v %q; want Succeeded, reboot required", s.Phase, s.RebootRequired, s.Message)
		}
		if q := sims["dl325"].TaskStates(); len(q) != 1 || !strings.HasSuffix(q[0], "=Pending") {
			t.Errorf("dl325 task queue %v, want one Pending task", q)
		}
		if s := e.status("nic", "xl675d"); s.Phase != fwv1.TargetPhaseSkipped || !strings.Contains(s.Message, "not applicable to this server") {
			t.Errorf("xl675d: %s %q; want Skipped, not applicable", s.Phase, s.Message)
		}
		if n := sims["xl675d"].ComponentsAdded(); n != 0 || len(sims["xl675d"].TaskStates()) != 0 {
			t.Errorf("xl675d: %d components added, queue %v; want nothing", n, sims["xl675d"].TaskStates())
		}
	})

	t.Run("after the reboot: applied once, cleaned up", func(t *testing.T) {
		s := sims["dl325"]
		boots := s.HostBoots()
		if !s.RebootHost() {
			t.Fatal("the host refused to reboot")
		}
		deadline := time.Now().Add(20 * time.Second)
		for s.HostBoots() == boots || s.PostState() != "FinishedPost" {
			if time.Now().After(deadline) {
				t.Fatal("POST did not finish")
			}
			time.Sleep(10 * time.Millisecond)
		}
		runJob(t, "nic-after-reboot")
		st := e.status("nic-after-reboot", "dl325")
		if st.Phase != fwv1.TargetPhaseSkipped || st.VersionAfter != "08.60.12" {
			t.Errorf("dl325 after the reboot: %s %q -> %q (%s); want Skipped at 08.60.12", st.Phase, st.VersionBefore, st.VersionAfter, st.Message)
		}
		if len(s.TaskStates()) != 0 || slices.Contains(s.Components(), "cp900100.zip") {
			t.Errorf("left on the iLO: queue %v, repository %v", s.TaskStates(), s.Components())
		}
		for name, sim := range sims {
			want := map[string]int{"dl325": 1, "xl675d": 0}[name]
			if st := sim.Stats(); st.FlashesStarted != want || st.FlashesCompleted != want || st.FlashesFailed != 0 {
				t.Errorf("%s: %+v; want exactly %d flash(es)", name, st, want)
			}
		}
		if n := s.ComponentsAdded(); n != 1 || s.SignaturesReceived() != 1 {
			t.Errorf("dl325: %d uploads, %d signatures; want the package once, signed", n, s.SignaturesReceived())
		}
	})
}
