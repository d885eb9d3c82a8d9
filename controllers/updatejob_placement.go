// Placement: the nodes that may run agents, how a batch of targets is dealt out over them,
// and the agent pod that carries each share.

package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
	"github.com/fwops/firmware-operator/internal/agentpod"
	"github.com/fwops/firmware-operator/internal/ports"
)

func nodeOf(p *corev1.Pod) string { return agentpod.Node(p) }

func (r *UpdateJobReconciler) maxPerAgent() int {
	if r.MaxTargetsPerAgent > 0 {
		return r.MaxTargetsPerAgent
	}
	return 100
}

type nodeGroup struct {
	node    string
	targets []agentpod.Target
}

// spread deals the batch out over the nodes, least loaded first, at most max targets a pod.
func spread(batch []agentpod.Target, nodes []string, agents []corev1.Pod, maxPer int) []nodeGroup {
	load := map[string]int{}
	for i := range agents {
		load[nodeOf(&agents[i])]++
	}
	order := append([]string(nil), nodes...)
	sort.SliceStable(order, func(i, j int) bool {
		if load[order[i]] != load[order[j]] {
			return load[order[i]] < load[order[j]]
		}
		return order[i] < order[j]
	})
	per := (len(batch) + len(order) - 1) / len(order)
	per = min(max(per, 1), maxPer)
	var groups []nodeGroup
	for i := 0; len(batch) > 0; i++ {
		n := min(per, len(batch))
		groups = append(groups, nodeGroup{node: order[i%len(order)], targets: batch[:n]})
		batch = batch[n:]
	}
	return groups
}

// agentSlots is how many targets a new agent pod runs at once: its node's share of
// maxConcurrent over the eligible nodes, at least one, at most maxPerAgent (docs/design.md,
// "Agents"). The real run and the dry-run plan size their pods with it.
func (r *UpdateJobReconciler) agentSlots(job *fwv1.UpdateJob, nodes int) int {
	nodes = max(nodes, 1)
	return min(max((int(job.Spec.Rollout.MaxConcurrent)+nodes-1)/nodes, 1), r.maxPerAgent())
}

// startAgent creates one agent pod of slots slots for its first targets (newAgentPod), and
// records each target's claim. The pod comes first: its name derives from the first claims, so
// a controller that stops in between finds it again and records the claims then
// (syncInFlight).
func (r *UpdateJobReconciler) startAgent(ctx context.Context, job *fwv1.UpdateJob, policy *fwv1.PortPolicy, baseline *fwv1.FirmwareBaseline, node string,
	targets []agentpod.Target, slots int, agents []corev1.Pod, tus map[string]*fwv1.TargetUpdate, byName map[string]*fwv1.UpdateTarget, nodes int) (*corev1.Pod, error) {
	pod, err := r.newAgentPod(job, policy, baseline, node, targets, slots, agents, tus, byName, nodes)
	if err != nil {
		return nil, err
	}
	if err := controllerutil.SetControllerReference(job, pod, r.Scheme); err != nil {
		return nil, err
	}
	if err := r.grantPodRead(ctx, job, pod.Name, agents); err != nil {
		return nil, err
	}
	if err := r.Create(ctx, pod); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, agentPodError(pod.Name, err)
	}
	for _, t := range targets {
		if err := r.claimStarted(ctx, tus[t.Target.Name], pod, t.Attempt); err != nil {
			return nil, err
		}
	}
	return pod, nil
}

