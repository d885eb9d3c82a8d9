package controllers

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
)

// UpdateJobReconciler rolls an UpdateJob out: it resolves the targets, keeps one TargetUpdate
// per target, and starts agent pods on eligible nodes at the pace the job allows.
type UpdateJobReconciler struct {
	client.Client
	// APIReader reads around the cache, where a stale read could fail a target wrongly.
	APIReader client.Reader
	Scheme    *runtime.Scheme
	Recorder  recorder.EventRecorder
	// Clock is injected so that tests control the maintenance window and backoff.
	Clock clock.PassiveClock
	// AgentImage is the image of agent pods (this same binary).
	AgentImage string
	// MaxTargetsPerAgent bounds one agent pod's batch (default 100).
	MaxTargetsPerAgent int
	// MaxCreatesPerPass bounds the TargetUpdates created in one pass, so that a job over
	// 10,000 targets shows progress while its children are made (default 500).
	MaxCreatesPerPass int
	// TimeoutGrace is how long past spec.rollout.timeout the controller waits for an agent's
	// report before failing the target itself (default DefaultTimeoutGrace).
	TimeoutGrace time.Duration
	// StatusInterval is the least time between two status writes of one job that change only
	// its progress (default DefaultStatusInterval); see progressOnly.
	StatusInterval time.Duration

	// statusWritten holds when each job's status was last written (types.NamespacedName →
	// time.Time), for StatusInterval.
	statusWritten sync.Map
	// claims holds each job's claims that the cache may not show yet
	// (types.NamespacedName → *claimsMade).
	claims sync.Map
}

