package controllers

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/log"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
	"github.com/fwops/firmware-operator/internal/agentpod"
	"github.com/fwops/firmware-operator/internal/ports"
)

// targetComponent is the component a TargetUpdate records its version under: none for a
// baseline job, whose TargetUpdates record one per component in status.components.
func targetComponent(job *fwv1.UpdateJob) fwv1.Component {
	if job.Spec.BaselineRef != nil {
		return ""
	}
	return job.Spec.Component
}

// baseline reads the FirmwareBaseline the job's spec.baselineRef names (nil for a job with
// spec.firmware). A missing one is a condition, not an error: the baselines' watch brings the
// job back once it is created.
func (r *UpdateJobReconciler) baseline(ctx context.Context, job *fwv1.UpdateJob) (*fwv1.FirmwareBaseline, bool, error) {
	ref := job.Spec.BaselineRef
	if ref == nil {
		return nil, true, nil
	}
	b := &fwv1.FirmwareBaseline{}
	if err := r.Get(ctx, client.ObjectKey{Namespace: job.Namespace, Name: ref.Name}, b); err != nil {
		if apierrors.IsNotFound(err) {
			blocked(job, ReasonBaselineNotFound, fmt.Sprintf("FirmwareBaseline %q (spec.baselineRef.name) not found in namespace %s: "+
				"create it (firmware-operator baseline import DIR writes one from a folder of .fwpkg and .bin files) or fix the name",
				ref.Name, job.Namespace))
			return nil, false, nil
		}
		return nil, false, err
	}
	switch checked := job.Status.BaselineGeneration; {
	case checked == 0:
		job.Status.BaselineGeneration = b.Generation
	case checked != b.Generation:
		blocked(job, ReasonBaselineChanged, fmt.Sprintf("FirmwareBaseline %s changed (generation %d) after the job began rolling out generation %d: "+
			"a job never mixes two versions of a baseline; create a new UpdateJob to roll out the change", b.Name, b.Generation, checked))
		return nil, false, nil
	}
	return b, true, nil
}

// portPolicy reads the job's PortPolicy; a missing or invalid one, or one that does not allow
// the job's firmware source, is a condition, not an error: the policy's watch brings the job
// back when an administrator changes it.
func (r *UpdateJobReconciler) portPolicy(ctx context.Context, job *fwv1.UpdateJob, baseline *fwv1.FirmwareBaseline) (*fwv1.PortPolicy, bool, error) {
	policy := &fwv1.PortPolicy{}
	if err := r.Get(ctx, client.ObjectKey{Name: job.Spec.PortPolicyName}, policy); err != nil {
		if apierrors.IsNotFound(err) {
			blocked(job, ReasonPortPolicyNotFound, fmt.Sprintf("PortPolicy %q (spec.portPolicyName) not found", job.Spec.PortPolicyName))
			return nil, false, nil
		}
		return nil, false, err
	}
	if err := ports.FromSpec(policy.Spec).Validate(); err != nil {
		blocked(job, ReasonInvalidSpec, fmt.Sprintf("PortPolicy %q is invalid: %v", policy.Name, err))
		return nil, false, nil
	}
	if msg := firmwareSourceRefusal(job, baseline, policy); msg != "" {
		blocked(job, ReasonFirmwareSourceNotAllowed, msg)
		return nil, false, nil
	}
	return policy, true, nil
}

