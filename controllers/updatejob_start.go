// Starting targets: the step of a pass that fills the free slots of maxConcurrent. Admission
// (updatejob_admission.go) says which targets may start, the job's running pods take them first
// (updatejob_agents.go), and the rest go to new pods placed over the eligible nodes
// (updatejob_placement.go), run under the job's agent access (updatejob_access.go). The
// dry-run plan (updatejob_dryrun.go) shows the pods this step would create.

package controllers

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
	"github.com/fwops/firmware-operator/internal/agentpod"
)

// startTargets fills the free slots of maxConcurrent with startable targets: first in the
// free slots of the job's running agent pods (one per node, as a rule), then in new pods,
// spread over the eligible nodes.
func (r *UpdateJobReconciler) startTargets(ctx context.Context, job *fwv1.UpdateJob, policy *fwv1.PortPolicy, baseline *fwv1.FirmwareBaseline,
	targets []*fwv1.UpdateTarget, tus map[string]*fwv1.TargetUpdate, pods []corev1.Pod, s *summary) error {
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
	eligible := make(map[string]bool, len(nodes))
	for _, n := range nodes {
		eligible[n] = true
	}
	byTU := make(map[string]*fwv1.TargetUpdate, len(tus))
	for _, tu := range tus {
		byTU[tu.Name] = tu
	}
	started := func(n int) {
		s.counts.InProgress += int32(n)
		s.counts.Pending -= int32(n)
		s.started = true
	}

	// The running pods first, the one with the most free slots first.
	rest, err := r.assignToPods(ctx, job, policy, batch, agentLoads(pods, tus), tus, byTU, eligible, started)
	if err != nil || len(rest) == 0 {
		return err
	}
	// Then the job's pods the cache has not seen yet (made by the last passes), read from
	// the API server with the node's other agents, which the new pods' ports must avoid.
	live, err := r.liveAgentPods(ctx)
	if err != nil {
		return err
	}
	cached := make(map[string]bool, len(pods))
	for i := range pods {
		cached[pods[i].Name] = true
	}
	var unseen []corev1.Pod
	for i := range live {
		if metav1.IsControlledBy(&live[i], job) && !cached[live[i].Name] {
			unseen = append(unseen, live[i])
		}
	}
	if rest, err = r.assignToPods(ctx, job, policy, rest, agentLoads(unseen, tus), tus, byTU, eligible, started); err != nil || len(rest) == 0 {
		return err
	}

	// New pods for the rest, one per node and as many slots as the node's share of
	// maxConcurrent.
	perPod := r.agentSlots(job, len(nodes))
	for _, group := range spread(rest, nodes, live, perPod) {
		pod, err := r.startAgent(ctx, job, policy, baseline, group.node, group.targets, perPod, live, tus, byName, len(nodes))
		if err != nil {
			return err
		}
		// The next group may go to the same node: its ports must not be given again.
		live = append(live, *pod)
		started(len(group.targets))
	}
	return nil
}
