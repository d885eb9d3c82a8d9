package controllers

import (
	"context"
	"errors"
	"fmt"
	"sort"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
	"github.com/fwops/firmware-operator/internal/ports"
)

// PortPolicyReconciler validates policies and keeps a policy that a job still uses from
// being deleted under it.
type PortPolicyReconciler struct {
	client.Client
	Recorder recorder.EventRecorder
}

// +kubebuilder:rbac:groups=firmware.fwops.io,resources=portpolicies,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=firmware.fwops.io,resources=portpolicies/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=firmware.fwops.io,resources=portpolicies/finalizers,verbs=update

// Reconcile records which jobs use the policy and holds its deletion while any does.
func (r *PortPolicyReconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	policy := &fwv1.PortPolicy{}
	if err := r.Get(ctx, req.NamespacedName, policy); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	users, err := r.users(ctx, policy.Name)
	if err != nil {
		return ctrl.Result{}, err
	}
	if !policy.DeletionTimestamp.IsZero() && len(users) == 0 {
		if controllerutil.RemoveFinalizer(policy, PolicyFinalizer) {
			return ctrl.Result{}, r.Update(ctx, policy)
		}
		return ctrl.Result{}, nil
	}
	if policy.DeletionTimestamp.IsZero() && controllerutil.AddFinalizer(policy, PolicyFinalizer) {
		if err := r.Update(ctx, policy); err != nil {
			return ctrl.Result{}, err
		}
	}

	before := policy.DeepCopy()
	defer func() {
		if retErr == nil {
			policy.Status.ObservedGeneration = policy.Generation
		}
		// Each change of a job using the policy wakes it; most change nothing here.
		if equality.Semantic.DeepEqual(before.Status, policy.Status) {
			return
		}
		if err := r.Status().Patch(ctx, policy, client.MergeFrom(before)); err != nil && !apierrors.IsNotFound(err) {
			retErr = errors.Join(retErr, err)
		}
	}()
	policy.Status.UsedBy = users
	cond := metav1.Condition{Type: fwv1.ConditionReady, Status: metav1.ConditionTrue, Reason: ReasonValid,
		Message: "the port rules are consistent", ObservedGeneration: policy.Generation}
	if err := ports.FromSpec(policy.Spec).Validate(); err != nil {
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, ReasonInvalidSpec, err.Error()
	}
	if !policy.DeletionTimestamp.IsZero() {
		cond.Status, cond.Reason = metav1.ConditionFalse, ReasonInUse
		cond.Message = fmt.Sprintf("deletion waits until no UpdateJob uses this policy; used by %s", abbreviate(users, 10))
		if old := meta.FindStatusCondition(policy.Status.Conditions, fwv1.ConditionReady); (old == nil || old.Reason != ReasonInUse) && r.Recorder != nil {
			r.Recorder.Eventf(policy, nil, corev1.EventTypeWarning, ReasonInUse, "Delete", "%s", cond.Message)
		}
	}
	meta.SetStatusCondition(&policy.Status.Conditions, cond)
	return ctrl.Result{}, nil
}

// users lists "namespace/name" of the unfinished jobs that name the policy.
func (r *PortPolicyReconciler) users(ctx context.Context, name string) ([]string, error) {
	var jobs fwv1.UpdateJobList
	if err := r.List(ctx, &jobs, client.MatchingFields{indexJobPolicy: name}); err != nil {
		return nil, err
	}
	var out []string
	for _, j := range jobs.Items {
		if j.Status.Finished() || j.Status.Phase == fwv1.JobPhasePlanned {
			continue
		}
		out = append(out, j.Namespace+"/"+j.Name)
	}
	sort.Strings(out)
	return out, nil
}

// SetupWithManager registers the controller; a job's changes wake its policy. It relies on
// the job index that UpdateJobReconciler.SetupWithManager creates.
func (r *PortPolicyReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&fwv1.PortPolicy{}).
		Watches(&fwv1.UpdateJob{}, handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
			return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: o.(*fwv1.UpdateJob).Spec.PortPolicyName}}}
		})).
		Named("portpolicy").
		Complete(r)
}
