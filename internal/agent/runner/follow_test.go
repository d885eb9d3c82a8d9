package runner

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
	"github.com/fwops/firmware-operator/internal/agent/config"
	"github.com/fwops/firmware-operator/internal/agent/driver"
)

// followPod is the agent's pod with its assignments, behind a client that lists and watches
// it by name as the API server does.
func followPod(t *testing.T, assigned []config.Target) (client.WithWatch, *corev1.Pod) {
	t.Helper()
	s := runtime.NewScheme()
	if err := corev1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: testNS, Name: "agent-pod",
		Annotations: map[string]string{config.AnnotationAssignments: config.EncodeAssignments(assigned)}}}
	c := fake.NewClientBuilder().WithScheme(s).WithObjects(pod).
		WithIndex(&corev1.Pod{}, "metadata.name", func(o client.Object) []string { return []string{o.GetName()} }).Build()
	return c, pod
}

func assign(t *testing.T, c client.Client, assigned []config.Target) {
	t.Helper()
	pod := &corev1.Pod{}
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: testNS, Name: "agent-pod"}, pod); err != nil {
		t.Fatal(err)
	}
	pod.Annotations[config.AnnotationAssignments] = config.EncodeAssignments(assigned)
	if err := c.Update(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
}

// claim records, as the controller does after it annotates the pod, that pod runs attempt
// 1 of each target: Downloading, on the pod's node.
func (f *fixture) claim(t *testing.T, pod string, targets ...config.Target) {
	t.Helper()
	for _, tg := range targets {
		tu := f.tu(t, tg.Name)
		before := tu.DeepCopy()
		tu.Status.AgentPod, tu.Status.Attempts = pod, max(tg.Attempt, 1)
		tu.Status.Phase, tu.Status.Node = fwv1.TargetPhaseDownloading, f.cfg.Node
		tu.Status.Message = "agent pod " + pod + " on node " + f.cfg.Node + " is fetching the firmware"
		if err := f.c.Status().Patch(context.Background(), tu, client.MergeFrom(before)); err != nil {
			t.Fatal(err)
		}
	}
}

// follow runs the fixture's agent in follow mode on the pod behind pc until cancel; done
// gives Run's result.
func (f *fixture) follow(t *testing.T, pc client.WithWatch) (cancel func(), done <-chan error) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	out := make(chan error, 1)
	go func() {
		out <- Run(ctx, f.cfg, Deps{Client: f.c, Drivers: f.fake.Registry(), MinWriteInterval: time.Hour,
			Assignments: PodAssignments{Client: pc, Namespace: testNS, Pod: "agent-pod"}})
	}()
	return cancel, out
}

// followClaimed runs the fixture's agent in follow mode with every target assigned on its pod
// and claimed for it: the agent starts them all.
func (f *fixture) followClaimed(t *testing.T) (cancel func(), done <-chan error) {
	t.Helper()
	f.cfg.Follow = true
	assigned := f.cfg.Targets
	f.cfg.Targets = nil
	pc, _ := followPod(t, assigned)
	f.claim(t, "agent-pod", assigned...)
	return f.follow(t, pc)
}

// waitPhase waits, on the condition and not on a clock, until target reaches phase.
func (f *fixture) waitPhase(t *testing.T, target string, phase fwv1.TargetPhase) {
	t.Helper()
	gomega.NewWithT(t).Eventually(func(g gomega.Gomega) fwv1.TargetPhase {
		tu := &fwv1.TargetUpdate{}
		g.Expect(f.c.Get(context.Background(), client.ObjectKey{Namespace: testNS, Name: testJob + "-" + target}, tu)).To(gomega.Succeed())
		return tu.Status.Phase
	}).WithTimeout(time.Minute).Should(gomega.Equal(phase), "the phase of target %s", target)
}

