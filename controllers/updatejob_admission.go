// Admission: which of a job's targets may start now (the failure budget, the gate of
// windows and pauses), and the targets decided without an agent.

package controllers

import (
	"context"
	"fmt"
	"sort"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
	"github.com/fwops/firmware-operator/internal/fwversion"
	"github.com/fwops/firmware-operator/internal/rollout"
)

// summary counts a job's targets in one pass.
type summary struct {
	counts    fwv1.TargetCounts
	allowed   int
	startable []*fwv1.TargetUpdate // pending and past any retry backoff, by name
	started   bool                 // some target has started at least once
	// retrying counts pending targets whose last attempt failed: until a retry succeeds they
	// count against spec.rollout.maxFailures, or a bad image would reach fresh targets while
	// the failed ones wait out their backoff.
	retrying int32
	// unmade counts the targets whose TargetUpdate is not made yet; they count as pending.
	unmade int32
}

// budgetFailures is what spec.rollout.maxFailures is measured against: targets that failed
// for good and those whose last attempt failed and that wait for a retry.
func (s summary) budgetFailures() int { return int(s.counts.Failed + s.retrying) }

// retriesOnly keeps the targets that have been tried before: once the failure budget is
// spent, only they may start (a retry reaches no machine the rollout has not reached).
func retriesOnly(tus []*fwv1.TargetUpdate) []*fwv1.TargetUpdate {
	var out []*fwv1.TargetUpdate
	for _, tu := range tus {
		if tu.Status.Attempts > 0 {
			out = append(out, tu)
		}
	}
	return out
}

// summarize counts the TargetUpdates and, as pending, the unmade targets that have none yet.
func summarize(job *fwv1.UpdateJob, tus map[string]*fwv1.TargetUpdate, unmade int, now time.Time) (summary, error) {
	s := summary{unmade: int32(unmade)}
	s.counts.Total, s.counts.Pending = int32(unmade), int32(unmade)
	for _, tu := range tus {
		s.counts.Total++
		if tu.Status.Attempts > 0 || tu.Status.Phase.Finished() {
			s.started = true
		}
		switch p := tu.Status.Phase; {
		case p == fwv1.TargetPhaseSucceeded:
			s.counts.Succeeded++
		case p == fwv1.TargetPhaseFailed:
			s.counts.Failed++
		case p == fwv1.TargetPhaseSkipped:
			s.counts.Skipped++
		case p.InProgress():
			s.counts.InProgress++
		default:
			s.counts.Pending++
			if tu.Status.Attempts > 0 {
				s.retrying++
			}
			if tu.Status.RetryAfter == nil || !tu.Status.RetryAfter.After(now) {
				s.startable = append(s.startable, tu)
			}
		}
	}
	sortByName(s.startable)
	var err error
	s.allowed, err = rollout.AllowedFailures(job.Spec.Rollout.MaxFailures, int(s.counts.Total))
	return s, err
}

func sortByName(tus []*fwv1.TargetUpdate) {
	sort.Slice(tus, func(i, j int) bool { return tus[i].Name < tus[j].Name })
}

// startGate says why no new target may start now ("" when they may), and when to look again.
func (r *UpdateJobReconciler) startGate(job *fwv1.UpdateJob, s summary) (string, time.Time, error) {
	if job.Spec.Rollout.Paused {
		return ReasonPaused, time.Time{}, nil
	}
	open, next, err := rollout.Window(job.Spec.Rollout.Window, r.Clock.Now())
	if err != nil {
		return ReasonInvalidSpec, time.Time{}, err
	}
	if !open {
		return ReasonWaitingForWindow, next, nil
	}
	if rollout.BudgetExceeded(s.budgetFailures(), s.allowed) {
		return ReasonFailureBudgetExceeded, time.Time{}, nil
	}
	return "", time.Time{}, nil
}

// admit decides, without an agent, the targets that need none: gone, unusable credentials,
// or already at the wanted version.
func (r *UpdateJobReconciler) admit(ctx context.Context, job *fwv1.UpdateJob, t *fwv1.UpdateTarget, tu *fwv1.TargetUpdate, s *summary) (bool, error) {
	fail := func(reason, msg string) (bool, error) {
		before := writable(tu)
		tu.Status.Attempts++
		patchErr := r.patchTU(ctx, tu, before)
		if patchErr != nil {
			return false, patchErr
		}
		s.counts.Pending--
		s.counts.Failed++
		return false, r.finish(ctx, tu, fwv1.TargetPhaseFailed, reason, msg)
	}
	if t == nil {
		// The target left the job after its TargetUpdate was made: nothing was tried on it, so
		// it is skipped, not failed, and does not count against spec.rollout.maxFailures.
		s.counts.Pending--
		s.counts.Skipped++
		reason, msg, err := r.whyNotSelected(ctx, job, tu.Spec.TargetName)
		if err != nil {
			return false, err
		}
		return false, r.finish(ctx, tu, fwv1.TargetPhaseSkipped, reason, msg)
	}
	ready := meta.FindStatusCondition(t.Status.Conditions, fwv1.ConditionReady)
	if ready == nil || ready.ObservedGeneration != t.Generation {
		return false, nil // the UpdateTarget controller has not checked it yet
	}
	if ready.Status != metav1.ConditionTrue {
		return fail(ready.Reason, fmt.Sprintf("UpdateTarget %s is not usable: %s", t.Name, ready.Message))
	}
	// A baseline job's agent decides per component what is current (its plan).
	if fw := job.Spec.Firmware; fw != nil && fw.Version != "" && !job.Spec.Rollout.Force {
		want := fw.Version
		for _, v := range t.Status.FirmwareVersions {
			if v.Component == job.Spec.Component && fwversion.Same(v.Version, want) {
				s.counts.Pending--
				s.counts.Skipped++
				return false, r.finish(ctx, tu, fwv1.TargetPhaseSkipped, ReasonAlreadyAtVersion,
					fmt.Sprintf("already at version %s (spec.rollout.force flashes anyway)", want))
			}
		}
	}
	return true, nil
}

// whyNotSelected says why a target the job had chosen is no longer among its targets.
func (r *UpdateJobReconciler) whyNotSelected(ctx context.Context, job *fwv1.UpdateJob, name string) (string, string, error) {
	err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: job.Namespace, Name: name}, &fwv1.UpdateTarget{})
	switch {
	case apierrors.IsNotFound(err):
		return ReasonTargetRemoved, fmt.Sprintf("UpdateTarget %s was deleted before its update started: not flashed", name), nil
	case err != nil:
		return "", "", err
	}
	return ReasonTargetDeselected, fmt.Sprintf("UpdateTarget %s no longer matches spec.targets (its labels changed) before its update started: not flashed", name), nil
}

func backoff(base time.Duration, attempt int) time.Duration { return rollout.Backoff(base, attempt) }
