package controllers

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
	"github.com/fwops/firmware-operator/internal/scheme"
)

// A claim made from a stale copy (the cache had not yet seen the agent's result) must fail
// with a conflict, never put a Succeeded target back into Downloading.
func TestClaimFromAStaleCopyDoesNotUndoTheAgentsResult(t *testing.T) {
	ctx := context.Background()
	c, tu, stale := staleTargetUpdate(t)
	// The agent reports success meanwhile.
	agentCopy := stale.DeepCopy()
	agentCopy.Status.Phase, agentCopy.Status.Message = fwv1.TargetPhaseSucceeded, "flashed and verified"
	if err := c.Status().Update(ctx, agentCopy); err != nil {
		t.Fatal(err)
	}
	r := &UpdateJobReconciler{Client: c, Clock: clocktesting.NewFakePassiveClock(time.Now())}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "job-agent-1", Namespace: "fleet"}}
	err := r.claim(ctx, stale, pod, 1)
	if !apierrors.IsConflict(err) {
		t.Fatalf("claim from a stale copy: err = %v, want a conflict", err)
	}
	got := &fwv1.TargetUpdate{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(tu), got); err != nil {
		t.Fatal(err)
	}
	if got.Status.Phase != fwv1.TargetPhaseSucceeded {
		t.Fatalf("phase = %s after a stale claim, want Succeeded", got.Status.Phase)
	}
}

// A claim refused only because the cached copy is a write behind is made on a fresh copy; one
// the agent already answered is left alone, and an agent that reported first keeps its phase
// while the attempt is counted.
func TestClaimStartedAfterAConflict(t *testing.T) {
	ctx := context.Background()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "job-agent-1", Namespace: "fleet"}, Spec: corev1.PodSpec{NodeName: "node-a"}}
	cases := []struct {
		name      string
		meanwhile func(*fwv1.TargetUpdateStatus)
		want      fwv1.TargetPhase
		wantPod   string
		attempts  int32
	}{
		{"a Pending mark the controller wrote meanwhile", func(s *fwv1.TargetUpdateStatus) {
			s.Phase, s.Message = fwv1.TargetPhasePending, "retry 1 of 2 at 2026-11-26T12:00:30Z after: the iLO did not answer"
		}, fwv1.TargetPhaseDownloading, pod.Name, 1},
		{"the agent's first report", func(s *fwv1.TargetUpdateStatus) {
			s.Phase, s.AgentPod, s.Message = fwv1.TargetPhaseFlashing, pod.Name, "flashing"
		}, fwv1.TargetPhaseFlashing, pod.Name, 1},
		{"the agent's result", func(s *fwv1.TargetUpdateStatus) {
			s.Phase, s.AgentPod = fwv1.TargetPhaseSucceeded, pod.Name
		}, fwv1.TargetPhaseSucceeded, pod.Name, 0},
		{"another pod's claim", func(s *fwv1.TargetUpdateStatus) {
			s.Phase, s.AgentPod, s.Attempts = fwv1.TargetPhaseDownloading, "job-agent-0", 1
		}, fwv1.TargetPhaseDownloading, "job-agent-0", 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fc, tu, stale := staleTargetUpdate(t)
			other := stale.DeepCopy()
			c.meanwhile(&other.Status)
			if err := fc.Status().Update(ctx, other); err != nil {
				t.Fatal(err)
			}
			r := &UpdateJobReconciler{Client: fc, APIReader: fc, Clock: clocktesting.NewFakePassiveClock(time.Now())}
			if err := r.claimStarted(ctx, stale, pod, 1); err != nil {
				t.Fatalf("claimStarted: %v", err)
			}
			got := &fwv1.TargetUpdate{}
			if err := fc.Get(ctx, client.ObjectKeyFromObject(tu), got); err != nil {
				t.Fatal(err)
			}
			if got.Status.Phase != c.want || got.Status.AgentPod != c.wantPod || got.Status.Attempts != c.attempts {
				t.Errorf("status = %s by %q, attempts %d; want %s by %q, attempts %d",
					got.Status.Phase, got.Status.AgentPod, got.Status.Attempts, c.want, c.wantPod, c.attempts)
			}
		})
	}
}

// staleTargetUpdate stores a TargetUpdate in a fake client and returns a copy of it that the
// test makes stale by writing the stored one.
func staleTargetUpdate(t *testing.T) (client.Client, *fwv1.TargetUpdate, *fwv1.TargetUpdate) {
	t.Helper()
	tu := &fwv1.TargetUpdate{
		ObjectMeta: metav1.ObjectMeta{Name: "job-ilo", Namespace: "fleet"},
		Spec:       fwv1.TargetUpdateSpec{JobName: "job", TargetName: "ilo"},
	}
	c := fake.NewClientBuilder().WithScheme(scheme.New()).WithObjects(tu).WithStatusSubresource(tu).Build()
	stale := &fwv1.TargetUpdate{}
	if err := c.Get(context.Background(), client.ObjectKeyFromObject(tu), stale); err != nil {
		t.Fatal(err)
	}
	return c, tu, stale
}
