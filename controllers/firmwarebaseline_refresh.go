package controllers

import (
	"context"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
)

// +kubebuilder:rbac:groups=firmware.fwops.io,resources=updatejobs,verbs=get;list;watch;create;delete

// refresh creates a read-only UpdateJob (spec.inventoryOnly) for the baseline's targets when a
// new value of the refresh-requested annotation asks for one, or when spec.refreshInterval
// has passed since the last refresh. Never while an earlier refresh job of the baseline is
// unfinished; finished ones other than the last are deleted, so that they do not pile up.
// It returns when the next scheduled refresh is due (0: none).
func (r *FirmwareBaselineReconciler) refresh(ctx context.Context, b *fwv1.FirmwareBaseline) (time.Duration, error) {
	var jobs fwv1.UpdateJobList
	if err := r.List(ctx, &jobs, client.InNamespace(b.Namespace), client.MatchingLabels{fwv1.LabelRefreshOf: b.Name}); err != nil {
		return 0, err
	}
	last := b.Status.LastRefresh
	running := false
	for i := range jobs.Items {
		j := &jobs.Items[i]
		if !metav1.IsControlledBy(j, b) {
			continue
		}
		if !j.Status.Finished() {
			running = true
			continue
		}
		if last == nil || j.Name != last.Job {
			if err := r.Delete(ctx, j); client.IgnoreNotFound(err) != nil {
				return 0, err
			}
		}
	}
	now := r.now()
	requested := b.Annotations[fwv1.AnnotationRefreshRequested]
	onDemand := requested != "" && (last == nil || last.Requested != requested)
	var wait time.Duration
	if iv := b.Spec.RefreshInterval; iv != nil && iv.Duration > 0 {
		if last != nil {
			wait = last.Time.Add(iv.Duration).Sub(now)
		}
		if wait <= 0 {
			onDemand, wait = true, iv.Duration
		}
	}
	if !onDemand || running {
		return wait, nil // a running refresh's end wakes the baseline (it owns the job)
	}
	job, err := r.refreshJob(b)
	if err != nil {
		return 0, err
	}
	if err := r.Create(ctx, job); err != nil && !apierrors.IsAlreadyExists(err) {
		return 0, fmt.Errorf("creating the refresh UpdateJob of FirmwareBaseline %s: %w", b.Name, err)
	}
	b.Status.LastRefresh = &fwv1.BaselineRefresh{Requested: requested, Job: job.Name, Time: metav1.NewTime(now)}
	return wait, nil
}

// refreshJob is the read-only UpdateJob that reads the versions of b's targets.
func (r *FirmwareBaselineReconciler) refreshJob(b *fwv1.FirmwareBaseline) (*fwv1.UpdateJob, error) {
	sel := b.Spec.TargetSelector
	if sel == nil {
		sel = &metav1.LabelSelector{} // every UpdateTarget of the namespace, as the baseline
	}
	job := &fwv1.UpdateJob{
		ObjectMeta: metav1.ObjectMeta{GenerateName: b.Name + "-refresh-", Namespace: b.Namespace,
			Labels: map[string]string{fwv1.LabelRefreshOf: b.Name}},
		Spec: fwv1.UpdateJobSpec{
			Targets:       fwv1.TargetSelection{Selector: sel.DeepCopy()},
			BaselineRef:   &fwv1.BaselineReference{Name: b.Name},
			InventoryOnly: true,
		},
	}
	if err := controllerutil.SetControllerReference(b, job, r.Scheme); err != nil {
		return nil, err
	}
	return job, nil
}

func (r *FirmwareBaselineReconciler) now() time.Time {
	if r.Clock == nil {
		return clock.RealClock{}.Now()
	}
	return r.Clock.Now()
}
