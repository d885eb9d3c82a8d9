package controllers

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
)

const indexTargetUpdateTarget = "spec.targetName"

// UpdateTargetReconciler checks that a target's Secrets exist with the keys it needs, and
// records the versions its jobs last read.
type UpdateTargetReconciler struct {
	client.Client
	// SecretReader reads Secrets one by one around the cache, so that the manager never
	// holds every Secret of the cluster in memory and needs only "get" on them.
	SecretReader client.Reader
	// RecheckAfter is how soon a target with a missing Secret is looked at again.
	RecheckAfter time.Duration
}

// +kubebuilder:rbac:groups=firmware.fwops.io,resources=updatetargets,verbs=get;list;watch
// +kubebuilder:rbac:groups=firmware.fwops.io,resources=updatetargets/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get

// Reconcile checks the Secrets and records versions.
func (r *UpdateTargetReconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	t := &fwv1.UpdateTarget{}
	if err := r.Get(ctx, req.NamespacedName, t); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	before := t.DeepCopy()
	defer func() {
		if retErr == nil {
			t.Status.ObservedGeneration = t.Generation
		}
		if equality.Semantic.DeepEqual(before.Status, t.Status) {
			return // nothing changed: no write
		}
		if err := r.Status().Patch(ctx, t, client.MergeFrom(before)); err != nil && !apierrors.IsNotFound(err) {
			retErr = errors.Join(retErr, err)
		}
	}()

	reason, msg, err := r.checkSecrets(ctx, t)
	if err != nil {
		return ctrl.Result{}, err
	}
	status := metav1.ConditionTrue
	if reason != ReasonSecretsPresent {
		status = metav1.ConditionFalse
		result.RequeueAfter = r.RecheckAfter
		if result.RequeueAfter == 0 {
			result.RequeueAfter = 30 * time.Second
		}
	}
	meta.SetStatusCondition(&t.Status.Conditions, metav1.Condition{
		Type: fwv1.ConditionReady, Status: status, Reason: reason, Message: msg, ObservedGeneration: t.Generation,
	})
	return result, r.recordVersions(ctx, t)
}

type secretNeed struct {
	field string
	ref   *fwv1.SecretReference
	keys  [][]string // each inner list: at least one of these keys
}

func (r *UpdateTargetReconciler) checkSecrets(ctx context.Context, t *fwv1.UpdateTarget) (reason, msg string, err error) {
	creds := secretNeed{field: "spec.credentialsSecretRef", ref: &t.Spec.CredentialsSecretRef,
		keys: [][]string{{fwv1.SecretKeyUsername}, {fwv1.SecretKeyPassword}}}
	if t.Spec.Type == fwv1.TargetTypeLinux {
		creds.keys = [][]string{{fwv1.SecretKeyUsername}, {fwv1.SecretKeyPassword, fwv1.SecretKeySSHPrivateKey}}
	}
	needs := []secretNeed{creds}
	if tls := t.Spec.TLS; tls != nil && tls.CABundleSecretRef != nil {
		needs = append(needs, secretNeed{field: "spec.tls.caBundleSecretRef", ref: tls.CABundleSecretRef, keys: [][]string{{fwv1.SecretKeyCABundle}}})
	}
	if s := t.Spec.SSH; s != nil && s.KnownHostsSecretRef != nil {
		needs = append(needs, secretNeed{field: "spec.ssh.knownHostsSecretRef", ref: s.KnownHostsSecretRef, keys: [][]string{{fwv1.SecretKeyKnownHosts}}})
	}
	for _, n := range needs {
		secret := &corev1.Secret{}
		if err := r.SecretReader.Get(ctx, types.NamespacedName{Namespace: t.Namespace, Name: n.ref.Name}, secret); err != nil {
			if apierrors.IsNotFound(err) {
				return ReasonSecretNotFound, fmt.Sprintf("%s: Secret %s/%s not found", n.field, t.Namespace, n.ref.Name), nil
			}
			return "", "", err
		}
		for _, anyOf := range n.keys {
			found := false
			for _, k := range anyOf {
				if len(secret.Data[k]) > 0 {
					found = true
				}
			}
			if !found {
				return ReasonSecretKeyMissing, fmt.Sprintf("%s: Secret %s/%s has no key %q", n.field, t.Namespace, n.ref.Name, anyOfString(anyOf)), nil
			}
		}
	}
	return ReasonSecretsPresent, "the referenced Secrets exist with the keys this target needs", nil
}

func anyOfString(keys []string) string {
	if len(keys) == 1 {
		return keys[0]
	}
	out := keys[0]
	for _, k := range keys[1:] {
		out += `" or "` + k
	}
	return out
}