// resolveTargets returns the job's targets sorted by name. Named targets that do not exist
// hold the job: starting on a partial fleet would hide the mistake.
func (r *UpdateJobReconciler) resolveTargets(ctx context.Context, job *fwv1.UpdateJob) ([]*fwv1.UpdateTarget, bool, error) {
	var list fwv1.UpdateTargetList
	// Read only, never changed here: no copy of every target of the namespace on each pass.
	if err := r.List(ctx, &list, client.InNamespace(job.Namespace), client.UnsafeDisableDeepCopy); err != nil {
		return nil, false, err
	}
	byName := make(map[string]*fwv1.UpdateTarget, len(list.Items))
	for i := range list.Items {
		byName[list.Items[i].Name] = &list.Items[i]
	}
	chosen := map[string]*fwv1.UpdateTarget{}
	if sel := job.Spec.Targets.Selector; sel != nil {
		selector, err := metav1.LabelSelectorAsSelector(sel)
		if err != nil {
			blocked(job, ReasonInvalidSpec, fmt.Sprintf("spec.targets.selector: %v", err))
			return nil, false, nil
		}
		for name, t := range byName {
			if selector.Matches(labels.Set(t.Labels)) {
				chosen[name] = t
			}
		}
	}
	var missing []string
	for _, name := range job.Spec.Targets.Names {
		if t, ok := byName[name]; ok {
			chosen[name] = t
		} else {
			missing = append(missing, name)
		}
	}
	children := -1 // not counted: only needed when a target is missing or none is chosen
	if len(missing) > 0 || len(chosen) == 0 {
		var err error
		if missing, children, err = r.notYetChosen(ctx, job, missing); err != nil {
			return nil, false, err
		}
	}
	if len(missing) > 0 {
		blocked(job, ReasonTargetsNotFound, fmt.Sprintf("UpdateTargets not found in namespace %s (spec.targets.names): %s",
			job.Namespace, abbreviate(missing, 10)))
		return nil, false, nil
	}
	if len(chosen) == 0 && children == 0 {
		blocked(job, ReasonNoTargets, "spec.targets selects no UpdateTarget in namespace "+job.Namespace)
		return nil, false, nil
	}
	out := make([]*fwv1.UpdateTarget, 0, len(chosen))
	for _, t := range chosen {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, true, nil
}

// notYetChosen keeps the missing named targets the job has no TargetUpdate for. A named
// target deleted after the job chose it must not hold the others: its pending update is
// skipped (admit) and one already running finishes.
// children is how many TargetUpdates the job has: a job whose targets all left still has its
// pending updates to skip.
func (r *UpdateJobReconciler) notYetChosen(ctx context.Context, job *fwv1.UpdateJob, missing []string) ([]string, int, error) {
	var list fwv1.TargetUpdateList
	if err := r.List(ctx, &list, client.InNamespace(job.Namespace), client.MatchingFields{indexTargetUpdateJob: job.Name},
		client.UnsafeDisableDeepCopy); err != nil {
		return nil, 0, err
	}
	chosen := map[string]bool{}
	for i := range list.Items {
		if metav1.IsControlledBy(&list.Items[i], job) {
			chosen[list.Items[i].Spec.TargetName] = true
		}
	}
	var out []string
	for _, name := range missing {
		if !chosen[name] {
			out = append(out, name)
		}
	}
	return out, len(chosen), nil
}

func abbreviate(names []string, n int) string {
	sort.Strings(names)
	if len(names) <= n {
		return strings.Join(names, ", ")
	}
	return strings.Join(names[:n], ", ") + fmt.Sprintf(" and %d more", len(names)-n)
}

// targetUpdates lists the job's TargetUpdates by target name. They come from the cache without
// a copy (a job of 10,000 targets would copy them all on every pass): whatever changes one
// takes it with writable first.
func (r *UpdateJobReconciler) targetUpdates(ctx context.Context, job *fwv1.UpdateJob) (map[string]*fwv1.TargetUpdate, error) {
	var list fwv1.TargetUpdateList
	if err := r.List(ctx, &list, client.InNamespace(job.Namespace), client.MatchingFields{indexTargetUpdateJob: job.Name},
		client.UnsafeDisableDeepCopy); err != nil {
		return nil, err
	}
	tus := make(map[string]*fwv1.TargetUpdate, len(list.Items))
	for i := range list.Items {
		tu := &list.Items[i]
		if metav1.IsControlledBy(tu, job) {
			tus[tu.Spec.TargetName] = tu
		}
	}
	return tus, nil
}

// writable makes tu, which may share its maps and slices with the cache (targetUpdates), the
// pass's own before anything changes it, and returns a copy to diff the change against. A
// change made in place would rewrite the cache's object under every other reader, and a
// patch's response is decoded into the object's maps.
func writable(tu *fwv1.TargetUpdate) (before *fwv1.TargetUpdate) {
	*tu = *tu.DeepCopy()
	return tu.DeepCopy()
}

// unmade lists the targets that have no TargetUpdate yet, in the targets' order (by name).
func unmade(targets []*fwv1.UpdateTarget, tus map[string]*fwv1.TargetUpdate) []*fwv1.UpdateTarget {
	var out []*fwv1.UpdateTarget
	for _, t := range targets {
		if _, ok := tus[t.Name]; !ok {
			out = append(out, t)
		}
	}
	return out
}

func (r *UpdateJobReconciler) createsPerPass() int {
	if r.MaxCreatesPerPass > 0 {
		return r.MaxCreatesPerPass
	}
	return 500
}

// makeTargetUpdates keeps one TargetUpdate per target, owned by the job: it creates those of
// missing (the targets unmade found), at most MaxCreatesPerPass in one pass. left is how many
// of missing it did not make, more whether a pass must follow.
//
// A TargetUpdate is created with no status, and a target waiting for a free slot keeps none:
// an empty phase is pending (isPending), the job's status counts it (status.counts.pending,
// the Progressing message), and marking each one Pending cost a write per target (issue 13).
// The controller writes Pending only where the wait has a reason of its own: a retry's
// backoff (scheduleRetries, with retryAfter).
func (r *UpdateJobReconciler) makeTargetUpdates(ctx context.Context, job *fwv1.UpdateJob, tus map[string]*fwv1.TargetUpdate,
	missing []*fwv1.UpdateTarget) (left int, more bool, err error) {
	n := min(r.createsPerPass(), len(missing))
	if err := r.createTargetUpdates(ctx, job, missing[:n], tus); err != nil {
		return 0, false, err
	}
	return len(missing) - n, n < len(missing), nil
}

// createTargetUpdates creates the TargetUpdates of targets and adds them to tus. Several are
// created at a time: one by one, a first wave of 200 took seconds on its own (issue 13).
func (r *UpdateJobReconciler) createTargetUpdates(ctx context.Context, job *fwv1.UpdateJob, targets []*fwv1.UpdateTarget,
	tus map[string]*fwv1.TargetUpdate) error {
	made := make([]*fwv1.TargetUpdate, len(targets))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(createsAtOnce)
	for i, t := range targets {
		g.Go(func() error {
			tu, err := r.createTargetUpdate(gctx, job, t)
			made[i] = tu
			return err
		})
	}
	err := g.Wait()
	for i, tu := range made {
		if tu != nil {
			tus[targets[i].Name] = tu
		}
	}
	return err
}

// createsAtOnce bounds the TargetUpdate creations in flight; the manager's client-side rate
// limit (--kube-api-qps) still paces them.
const createsAtOnce = 16

func (r *UpdateJobReconciler) createTargetUpdate(ctx context.Context, job *fwv1.UpdateJob, t *fwv1.UpdateTarget) (*fwv1.TargetUpdate, error) {
	tu := &fwv1.TargetUpdate{
		ObjectMeta: metav1.ObjectMeta{
			Name:      targetUpdateName(job.Name, t.Name),
			Namespace: job.Namespace,
			Labels:    map[string]string{fwv1.LabelJob: labelValue(job.Name), fwv1.LabelTarget: labelValue(t.Name)},
		},
		Spec: fwv1.TargetUpdateSpec{JobName: job.Name, TargetName: t.Name, TargetType: t.Spec.Type, Component: targetComponent(job)},
	}
	if err := controllerutil.SetControllerReference(job, tu, r.Scheme); err != nil {
		return nil, err
	}
	if err := r.Create(ctx, tu); err != nil {
		if !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("creating TargetUpdate %s: %w", tu.Name, err)
		}
		// Made by an earlier pass that the cache has not shown yet.
		if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(tu), tu); err != nil {
			return nil, err
		}
		if !metav1.IsControlledBy(tu, job) {
			return nil, blockedBy(ReasonNameCollision, fmt.Errorf("TargetUpdate %s, the name this job gives target %s, "+
				"exists and belongs to another owner: delete or rename it", tu.Name, t.Name))
		}
	}
	return tu, nil
}

