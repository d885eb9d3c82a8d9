package runner

import (
	"context"
	"testing"
	"time"

	"github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/types"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
	"github.com/fwops/firmware-operator/internal/agent/config"
	similo "github.com/fwops/firmware-operator/internal/simulator/ilo"
	"github.com/fwops/firmware-operator/internal/testutil/shared"
)

// TestEndToEndBaselineAgentStoppedMidFlash is the baseline form of "a target that might be
// mid-flash is followed, not restarted": the agent of a two-component baseline job stops
// (its pod deleted) while the iLO flashes the second component, the system ROM; the next
// attempt, claimed as the controller claims it, installs nothing again: the iLO it finished
// stays, the ROM flash still running is followed to its end. The simulator counts one flash
// request and one flash for each component.
func TestEndToEndBaselineAgentStoppedMidFlash(t *testing.T) {
	g := gomega.NewWithT(t)
	e := newE2E(t)
	b := e.iloAndROMBaseline()
	// Flashes long enough to stop the agent in the middle of one.
	timings := fastILO
	timings.Update, timings.Steps = 3*time.Second, 6
	sim := startILO(t, shared.DL325, similo.Config{Timings: timings})
	cfg := e.job("spp", config.Firmware{Component: "iLO"}, []config.Target{iloTarget("dl325", "iLO5", sim)})
	cfg.Baseline, cfg.BaselineGeneration = b.Name, b.Generation
	mountILOCredentials(t, cfg)

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	first := make(chan error, 1)
	go func() { first <- e.runUntil(ctx, cfg) }()
	g.Eventually(func() []any { st := sim.Stats(); return []any{st.FlashesStarted, st.FlashesCompleted, sim.State()} }).
		WithTimeout(time.Minute).Should(gomega.Equal([]any{2, 1, "Updating"}), "the iLO flashed, then the ROM flashing")
	stop() // the agent's pod is deleted mid-flash
	if err := <-first; err != nil {
		t.Logf("the stopped agent returned %v", err)
	}
	s := e.status("spp", "dl325")
	phases := map[string]fwv1.TargetPhase{}
	for _, c := range s.Components {
		phases[c.Name] = c.Phase
	}
	if s.Phase.Finished() || phases["ilo5"] != fwv1.TargetPhaseSucceeded || !phases["rom-a43"].InProgress() {
		t.Fatalf("stopped agent left %s, components %v (%s); want the target in flight, the iLO done, the ROM in flight", s.Phase, phases, s.Message)
	}
	if st := sim.State(); st != "Updating" {
		t.Fatalf("the ROM flash ended (%s) before the next attempt: nothing left to follow", st)
	}

	// The next attempt, claimed as the controller claims it: Downloading, attempt 2, the
	// components as the stopped agent left them.
	tu := &fwv1.TargetUpdate{}
	if err := e.c.Get(context.Background(), types.NamespacedName{Namespace: testNS, Name: "spp-dl325"}, tu); err != nil {
		t.Fatal(err)
	}
	tu.Status.Phase, tu.Status.Attempts, tu.Status.Percent = fwv1.TargetPhaseDownloading, 2, 0
	tu.Status.Message = "agent pod spp-agent-2 is fetching the firmware"
	if err := e.c.Status().Update(context.Background(), tu); err != nil {
		t.Fatal(err)
	}
	if err := e.run(cfg); err != nil {
		t.Fatalf("next attempt: %v\n%s", err, e.out.String())
	}
	s = e.status("spp", "dl325")
	got := map[string]fwv1.TargetPhase{}
	for _, c := range s.Components {
		got[c.Name] = c.Phase
	}
	g.Expect(got).To(gomega.Equal(map[string]fwv1.TargetPhase{"ilo5": fwv1.TargetPhaseSucceeded, "rom-a43": fwv1.TargetPhaseSucceeded}), s.Message)
	g.Expect(s.Phase).To(gomega.Equal(fwv1.TargetPhaseSucceeded), s.Message)
	g.Expect(s.ComponentsProgress).To(gomega.Equal("2/2"))
	g.Expect(s.Message).To(gomega.ContainSubstring("2 of 2 components installed (1 by an earlier agent), 0 already current or skipped"))
	st := sim.Stats()
	g.Expect([]int{st.FlashRequests, st.FlashesStarted, st.FlashesCompleted}).To(gomega.Equal([]int{2, 2, 2}),
		"flash requests, flashes started and completed: one each for the iLO and the ROM, none again")
	g.Expect(sim.StagedROM()).To(gomega.ContainSubstring("2.68"), "the ROM the followed flash staged")
}
