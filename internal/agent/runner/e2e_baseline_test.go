package runner

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
	"github.com/fwops/firmware-operator/controllers"
	"github.com/fwops/firmware-operator/internal/agent/config"
	"github.com/fwops/firmware-operator/internal/agent/driver"
	"github.com/fwops/firmware-operator/internal/agent/linux"
	"github.com/fwops/firmware-operator/internal/simulator/fwimage"
	similo "github.com/fwops/firmware-operator/internal/simulator/ilo"
	simoa "github.com/fwops/firmware-operator/internal/simulator/oa"
	"github.com/fwops/firmware-operator/internal/testutil/shared"
	"github.com/fwops/firmware-operator/internal/testutil/sshd"
)

// TestEndToEndBaseline rolls one FirmwareBaseline out, through a real API server, over both
// iLO 5 captures (DL325 and XL675d), an iLO 4, an iLO 6, an OA and a Linux host (a real sshd): each target gets exactly the
// components that apply to it, in order (the iLO, the DL325's system ROM whose prerequisite
// is that iLO), each flashed once as the simulators count, the current XL675d ROM skipped,
// and the DL325 rebooted once at the end to activate its ROM.
func TestEndToEndBaseline(t *testing.T) {
	e := newE2E(t)
	imgSrv := e.serveImages()
	images := map[string][]byte{
		"ilo5_278.bin":  fwimage.Build("iLO", "2.78", []byte(strings.Repeat("iLO 5 firmware ", 200))),
		"ilo4_282.bin":  fwimage.Build("iLO", "2.82", []byte("iLO 4 firmware")),
		"ilo6_161.bin":  fwimage.Build("iLO", "1.61", []byte("iLO 6 firmware")),
		"a43_268.fwpkg": fwimage.Build("SystemROM", "2.68", []byte("DL325 system ROM")),
		"a47_252.fwpkg": fwimage.Build("SystemROM", "2.52", []byte("XL675d system ROM")),
		"oa_500.bin":    fwimage.Build("OA", "5.00", []byte("OA firmware")),
	}
	// The Smart Component leaves a line on the host each time it runs.
	ranDir := t.TempDir()
	if err := os.Chmod(ranDir, 0o777); err != nil {
		t.Fatal(err)
	}
	ranLog := filepath.Join(ranDir, "ran")
	images["cp012345.scexe"] = []byte("#!/bin/sh\necho ran >> " + ranLog + "\necho 'smart component: installed'\nexit 0\n")
	for name, b := range images {
		e.images[name] = b
	}
	component := func(name string, kind fwv1.BaselineComponentKind, file, version string, types ...fwv1.TargetType) fwv1.BaselineComponent {
		return e.component(imgSrv.URL, name, kind, file, version, types...)
	}
	romDL325 := component("rom-a43", fwv1.BaselineKindSystemROM, "a43_268.fwpkg", "2.68", fwv1.TargetTypeILO5)
	romDL325.AppliesTo.Models = []string{"ProLiant DL325 Gen10 Plus"}
	romDL325.Prerequisites = []fwv1.ComponentPrerequisite{{Name: "ilo5", MinimumVersion: "2.78"}}
	romXL := component("rom-a47", fwv1.BaselineKindSystemROM, "a47_252.fwpkg", "2.52", fwv1.TargetTypeILO5)
	romXL.AppliesTo.Models = []string{"ProLiant XL675d Gen10 Plus"}
	b := &fwv1.FirmwareBaseline{ObjectMeta: metav1.ObjectMeta{Name: "spp-2026-09", Namespace: testNS},
		Spec: fwv1.FirmwareBaselineSpec{Version: "2026.09", Components: []fwv1.BaselineComponent{
			romDL325, romXL, // listed before the iLOs: the plan puts the iLO first
			component("ilo5", fwv1.BaselineKindILO, "ilo5_278.bin", "2.78", fwv1.TargetTypeILO5),
			component("ilo4", fwv1.BaselineKindILO, "ilo4_282.bin", "2.82", fwv1.TargetTypeILO4),
			component("ilo6", fwv1.BaselineKindILO, "ilo6_161.bin", "1.61", fwv1.TargetTypeILO6),
			component("oa", fwv1.BaselineKindOA, "oa_500.bin", "5.00", fwv1.TargetTypeOA),
			component("linux-nic", fwv1.BaselineKindLinuxSmartComponent, "cp012345.scexe", "1.2.3", fwv1.TargetTypeLinux),
		}}}
	if err := e.c.Create(context.Background(), b); err != nil {
		t.Fatalf("the API server refused the baseline: %v", err)
	}

	sims := map[string]*similo.Sim{}
	var targets []config.Target
	for _, n := range []struct {
		name, typ, mockup string
		model             similo.Model
	}{{"dl325", "iLO5", shared.DL325, similo.ILO5}, {"xl675d", "iLO5", xl675dMockup, similo.ILO5},
		{"ilo4", "iLO4", shared.DL325, similo.ILO4}, {"ilo6", "iLO6", shared.DL325, similo.ILO6}} {
		sims[n.name] = startILO(t, n.mockup, similo.Config{Model: n.model, Timings: fastILO})
		targets = append(targets, iloTarget(n.name, n.typ, sims[n.name]))
	}
	oaSim, err := simoa.Start(simoa.Config{Password: e2ePassword, Version: "4.97", RestartDelay: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = oaSim.Close() })
	host := sshd.Start(t)
	targets = append(targets,
		config.Target{Name: "oa1", Type: "OA", Address: oaSim.Addr(), KnownHostsSecret: "oa1-known-hosts"},
		config.Target{Name: "host1", Type: "Linux", Address: "127.0.0.1", SSHPort: host.Port, KnownHostsSecret: "host1-known-hosts"})
	mount := func(cfg config.Config) {
		for _, tg := range cfg.Targets {
			switch tg.Name {
			case "oa1":
				mountCredentials(t, cfg, tg.Name, "Administrator", e2ePassword)
				mountSecret(t, cfg, tg.Name, knownHostsSub, fwv1.SecretKeyKnownHosts, []byte(oaSim.KnownHostsLine()+"\n"))
			case "host1":
				mountSecret(t, cfg, tg.Name, credentialsSub, fwv1.SecretKeyUsername, []byte(host.User))
				mountSecret(t, cfg, tg.Name, credentialsSub, fwv1.SecretKeySSHPrivateKey, host.UserKey)
				mountSecret(t, cfg, tg.Name, knownHostsSub, fwv1.SecretKeyKnownHosts, host.KnownHosts)
			default:
				mountCredentials(t, cfg, tg.Name, "Administrator", e2ePassword)
			}
		}
	}
	linuxOpts := WithLinuxOptions(linux.Options{StateDir: t.TempDir(), Timeouts: driver.Timeouts{Connect: 5 * time.Second}})
	cfg := e.job("spp", config.Firmware{Component: "iLO"}, targets)
	cfg.Baseline, cfg.BaselineGeneration = b.Name, b.Generation
	cfg.RebootIfRequired = true
	mount(cfg)
	if err := e.run(cfg, linuxOpts); err != nil {
		t.Fatalf("agent: %v\n%s", err, e.out.String())
	}

	type want struct {
		components []string // "name phase from->to", in the order installed, then skipped
		flashes    int
		boots      int
	}
	for name, w := range map[string]want{
		"dl325":  {[]string{"ilo5 Succeeded 2.46->2.78", "rom-a43 Succeeded 2.52->2.68"}, 2, 1},
		"xl675d": {[]string{"ilo5 Succeeded 2.55->2.78", "rom-a47 Skipped 2.52->2.52"}, 1, 0},
		"ilo4":   {[]string{"ilo4 Succeeded 2.80->2.82"}, 1, 0},
		"ilo6":   {[]string{"ilo6 Succeeded 1.55->1.61"}, 1, 0},
		"oa1":    {[]string{"oa Succeeded 4.97->5.00"}, 1, 0},
		"host1":  {[]string{"linux-nic Succeeded ->1.2.3"}, 1, 0},
	} {
		s := e.status("spp", name)
		var got []string
		for _, c := range s.Components {
			got = append(got, c.Name+" "+string(c.Phase)+" "+c.From+"->"+c.To)
		}
		if strings.Join(got, ", ") != strings.Join(w.components, ", ") {
			t.Errorf("%s: components %q, want %q (%s)", name, got, w.components, s.Message)
		}
		if s.Phase != fwv1.TargetPhaseSucceeded || s.RebootRequired {
			t.Errorf("%s: %s rebootRequired=%v (%s); want Succeeded, nothing left staged", name, s.Phase, s.RebootRequired, s.Message)
		}
		if s.ComponentsProgress != "" && s.ComponentsDone != s.ComponentsTotal {
			t.Errorf("%s: components %s (%d of %d done)", name, s.ComponentsProgress, s.ComponentsDone, s.ComponentsTotal)
		}
		if name == "oa1" || name == "host1" {
			continue // counted below
		}
		st := sims[name].Stats()
		if st.FlashRequests != w.flashes || st.FlashesStarted != w.flashes || st.FlashesCompleted != w.flashes || st.HostBoots != w.boots {
			t.Errorf("%s: simulator saw %d flash requests, %d started, %d completed, %d boots; want %d flashes, %d boots",
				name, st.FlashRequests, st.FlashesStarted, st.FlashesCompleted, st.HostBoots, w.flashes, w.boots)
		}
	}
	if n := oaSim.Flashes(); n != 1 {
		t.Errorf("OA: %d flashes, want 1", n)
	}
	ranOnce := func() {
		t.Helper()
		if b, _ := os.ReadFile(ranLog); string(b) != "ran\n" {
			t.Errorf("the Linux host ran the Smart Component %d times, want once", strings.Count(string(b), "ran"))
		}
	}
	ranOnce()
	for name, model := range map[string]string{"dl325": "ProLiant DL325 Gen10 Plus", "xl675d": "ProLiant XL675d Gen10 Plus"} {
		if s := e.status("spp", name); s.Model != model {
			t.Errorf("%s: status.model %q, want %q", name, s.Model, model)
		}
	}
	if v := sims["dl325"].Version("SystemROM"); !strings.Contains(v, "v2.68") {
		t.Errorf("DL325 runs ROM %q after its one reboot, want 2.68", v)
	}

	t.Run("the compliance view turns green", func(t *testing.T) {
		// The manager's UpdateTarget and FirmwareBaseline controllers, against the same API
		// server, record what the rollout left on each target and judge the fleet against
		// the baseline, as they do in the cluster.
		expectCompliance(t, e, b, targets)
	})

	t.Run("a second run flashes nothing", func(t *testing.T) {
		again := e.job("spp-again", config.Firmware{Component: "iLO"}, targets)
		again.Baseline, again.BaselineGeneration, again.RebootIfRequired = b.Name, b.Generation, true
		mount(again)
		if err := e.run(again, linuxOpts); err != nil {
			t.Fatalf("agent: %v\n%s", err, e.out.String())
		}
		if n := oaSim.Flashes(); n != 1 {
			t.Errorf("OA: %d flashes after a second run, want 1", n)
		}
		ranOnce()
		for _, name := range []string{"oa1", "host1"} {
			for _, c := range e.status("spp-again", name).Components {
				if c.Phase != fwv1.TargetPhaseSkipped {
					t.Errorf("%s: second run %s %s (%s), want Skipped", name, c.Name, c.Phase, c.Message)
				}
			}
		}
		for name, s := range sims {
			if st := s.Stats(); st.FlashesStarted != map[string]int{"dl325": 2}[name]+map[bool]int{true: 1}[name != "dl325"] || st.HostBoots > 1 {
				t.Errorf("%s: %d flashes, %d boots after a second run", name, st.FlashesStarted, st.HostBoots)
			}
			for _, c := range e.status("spp-again", name).Components {
				if c.Phase != fwv1.TargetPhaseSkipped {
					t.Errorf("%s: second run %s %s (%s), want Skipped", name, c.Name, c.Phase, c.Message)
				}
			}
		}
	})
}

