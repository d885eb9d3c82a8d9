package runner

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/onsi/gomega"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
	"github.com/fwops/firmware-operator/internal/agent/config"
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

	pkg := dl325NICPackage()
	e.images["cp900100.fwpkg"] = pkg
	fw := config.Firmware{URL: imgSrv.URL + "/cp900100.fwpkg", SHA256: digest(pkg), Component: "SmartComponent"}

	sims := map[string]*similo.Sim{
		"dl325":  startILO(t, shared.DL325, similo.Config{Timings: fastILO}),
		"xl675d": startILO(t, xl675dMockup, similo.Config{Timings: fastILO}),
	}
	targets := []config.Target{iloTarget("dl325", "iLO5", sims["dl325"]), iloTarget("xl675d", "iLO5", sims["xl675d"])}
	runJob := func(t *testing.T, job string) {
		t.Helper()
		cfg := e.job(job, fw, targets)
		mountILOCredentials(t, cfg)
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
		gomega.NewWithT(t).Eventually(func() bool { return s.HostBoots() > boots && s.PostState() == "FinishedPost" }).
			WithTimeout(20*time.Second).Should(gomega.BeTrue(), "POST did not finish")
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
