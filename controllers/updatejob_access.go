// Agent access: the ServiceAccount and Role each job's agents run under.

package controllers

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
)

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
