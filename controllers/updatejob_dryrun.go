// The dry-run plan: the agents, targets and ports a job would start, for a firewall request.

package controllers

import (
	"context"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
	"github.com/fwops/firmware-operator/internal/agentpod"
	"github.com/fwops/firmware-operator/internal/ports"
)

// plan writes, for a dry run, the agent pods the first wave would start: node, targets, slots
// and the ports each pod declares (one rule P4 session port and one rule P5 receive port per
// slot), so that a firewall request can be written before anything runs.
func (r *UpdateJobReconciler) plan(ctx context.Context, job *fwv1.UpdateJob, policy *fwv1.PortPolicy, baseline *fwv1.FirmwareBaseline,
	targets []*fwv1.UpdateTarget, tus map[string]*fwv1.TargetUpdate) error {
	nodes, err := r.eligibleNodes(ctx, policy)
	if err != nil {
		return err
	}
	s, err := summarize(job, tus, 0, r.Clock.Now())
	if err != nil {
		return err
	}
	job.Status.Counts = s.counts
	if len(nodes) == 0 {
		blocked(job, ReasonNoEligibleNodes, "dry run: no Ready, schedulable node matches the PortPolicy's agents.nodeSelector and tolerations")
		return nil
	}
	wave := min(int(job.Spec.Rollout.MaxConcurrent), len(targets))
	batch := make([]agentpod.Target, wave)
	for i := range batch {
		batch[i] = agentpod.Target{Target: targets[i], TargetUpdate: targetUpdateName(job.Name, targets[i].Name), Attempt: 1}
	}
	agents, err := r.liveAgentPods(ctx)
	if err != nil {
		return err
	}
	byName := make(map[string]*fwv1.UpdateTarget, len(targets))
	for _, t := range targets {
		byName[t.Name] = t
	}
	// The pods the real run would create for the first wave, sized, spread and built the same
	// way (startTargets), and shown as the real run shows its pods (liveAgents).
	slots := r.agentSlots(job, len(nodes))
	job.Status.Agents = nil
	for _, g := range spread(batch, nodes, agents, slots) {
		pod, err := r.newAgentPod(job, policy, baseline, g.node, g.targets, slots, agents, tus, byName, len(nodes))
		if err != nil {
			blocked(job, ReasonInvalidSpec, fmt.Sprintf("dry run: %v", err))
			return nil
		}
		// The next group may go to the same node: its ports must not be given again.
		agents = append(agents, *pod)
		declared := agentpod.DeclaredPorts(pod)
		st := fwv1.AgentStatus{Node: g.node, Slots: int32(agentpod.Slots(pod)), Ports: agentPorts(declared)}
		receive := declared.Receive()
		for j, t := range g.targets {
			st.Targets = append(st.Targets, t.Target.Name)
			// The agent hands the target of slot j the j-th receive port (runner.receiveFor).
			if via := t.Target.Spec.Type.ReceiveVia(); via != "" && j < len(receive) {
				st.Receive = append(st.Receive, fwv1.TargetReceivePort{Target: t.Target.Name, Port: int32(receive[j]), Via: via})
			}
		}
		job.Status.Agents = append(job.Status.Agents, st)
	}
	job.Status.Phase = fwv1.JobPhasePlanned
	msg := fmt.Sprintf("dry run: %d targets in waves of %d; status.agents lists the first wave's nodes, the slots and the ports of their agent pods", len(targets), wave)
	if baseline != nil {
		if err := r.writeTargetPlans(ctx, job, baseline, targets, tus); err != nil {
			return err
		}
		msg += fmt.Sprintf("; each TargetUpdate's status.components lists its plan for FirmwareBaseline %s (%s)", baseline.Name, baseline.Spec.Version)
	}
	setConditions(job, metav1.ConditionTrue, metav1.ConditionFalse, metav1.ConditionFalse, ReasonDryRun, msg)
	return nil
}

func agentPorts(a ports.Assignment) fwv1.AgentPorts {
	p := fwv1.AgentPorts{Control: int32(a.Control()), FirmwareServer: int32(a.FirmwareServer()), IPC: int32(a.IPC())}
	for _, s := range a.Sessions() {
		p.Sessions = append(p.Sessions, int32(s))
	}
	for _, s := range a.Receive() {
		p.Reverse = append(p.Reverse, int32(s))
	}
	return p
}
