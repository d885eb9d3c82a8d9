package controllers

import (
	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
	"github.com/fwops/firmware-operator/internal/kname"
)

// Finalizers.
const (
	// JobFinalizer lets the controller stop a deleted job's agents and remove its children
	// before the job goes.
	JobFinalizer = "firmware.fwops.io/cleanup"
	// PolicyFinalizer keeps a PortPolicy while a job still uses it.
	PolicyFinalizer = "firmware.fwops.io/in-use"
)

// Labels.
const (
	// LabelManagedBy marks the objects this operator creates besides TargetUpdates and pods,
	// so that the manager caches only those.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	ManagedBy      = "firmware-operator"
)

// Field indexes.
const (
	indexTargetUpdateJob = "spec.jobName"
	indexJobPolicy       = "spec.portPolicyName"
	indexPodOwner        = "metadata.ownerReferences.job"
	indexTargetSecrets   = "spec.secretNames"
)

// Condition reasons. The condition types are the standard Ready, Progressing and Failed.
const (
	ReasonSucceeded             = "Succeeded"
	ReasonCompletedWithFailures = "CompletedWithFailures"
	ReasonProgressing           = "Progressing"
	ReasonPaused                = "Paused"
	ReasonWaitingForWindow      = "WaitingForWindow"
	ReasonFailureBudgetExceeded = "FailureBudgetExceeded"
	ReasonPortPolicyNotFound    = "PortPolicyNotFound"
	ReasonTargetsNotFound       = "TargetsNotFound"
	ReasonNoTargets             = "NoTargets"
	ReasonNoEligibleNodes       = "NoEligibleNodes"
	ReasonInvalidSpec           = "InvalidSpec"
	ReasonDryRun                = "DryRun"
	ReasonAgentFailed           = "AgentFailed"
	ReasonSecretNotFound        = "SecretNotFound"
	ReasonSecretKeyMissing      = "SecretKeyMissing"
	ReasonSecretsPresent        = "SecretsPresent"
	ReasonInUse                 = "InUse"
	ReasonValid                 = "Valid"
	ReasonTargetFailed          = "TargetFailed"
	ReasonTargetSkipped         = "TargetSkipped"
	ReasonStarted               = "Started"
	ReasonAlreadyAtVersion      = "AlreadyAtVersion"
	ReasonAgentPodRejected      = "AgentPodRejected"
	ReasonAgentAccessFailed     = "AgentAccessFailed"
	ReasonNameCollision         = "NameCollision"
	// ReasonFirmwareSourceNotAllowed: the PortPolicy does not allow the job's nodePath or claim.
	ReasonFirmwareSourceNotAllowed = "FirmwareSourceNotAllowed"
	ReasonTargetRemoved            = "TargetRemoved"
	ReasonBaselineNotFound         = "BaselineNotFound"
	ReasonBaselineChanged          = "BaselineChanged"
	ReasonTargetDeselected         = "TargetDeselected"
)

// targetUpdateName is the deterministic name of a job's TargetUpdate for a target: distinct
// for every (job, target) pair, and within an object name's limit.
func targetUpdateName(job, target string) string { return kname.Child(job, target) }

// labelValue keeps a name usable as a label value (63 characters at most).
func labelValue(name string) string { return kname.LabelValue(name) }

// agentAccessName names the ServiceAccount, Role and RoleBinding of a job's agents.
func agentAccessName(job *fwv1.UpdateJob) string {
	n := job.Name + "-agent"
	if len(n) <= 253 {
		return n
	}
	return kname.Child(job.Name[:200], "agent")
}
