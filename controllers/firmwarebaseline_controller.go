package controllers

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
	"github.com/fwops/firmware-operator/internal/compliance"
)

// Ready reasons of a FirmwareBaseline.
const (
	ReasonCompliant           = "Compliant"
	ReasonDrifting            = "Drifting"
	ReasonVersionsUnknown     = "VersionsUnknown"
	ReasonNoApplicableTargets = "NoApplicableTargets"
)

// maxDriftingTargets bounds status.driftingTargets (the CRD's MaxItems).
const maxDriftingTargets = 50

// FirmwareBaselineReconciler shows, on each FirmwareBaseline, how its UpdateTargets stand
// against it, from the versions last read from them.
type FirmwareBaselineReconciler struct {
	client.Client
	// Scheme sets the owner of the refresh jobs; Clock times them (nil: the real clock).
	Scheme *runtime.Scheme
	Clock  clock.PassiveClock
}

// +kubebuilder:rbac:groups=firmware.fwops.io,resources=firmwarebaselines,verbs=get;list;watch
// +kubebuilder:rbac:groups=firmware.fwops.io,resources=firmwarebaselines/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=firmware.fwops.io,resources=updatetargets,verbs=get;list;watch

// Reconcile judges the baseline's targets and writes the result on its status.
func (r *FirmwareBaselineReconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, retErr error) {
	b := &fwv1.FirmwareBaseline{}
	if err := r.Get(ctx, req.NamespacedName, b); err != nil {
		if apierrors.IsNotFound(err) {
			metricBaselineTargets.DeletePartialMatch(prometheus.Labels{"namespace": req.Namespace, "baseline": req.Name})
			metricTargetCompliance.DeletePartialMatch(prometheus.Labels{"namespace": req.Namespace, "baseline": req.Name})
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	before := b.DeepCopy()
	defer func() {
		if retErr == nil {
			b.Status.ObservedGeneration = b.Generation
		}
		if err := r.Status().Patch(ctx, b, client.MergeFrom(before)); err != nil && !apierrors.IsNotFound(err) {
			retErr = errors.Join(retErr, err)
		}
	}()
	targets, err := r.targetsOf(ctx, b)
	if err != nil {
		return ctrl.Result{}, err
	}
	showCompliance(b, compliance.Evaluate(b, targets))
	next, err := r.refresh(ctx, b)
	if err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{RequeueAfter: next}, nil
}

func (r *FirmwareBaselineReconciler) targetsOf(ctx context.Context, b *fwv1.FirmwareBaseline) ([]fwv1.UpdateTarget, error) {
	sel := labels.Everything()
	if b.Spec.TargetSelector != nil {
		s, err := metav1.LabelSelectorAsSelector(b.Spec.TargetSelector)
		if err != nil {
			// The API server checks the selector's shape, not every operator's values.
			return nil, fmt.Errorf("spec.targetSelector: %w", err)
		}
		sel = s
	}
	var list fwv1.UpdateTargetList
	if err := r.List(ctx, &list, client.InNamespace(b.Namespace), client.MatchingLabelsSelector{Selector: sel}); err != nil {
		return nil, err
	}
	return list.Items, nil
}

// showCompliance writes a compliance result on the baseline's status and metric.
func showCompliance(b *fwv1.FirmwareBaseline, res compliance.Result) {
	c := res.Counts
	total := c.Compliant + c.Drifting + c.Unknown
	b.Status.Counts = c
	b.Status.Compliance = fmt.Sprintf("%d/%d", c.Compliant, total)
	b.Status.DriftingTargets = nil
	var drifting, unknown []string
	for _, t := range res.Targets {
		switch t.State {
		case compliance.Drifting:
			drifting = append(drifting, t.Name)
			if len(b.Status.DriftingTargets) < maxDriftingTargets {
				b.Status.DriftingTargets = append(b.Status.DriftingTargets, fwv1.DriftingTarget{Name: t.Name, Components: t.Drift})
			}
		case compliance.Unknown:
			unknown = append(unknown, t.Name+" ("+t.Reasons()+")")
		}
	}
	cond := metav1.Condition{Type: fwv1.ConditionReady, ObservedGeneration: b.Generation}
	switch {
	case total == 0:
		cond.Status, cond.Reason = metav1.ConditionFalse, ReasonNoApplicableTargets
		cond.Message = "no UpdateTarget the baseline selects is of a type its components apply to: check spec.targetSelector and the components' appliesTo.targetTypes"
	case c.Drifting > 0:
		cond.Status, cond.Reason = metav1.ConditionFalse, ReasonDrifting
		cond.Message = fmt.Sprintf("%d of %d targets run other versions than baseline %s: %s; roll the drifting components out with UpdateJobs (status.driftingTargets lists them)",
			c.Drifting, total, b.Spec.Version, firstNames(drifting))
	case c.Unknown > 0:
		cond.Status, cond.Reason = metav1.ConditionFalse, ReasonVersionsUnknown
		cond.Message = fmt.Sprintf("%d of %d targets cannot be judged yet: %s; a target's versions are recorded when an UpdateJob reaches it: set the annotation %s on this baseline to a new value to read them without installing anything",
			c.Unknown, total, firstNames(unknown), fwv1.AnnotationRefreshRequested)
	default:
		cond.Status, cond.Reason = metav1.ConditionTrue, ReasonCompliant
		cond.Message = fmt.Sprintf("all %d targets run baseline %s", total, b.Spec.Version)
	}
	meta.SetStatusCondition(&b.Status.Conditions, cond)
	for state, n := range map[compliance.State]int32{compliance.Compliant: c.Compliant, compliance.Drifting: c.Drifting, compliance.Unknown: c.Unknown} {
		metricBaselineTargets.WithLabelValues(b.Namespace, b.Name, string(state)).Set(float64(n))
	}
}

// firstNames joins the first few names, saying how many more there are.
func firstNames(names []string) string {
	const shown = 5
	if len(names) <= shown {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:shown], ", "), len(names)-shown)
}

// SetupWithManager registers the controller: any change of an UpdateTarget, its status
// included, wakes the baselines of its namespace.
func (r *FirmwareBaselineReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&fwv1.FirmwareBaseline{}).
		Owns(&fwv1.UpdateJob{}).
		Watches(&fwv1.UpdateTarget{}, handler.EnqueueRequestsFromMapFunc(r.baselinesOfNamespace)).
		Named("firmwarebaseline").
		Complete(r)
}

func (r *FirmwareBaselineReconciler) baselinesOfNamespace(ctx context.Context, o client.Object) []reconcile.Request {
	var list fwv1.FirmwareBaselineList
	if err := r.List(ctx, &list, client.InNamespace(o.GetNamespace())); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "listing the FirmwareBaselines an UpdateTarget change concerns", "namespace", o.GetNamespace())
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for _, b := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: b.Namespace, Name: b.Name}})
	}
	return reqs
}
