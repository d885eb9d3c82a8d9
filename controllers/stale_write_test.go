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
	tu := &fwv1.TargetUpdate{
		ObjectMeta: metav1.ObjectMeta{Name: "job-ilo", Namespace: "fleet"},
		Spec:       fwv1.TargetUpdateSpec{JobName: "job", TargetName: "ilo"},
	}
	c := fake.NewClientBuilder().WithScheme(scheme.New()).WithObjects(tu).WithStatusSubresource(tu).Build()
	stale := &fwv1.TargetUpdate{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(tu), stale); err != nil {
		t.Fatal(err)
	}
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
