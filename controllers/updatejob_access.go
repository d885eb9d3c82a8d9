// Agent access: the ServiceAccount and Role each job's agents run under.

package controllers

import (
	"context"
	"slices"
	"sort"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
)

// ensureAgentAccess gives the job's agents a ServiceAccount whose Role patches the status of
// TargetUpdates, and reads its own pod (podReadRule, granted by grantPodRead), and nothing
// else: no Secret (credentials reach agents as volumes), and no get, list or watch of
// TargetUpdates, which admission would never see. Agents read by patching
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
		pods := agentPodNames(role.Rules) // granted by grantPodRead
		role.Rules = []rbacv1.PolicyRule{
			{APIGroups: []string{fwv1.GroupVersion.Group}, Resources: []string{"targetupdates/status"}, Verbs: []string{"patch"}},
		}
		if ref := job.Spec.BaselineRef; ref != nil {
			// The agent reads the components of its job's baseline from the API (they are
			// neither secret nor per target), and that one object only.
			role.Rules = append(role.Rules, rbacv1.PolicyRule{APIGroups: []string{fwv1.GroupVersion.Group},
				Resources: []string{"firmwarebaselines"}, ResourceNames: []string{ref.Name}, Verbs: []string{"get"}})
		}
		if len(pods) > 0 {
			role.Rules = append(role.Rules, podReadRule(pods))
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

// podReadRule lets each of the job's agents get, list and watch its own pod, by name: a
// long-lived agent follows the targets assigned on its pod's annotation. The API server
// authorizes a list or watch by resourceNames when it selects metadata.name.
func podReadRule(pods []string) rbacv1.PolicyRule {
	return rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"pods"}, ResourceNames: pods, Verbs: []string{"get", "list", "watch"}}
}

// agentPodNames are the pods the Role lets agents read.
func agentPodNames(rules []rbacv1.PolicyRule) []string {
	for _, rule := range rules {
		if len(rule.APIGroups) == 1 && rule.APIGroups[0] == "" && len(rule.Resources) == 1 && rule.Resources[0] == "pods" {
			return rule.ResourceNames
		}
	}
	return nil
}

// grantPodRead adds pod to the pods the job's agents may read, before the pod is created,
// and drops the pods that are no longer live, so the Role grows with the job's live pods,
// O(nodes), not with its targets.
func (r *UpdateJobReconciler) grantPodRead(ctx context.Context, job *fwv1.UpdateJob, pod string, live []corev1.Pod) error {
	keep := map[string]bool{pod: true}
	for i := range live {
		if metav1.IsControlledBy(&live[i], job) {
			keep[live[i].Name] = true
		}
	}
	names := make([]string, 0, len(keep))
	for n := range keep {
		names = append(names, n)
	}
	sort.Strings(names)
	role := &rbacv1.Role{}
	// Around the cache: the Role may have been created earlier in this pass.
	if err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: job.Namespace, Name: agentAccessName(job)}, role); err != nil {
		return agentAccessError("Role", err)
	}
	if slices.Equal(agentPodNames(role.Rules), names) {
		return nil
	}
	before := role.DeepCopy()
	rules := role.Rules[:0:0]
	for _, rule := range role.Rules {
		if len(rule.Resources) != 1 || rule.Resources[0] != "pods" {
			rules = append(rules, rule)
		}
	}
	role.Rules = append(rules, podReadRule(names))
	if err := r.Patch(ctx, role, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})); err != nil {
		return agentAccessError("Role", err)
	}
	return nil
}