// newAgentPod builds, without creating it, the agent pod of slots slots (at least its first
// targets) on node: its ports avoid those the node's other agent pods declare, rule P2's
// random choice is seeded from the pod's name, so the same pod is built twice the same way.
// It mounts the Secrets of the targets still to start, up to MaxSecretsPerAgent, and lives
// long enough for its node's share of them: the startup grace and one spec.rollout.timeout
// per wave. The dry-run plan shows the pods it builds.
func (r *UpdateJobReconciler) newAgentPod(job *fwv1.UpdateJob, policy *fwv1.PortPolicy, baseline *fwv1.FirmwareBaseline, node string,
	targets []agentpod.Target, slots int, agents []corev1.Pod, tus map[string]*fwv1.TargetUpdate, byName map[string]*fwv1.UpdateTarget, nodes int) (*corev1.Pod, error) {
	var onNode []corev1.Pod
	for i := range agents {
		if nodeOf(&agents[i]) == node {
			onNode = append(onNode, agents[i])
		}
	}
	claims := make([]string, len(targets))
	for i, t := range targets {
		claims[i] = fmt.Sprintf("%s:%d", t.TargetUpdate, t.Attempt)
	}
	name := agentpod.Name(job, claims)
	slots = max(slots, len(targets))
	assignment, err := ports.AssignForNode(ports.FromSpec(policy.Spec), ports.TakenFromPods(onNode), slots, seeded(name))
	if err != nil {
		return nil, fmt.Errorf("assigning ports on node %s: %w", node, err)
	}
	secrets, waiting := expectedSecrets(tus, byName)
	share := (waiting + nodes - 1) / max(nodes, 1)
	waves := max((share+slots-1)/slots, 1)
	return agentpod.Build(agentpod.Input{
		Job: job, Policy: policy, Baseline: baseline, Node: node, Image: r.AgentImage, ServiceAccount: agentAccessName(job),
		Targets: targets, Ports: assignment, Secrets: secrets,
		Lifetime: agentpod.StartupGrace + time.Duration(waves)*jobTimeout(job),
	}), nil
}

// expectedSecrets are the Secrets of the targets still to start, in the order of the targets'
// names, at most MaxSecretsPerAgent; waiting is how many targets that is.
func expectedSecrets(tus map[string]*fwv1.TargetUpdate, byName map[string]*fwv1.UpdateTarget) (secrets []string, waiting int) {
	names := make([]string, 0, len(tus))
	for name, tu := range tus {
		if isPending(tu) || tu.Status.Phase == fwv1.TargetPhaseFailed {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	seen := map[string]bool{}
	for _, name := range names {
		t := byName[name]
		if t == nil {
			continue
		}
		waiting++
		for _, s := range agentpod.TargetSecrets(t) {
			if !seen[s] && len(secrets) < MaxSecretsPerAgent {
				seen[s] = true
				secrets = append(secrets, s)
			}
		}
	}
	return secrets, waiting
}

// seeded gives P2's random choice a seed derived from the pod, so the same pod is built the
// same way twice.
func seeded(name string) ports.Rand {
	sum := sha256.Sum256([]byte(name))
	return rand.New(rand.NewPCG(binary.LittleEndian.Uint64(sum[:8]), binary.LittleEndian.Uint64(sum[8:16])))
}

// eligibleNodes are Ready, schedulable nodes that match the policy's selector and whose
// NoSchedule/NoExecute taints the policy tolerates, by name.
func (r *UpdateJobReconciler) eligibleNodes(ctx context.Context, policy *fwv1.PortPolicy) ([]string, error) {
	var list corev1.NodeList
	if err := r.List(ctx, &list, client.MatchingLabelsSelector{Selector: labels.SelectorFromSet(policy.Spec.Agents.NodeSelector)}); err != nil {
		return nil, err
	}
	var out []string
	for i := range list.Items {
		n := &list.Items[i]
		if n.Spec.Unschedulable || !nodeReady(n) || !tolerates(policy.Spec.Agents.Tolerations, n.Spec.Taints) {
			continue
		}
		out = append(out, n.Name)
	}
	sort.Strings(out)
	return out, nil
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func tolerates(tolerations []corev1.Toleration, taints []corev1.Taint) bool {
	for i := range taints {
		taint := &taints[i]
		if taint.Effect == corev1.TaintEffectPreferNoSchedule {
			continue
		}
		ok := false
		for j := range tolerations {
			if tolerations[j].ToleratesTaint(logr.Discard(), taint, false) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// liveAgentPods are the unfinished agent pods of every job, for port accounting per node.
func (r *UpdateJobReconciler) liveAgentPods(ctx context.Context) ([]corev1.Pod, error) {
	var list corev1.PodList
	// Around the cache: the pod started by the previous reconcile may not be in the cache
	// yet, and its ports would be assigned again on its node (ports.md, "Across the
	// cluster"): the scheduler would then hold the new pod Pending, or an agent step aside.
	if err := r.APIReader.List(ctx, &list, client.MatchingLabels{agentpod.LabelApp: agentpod.AppName}); err != nil {
		return nil, err
	}
	out := list.Items[:0]
	for _, p := range list.Items {
		if !podFinished(&p) {
			out = append(out, p)
		}
	}
	return out, nil
}