// agentPods lists the pods this job owns. They are read, and deleted, never changed: they
// come from the cache without a copy.
func (r *UpdateJobReconciler) agentPods(ctx context.Context, job *fwv1.UpdateJob) ([]corev1.Pod, error) {
	var list corev1.PodList
	if err := r.List(ctx, &list, client.InNamespace(job.Namespace), client.MatchingFields{indexPodOwner: job.Name},
		client.UnsafeDisableDeepCopy); err != nil {
		return nil, err
	}
	out := list.Items[:0]
	for _, p := range list.Items {
		if metav1.IsControlledBy(&p, job) {
			out = append(out, p)
		}
	}
	return out, nil
}

func podFinished(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
}

// syncInFlight reconciles the TargetUpdates with the pods that carry them: a target an agent
// pod claims but whose claim was never recorded (the controller stopped in between) is
// recorded now, and a target whose agent ended before it finished fails with the reason.
//
// It also enforces spec.rollout.timeout itself: an agent on a node that died never reports,
// and its pod stays Running (or Terminating) for ever, holding a slot of maxConcurrent. It
// returns when the next in-flight target reaches that deadline.
//
// behind says which targets this controller claimed already, although the cache does not show
// it yet (claimsMade): they are not claimed again.
func (r *UpdateJobReconciler) syncInFlight(ctx context.Context, job *fwv1.UpdateJob, tus map[string]*fwv1.TargetUpdate, pods []corev1.Pod,
	behind func(*fwv1.TargetUpdate) bool) (time.Time, error) {
	var nextDeadline time.Time
	now := r.Clock.Now()
	byTU := make(map[string]*fwv1.TargetUpdate, len(tus))
	for _, tu := range tus {
		byTU[tu.Name] = tu
	}
	podByName := make(map[string]*corev1.Pod, len(pods))
	for i := range pods {
		p := &pods[i]
		podByName[p.Name] = p
		if podFinished(p) {
			continue
		}
		for _, claim := range podClaims(p) {
			tu := byTU[claim.name]
			if tu == nil || tu.Status.Phase.Finished() || tu.Status.AgentPod != "" || tu.Status.Attempts != claim.attempt-1 || behind(tu) {
				continue
			}
			if err := r.claim(ctx, tu, p, claim.attempt); err != nil {
				return time.Time{}, err
			}
		}
	}
	for _, tu := range tus {
		if tu.Status.AgentPod == "" || tu.Status.Phase.Finished() || isPending(tu) {
			continue
		}
		pod, err := r.podOf(ctx, job, tu.Status.AgentPod, podByName)
		if err != nil {
			return time.Time{}, err
		}
		deadline := agentDeadline(job, tu, r.timeoutGrace())
		var why string
		switch {
		case pod == nil:
			why = fmt.Sprintf("agent pod %s is gone", tu.Status.AgentPod)
		case podFinished(pod):
			why = fmt.Sprintf("agent pod %s ended (%s)%s before the target finished", pod.Name, pod.Status.Phase, podReason(pod))
		case unschedulableFor(pod, r.Clock.Now()) > jobTimeout(job):
			// The active deadline only runs once a pod starts; one that never lands (a host
			// port held on the node, a taint) would hold its slot for ever.
			why = fmt.Sprintf("agent pod %s could not be scheduled within spec.rollout.timeout (%s): %s",
				pod.Name, jobTimeout(job), schedulingMessage(pod))
			if err := r.Delete(ctx, pod); client.IgnoreNotFound(err) != nil {
				return time.Time{}, fmt.Errorf("deleting unschedulable agent pod %s: %w", pod.Name, err)
			}
		case !deadline.IsZero() && !now.Before(deadline):
			why = fmt.Sprintf("no result from agent pod %s on node %s within spec.rollout.timeout (%s) and %s more: "+
				"the node may be down (%s) or the agent cut off from the API server; the target may still be flashing, "+
				"so check it before any retry", pod.Name, tu.Status.Node, jobTimeout(job), r.timeoutGrace(), r.nodeState(ctx, tu.Status.Node))
		default:
			if !deadline.IsZero() && (nextDeadline.IsZero() || deadline.Before(nextDeadline)) {
				nextDeadline = deadline
			}
			continue
		}
		// The agent may have written its result after the cache last saw the target.
		fresh := &fwv1.TargetUpdate{}
		if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(tu), fresh); err != nil {
			return time.Time{}, client.IgnoreNotFound(err)
		}
		if fresh.Status.Phase.Finished() || fresh.Status.AgentPod != tu.Status.AgentPod {
			*tu = *fresh
			continue
		}
		if err := r.finish(ctx, fresh, fwv1.TargetPhaseFailed, ReasonAgentFailed, why); err != nil {
			return time.Time{}, err
		}
		*tu = *fresh
	}
	return nextDeadline, nil
}