// A follow agent takes the targets the controller assigns on its pod after it started, each
// once, in the slot the controller chose and from that slot's session port (rule P4).
func TestFollowTakesAssignedTargets(t *testing.T) {
	f := newFixture(t, 3, driver.FakeBehavior{Version: "1.0", Delay: 20 * time.Millisecond})
	all := f.cfg.Targets
	f.cfg.Follow = true
	f.cfg.Ports.Sessions = f.cfg.Ports.Sessions[:2] // two slots, three targets
	all[2].Slot = 0
	f.cfg.Targets = nil // a pod's first targets come on its annotation too
	pc, _ := followPod(t, all[:1])
	f.claim(t, "agent-pod", all[0])

	cancel, done := f.follow(t, pc)
	f.waitPhase(t, "t0", fwv1.TargetPhaseSucceeded)
	if n := f.fake.Flashes("t1"); n != 0 {
		t.Fatalf("t1 flashed %d times before it was assigned", n)
	}
	assign(t, pc, all)
	f.claim(t, "agent-pod", all[1:]...) // after the annotation, as the controller does
	f.waitPhase(t, "t1", fwv1.TargetPhaseSucceeded)
	f.waitPhase(t, "t2", fwv1.TargetPhaseSucceeded)
	// The same assignments again (the pod changed otherwise) start nothing twice.
	assign(t, pc, all)
	select {
	case err := <-done:
		t.Fatalf("a follow agent ended on its own: %v", err)
	default:
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run after every target finished: %v, want nil", err)
	}
	for _, tg := range all {
		if n := f.fake.Flashes(tg.Name); n != 1 {
			t.Errorf("%s: flashed %d times, want once", tg.Name, n)
		}
		want := f.cfg.Ports.Sessions[tg.Slot]
		if got := f.fake.LocalPorts(tg.Name); len(got) != 1 || got[0] != want {
			t.Errorf("%s (slot %d): dialled from %v, want the slot's session port %d", tg.Name, tg.Slot, got, want)
		}
		if sp := f.tu(t, tg.Name).Status.SessionPort; int(sp) != want {
			t.Errorf("%s: status sessionPort %d, want %d", tg.Name, sp, want)
		}
	}
}

// A follow agent stopped while a target runs says which it left unfinished; the targets that
// failed are the controller's to retry, not the agent's exit code.
func TestFollowSummaryNamesOnlyUnfinishedTargets(t *testing.T) {
	f := newFixture(t, 2, driver.FakeBehavior{Version: "1.0", Delay: 20 * time.Millisecond})
	f.fake.Set("t0", driver.FakeBehavior{Version: "1.0", UpdateErr: errors.New("boom")})
	f.fake.Set("t1", driver.FakeBehavior{Version: "1.0", Delay: time.Hour})
	cancel, done := f.followClaimed(t)
	f.waitPhase(t, "t0", fwv1.TargetPhaseFailed)
	f.waitPhase(t, "t1", fwv1.TargetPhaseFlashing)
	cancel()
	err := <-done
	if err == nil || err.Error() != "1 of 2 targets were left unfinished: t1 (see their TargetUpdate status)" {
		t.Fatalf("Run: %v, want an error naming t1 alone", err)
	}
}

// An assignment whose TargetUpdate another pod claimed (the controller assigned it on a stale
// copy, and lost the claim) is left to that pod: it may be flashing the target.
func TestFollowLeavesATargetClaimedByAnotherPod(t *testing.T) {
	f := newFixture(t, 2, driver.FakeBehavior{Version: "1.0", Delay: 20 * time.Millisecond})
	f.cfg.Follow = true
	assigned := f.cfg.Targets
	f.cfg.Targets = nil
	pc, _ := followPod(t, assigned)
	f.claim(t, "agent-pod", assigned[0])
	f.claim(t, "another-agent-pod", assigned[1])
	cancel, done := f.follow(t, pc)
	f.waitPhase(t, "t0", fwv1.TargetPhaseSucceeded)
	cancel()
	<-done
	if n := f.fake.Flashes("t1"); n != 0 {
		t.Errorf("t1, claimed by another pod, flashed %d times by this one", n)
	}
	if s, w := f.tu(t, "t1").Status, f.statusWrites(testJob+"-t1"); s.AgentPod != "another-agent-pod" || len(w) != 1 {
		t.Errorf("t1's status was written after the other pod's claim (%d writes in all): %+v", len(w), s)
	}
}