// recordVersions copies the version of each component from the target's latest finished
// TargetUpdates.
func (r *UpdateTargetReconciler) recordVersions(ctx context.Context, t *fwv1.UpdateTarget) error {
	var list fwv1.TargetUpdateList
	if err := r.List(ctx, &list, client.InNamespace(t.Namespace), client.MatchingFields{indexTargetUpdateTarget: t.Name}); err != nil {
		return err
	}
	latest := map[fwv1.Component]*fwv1.TargetUpdate{}
	var last *fwv1.TargetUpdate
	for i := range list.Items {
		tu := &list.Items[i]
		if !tu.Status.Phase.Finished() || tu.Status.CompletionTime == nil {
			continue
		}
		if last == nil || tu.Status.CompletionTime.After(last.Status.CompletionTime.Time) {
			last = tu
		}
		if tu.Status.Phase == fwv1.TargetPhaseFailed || tu.Spec.Component == "" || versionOf(tu) == "" {
			continue
		}
		if cur := latest[tu.Spec.Component]; cur == nil || tu.Status.CompletionTime.After(cur.Status.CompletionTime.Time) {
			latest[tu.Spec.Component] = tu
		}
	}
	for comp, tu := range latest {
		setVersion(&t.Status.FirmwareVersions, comp, versionOf(tu))
	}
	// A baseline rollout finished after the single-image ones records the versions it read
	// or installed, component by component, so that compliance sees them.
	if last != nil && last.Spec.Component == "" {
		for comp, v := range baselineVersions(last) {
			if tu := latest[comp]; tu == nil || last.Status.CompletionTime.After(tu.Status.CompletionTime.Time) {
				setVersion(&t.Status.FirmwareVersions, comp, v)
			}
		}
	}
	if last != nil && last.Status.Model != "" {
		t.Status.Model = last.Status.Model
	}
	if last != nil {
		t.Status.LastJob = last.Spec.JobName
		t.Status.LastUpdateTime = last.Status.CompletionTime
	}
	return nil
}

// baselineVersions are the versions a baseline TargetUpdate's components leave running, for
// the kinds with one inventory entry per target: installed ones run their version (a system
// ROM left staged, rebootRequired, does not yet), skipped ones the version read.
func baselineVersions(tu *fwv1.TargetUpdate) map[fwv1.Component]string {
	out := map[fwv1.Component]string{}
	for _, c := range tu.Status.Components {
		// A Linux host's Smart Component is recorded as SmartComponent, where compliance
		// looks for it (compliance.statusComponent) and a spec.firmware job records it.
		comp, ok := map[fwv1.BaselineComponentKind]fwv1.Component{fwv1.BaselineKindILO: fwv1.ComponentILO,
			fwv1.BaselineKindSystemROM: fwv1.ComponentSystemROM, fwv1.BaselineKindOA: fwv1.ComponentOA,
			fwv1.BaselineKindLinuxSmartComponent: fwv1.ComponentSmartComponent}[c.Kind]
		if !ok {
			continue
		}
		switch {
		case c.Phase == fwv1.TargetPhaseSucceeded && (c.Kind != fwv1.BaselineKindSystemROM || !tu.Status.RebootRequired):
			out[comp] = c.To
		case c.Phase == fwv1.TargetPhaseSkipped && c.From != "":
			out[comp] = c.From
		}
	}
	return out
}

func versionOf(tu *fwv1.TargetUpdate) string {
	if tu.Status.VersionAfter != "" {
		return tu.Status.VersionAfter
	}
	return tu.Status.VersionBefore
}

func setVersion(list *[]fwv1.ComponentVersion, c fwv1.Component, v string) {
	for i := range *list {
		if (*list)[i].Component == c {
			(*list)[i].Version = v
			return
		}
	}
	*list = append(*list, fwv1.ComponentVersion{Component: c, Version: v})
}

// SetupWithManager registers the controller; finished TargetUpdates wake their target.
func (r *UpdateTargetReconciler) SetupWithManager(ctx context.Context, mgr ctrl.Manager) error {
	if r.SecretReader == nil {
		r.SecretReader = mgr.GetAPIReader()
	}
	if err := mgr.GetFieldIndexer().IndexField(ctx, &fwv1.TargetUpdate{}, indexTargetUpdateTarget, func(o client.Object) []string {
		return []string{o.(*fwv1.TargetUpdate).Spec.TargetName}
	}); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&fwv1.UpdateTarget{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&fwv1.TargetUpdate{}, handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
			tu := o.(*fwv1.TargetUpdate)
			if !tu.Status.Phase.Finished() {
				return nil
			}
			return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: tu.Namespace, Name: tu.Spec.TargetName}}}
		})).
		Named("updatetarget").
		Complete(r)
}
