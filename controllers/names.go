package controllers

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
)

// Finalizers.
const (
	// JobFinalizer lets the controller stop a deleted job's agents and remove its children
	// before the job goes.
	JobFinalizer = "firmware.fwops.io/cleanup"
	// PolicyFinalizer keeps a PortPolicy while a job still uses it.
	PolicyFinalizer = "firmware.fwops.io/in-use"
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
	ReasonTargetSucceeded       = "TargetSucceeded"
	ReasonTargetSkipped         = "TargetSkipped"
	ReasonStarted               = "Started"
	ReasonAlreadyAtVersion      = "AlreadyAtVersion"
)

// targetUpdateName is the deterministic name of a job's TargetUpdate for a target, kept
// within the 253 characters of an object name.
func targetUpdateName(job, target string) string {
	name := job + "-" + target
	if len(name) <= 253 {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	return strings.TrimRight(name[:240], "-.") + "-" + hex.EncodeToString(sum[:])[:12]
}

// labelValue keeps a name usable as a label value (63 characters at most).
func labelValue(name string) string {
	if len(name) <= 63 {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	return strings.TrimRight(name[:52], "-._") + "-" + hex.EncodeToString(sum[:])[:10]
}

// agentAccessName names the ServiceAccount, Role and RoleBinding of a job's agents.
func agentAccessName(job *fwv1.UpdateJob) string {
	n := job.Name + "-agent"
	if len(n) <= 253 {
		return n
	}
	return targetUpdateName(job.Name[:200], "agent")
}