// DefaultTimeoutGrace is how long past spec.rollout.timeout the controller waits for the
// agent's own timeout report, which says more, before it fails the target itself.
const DefaultTimeoutGrace = time.Minute

func (r *UpdateJobReconciler) timeoutGrace() time.Duration {
	if r.TimeoutGrace > 0 {
		return r.TimeoutGrace
	}
	return DefaultTimeoutGrace
}

// agentDeadline is when the controller stops waiting for the agent's report on tu.
func agentDeadline(job *fwv1.UpdateJob, tu *fwv1.TargetUpdate, grace time.Duration) time.Time {
	if tu.Status.StartTime == nil {
		return time.Time{}
	}
	return tu.Status.StartTime.Add(jobTimeout(job) + grace)
}

// nodeState describes a node's Ready condition for a message.
func (r *UpdateJobReconciler) nodeState(ctx context.Context, name string) string {
	n := &corev1.Node{}
	if err := r.Get(ctx, client.ObjectKey{Name: name}, n); err != nil {
		return fmt.Sprintf("node %s: %v", name, client.IgnoreNotFound(err))
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return fmt.Sprintf("node %s is Ready=%s since %s", name, c.Status, c.LastTransitionTime.UTC().Format(time.RFC3339))
		}
	}
	return "node " + name + " reports no Ready condition"
}

