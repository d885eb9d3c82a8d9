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
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
	"github.com/fwops/firmware-operator/internal/agentpod"
	"github.com/fwops/firmware-operator/internal/fwversion"
	"github.com/fwops/firmware-operator/internal/ports"
	"github.com/fwops/firmware-operator/internal/rollout"
)

const (
	annotationClaims = agentpod.AnnotationTargets
	// LabelManagedBy marks the objects this operator creates besides TargetUpdates and pods,
	// so that the manager caches only those.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	ManagedBy      = "firmware-operator"
)

func nodeOf(p *corev1.Pod) string { return agentpod.Node(p) }

func backoff(base time.Duration, attempt int) time.Duration { return rollout.Backoff(base, attempt) }

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

func summarize(job *fwv1.UpdateJob, tus map[string]*fwv1.TargetUpdate, now time.Time) (summary, error) {
	var s summary
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
	sort.Slice(s.startable, func(i, j int) bool { return s.startable[i].Name < s.startable[j].Name })
	var err error
	s.allowed, err = rollout.AllowedFailures(job.Spec.Rollout.MaxFailures, int(s.counts.Total))
	return s, err
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

func (r *UpdateJobReconciler) maxPerAgent() int {
	if r.MaxTargetsPerAgent > 0 {
		return r.MaxTargetsPerAgent
	}
	return 100
}

// admit decides, without an agent, the targets that need none: gone, unusable credentials,
// or already at the wanted version.
func (r *UpdateJobReconciler) admit(ctx context.Context, job *fwv1.UpdateJob, t *fwv1.UpdateTarget, tu *fwv1.TargetUpdate, s *summary) (bool, error) {
	fail := func(reason, msg string) (bool, error) {
		before := tu.DeepCopy()
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

// startAgent creates one agent pod and records each target's claim. The pod comes first: its
// name derives from the claims, so a controller that stops in between finds it again and
// records the claims then (syncInFlight).
func (r *UpdateJobReconciler) startAgent(ctx context.Context, job *fwv1.UpdateJob, policy *fwv1.PortPolicy, baseline *fwv1.FirmwareBaseline, node string,
	targets []agentpod.Target, agents []corev1.Pod, tus map[string]*fwv1.TargetUpdate) (*corev1.Pod, error) {
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
	assignment, err := ports.AssignForNode(ports.FromSpec(policy.Spec), ports.TakenFromPods(onNode), len(targets), seeded(name))
	if err != nil {
		return nil, fmt.Errorf("assigning ports on node %s: %w", node, err)
	}
	pod := agentpod.Build(agentpod.Input{
		Job: job, Policy: policy, Baseline: baseline, Node: node, Image: r.AgentImage, ServiceAccount: agentAccessName(job),
		Targets: targets, Ports: assignment,
	})
	if err := controllerutil.SetControllerReference(job, pod, r.Scheme); err != nil {
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

// plan writes, for a dry run, the agents the first wave would start: node, targets and the
// ports each would open, so that a firewall request can be written before anything runs.
func (r *UpdateJobReconciler) plan(ctx context.Context, job *fwv1.UpdateJob, policy *fwv1.PortPolicy, baseline *fwv1.FirmwareBaseline,
	targets []*fwv1.UpdateTarget, tus map[string]*fwv1.TargetUpdate) error {
	nodes, err := r.eligibleNodes(ctx, policy)
	if err != nil {
		return err
	}
	s, err := summarize(job, tus, r.Clock.Now())
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
	job.Status.Agents = nil
	taken := map[string]map[int]bool{}
	for _, g := range spread(batch, nodes, agents, r.maxPerAgent()) {
		if taken[g.node] == nil {
			var onNode []corev1.Pod
			for i := range agents {
				if nodeOf(&agents[i]) == g.node {
					onNode = append(onNode, agents[i])
				}
			}
			taken[g.node] = ports.TakenFromPods(onNode)
		}
		a, err := ports.AssignForNode(ports.FromSpec(policy.Spec), taken[g.node], len(g.targets), nil)
		if err != nil {
			blocked(job, ReasonInvalidSpec, fmt.Sprintf("dry run: assigning ports on node %s: %v", g.node, err))
			return nil
		}
		for _, p := range a.Ports() {
			taken[g.node][p] = true
		}
		st := fwv1.AgentStatus{Node: g.node, Ports: agentPorts(a)}
		receive := a.Receive()
		for j, t := range g.targets {
			st.Targets = append(st.Targets, t.Target.Name)
			// The agent hands its j-th target the j-th receive port (runner.receiveFor).
			if via := t.Target.Spec.Type.ReceiveVia(); via != "" && j < len(receive) {
				st.Receive = append(st.Receive, fwv1.TargetReceivePort{Target: t.Target.Name, Port: int32(receive[j]), Via: via})
			}
		}
		job.Status.Agents = append(job.Status.Agents, st)
	}
	job.Status.Phase = fwv1.JobPhasePlanned
	msg := fmt.Sprintf("dry run: %d targets in waves of %d; status.agents lists the first wave's nodes and ports", len(targets), wave)
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

// ensureAgentAccess gives the job's agents a ServiceAccount whose Role patches the status of
// TargetUpdates and nothing else: no Secret (credentials reach agents as volumes), and no get,
// list or watch, which admission would never see. Agents read by patching
// (runner.ReadTargetUpdate). The Role names no TargetUpdate, so its size does not grow with the
// job (it listed every name: about 1 MB at 10,000 targets). Which TargetUpdates an agent may
// read and write is the API server's ValidatingAdmissionPolicy firmware-operator-agent-writes
// (config/rbac/agent_write_policy.yaml): those whose status.agentPod is the pod its token was
// issued for.
func (r *UpdateJobReconciler) ensureAgentAccess(ctx context.Context, job *fwv1.UpdateJob) error {
	name := agentAccessName(job)
	owned := func(obj client.Object) error {
		obj.SetLabels(map[string]string{LabelManagedBy: ManagedBy, fwv1.LabelJob: labelValue(job.Name)})
		return controllerutil.SetControllerReference(job, obj, r.Scheme)
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: job.Namespace}}
	if _, err := controllerutil.CreateOrUpdate(ctx, r.Client, sa, func() error { return owned(sa) }); err != nil {
		return agentAccessError("ServiceAccount", err)
	}
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: job.Namespace}}
	if _, err := controllerutil.CreateOrUpdate(ctx, r.Client, role, func() error {
		role.Rules = []rbacv1.PolicyRule{
			{APIGroups: []string{fwv1.GroupVersion.Group}, Resources: []string{"targetupdates/status"}, Verbs: []string{"patch"}},
		}
		if ref := job.Spec.BaselineRef; ref != nil {
			// The agent reads the components of its job's baseline from the API (they are
			// neither secret nor per target), and that one object only.
			role.Rules = append(role.Rules, rbacv1.PolicyRule{APIGroups: []string{fwv1.GroupVersion.Group},
				Resources: []string{"firmwarebaselines"}, ResourceNames: []string{ref.Name}, Verbs: []string{"get"}})
		}
		return owned(role)
	}); err != nil {
		return agentAccessError("Role", err)
	}
	rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: job.Namespace}}
	if _, err := controllerutil.CreateOrUpdate(ctx, r.Client, rb, func() error {
		rb.RoleRef = rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name}
		rb.Subjects = []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: name, Namespace: job.Namespace}}
		return owned(rb)
	}); err != nil {
		return agentAccessError("RoleBinding", err)
	}
	return nil
}
