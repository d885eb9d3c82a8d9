// Agents that live for the job: one agent pod per job and node, with a fixed number of slots,
// takes the job's targets as the controller assigns them on the pod's annotation
// (agentpod.AnnotationAssignments), and is deleted once it is finished or idle. A rollout makes
// O(nodes) pods, not O(targets) (docs/design.md, "Agents").

package controllers

import (
	"context"
	"fmt"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
	"github.com/fwops/firmware-operator/internal/agent/config"
	"github.com/fwops/firmware-operator/internal/agentpod"
)

// +kubebuilder:rbac:groups="",resources=pods,verbs=patch

// MaxSecretsPerAgent bounds the Secrets a new agent pod mounts for the targets expected on
// it: a fleet whose targets each have their own Secret gets more pods, not one pod with
// thousands of volumes.
const MaxSecretsPerAgent = 64

// agentLoad is one running agent pod of the job: its slots, which are busy, the Secrets it
// mounts and when its active deadline ends.
type agentLoad struct {
	pod      *corev1.Pod
	node     string
	busy     []bool
	ended    []bool // free slots whose last assignment ended since the annotation was written
	secrets  map[string]bool
	assigned []config.Target
	ends     time.Time // zero: not started yet, the deadline has not begun
	added    []config.Target
}

// assignmentLive says whether an assignment on pod still holds its slot: its TargetUpdate
// waits for the claim (the controller annotates first, claims second) or runs this attempt on
// this pod.
func assignmentLive(tu *fwv1.TargetUpdate, pod string, a config.Target) bool {
	if tu == nil {
		return false
	}
	attempt := max(a.Attempt, 1)
	switch tu.Status.Attempts {
	case attempt - 1:
		return isPending(tu) && tu.Status.AgentPod == ""
	case attempt:
		return tu.Status.AgentPod == pod && !tu.Status.Phase.Finished() && !isPending(tu)
	}
	return false
}

// agentLoads are the job's agent pods that may take targets, with their busy slots.
func agentLoads(pods []corev1.Pod, tus map[string]*fwv1.TargetUpdate) []*agentLoad {
	byTU := make(map[string]*fwv1.TargetUpdate, len(tus))
	for _, tu := range tus {
		byTU[tu.Name] = tu
	}
	var out []*agentLoad
	for i := range pods {
		p := &pods[i]
		if podFinished(p) || p.DeletionTimestamp != nil {
			continue
		}
		assigned, err := agentpod.Assignments(p)
		if err != nil {
			continue // a pod whose annotation cannot be read takes nothing more
		}
		n := agentpod.Slots(p)
		l := &agentLoad{pod: p, node: nodeOf(p), busy: make([]bool, n), ended: make([]bool, n), secrets: agentpod.MountedSecrets(p), assigned: assigned}
		for _, a := range assigned {
			if a.Slot < 0 || a.Slot >= n {
				continue
			}
			if assignmentLive(byTU[a.TargetUpdate], p.Name, a) {
				l.busy[a.Slot] = true
			} else {
				l.ended[a.Slot] = true
			}
		}
		if d := p.Spec.ActiveDeadlineSeconds; d != nil && p.Status.StartTime != nil {
			l.ends = p.Status.StartTime.Add(time.Duration(*d) * time.Second)
		}
		out = append(out, l)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].pod.Name < out[j].pod.Name })
	return out
}

// freeSlot is the slot the next target goes to: one that no assignment used since the
// annotation was written, else any free one. The agent may still be closing the session of a
// target that just ended (its last report is written before the logout) from that slot's
// session port (rule P4); a target given that slot then starts in another free slot of the
// agent's, whose port the controller did not assign it.
func (l *agentLoad) freeSlot() int {
	first := -1
	for i, b := range l.busy {
		if b {
			continue
		}
		if !l.ended[i] {
			return i
		}
		if first < 0 {
			first = i
		}
	}
	return first
}

func (l *agentLoad) free() int {
	n := 0
	for _, b := range l.busy {
		if !b {
			n++
		}
	}
	return n
}

// accepts says whether the pod can take target t now: it runs on an eligible node, has a
// free slot, mounts the target's Secrets, and its active deadline leaves the target the job's
// timeout and the grace after it.
func (r *UpdateJobReconciler) accepts(l *agentLoad, t *fwv1.UpdateTarget, job *fwv1.UpdateJob, eligible map[string]bool) bool {
	if !eligible[l.node] || l.freeSlot() < 0 {
		return false
	}
	if !l.ends.IsZero() && l.ends.Sub(r.Clock.Now()) < jobTimeout(job)+r.timeoutGrace() {
		return false
	}
	for _, s := range agentpod.TargetSecrets(t) {
		if !l.secrets[s] {
			return false
		}
	}
	return true
}