// +kubebuilder:rbac:groups=firmware.fwops.io,resources=updatejobs,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=firmware.fwops.io,resources=updatejobs/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=firmware.fwops.io,resources=updatejobs/finalizers,verbs=update
// +kubebuilder:rbac:groups=firmware.fwops.io,resources=targetupdates,verbs=get;list;watch;create;update;patch;delete;deletecollection
// +kubebuilder:rbac:groups=firmware.fwops.io,resources=targetupdates/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=firmware.fwops.io,resources=updatetargets,verbs=get;list;watch
// +kubebuilder:rbac:groups=firmware.fwops.io,resources=portpolicies,verbs=get;list;watch
// +kubebuilder:rbac:groups=firmware.fwops.io,resources=firmwarebaselines,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch;create;delete
// +kubebuilder:rbac:groups="",resources=nodes,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=serviceaccounts,verbs=get;list;watch;create;delete
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=roles;rolebindings,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile follows Cluster API's shape: get, finalizer, a deferred status patch that records
// observedGeneration only after a successful pass, then small phase functions.
func (r *UpdateJobReconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	job := &fwv1.UpdateJob{}
	if err := r.Get(ctx, req.NamespacedName, job); err != nil {
		if apierrors.IsNotFound(err) {
			r.statusWritten.Delete(req.NamespacedName)
			r.claims.Delete(req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !job.DeletionTimestamp.IsZero() {
		r.statusWritten.Delete(req.NamespacedName)
		r.claims.Delete(req.NamespacedName)
		return ctrl.Result{}, r.reconcileDelete(ctx, job)
	}
	if controllerutil.AddFinalizer(job, JobFinalizer) {
		if err := r.Update(ctx, job); err != nil {
			return ctrl.Result{}, err
		}
	}

	before := job.DeepCopy()
	defer func() {
		if retErr == nil {
			job.Status.ObservedGeneration = job.Generation
		} else {
			showReconcileError(job, retErr)
		}
		setStalled(job)
		r.emitTransitionEvents(before, job)
		// Most passes change nothing the status shows (an agent moved a target from one
		// in-progress phase to the next): those write nothing (issue 13).
		if equality.Semantic.DeepEqual(before.Status, job.Status) {
			return
		}
		// A change of progress only waits for the interval: the next pass writes what has
		// accumulated by then, and nothing else remembers it.
		if wait := r.statusWait(req.NamespacedName, before, job); retErr == nil && wait > 0 {
			if result.RequeueAfter == 0 || wait < result.RequeueAfter {
				result.RequeueAfter = wait
			}
			return
		}
		if err := r.Status().Patch(ctx, job, client.MergeFrom(before)); err != nil {
			if !apierrors.IsNotFound(err) {
				retErr = errors.Join(retErr, fmt.Errorf("patching status: %w", err))
			}
			return
		}
		r.statusWritten.Store(req.NamespacedName, time.Now())
	}()
	return r.reconcileRollout(ctx, job)
}

// reconcileRollout runs the phases in order; each may stop the pass with a condition.
func (r *UpdateJobReconciler) reconcileRollout(ctx context.Context, job *fwv1.UpdateJob) (ctrl.Result, error) {
	baseline, ok, err := r.baseline(ctx, job)
	if err != nil || !ok {
		return ctrl.Result{}, err
	}
	policy, ok, err := r.portPolicy(ctx, job, baseline)
	if err != nil || !ok {
		return ctrl.Result{}, err
	}
	targets, ok, err := r.resolveTargets(ctx, job)
	if err != nil || !ok {
		return ctrl.Result{}, err
	}
	tus, err := r.targetUpdates(ctx, job)
	if err != nil {
		return ctrl.Result{}, err
	}
	missing := unmade(targets, tus)
	if job.Spec.DryRun {
		_, more, err := r.makeTargetUpdates(ctx, job, tus, missing)
		if err != nil {
			return ctrl.Result{}, err
		}
		if more {
			setCondition(job, fwv1.ConditionProgressing, metav1.ConditionTrue, ReasonProgressing,
				fmt.Sprintf("creating TargetUpdates: %d of %d", len(tus), len(targets)))
			return ctrl.Result{RequeueAfter: time.Millisecond}, nil
		}
		return ctrl.Result{}, r.plan(ctx, job, policy, baseline, targets, tus)
	}
	if err := r.ensureAgentAccess(ctx, job); err != nil {
		return ctrl.Result{}, err
	}
	pods, err := r.agentPods(ctx, job)
	if err != nil {
		return ctrl.Result{}, err
	}
	behind := r.behind(client.ObjectKeyFromObject(job), tus)
	deadline, err := r.syncInFlight(ctx, job, tus, pods, behind)
	if err != nil {
		return ctrl.Result{}, err
	}
	retryAt, err := r.scheduleRetries(ctx, job, tus)
	if err != nil {
		return ctrl.Result{}, err
	}
	s, err := summarize(job, tus, len(missing), r.Clock.Now())
	if err != nil {
		blocked(job, ReasonInvalidSpec, err.Error())
		return ctrl.Result{}, nil
	}
	s.countClaimsBehind(behind)
	gate, wait, err := r.startGate(job, s)
	if err != nil {
		blocked(job, ReasonInvalidSpec, err.Error())
		return ctrl.Result{}, nil
	}
	if gate == ReasonFailureBudgetExceeded {
		s.startable = retriesOnly(s.startable)
	}
	if gate == "" {
		// The TargetUpdates of the targets about to start come first, the others after the
		// start: at 10,000 targets, making them all first kept every target waiting for
		// minutes (issue 13).
		if missing, err = r.makeFirstWave(ctx, job, tus, missing, &s); err != nil {
			return ctrl.Result{}, err
		}
	}
	if gate == "" || gate == ReasonFailureBudgetExceeded {
		if err := r.startTargets(ctx, job, policy, baseline, targets, tus, pods, &s); err != nil {
			return ctrl.Result{}, err
		}
		if pods, err = r.agentPods(ctx, job); err != nil {
			return ctrl.Result{}, err
		}
	}
	left, more, err := r.makeTargetUpdates(ctx, job, tus, missing)
	if err != nil {
		return ctrl.Result{}, err
	}
	s.unmade = int32(left)
	if err := r.retireAgents(ctx, pods, tus, s); err != nil {
		return ctrl.Result{}, err
	}
	r.updateStatus(job, s, gate, pods, tus)
	if more {
		return ctrl.Result{RequeueAfter: time.Millisecond}, nil
	}
	return requeue(r.Clock.Now(), retryAt, wait, deadline), nil
}

// makeFirstWave creates the TargetUpdates that the free slots need beyond the startable ones,
// for the first of missing, and returns the targets still without one.
func (r *UpdateJobReconciler) makeFirstWave(ctx context.Context, job *fwv1.UpdateJob, tus map[string]*fwv1.TargetUpdate,
	missing []*fwv1.UpdateTarget, s *summary) ([]*fwv1.UpdateTarget, error) {
	need := int(job.Spec.Rollout.MaxConcurrent) - int(s.counts.InProgress) - len(s.startable)
	n := min(max(need, 0), len(missing))
	if n == 0 {
		return missing, nil
	}
	if err := r.createTargetUpdates(ctx, job, missing[:n], tus); err != nil {
		return nil, err
	}
	for _, t := range missing[:n] {
		s.startable = append(s.startable, tus[t.Name])
	}
	sortByName(s.startable)
	s.unmade -= int32(n)
	return missing[n:], nil
}

func requeue(now time.Time, at ...time.Time) ctrl.Result {
	var next time.Time
	for _, t := range at {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	if next.IsZero() {
		return ctrl.Result{}
	}
	return ctrl.Result{RequeueAfter: max(next.Sub(now), time.Second)}
}

// reconcileDelete stops the job's agents and removes its children, then the finalizer. The
// garbage collector would do the same through owner references; doing it here means a deleted
// job stops flashing at once and leaves nothing behind even where no collector runs.
func (r *UpdateJobReconciler) reconcileDelete(ctx context.Context, job *fwv1.UpdateJob) error {
	if !controllerutil.ContainsFinalizer(job, JobFinalizer) {
		return nil
	}
	pods, err := r.agentPods(ctx, job)
	if err != nil {
		return err
	}
	for i := range pods {
		if err := r.Delete(ctx, &pods[i]); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting agent pod %s: %w", pods[i].Name, err)
		}
	}
	if err := r.DeleteAllOf(ctx, &fwv1.TargetUpdate{}, client.InNamespace(job.Namespace),
		client.MatchingLabels{fwv1.LabelJob: labelValue(job.Name)}); err != nil {
		return fmt.Errorf("deleting TargetUpdates: %w", err)
	}
	name := agentAccessName(job)
	for _, obj := range []client.Object{
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: job.Namespace}},
		&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: job.Namespace}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: job.Namespace}},
	} {
		if err := r.Delete(ctx, obj); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting %T %s: %w", obj, name, err)
		}
	}
	controllerutil.RemoveFinalizer(job, JobFinalizer)
	return r.Update(ctx, job)
}