// expectCompliance creates the UpdateTargets of targets (their TargetUpdates name them), runs
// the manager's UpdateTarget and FirmwareBaseline controllers against e's API server, and
// waits for baseline b to count every target compliant.
func expectCompliance(t *testing.T, e *e2e, b *fwv1.FirmwareBaseline, targets []config.Target) {
	ctx, cancel := context.WithCancel(context.Background())
	mgr, err := ctrl.NewManager(e.cfg, ctrl.Options{Scheme: e.c.Scheme(), Metrics: metricsserver.Options{BindAddress: "0"},
		Controller: ctrlconfig.Controller{SkipNameValidation: new(true)}})
	if err != nil {
		t.Fatal(err)
	}
	if err := (&controllers.UpdateTargetReconciler{Client: mgr.GetClient()}).SetupWithManager(ctx, mgr); err != nil {
		t.Fatal(err)
	}
	if err := (&controllers.FirmwareBaselineReconciler{Client: mgr.GetClient(), Scheme: mgr.GetScheme()}).SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	})
	for _, tg := range targets {
		ut := &fwv1.UpdateTarget{ObjectMeta: metav1.ObjectMeta{Namespace: testNS, Name: tg.Name},
			Spec: fwv1.UpdateTargetSpec{Type: fwv1.TargetType(tg.Type), Address: tg.Address,
				CredentialsSecretRef: fwv1.SecretReference{Name: "creds-" + tg.Name}}}
		switch ut.Spec.Type {
		case fwv1.TargetTypeOA, fwv1.TargetTypeLinux:
			ut.Spec.SSH = &fwv1.SSHSpec{KnownHostsSecretRef: &fwv1.SecretReference{Name: "known-hosts-" + tg.Name}}
			if tg.SSHPort != 0 {
				ut.Spec.SSH.Port = new(int32(tg.SSHPort))
			}
		default:
			ut.Spec.TLS = &fwv1.TLSSpec{CertificateSHA256: tg.CertificateSHA256}
		}
		if err := e.c.Create(ctx, ut); err != nil {
			t.Fatalf("creating UpdateTarget %s: %v", tg.Name, err)
		}
	}
	recorded := func() string {
		uts := &fwv1.UpdateTargetList{}
		_ = e.c.List(ctx, uts, client.InNamespace(testNS))
		var out []string
		for _, ut := range uts.Items {
			out = append(out, fmt.Sprintf("%s %s %v", ut.Name, ut.Status.Model, ut.Status.FirmwareVersions))
		}
		return "recorded: " + strings.Join(out, "; ")
	}
	gomega.NewWithT(t).Eventually(func(g gomega.Gomega) {
		got := &fwv1.FirmwareBaseline{}
		g.Expect(e.c.Get(ctx, client.ObjectKeyFromObject(b), got)).To(gomega.Succeed())
		n := got.Status.Counts
		g.Expect([]int32{n.Compliant, n.Drifting, n.Unknown}).To(gomega.Equal([]int32{int32(len(targets)), 0, 0}),
			"compliant, drifting, unknown (compliance %q, drifting %+v); want all %d compliant",
			got.Status.Compliance, got.Status.DriftingTargets, len(targets))
	}).WithTimeout(time.Minute).Should(gomega.Succeed(), recorded)
}