// place puts target t, attempt a, in a free slot of the pod.
func (l *agentLoad) place(t agentpod.Target, policy *fwv1.PortPolicy) {
	slot := l.freeSlot()
	l.busy[slot] = true
	l.added = append(l.added, agentpod.AgentTarget(t, policy, slot))
}

// assignToRunning adds the pod's new assignments to its annotation, with an optimistic lock:
// a pod changed since it was read (another pass assigned to it) refuses the patch, and
// nothing is assigned on a stale copy. The annotation keeps only the assignments that still
// hold a slot, so it stays as small as the pod's slots. Then each target is claimed.
func (r *UpdateJobReconciler) assignToRunning(ctx context.Context, l *agentLoad, tus map[string]*fwv1.TargetUpdate, byName map[string]*fwv1.TargetUpdate) (bool, error) {
	if len(l.added) == 0 {
		return true, nil
	}
	keep := make([]config.Target, 0, len(l.assigned)+len(l.added))
	for _, a := range l.assigned {
		if assignmentLive(byName[a.TargetUpdate], l.pod.Name, a) {
			keep = append(keep, a)
		}
	}
	keep = append(keep, l.added...)
	// The pod may be the cache's own object (read without a copy): change a copy.
	before, pod := l.pod, l.pod.DeepCopy()
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	pod.Annotations[agentpod.AnnotationAssignments] = config.EncodeAssignments(keep)
	if err := r.Patch(ctx, pod, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})); err != nil {
		if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
			// Seen on the next pass, with the pod's current assignments.
			log.FromContext(ctx).V(1).Info("agent pod changed since it was read: assigning on the next pass", "pod", l.pod.Name)
			return false, nil
		}
		return false, agentPodError(l.pod.Name, err)
	}
	l.pod = pod
	for _, a := range l.added {
		tu := byName[a.TargetUpdate]
		if err := r.claimStarted(ctx, tu, l.pod, a.Attempt); err != nil {
			return false, err
		}
	}
	return true, nil
}

// assignToPods places each target of batch in the pod of loads that accepts it with the most
// free slots, assigns them there, and returns the targets no pod took.
func (r *UpdateJobReconciler) assignToPods(ctx context.Context, job *fwv1.UpdateJob, policy *fwv1.PortPolicy, batch []agentpod.Target, loads []*agentLoad,
	tus, byTU map[string]*fwv1.TargetUpdate, eligible map[string]bool, started func(int)) ([]agentpod.Target, error) {
	var rest []agentpod.Target
	for _, t := range batch {
		var best *agentLoad
		for _, l := range loads {
			if r.accepts(l, t.Target, job, eligible) && (best == nil || l.free() > best.free()) {
				best = l
			}
		}
		if best == nil {
			rest = append(rest, t)
			continue
		}
		best.place(t, policy)
	}
	for _, l := range loads {
		ok, err := r.assignToRunning(ctx, l, tus, byTU)
		if err != nil {
			return nil, err
		}
		if ok {
			started(len(l.added))
		}
	}
	return rest, nil
}

// retireAgents deletes the job's agent pods that are finished, and the idle ones when no
// target is left to start: a finished pod counts against the cluster's terminated-pod
// garbage collection, and an idle one holds its node's ports. The deletion is conditioned on
// the pod's UID and resourceVersion, so that a pod assigned a target since it was read stays.
// It runs after syncInFlight, which has failed the targets of a pod that ended.
func (r *UpdateJobReconciler) retireAgents(ctx context.Context, pods []corev1.Pod, tus map[string]*fwv1.TargetUpdate, s summary) error {
	byTU := make(map[string]*fwv1.TargetUpdate, len(tus))
	for _, tu := range tus {
		byTU[tu.Name] = tu
	}
	for i := range pods {
		p := &pods[i]
		if p.DeletionTimestamp != nil {
			continue
		}
		idle := true
		for _, c := range podClaims(p) {
			tu := byTU[c.name]
			if tu != nil && !tu.Status.Phase.Finished() && tu.Status.AgentPod == p.Name {
				idle = false // running, or waiting for syncInFlight to tell why its pod ended
				break
			}
			if assignmentLive(tu, p.Name, config.Target{TargetUpdate: c.name, Attempt: c.attempt}) {
				idle = false
				break
			}
		}
		if !idle || (!podFinished(p) && s.counts.Pending > 0) {
			continue
		}
		uid, rv := p.UID, p.ResourceVersion
		err := r.Delete(ctx, p, client.Preconditions{UID: &uid, ResourceVersion: &rv})
		switch {
		case err == nil:
			log.FromContext(ctx).Info("agent pod retired", "pod", p.Name, "node", nodeOf(p), "phase", p.Status.Phase)
		case apierrors.IsNotFound(err), apierrors.IsConflict(err):
			// Gone already, or changed since read: seen again on the next pass.
		default:
			return fmt.Errorf("deleting agent pod %s: %w", p.Name, err)
		}
	}
	return nil
}
