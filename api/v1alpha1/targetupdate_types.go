package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TargetPhase is where one target's update stands.
// +kubebuilder:validation:Enum=Pending;Downloading;Staging;Flashing;Verifying;Succeeded;Failed;Skipped
type TargetPhase string

const (
	TargetPhasePending     TargetPhase = "Pending"
	TargetPhaseDownloading TargetPhase = "Downloading"
	TargetPhaseStaging     TargetPhase = "Staging"
	TargetPhaseFlashing    TargetPhase = "Flashing"
	TargetPhaseVerifying   TargetPhase = "Verifying"
	TargetPhaseSucceeded   TargetPhase = "Succeeded"
	TargetPhaseFailed      TargetPhase = "Failed"
	TargetPhaseSkipped     TargetPhase = "Skipped"
)

// Finished reports whether the phase is final.
func (p TargetPhase) Finished() bool {
	return p == TargetPhaseSucceeded || p == TargetPhaseFailed || p == TargetPhaseSkipped
}

// InProgress reports whether an agent is working on the target.
func (p TargetPhase) InProgress() bool {
	switch p {
	case TargetPhaseDownloading, TargetPhaseStaging, TargetPhaseFlashing, TargetPhaseVerifying:
		return true
	}
	return false
}

// Labels put on TargetUpdates and agent pods so that they can be listed by job.
const (
	LabelJob    = "firmware.fwops.io/job"
	LabelTarget = "firmware.fwops.io/target"
)

// TargetUpdateSpec names the job and the target; the controller sets it and it never changes.
// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec is immutable"
type TargetUpdateSpec struct {
	// jobName is the UpdateJob this belongs to.
	// +required
	// +kubebuilder:validation:MinLength=1
	JobName string `json:"jobName"`

	// targetName is the UpdateTarget being updated.
	// +required
	// +kubebuilder:validation:MinLength=1
	TargetName string `json:"targetName"`

	// targetType is the target's type when the job planned it.
	// +required
	TargetType TargetType `json:"targetType"`

	// component is the job's component, so that the installed version can be recorded on
	// the UpdateTarget.
	// +optional
	Component Component `json:"component,omitempty"`
}

