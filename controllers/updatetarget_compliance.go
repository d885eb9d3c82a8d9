package controllers

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
	"github.com/fwops/firmware-operator/internal/compliance"
)

// +kubebuilder:rbac:groups=firmware.fwops.io,resources=firmwarebaselines,verbs=get;list;watch

// showCompliance writes the target's standing against each FirmwareBaseline of its namespace
// that applies to it: status.baselines, status.compliance, the Compliant condition and the
// fwops_target_compliance metric. The UpdateTarget controller writes it, in the reconcile
// that records the versions it is judged from, so that the target's status has one writer.
func (r *UpdateTargetReconciler) showCompliance(ctx context.Context, t *fwv1.UpdateTarget) error {
	var list fwv1.FirmwareBaselineList
	if err := r.List(ctx, &list, client.InNamespace(t.Namespace)); err != nil {
		return err
	}
	sort.Slice(list.Items, func(i, j int) bool { return list.Items[i].Name < list.Items[j].Name })
	var standings []fwv1.BaselineCompliance
	var drifting, unknown []string
	compliant := 0
	for i := range list.Items {
		b := &list.Items[i]
		res, applies := compliance.Target{}, false
		if selects(b, t) {
			res, applies = compliance.EvaluateTarget(b, t)
		}
		if !applies {
			setTargetComplianceMetric(t, b.Name, "")
			continue
		}
		setTargetComplianceMetric(t, b.Name, res.State)
		switch res.State {
		case compliance.Compliant:
			compliant++
		case compliance.Drifting:
			drifting = append(drifting, fmt.Sprintf("%s (%s) [%s]", b.Name, b.Spec.Version, driftList(res.Drift)))
		default:
			unknown = append(unknown, fmt.Sprintf("%s (%s) [%s]", b.Name, b.Spec.Version, res.Reasons()))
		}
		standings = append(standings, fwv1.BaselineCompliance{Name: b.Name, Version: b.Spec.Version, State: res.State.API(),
			Drift: res.Drift, Unknown: capUnknown(res.Unknown)})
	}
	// A baseline deleted since the last judgement: its series go too (the FirmwareBaseline
	// controller removes them as well, but may have run before a reconcile that still saw it).
	for _, old := range t.Status.Baselines {
		if !slices.ContainsFunc(list.Items, func(b fwv1.FirmwareBaseline) bool { return b.Name == old.Name }) {
			setTargetComplianceMetric(t, old.Name, "")
		}
	}
	total := len(standings)
	if total > fwv1.MaxBaselinesShown {
		standings = standings[:fwv1.MaxBaselinesShown]
	}
	t.Status.Baselines = standings
	if total == 0 {
		t.Status.Compliance = ""
		meta.RemoveStatusCondition(&t.Status.Conditions, fwv1.ConditionCompliant)
		return nil
	}
	t.Status.Compliance = fmt.Sprintf("%d/%d", compliant, total)
	cond := metav1.Condition{Type: fwv1.ConditionCompliant, ObservedGeneration: t.Generation}
	switch {
	case len(drifting) > 0:
		cond.Status, cond.Reason = metav1.ConditionFalse, ReasonDrifting
		cond.Message = fmt.Sprintf("runs other versions than %s; an UpdateJob with that baselineRef installs them", firstNames(drifting))
	case len(unknown) > 0:
		cond.Status, cond.Reason = metav1.ConditionUnknown, ReasonVersionsUnknown
		cond.Message = fmt.Sprintf("cannot be judged yet against %s; an UpdateJob with that baselineRef reads the versions when its agent reaches the target", firstNames(unknown))
	default:
		cond.Status, cond.Reason = metav1.ConditionTrue, ReasonCompliant
		cond.Message = fmt.Sprintf("runs every applicable component of %d of %d baselines at its version", compliant, total)
	}
	cond.Message = truncate(cond.Message, maxConditionMessage)
	meta.SetStatusCondition(&t.Status.Conditions, cond)
	return nil
}

// maxConditionMessage keeps a condition message readable (the API allows 32768).
const maxConditionMessage = 4096

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}

// capUnknown bounds the unknown components' messages to the API's limit.
func capUnknown(in []fwv1.UnknownComponent) []fwv1.UnknownComponent {
	for i := range in {
		in[i].Message = truncate(in[i].Message, 1024)
	}
	return in
}

func driftList(drift []fwv1.ComponentDrift) string {
	out := make([]string, 0, len(drift))
	for _, d := range drift {
		out = append(out, fmt.Sprintf("%s %s -> %s", d.Name, d.Version, d.Wanted))
	}
	return strings.Join(out, ", ")
}

// selects says whether a baseline's targetSelector picks the target; a selector the API
// server let through but that does not parse selects nothing (the FirmwareBaseline's
// controller reports it).
func selects(b *fwv1.FirmwareBaseline, t *fwv1.UpdateTarget) bool {
	if b.Spec.TargetSelector == nil {
		return true
	}
	sel, err := metav1.LabelSelectorAsSelector(b.Spec.TargetSelector)
	return err == nil && sel.Matches(labels.Set(t.Labels))
}

// setTargetComplianceMetric sets the one series of the target's standing against a baseline,
// or, with no state, removes it. Series are removed by their full labels, not by a partial
// match: that scans every series, once per target and baseline when a baseline changes.
func setTargetComplianceMetric(t *fwv1.UpdateTarget, baseline string, state compliance.State) {
	for _, s := range []compliance.State{compliance.Compliant, compliance.Drifting, compliance.Unknown} {
		if s != state {
			metricTargetCompliance.DeleteLabelValues(t.Namespace, t.Name, baseline, string(s))
		}
	}
	if state != "" {
		metricTargetCompliance.WithLabelValues(t.Namespace, t.Name, baseline, string(state)).Set(1)
	}
}

// targetsOfNamespace wakes every UpdateTarget of a changed FirmwareBaseline's namespace: a
// changed selector may have dropped some, so not only those it selects now.
func (r *UpdateTargetReconciler) targetsOfNamespace(ctx context.Context, o client.Object) []reconcile.Request {
	var list fwv1.UpdateTargetList
	if err := r.List(ctx, &list, client.InNamespace(o.GetNamespace())); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "listing the UpdateTargets a FirmwareBaseline change concerns", "namespace", o.GetNamespace())
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for _, t := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: t.Namespace, Name: t.Name}})
	}
	return reqs
}
