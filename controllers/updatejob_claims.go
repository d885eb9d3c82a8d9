package controllers

import (
	"sync"

	"k8s.io/apimachinery/pkg/types"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
)

// claimsMade are the claims a job's passes made that the cache may not show yet: target name →
// the attempt claimed. The cache runs behind the controller's own writes, and a pass that
// reads a target it claimed a moment ago as still pending would count that target's slot of
// spec.rollout.maxConcurrent as free and start one target too many (the pods' slots do not
// bound it: they are rounded up per node), or claim it again and fail on the conflict. The
// ReplicaSet controller's "expectations" solve the same problem.
type claimsMade struct {
	mu       sync.Mutex
	attempts map[string]int32
}

func (r *UpdateJobReconciler) claimsOf(job types.NamespacedName) *claimsMade {
	v, _ := r.claims.LoadOrStore(job, &claimsMade{attempts: map[string]int32{}})
	return v.(*claimsMade)
}

// recordClaim remembers that tu was claimed for attempt, once the API server took the claim.
func (r *UpdateJobReconciler) recordClaim(tu *fwv1.TargetUpdate, attempt int32) {
	c := r.claimsOf(types.NamespacedName{Namespace: tu.Namespace, Name: tu.Spec.JobName})
	c.mu.Lock()
	defer c.mu.Unlock()
	c.attempts[tu.Spec.TargetName] = attempt
}

// behind returns, for the job's TargetUpdates as the cache shows them (by target name), a
// function that says whether one of them is behind a claim this controller made, and forgets
// the claims the cache shows (or whose TargetUpdate is gone).
func (r *UpdateJobReconciler) behind(job types.NamespacedName, tus map[string]*fwv1.TargetUpdate) func(*fwv1.TargetUpdate) bool {
	c := r.claimsOf(job)
	c.mu.Lock()
	defer c.mu.Unlock()
	pending := make(map[string]int32, len(c.attempts))
	for target, attempt := range c.attempts {
		tu := tus[target]
		if tu == nil || tu.Status.Attempts >= attempt {
			delete(c.attempts, target)
			continue
		}
		pending[target] = attempt
	}
	return func(tu *fwv1.TargetUpdate) bool {
		attempt, ok := pending[tu.Spec.TargetName]
		return ok && tu.Status.Attempts < attempt
	}
}

// countClaimsBehind counts the startable targets the cache shows pending although this
// controller claimed them as in progress: they hold their slots.
func (s *summary) countClaimsBehind(behind func(*fwv1.TargetUpdate) bool) {
	kept := s.startable[:0]
	for _, tu := range s.startable {
		if !behind(tu) {
			kept = append(kept, tu)
			continue
		}
		s.counts.Pending--
		s.counts.InProgress++
		s.started = true
		if tu.Status.Attempts > 0 {
			s.retrying--
		}
	}
	s.startable = kept
}