// SetupWithManager registers the controller, its indexes and its watches: pods and
// TargetUpdates are watched, never polled.
func (r *UpdateJobReconciler) SetupWithManager(ctx context.Context, mgr ctrl.Manager) error {
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	if r.APIReader == nil {
		r.APIReader = mgr.GetAPIReader()
	}
	idx := mgr.GetFieldIndexer()
	if err := idx.IndexField(ctx, &fwv1.TargetUpdate{}, indexTargetUpdateJob, func(o client.Object) []string {
		return []string{o.(*fwv1.TargetUpdate).Spec.JobName}
	}); err != nil {
		return err
	}
	if err := idx.IndexField(ctx, &fwv1.UpdateJob{}, indexJobPolicy, func(o client.Object) []string {
		return []string{o.(*fwv1.UpdateJob).Spec.PortPolicyName}
	}); err != nil {
		return err
	}
	if err := idx.IndexField(ctx, &corev1.Pod{}, indexPodOwner, func(o client.Object) []string {
		if ref := metav1.GetControllerOf(o); ref != nil && ref.Kind == "UpdateJob" && ref.APIVersion == fwv1.GroupVersion.String() {
			return []string{ref.Name}
		}
		return nil
	}); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&fwv1.UpdateJob{}, builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		Owns(&corev1.Pod{}).
		Watches(&fwv1.TargetUpdate{}, handler.Funcs{
			UpdateFunc: func(_ context.Context, e event.TypedUpdateEvent[client.Object], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
				oldTU, newTU := e.ObjectOld.(*fwv1.TargetUpdate), e.ObjectNew.(*fwv1.TargetUpdate)
				r.observeTargetTransition(oldTU, newTU)
				if !targetChangeMatters(oldTU, newTU) {
					return
				}
				q.Add(reconcile.Request{NamespacedName: types.NamespacedName{Namespace: newTU.Namespace, Name: newTU.Spec.JobName}})
			},
			DeleteFunc: func(_ context.Context, e event.TypedDeleteEvent[client.Object], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
				tu := e.Object.(*fwv1.TargetUpdate)
				q.Add(reconcile.Request{NamespacedName: types.NamespacedName{Namespace: tu.Namespace, Name: tu.Spec.JobName}})
			},
		}).
		Watches(&fwv1.PortPolicy{}, handler.EnqueueRequestsFromMapFunc(r.jobsOfPolicy)).
		Watches(&fwv1.UpdateTarget{}, handler.EnqueueRequestsFromMapFunc(r.jobsInNamespace)).
		// A baseline's spec (not its compliance status) can unblock or change a job.
		Watches(&fwv1.FirmwareBaseline{}, handler.EnqueueRequestsFromMapFunc(r.jobsInNamespace),
			builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&corev1.Node{}, handler.EnqueueRequestsFromMapFunc(r.jobsWaitingForNodes)).
		Named("updatejob").
		Complete(r)
}

