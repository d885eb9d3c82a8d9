package controllers

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
)

// A target this controller claimed, which the cache still shows pending, holds its slot of
// maxConcurrent: it is counted in progress and not started again, until the cache shows the
// claim, and then forgotten.
func TestClaimsBehindTheCache(t *testing.T) {
	job := &fwv1.UpdateJob{ObjectMeta: metav1.ObjectMeta{Namespace: "fleet", Name: "job"}}
	job.Spec.Rollout.MaxConcurrent = 2
	key := types.NamespacedName{Namespace: "fleet", Name: "job"}
	tu := func(target string, s fwv1.TargetUpdateStatus) *fwv1.TargetUpdate {
		return &fwv1.TargetUpdate{ObjectMeta: metav1.ObjectMeta{Namespace: "fleet", Name: "job-" + target},
			Spec: fwv1.TargetUpdateSpec{JobName: "job", TargetName: target}, Status: s}
	}
	r := &UpdateJobReconciler{}
	claimed := tu("a", fwv1.TargetUpdateStatus{})
	r.recordClaim(claimed, 1)
	retried := tu("b", fwv1.TargetUpdateStatus{Phase: fwv1.TargetPhasePending, Attempts: 1})
	r.recordClaim(retried, 2)
	cache := map[string]*fwv1.TargetUpdate{
		"a": claimed, // the claim of attempt 1 not seen yet
		"b": retried, // the retry's claim (attempt 2) not seen yet
		"c": tu("c", fwv1.TargetUpdateStatus{}),
	}
	s, err := summarize(job, cache, 0, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	s.countClaimsBehind(r.behind(key, cache))
	if s.counts.InProgress != 2 || s.counts.Pending != 1 || s.retrying != 0 || !s.started {
		t.Errorf("counts %+v, retrying %d, started %v; want 2 in progress, 1 pending, none retrying, started", s.counts, s.retrying, s.started)
	}
	if len(s.startable) != 1 || s.startable[0].Spec.TargetName != "c" {
		t.Errorf("startable %v, want only c", s.startable)
	}

	// The cache shows a's claim (and its result) and no longer has b: both are forgotten.
	cache = map[string]*fwv1.TargetUpdate{
		"a": tu("a", fwv1.TargetUpdateStatus{Phase: fwv1.TargetPhaseSucceeded, Attempts: 1, AgentPod: "p"}),
		"c": cache["c"],
	}
	r.behind(key, cache)
	if n := len(r.claimsOf(key).attempts); n != 0 {
		t.Errorf("%d claims remembered after the cache showed them, want 0", n)
	}
	// a's claim forgotten: a copy as stale as the first one no longer holds a slot.
	if r.behind(key, map[string]*fwv1.TargetUpdate{"a": claimed})(claimed) {
		t.Error("a claim the cache had shown still counts")
	}
}

// The next target goes to a slot no assignment used since the pod's annotation was written:
// the agent may still be closing the session of the one that just ended there (rule P4).
func TestFreeSlotPrefersAnUnusedOne(t *testing.T) {
	cases := []struct {
		name        string
		busy, ended []bool
		want        int
	}{
		{"an unused slot after a just ended one", []bool{true, false, false}, []bool{false, true, false}, 2},
		{"only a just ended slot", []bool{true, false, true}, []bool{false, true, false}, 1},
		{"the lowest unused slot", []bool{false, false}, []bool{false, false}, 0},
		{"none free", []bool{true, true}, []bool{false, false}, -1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l := &agentLoad{busy: c.busy, ended: c.ended}
			if got := l.freeSlot(); got != c.want {
				t.Errorf("freeSlot = %d, want %d", got, c.want)
			}
		})
	}
}
