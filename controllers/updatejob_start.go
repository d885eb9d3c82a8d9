package controllers

import (
	"context"
	"time"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
	"github.com/fwops/firmware-operator/internal/agentpod"
	"github.com/fwops/firmware-operator/internal/rollout"
)

const (
	// LabelManagedBy marks the objects this operator creates besides TargetUpdates and pods,
	// so that the manager caches only those.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	ManagedBy      = "firmware-operator"
)

func backoff(base time.Duration, attempt int) time.Duration { return rollout.Backoff(base, attempt) }

// startTargets fills the free slots of maxConcurrent with startable targets, spread over the
// eligible nodes, one agent pod per node and batch.
func (r *UpdateJobReconciler) startTargets(ctx context.Context, job *fwv1.UpdateJob, policy *fwv1.PortPolicy, baseline *fwv1.FirmwareBaseline,
	targets []*fwv1.UpdateTarget, tus map[string]*fwv1.TargetUpdate, s *summary) error {
	slots := int(job.Spec.Rollout.MaxConcurrent) - int(s.counts.InProgress)
	if slots <= 0 || len(s.startable) == 0 {
		return nil
	}
	byName := make(map[string]*fwv1.UpdateTarget, len(targets))
	for _, t := range targets {
		byName[t.Name] = t
	}
	var batch []agentpod.Target
	for _, tu := range s.startable {
		if len(batch) == slots {
			break
		}
		t := byName[tu.Spec.TargetName]
		if ok, err := r.admit(ctx, job, t, tu, s); err != nil {
			return err
		} else if ok {
			batch = append(batch, agentpod.Target{Target: t, TargetUpdate: tu.Name, Attempt: tu.Status.Attempts + 1})
		}
	}
	if len(batch) == 0 {
		return nil
	}
	nodes, err := r.eligibleNodes(ctx, policy)
	if err != nil {
		return err
	}
	if len(nodes) == 0 {
		blocked(job, ReasonNoEligibleNodes, "no Ready, schedulable node matches the PortPolicy's agents.nodeSelector and tolerations")
		return nil
	}
	agents, err := r.liveAgentPods(ctx)
	if err != nil {
		return err
	}
	for _, group := range spread(batch, nodes, agents, r.maxPerAgent()) {
		pod, err := r.startAgent(ctx, job, policy, baseline, group.node, group.targets, agents, tus)
		if err != nil {
			return err
		}
		// The next group may go to the same node: its ports must not be given again.
		agents = append(agents, *pod)
		s.counts.InProgress += int32(len(group.targets))
		s.counts.Pending -= int32(len(group.targets))
		s.started = true
	}
	return nil
}