func (r *UpdateJobReconciler) jobsOfPolicy(ctx context.Context, o client.Object) []reconcile.Request {
	var jobs fwv1.UpdateJobList
	if err := r.List(ctx, &jobs, client.MatchingFields{indexJobPolicy: o.GetName()}); err != nil {
		return nil
	}
	return requestsFor(jobs.Items)
}

// jobsInNamespace wakes the unfinished jobs of a namespace when a target there changes: a
// selector may now pick it, or a named target may now exist.
func (r *UpdateJobReconciler) jobsInNamespace(ctx context.Context, o client.Object) []reconcile.Request {
	var jobs fwv1.UpdateJobList
	if err := r.List(ctx, &jobs, client.InNamespace(o.GetNamespace())); err != nil {
		return nil
	}
	return requestsFor(jobs.Items)
}

func (r *UpdateJobReconciler) jobsWaitingForNodes(ctx context.Context, _ client.Object) []reconcile.Request {
	var jobs fwv1.UpdateJobList
	if err := r.List(ctx, &jobs); err != nil {
		return nil
	}
	var waiting []fwv1.UpdateJob
	for _, j := range jobs.Items {
		if c := meta.FindStatusCondition(j.Status.Conditions, fwv1.ConditionReady); c != nil && c.Reason == ReasonNoEligibleNodes {
			waiting = append(waiting, j)
		}
	}
	return requestsFor(waiting)
}

func requestsFor(jobs []fwv1.UpdateJob) []reconcile.Request {
	var out []reconcile.Request
	for _, j := range jobs {
		if j.Status.Finished() {
			continue
		}
		out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: j.Namespace, Name: j.Name}})
	}
	return out
}

// targetChangeMatters says whether a TargetUpdate change can alter what the job's controller
// decides or reports. Progress alone (percent, the progress message) cannot: an agent writes it
// every few seconds per target, and at thousands of targets waking the job for each would make
// the controller's cost grow with flash progress rather than with the events of the rollout.
func targetChangeMatters(oldTU, newTU *fwv1.TargetUpdate) bool {
	if oldTU.Generation != newTU.Generation || !oldTU.DeletionTimestamp.Equal(newTU.DeletionTimestamp) {
		return true
	}
	before, after := oldTU.Status.DeepCopy(), newTU.Status.DeepCopy()
	before.Percent, after.Percent = 0, 0
	before.Message, after.Message = "", ""
	return !equality.Semantic.DeepEqual(before, after)
}