func (r *UpdateJobReconciler) podOf(ctx context.Context, job *fwv1.UpdateJob, name string, cached map[string]*corev1.Pod) (*corev1.Pod, error) {
	if p := cached[name]; p != nil {
		return p, nil
	}
	p := &corev1.Pod{}
	if err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: job.Namespace, Name: name}, p); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, err
	}
	return p, nil
}

func podReason(p *corev1.Pod) string {
	var parts []string
	if p.Status.Reason != "" {
		parts = append(parts, p.Status.Reason)
	}
	if p.Status.Message != "" {
		parts = append(parts, p.Status.Message)
	}
	for _, cs := range p.Status.ContainerStatuses {
		if t := cs.State.Terminated; t != nil {
			parts = append(parts, fmt.Sprintf("exit code %d", t.ExitCode))
			if t.Message != "" {
				parts = append(parts, t.Message)
			}
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return ": " + strings.Join(parts, ", ")
}

// claim records that pod runs attempt number attempt of tu.
func (r *UpdateJobReconciler) claim(ctx context.Context, tu *fwv1.TargetUpdate, pod *corev1.Pod, attempt int32) error {
	before := writable(tu)
	now := metav1.NewTime(r.Clock.Now())
	tu.Status.Phase = fwv1.TargetPhaseDownloading
	tu.Status.AgentPod = pod.Name
	tu.Status.Node = nodeOf(pod)
	tu.Status.Attempts = attempt
	tu.Status.Percent = 0
	tu.Status.StartTime = &now
	tu.Status.CompletionTime = nil
	tu.Status.RetryAfter = nil
	tu.Status.Message = fmt.Sprintf("agent pod %s on node %s is fetching the firmware", pod.Name, tu.Status.Node)
	meta.RemoveStatusCondition(&tu.Status.Conditions, fwv1.ConditionReady)
	if err := r.patchTU(ctx, tu, before); err != nil {
		return err
	}
	r.recordClaim(tu, attempt)
	return nil
}

// claimStarted records the claim of a pod just created. The cached copy is often a write
// behind (a retry's Pending mark this controller wrote, or the new agent's first report), and the
// optimistic lock then refuses it: re-read, and claim only a target nobody has taken since.
// Anything else is left as the API server has it; syncInFlight reconciles it next pass.
func (r *UpdateJobReconciler) claimStarted(ctx context.Context, tu *fwv1.TargetUpdate, pod *corev1.Pod, attempt int32) error {
	err := r.claim(ctx, tu, pod, attempt)
	if !apierrors.IsConflict(err) {
		return err
	}
	fresh := &fwv1.TargetUpdate{}
	if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(tu), fresh); err != nil {
		return fmt.Errorf("re-reading TargetUpdate %s after a conflict: %w", tu.Name, err)
	}
	*tu = *fresh
	switch {
	case fresh.Status.Phase.Finished() || fresh.Status.Attempts != attempt-1:
		return nil
	case fresh.Status.AgentPod == "":
		return r.claim(ctx, tu, pod, attempt)
	case fresh.Status.AgentPod == pod.Name:
		// The agent reported first: count the attempt, and leave its phase and message alone.
		before := writable(tu)
		now := metav1.NewTime(r.Clock.Now())
		tu.Status.Attempts = attempt
		tu.Status.Node = nodeOf(pod)
		tu.Status.StartTime = &now
		tu.Status.CompletionTime, tu.Status.RetryAfter = nil, nil
		if err := r.patchTU(ctx, tu, before); err != nil {
			return err
		}
		r.recordClaim(tu, attempt)
	}
	return nil
}

// finish ends a target from the controller's side (the agents end the others).
func (r *UpdateJobReconciler) finish(ctx context.Context, tu *fwv1.TargetUpdate, phase fwv1.TargetPhase, reason, msg string) error {
	before := writable(tu)
	now := metav1.NewTime(r.Clock.Now())
	tu.Status.Phase = phase
	tu.Status.Message = msg
	tu.Status.CompletionTime = &now
	status := metav1.ConditionTrue
	if phase == fwv1.TargetPhaseFailed {
		status = metav1.ConditionFalse
	}
	meta.SetStatusCondition(&tu.Status.Conditions, metav1.Condition{
		Type: fwv1.ConditionReady, Status: status, Reason: reason, Message: msg, ObservedGeneration: tu.Generation,
	})
	return r.patchTU(ctx, tu, before)
}

// patchTU writes the controller's change to a TargetUpdate only if nobody wrote it since
// before was read: the agent writes the same status, and a change made on a stale copy (a
// re-claim of a target the agent has just finished) must fail with a conflict and be redone
// on a fresh read, never undo the agent's result.
func (r *UpdateJobReconciler) patchTU(ctx context.Context, tu, before *fwv1.TargetUpdate) error {
	if err := r.Status().Patch(ctx, tu, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("updating TargetUpdate %s: %w", tu.Name, err)
	}
	return nil
}

type podClaim struct {
	name    string
	attempt int32
	slot    int
}

// podClaims reads the targets assigned to the pod from its annotation
// (agentpod.AnnotationAssignments); an annotation that cannot be read claims nothing.
func podClaims(p *corev1.Pod) []podClaim {
	ts, err := agentpod.Assignments(p)
	if err != nil {
		return nil
	}
	out := make([]podClaim, 0, len(ts))
	for _, t := range ts {
		out = append(out, podClaim{name: t.TargetUpdate, attempt: max(t.Attempt, 1), slot: t.Slot})
	}
	return out
}

// scheduleRetries puts failed targets that have retries left back in line after their
// backoff, and returns when the next one becomes startable.
func (r *UpdateJobReconciler) scheduleRetries(ctx context.Context, job *fwv1.UpdateJob, tus map[string]*fwv1.TargetUpdate) (time.Time, error) {
	retries := job.Spec.Rollout.Retries
	now := r.Clock.Now()
	var next time.Time
	for _, tu := range tus {
		switch {
		case tu.Status.Phase == fwv1.TargetPhaseFailed && tu.Status.Attempts <= retries.Limit:
			base := 30 * time.Second
			if retries.Backoff != nil {
				base = retries.Backoff.Duration
			}
			// Counted from when the controller sees the failure, on its own clock: the
			// agent's clock may differ from it.
			at := metav1.NewTime(now.Add(backoff(base, int(tu.Status.Attempts))))
			before := writable(tu)
			tu.Status.Phase = fwv1.TargetPhasePending
			tu.Status.AgentPod = ""
			tu.Status.Percent = 0
			forgetReportedPorts(&tu.Status)
			tu.Status.RetryAfter = &at
			tu.Status.Message = fmt.Sprintf("retry %d of %d at %s after: %s", tu.Status.Attempts, retries.Limit,
				at.UTC().Format(time.RFC3339), tu.Status.Message)
			meta.RemoveStatusCondition(&tu.Status.Conditions, fwv1.ConditionReady)
			if err := r.patchTU(ctx, tu, before); err != nil {
				return time.Time{}, err
			}
			log.FromContext(ctx).Info("target scheduled for retry", "target", tu.Spec.TargetName, "at", at.Time)
		case isPending(tu) && tu.Status.RetryAfter != nil && tu.Status.RetryAfter.After(now):
		default:
			continue
		}
		if at := tu.Status.RetryAfter.Time; next.IsZero() || at.Before(next) {
			next = at
		}
	}
	return next, nil
}

// isPending says whether tu waits to start: with no phase (made, waiting for a free slot of
// spec.rollout.maxConcurrent or for its UpdateTarget to be checked) or Pending (a retry
// waiting for its backoff). Every decision treats the two alike.
func isPending(tu *fwv1.TargetUpdate) bool {
	return tu.Status.Phase == "" || tu.Status.Phase == fwv1.TargetPhasePending
}

// unschedulableFor is how long the scheduler has been refusing the pod; 0 when it is not.
func unschedulableFor(p *corev1.Pod, now time.Time) time.Duration {
	if p.Status.Phase != corev1.PodPending {
		return 0
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
			return now.Sub(c.LastTransitionTime.Time)
		}
	}
	return 0
}

func jobTimeout(job *fwv1.UpdateJob) time.Duration {
	if t := job.Spec.Rollout.Timeout; t != nil && t.Duration > 0 {
		return t.Duration
	}
	return 30 * time.Minute
}

func schedulingMessage(p *corev1.Pod) string {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Message != "" {
			return c.Message
		}
	}
	return "the scheduler gave no reason"
}