// TargetUpdateStatus is one target's progress within one job. Agents write it.
type TargetUpdateStatus struct {
	// phase is where the update stands. Empty while the target waits to start: for a free
	// slot of the job's spec.rollout.maxConcurrent, or for its UpdateTarget to be checked (no
	// write is spent on each waiting target; the job counts them in status.counts.pending and
	// in its Progressing condition). Pending, with retryAfter and a message, when a failed
	// attempt waits for its retry.
	// +optional
	Phase TargetPhase `json:"phase,omitempty"`

	// percent is the flash progress the target reports, 0-100.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	Percent int32 `json:"percent,omitempty"`

	// message says what is happening, or why it failed, in words a person can act on.
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	Message string `json:"message,omitempty"`

	// versionBefore is the version read before flashing.
	// +optional
	VersionBefore string `json:"versionBefore,omitempty"`

	// versionAfter is the version read after flashing.
	// +optional
	VersionAfter string `json:"versionAfter,omitempty"`

	// rebootRequired is true when the installed firmware takes effect after a reboot
	// (Smart Component exit code 1).
	// +optional
	RebootRequired bool `json:"rebootRequired,omitempty"`

	// attempts counts the starts of this target, the first one included.
	// +optional
	Attempts int32 `json:"attempts,omitempty"`

	// node is the node whose agent works on the target.
	// +optional
	Node string `json:"node,omitempty"`

	// agentPod is the agent pod working on the target.
	// +optional
	AgentPod string `json:"agentPod,omitempty"`

	// sessionPort is the local port the agent's connection to the target leaves from (P4).
	// +optional
	SessionPort int32 `json:"sessionPort,omitempty"`

	// firmwareServerPort is the port the target pulls the image from (P2).
	// +optional
	FirmwareServerPort int32 `json:"firmwareServerPort,omitempty"`

	// firmwareServerCertificateSHA256 is the SHA-256 (hex) of the certificate the agent's
	// firmware server presented when it offered the target the image over HTTPS (P2); empty
	// when it offered plain HTTP only. Compare it with what the target logged.
	// +optional
	// +kubebuilder:validation:Pattern=`^[0-9a-f]{64}$`
	FirmwareServerCertificateSHA256 string `json:"firmwareServerCertificateSHA256,omitempty"`

	// controlPort is the agent's control listener as bound (P1): the assigned port (62286 by
	// default) unless a process outside Kubernetes held it, then the next free one.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	ControlPort int32 `json:"controlPort,omitempty"`

	// ipcPort is the agent's local inter-process channel as bound (P5, single-NIC IPv4).
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	IPCPort int32 `json:"ipcPort,omitempty"`

	// receivePorts are the ports the agent bound to receive messages from targets (P5), in
	// the order of the pod's assigned receive ports.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=10000
	// +kubebuilder:validation:items:Minimum=1
	// +kubebuilder:validation:items:Maximum=65535
	ReceivePorts []int32 `json:"receivePorts,omitempty"`

	// receivePort is the one of receivePorts that this target's messages arrive at (P5);
	// unset for a target that sends none (iLO 4, OA).
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	ReceivePort int32 `json:"receivePort,omitempty"`

	// receiveVia is how they arrive: RedfishEvents (from the iLO's address: a firewall must
	// let it reach receivePort) or SSHCallback (inside the SSH session: no opening).
	// +optional
	ReceiveVia ReceiveVia `json:"receiveVia,omitempty"`

	// startTime is when the current attempt started.
	// +optional
	StartTime *metav1.Time `json:"startTime,omitempty"`

	// completionTime is when the target finished.
	// +optional
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`

	// retryAfter is when a failed target may be tried again.
	// +optional
	RetryAfter *metav1.Time `json:"retryAfter,omitempty"`

	// components, for a job with a baselineRef, are the target's plan and each component's
	// progress, in the order they are installed; skipped ones (current, newer) are listed
	// too, last.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=200
	Components []ComponentUpdate `json:"components,omitempty"`

	// model is the server model the agent read from the target's inventory, for a job with
	// a baselineRef ("ProLiant DL325 Gen10 Plus").
	// +optional
	// +kubebuilder:validation:MaxLength=128
	Model string `json:"model,omitempty"`

	// devices are the firmware inventory entries the agent read, for a job with a
	// baselineRef, by device Target GUID with the version each ran before anything was
	// installed; the UpdateTarget records them for compliance. At most 512.
	// +optional
	// +listType=map
	// +listMapKey=target
	// +kubebuilder:validation:MaxItems=512
	Devices []DeviceVersion `json:"devices,omitempty"`

	// inventoryTime is when the agent read the inventory (model, versions, devices) its plan
	// is made from.
	// +optional
	InventoryTime *metav1.Time `json:"inventoryTime,omitempty"`

	// componentsDone counts the components that reached a final phase.
	// +optional
	// +kubebuilder:validation:Minimum=0
	ComponentsDone int32 `json:"componentsDone,omitempty"`

	// componentsTotal counts the components of the baseline that apply to the target.
	// +optional
	// +kubebuilder:validation:Minimum=0
	ComponentsTotal int32 `json:"componentsTotal,omitempty"`

	// componentsProgress is "componentsDone/componentsTotal", for print columns; empty for
	// a job with spec.firmware.
	// +optional
	// +kubebuilder:validation:MaxLength=16
	ComponentsProgress string `json:"componentsProgress,omitempty"`

	// conditions: Ready is True once the target succeeded or was skipped.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// ComponentUpdate is one baseline component's update on one target.
type ComponentUpdate struct {
	// name is the component's name in the baseline.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	Name string `json:"name"`

	// kind is what the component installs.
	// +optional
	Kind BaselineComponentKind `json:"kind,omitempty"`

	// from is the version read before it was installed.
	// +optional
	// +kubebuilder:validation:MaxLength=128
	From string `json:"from,omitempty"`

	// to is the baseline's version.
	// +optional
	// +kubebuilder:validation:MaxLength=128
	To string `json:"to,omitempty"`

	// phase is where the component stands: Pending, Staging, Flashing, Verifying while it is
	// installed, then Succeeded, Failed or Skipped.
	// +optional
	Phase TargetPhase `json:"phase,omitempty"`

	// message says what happened to it, or why it is skipped.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Message string `json:"message,omitempty"`
}

// TargetUpdate is one target's update within one UpdateJob, owned by the job. One object per
// target keeps the job itself small at any fleet size.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=tu,categories=firmware
// +kubebuilder:printcolumn:name="Job",type=string,JSONPath=`.spec.jobName`
// +kubebuilder:printcolumn:name="Target",type=string,JSONPath=`.spec.targetName`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Percent",type=integer,JSONPath=`.status.percent`
// +kubebuilder:printcolumn:name="Components",type=string,JSONPath=`.status.componentsProgress`
// +kubebuilder:printcolumn:name="Before",type=string,JSONPath=`.status.versionBefore`,priority=1
// +kubebuilder:printcolumn:name="After",type=string,JSONPath=`.status.versionAfter`,priority=1
// +kubebuilder:printcolumn:name="Node",type=string,JSONPath=`.status.node`,priority=1
// +kubebuilder:printcolumn:name="Message",type=string,JSONPath=`.status.message`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type TargetUpdate struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec names the job and the target.
	// +required
	Spec TargetUpdateSpec `json:"spec"`

	// status is the target's progress.
	// +optional
	Status TargetUpdateStatus `json:"status,omitempty"`
}

// TargetUpdateList is a list of TargetUpdates.
// +kubebuilder:object:root=true
type TargetUpdateList struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the standard list metadata.
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	// items are the TargetUpdates.
	Items []TargetUpdate `json:"items"`
}
