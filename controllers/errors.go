package controllers

import (
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
)

// blockingError is a reconcile error that stops the job until a person acts: it is returned
// (so the pass is retried with backoff) and also shown on the job as Ready=False with its
// reason and a Warning event, because a retried error alone is only visible in the logs.
type blockingError struct {
	reason string
	err    error
}

func (e *blockingError) Error() string { return e.err.Error() }
func (e *blockingError) Unwrap() error { return e.err }

// blockedBy wraps err with the condition reason the job shows for it.
func blockedBy(reason string, err error) error { return &blockingError{reason: reason, err: err} }

// agentPodError explains why the API server refused an agent pod, with what to do about it.
func agentPodError(name string, err error) error {
	switch {
	case apierrors.IsForbidden(err):
		return blockedBy(ReasonAgentPodRejected, fmt.Errorf("the API server refused agent pod %s: %w; agent pods need hostNetwork "+
			"and hostPath, which the namespace's PodSecurity level must allow (label the namespace "+
			"pod-security.kubernetes.io/enforce=privileged) and no other admission policy may deny", name, err))
	case apierrors.IsInvalid(err):
		return blockedBy(ReasonAgentPodRejected, fmt.Errorf("the API server refused agent pod %s as invalid: %w", name, err))
	}
	return fmt.Errorf("creating agent pod %s: %w", name, err)
}

// agentAccessError explains a ServiceAccount, Role or RoleBinding the API server refused.
func agentAccessError(kind string, err error) error {
	if apierrors.IsForbidden(err) || apierrors.IsInvalid(err) || apierrors.IsRequestEntityTooLargeError(err) || apierrors.IsAlreadyExists(err) {
		return blockedBy(ReasonAgentAccessFailed, fmt.Errorf("agent %s: %w", kind, err))
	}
	return fmt.Errorf("agent %s: %w", kind, err)
}

// showReconcileError puts an error that blocks the job on its conditions. Errors that only
// need a retry (a conflict, a timeout) are not shown: the next pass clears them.
func showReconcileError(job *fwv1.UpdateJob, err error) {
	var be *blockingError
	if errors.As(err, &be) {
		blocked(job, be.reason, be.Error())
	}
}

// stalledReasons are the Ready reasons under which the job cannot go on by itself.
var stalledReasons = map[string]bool{
	ReasonPortPolicyNotFound: true, ReasonTargetsNotFound: true, ReasonNoTargets: true,
	ReasonNoEligibleNodes: true, ReasonInvalidSpec: true, ReasonAgentPodRejected: true,
	ReasonAgentAccessFailed: true, ReasonNameCollision: true, ReasonFirmwareSourceNotAllowed: true,
	ReasonBaselineNotFound: true, ReasonBaselineChanged: true,
}

// setStalled derives the kstatus Stalled condition from the phase and the Ready condition:
// True for a job that ended Failed or is blocked until a person acts, False otherwise.
func setStalled(job *fwv1.UpdateJob) {
	ready := meta.FindStatusCondition(job.Status.Conditions, fwv1.ConditionReady)
	switch {
	case job.Status.Phase == fwv1.JobPhaseFailed && ready != nil:
		setCondition(job, fwv1.ConditionStalled, metav1.ConditionTrue, ready.Reason, ready.Message)
	case ready != nil && ready.Status == metav1.ConditionFalse && stalledReasons[ready.Reason]:
		setCondition(job, fwv1.ConditionStalled, metav1.ConditionTrue, ready.Reason, ready.Message)
	default:
		reason := ReasonProgressing
		if ready != nil {
			reason = ready.Reason
		}
		setCondition(job, fwv1.ConditionStalled, metav1.ConditionFalse, reason, "the controller can make progress")
	}
}
