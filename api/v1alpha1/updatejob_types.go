package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Component is the firmware component an UpdateJob installs.
// +kubebuilder:validation:Enum=iLO;SystemROM;SmartComponent;OA
type Component string

const (
	ComponentILO            Component = "iLO"
	ComponentSystemROM      Component = "SystemROM"
	ComponentSmartComponent Component = "SmartComponent"
	ComponentOA             Component = "OA"
)

// TargetSelection picks the UpdateTargets of a job, in the job's namespace.
// +kubebuilder:validation:XValidation:rule="has(self.selector) || (has(self.names) && size(self.names) > 0)",message="spec.targets needs a selector or at least one name"
type TargetSelection struct {
	// selector selects UpdateTargets by label.
	// +optional
	Selector *metav1.LabelSelector `json:"selector,omitempty"`

	// names lists UpdateTargets by name, in addition to those the selector picks.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=10000
	// +kubebuilder:validation:items:MaxLength=253
	Names []string `json:"names,omitempty"`
}

// PVCSource is a firmware file on a PersistentVolumeClaim.
type PVCSource struct {
	// claimName is the PersistentVolumeClaim, in the job's namespace.
	// +required
	// +kubebuilder:validation:MinLength=1
	ClaimName string `json:"claimName"`

	// path is the file's path inside the volume; only that file is mounted in agent pods. The
	// claim must be allowed by the PortPolicy's firmwareSources.persistentVolumeClaims.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:XValidation:rule="!self.startsWith('/') && !self.matches('(^|/)[.][.](/|$)')",message="path must be relative to the volume and must not contain '..'"
	// +kubebuilder:validation:XValidation:rule="!self.endsWith('/') && !self.contains('//') && !self.matches('(^|/)[.](/|$)')",message="path must name a file: no trailing '/', '//' or '.' segment"
	Path string `json:"path"`
}

// FirmwareSource is the image a job installs, verified by SHA-256 before it is served.
// +kubebuilder:validation:XValidation:rule="[has(self.url), has(self.persistentVolumeClaim), has(self.nodePath)].filter(x, x).size() == 1",message="spec.firmware needs exactly one source: url, persistentVolumeClaim or nodePath"
type FirmwareSource struct {
	// url is an HTTP(S) address the agent downloads the image from.
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && (url(self).getScheme() == 'http' || url(self).getScheme() == 'https')",message="url must be an absolute http or https URL"
	URL string `json:"url,omitempty"`

	// persistentVolumeClaim is a file on a PersistentVolumeClaim.
	// +optional
	PersistentVolumeClaim *PVCSource `json:"persistentVolumeClaim,omitempty"`

	// nodePath is an absolute path where the image is already staged on every agent node.
	// It must lie under one of the PortPolicy's firmwareSources.nodePathPrefixes; only that
	// file is mounted in agent pods, read-only.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	// +kubebuilder:validation:XValidation:rule="self.startsWith('/') && !self.matches('(^|/)[.][.](/|$)')",message="nodePath must be absolute and must not contain '..'"
	// +kubebuilder:validation:XValidation:rule="!self.endsWith('/') && !self.contains('//') && !self.matches('(^|/)[.](/|$)')",message="nodePath must name a file: no trailing '/', '//' or '.' segment"
	NodePath string `json:"nodePath,omitempty"`

	// sha256 is the image's SHA-256 digest, 64 hex characters. The image is never served
	// before it matches.
	// +required
	// +kubebuilder:validation:Pattern=`^[0-9a-fA-F]{64}$`
	SHA256 string `json:"sha256"`

	// version is the version the image installs. Targets already at it are skipped unless
	// spec.rollout.force is set, and each flash is verified against it.
	// +optional
	// +kubebuilder:validation:MaxLength=128
	Version string `json:"version,omitempty"`

	// keepInRepository keeps a Smart Component (.fwpkg) that the agent added to the iLO
	// Repository there after the iLO has applied it. By default (false) the agent deletes what
	// it added once it finds the update applied, so that components do not pile up in the
	// repository (its space is small, and a full one refuses uploads). Keep it to let the iLO
	// (or an install set) install it again later. Only for component SmartComponent.
	// +optional
	KeepInRepository bool `json:"keepInRepository,omitempty"`
}

// Weekday is a day of the week.
// +kubebuilder:validation:Enum=Monday;Tuesday;Wednesday;Thursday;Friday;Saturday;Sunday
type Weekday string

// MaintenanceWindow is when new targets may start. A window whose end is before its start
// runs over midnight.
// +kubebuilder:validation:XValidation:rule="self.start != self.end",message="window start and end must differ",fieldPath=".end"
type MaintenanceWindow struct {
	// days are the days the window opens on; every day when empty.
	// +optional
	// +listType=set
	Days []Weekday `json:"days,omitempty"`

	// start is the time the window opens, HH:MM (24-hour clock).
	// +required
	// +kubebuilder:validation:Pattern=`^([01][0-9]|2[0-3]):[0-5][0-9]$`
	Start string `json:"start"`

	// end is the time the window closes, HH:MM (24-hour clock).
	// +required
	// +kubebuilder:validation:Pattern=`^([01][0-9]|2[0-3]):[0-5][0-9]$`
	End string `json:"end"`

	// timeZone is an IANA time zone name such as "Europe/Paris"; UTC when unset.
	// +optional
	// +kubebuilder:default=UTC
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="timestamp('2000-01-01T00:00:00Z').getHours(self) >= 0",message="timeZone must be a valid IANA time zone name"
	TimeZone string `json:"timeZone,omitempty"`
}

// RetryPolicy says how often a failed target is tried again.
type RetryPolicy struct {
	// limit is how many times a failed target is retried; 0 means never.
	// +optional
	// +kubebuilder:default=0
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=10
	Limit int32 `json:"limit,omitempty"`

	// backoff is the wait before the first retry; it doubles with each further retry.
	// +optional
	// +kubebuilder:default="30s"
	Backoff *metav1.Duration `json:"backoff,omitempty"`
}

// Rollout says how fast and when a job proceeds.
type Rollout struct {
	// maxConcurrent is how many targets may be in flight at once across the whole job.
	// +optional
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10000
	MaxConcurrent int32 `json:"maxConcurrent,omitempty"`

	// maxFailures is how many targets may fail before the job stops starting new ones: a
	// count ("3" or 3) or a percentage of the targets ("2%").
	// +optional
	// +kubebuilder:default=0
	// +kubebuilder:validation:XIntOrString
	// +kubebuilder:validation:XValidation:rule="type(self) == int ? self >= 0 : self.matches('^(100|[1-9]?[0-9])%$') || self.matches('^[0-9]+$')",message="maxFailures must be a non-negative count or a percentage from 0% to 100%"
	MaxFailures *intstr.IntOrString `json:"maxFailures,omitempty"`

	// timeout bounds one target's update, from its start to its verified end; it also sets
	// each agent pod's active deadline.
	// +optional
	// +kubebuilder:default="30m"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m') && duration(self) <= duration('24h')",message="timeout must be between 1m and 24h"
	Timeout *metav1.Duration `json:"timeout,omitempty"`

	// retries says how failed targets are retried.
	// +optional
	Retries RetryPolicy `json:"retries,omitempty"`

	// window restricts starts to a maintenance window; targets already in flight finish.
	// +optional
	Window *MaintenanceWindow `json:"window,omitempty"`

	// paused holds new starts; targets already in flight finish.
	// +optional
	Paused bool `json:"paused,omitempty"`

	// force flashes targets that already run the wanted version.
	// +optional
	Force bool `json:"force,omitempty"`

	// reboot says whether the agent may reboot a server whose new firmware runs only after
	// the next reboot (a system ROM flashed through the iLO, a Smart Component queued for UEFI
	// or flagged ResetRequired). Never, the default, leaves the
	// firmware staged: the target ends Succeeded with rebootRequired, and the server runs it
	// from its next reboot. IfRequired reboots the server gracefully (ComputerSystem.Reset
	// GracefulRestart) right after the flash, while the target is in flight (it started
	// inside the job's window, and its timeout bounds the reboot), and verifies the new
	// version once the server has finished POST; when the window ends too soon for a reboot
	// and POST, the server is not rebooted: the target ends Succeeded with rebootRequired and
	// a message saying so.
	// +optional
	// +kubebuilder:default=Never
	Reboot RebootPolicy `json:"reboot,omitempty"`
}

// RebootPolicy says whether a job may reboot servers.
// +kubebuilder:validation:Enum=Never;IfRequired
type RebootPolicy string

const (
	// RebootNever never reboots a server: firmware that activates at reboot stays staged.
	RebootNever RebootPolicy = "Never"
	// RebootIfRequired reboots a server gracefully when its new firmware needs it.
	RebootIfRequired RebootPolicy = "IfRequired"
)

// UpdateJobSpec says what to flash where, and how fast.
// +kubebuilder:validation:XValidation:rule="has(self.firmware) != has(self.baselineRef)",message="spec needs exactly one of firmware (one image) and baselineRef (a FirmwareBaseline of this namespace)"
// +kubebuilder:validation:XValidation:rule="has(oldSelf.firmware) == has(self.firmware) && has(oldSelf.baselineRef) == has(self.baselineRef)",message="firmware and baselineRef cannot be added or removed once the job exists; create a new UpdateJob"
// +kubebuilder:validation:XValidation:rule="!has(self.firmware) || !has(self.firmware.keepInRepository) || !self.firmware.keepInRepository || (has(self.component) && self.component == 'SmartComponent')",message="firmware.keepInRepository is for Smart Components, which the agent adds to the iLO Repository: component SmartComponent",fieldPath=".firmware.keepInRepository"
// +kubebuilder:validation:XValidation:rule="!has(self.inventoryOnly) || !self.inventoryOnly || has(self.baselineRef)",message="inventoryOnly reads a target's inventory as a baseline job does: it needs a baselineRef (the FirmwareBaseline whose components it reads)",fieldPath=".inventoryOnly"
// +kubebuilder:validation:XValidation:rule="(has(oldSelf.inventoryOnly) && oldSelf.inventoryOnly) == (has(self.inventoryOnly) && self.inventoryOnly)",message="inventoryOnly is immutable; create a new UpdateJob",fieldPath=".inventoryOnly"
// +kubebuilder:validation:XValidation:rule="!has(self.rollout) || !has(self.rollout.reboot) || self.rollout.reboot == 'Never' || has(self.baselineRef) || (has(self.component) && self.component in ['SystemROM', 'SmartComponent'])",message="rollout.reboot IfRequired is for firmware that activates at the next reboot: component SystemROM or SmartComponent, or a baselineRef",fieldPath=".rollout.reboot"
type UpdateJobSpec struct {
	// targets selects the UpdateTargets to update, in this namespace.
	// +required
	Targets TargetSelection `json:"targets"`

	// component is what the image installs: iLO, SystemROM, SmartComponent or OA.
	// +optional
	// +kubebuilder:default=iLO
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="component is immutable; create a new UpdateJob"
	Component Component `json:"component,omitempty"`

	// firmware is the one image to install; exactly one of firmware and baselineRef is set.
	// It cannot change once the job exists: create a new UpdateJob to roll out another image.
	// +optional
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="firmware is immutable; create a new UpdateJob to roll out another image"
	Firmware *FirmwareSource `json:"firmware,omitempty"`

	// baselineRef names a FirmwareBaseline of this namespace to roll out instead of one image:
	// per target the agent installs the baseline's components that apply to it and are out of
	// date, iLO first, then the system ROM, then the rest (spec.component is then unused).
	// Exactly one of firmware and baselineRef is set.
	// +optional
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="baselineRef is immutable; create a new UpdateJob to roll out another baseline"
	BaselineRef *BaselineReference `json:"baselineRef,omitempty"`

	// inventoryOnly, with a baselineRef, makes the job read-only: per target the agent reads
	// the inventory as a baseline job does (model, iLO, system ROM, devices), records it, and
	// installs and reboots nothing; each component shows Skipped with what a rollout would do.
	// The UpdateTargets then judge compliance from what was just read. A FirmwareBaseline's
	// refresh (its refresh-requested annotation, spec.refreshInterval) creates such jobs.
	// +optional
	InventoryOnly bool `json:"inventoryOnly,omitempty"`

	// portPolicyName names the cluster-scoped PortPolicy the agents follow.
	// +optional
	// +kubebuilder:default=default
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	PortPolicyName string `json:"portPolicyName,omitempty"`

	// rollout says how fast and when the job proceeds.
	// +optional
	// +kubebuilder:default={}
	Rollout Rollout `json:"rollout,omitempty"`

	// dryRun plans the job and starts nothing: status.agents lists the nodes that would run
	// agents, their targets and the ports each would open (rules P1-P5), for a firewall
	// request.
	// +optional
	DryRun bool `json:"dryRun,omitempty"`
}

// BaselineReference names a FirmwareBaseline in the job's namespace.
type BaselineReference struct {
	// name is the FirmwareBaseline's name.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

// JobPhase summarises a job.
// +kubebuilder:validation:Enum=Pending;Running;Paused;Waiting;Succeeded;Failed;Planned
type JobPhase string

const (
	JobPhasePending   JobPhase = "Pending"
	JobPhaseRunning   JobPhase = "Running"
	JobPhasePaused    JobPhase = "Paused"
	JobPhaseWaiting   JobPhase = "Waiting"
	JobPhaseSucceeded JobPhase = "Succeeded"
	JobPhaseFailed    JobPhase = "Failed"
	JobPhasePlanned   JobPhase = "Planned"
)

// Finished reports whether the phase is final: every target finished (Succeeded), or the job
// failed. A dry run's Planned is not: its plan follows the spec and the targets.
func (p JobPhase) Finished() bool {
	return p == JobPhaseSucceeded || p == JobPhaseFailed
}

// TargetCounts counts a job's targets by phase.
type TargetCounts struct {
	// total is the number of targets the job selected.
	// +optional
	Total int32 `json:"total"`
	// pending targets have not started: waiting for a free slot (their TargetUpdates have no
	// phase yet, or none is made yet) or for a retry (phase Pending).
	// +optional
	Pending int32 `json:"pending"`
	// inProgress targets are downloading, staging, flashing or verifying.
	// +optional
	InProgress int32 `json:"inProgress"`
	// succeeded targets run the wanted firmware.
	// +optional
	Succeeded int32 `json:"succeeded"`
	// failed targets failed for good (after their retries).
	// +optional
	Failed int32 `json:"failed"`
	// skipped targets already ran the wanted version, or the update was not needed.
	// +optional
	Skipped int32 `json:"skipped"`
}

// AgentPorts are the ports an agent pod opens on its node.
type AgentPorts struct {
	// control is the control listener (rule P1).
	// +optional
	Control int32 `json:"control,omitempty"`
	// firmwareServer is the firmware server (rule P2).
	// +optional
	FirmwareServer int32 `json:"firmwareServer,omitempty"`
	// sessions are the outbound session ports, one per slot (rule P4): the range grows with
	// the agent's slots, not with the job's targets.
	// +optional
	// +listType=atomic
	Sessions []int32 `json:"sessions,omitempty"`
	// ipc is the local inter-process channel (rule P5, single-NIC IPv4).
	// +optional
	IPC int32 `json:"ipc,omitempty"`
	// reverse are the ports that receive from targets, one per slot (rule P5).
	// +optional
	// +listType=atomic
	Reverse []int32 `json:"reverse,omitempty"`
}

// AgentStatus describes one agent pod of a job, planned or running.
type AgentStatus struct {
	// node is the node the agent runs on.
	// +required
	Node string `json:"node"`
	// pod is the agent pod's name; empty in a dry run.
	// +optional
	Pod string `json:"pod,omitempty"`
	// slots is how many targets the agent pod runs at once, each from its own session port
	// (rule P4) and receive port (rule P5): the pod declares one of each per slot.
	// +optional
	Slots int32 `json:"slots,omitempty"`
	// targets are the UpdateTargets the agent serves: those it runs now, or in a dry run
	// those of the first wave.
	// +optional
	// +listType=atomic
	Targets []string `json:"targets,omitempty"`
	// ports are the ports the agent opens (as assigned, or as bound once it reported).
	// +optional
	Ports AgentPorts `json:"ports,omitempty"`
	// receive names, in a dry run, the receive port (rule P5) of each target that sends to
	// one, and how it sends: what a firewall request for the first wave lists.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=10000
	Receive []TargetReceivePort `json:"receive,omitempty"`
}

// TargetReceivePort is the rule P5 receive port one target sends to.
type TargetReceivePort struct {
	// target is the UpdateTarget's name.
	// +required
	Target string `json:"target"`
	// port is the agent's receive port for it.
	// +required
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port int32 `json:"port"`
	// via is how the target sends: RedfishEvents (open the port to the target's address) or
	// SSHCallback (inside the SSH session: no opening).
	// +required
	Via ReceiveVia `json:"via"`
}

// UpdateJobStatus is the observed state of an UpdateJob. Per-target detail lives in the job's
// TargetUpdate children; the job keeps counts so that it stays small at any fleet size.
type UpdateJobStatus struct {
	// observedGeneration is the generation last reconciled successfully.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions are Ready, Progressing and Failed.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// phase summarises the job.
	// +optional
	Phase JobPhase `json:"phase,omitempty"`

	// counts counts targets by phase.
	// +optional
	Counts TargetCounts `json:"counts,omitempty"`

	// progress is "succeeded+failed+skipped/total", for print columns.
	// +optional
	Progress string `json:"progress,omitempty"`

	// agents are the job's agent pods, with the nodes they run on and the ports they open.
	// In a dry run, the plan.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=5000
	Agents []AgentStatus `json:"agents,omitempty"`

	// baselineGeneration is the generation of the FirmwareBaseline (spec.baselineRef) the job
	// checked first and rolls out: a job never mixes two versions of a baseline.
	// +optional
	BaselineGeneration int64 `json:"baselineGeneration,omitempty"`

	// startTime is when the first target started.
	// +optional
	StartTime *metav1.Time `json:"startTime,omitempty"`

	// completionTime is when the last target finished.
	// +optional
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`
}

// Finished reports whether the job has ended: its phase is final, or it recorded its
// completionTime (the controller sets both together).
func (s *UpdateJobStatus) Finished() bool {
	return s.CompletionTime != nil || s.Phase.Finished()
}

// UpdateJob installs one firmware image on a set of UpdateTargets at a controlled pace.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=uj,categories=firmware
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Succeeded",type=integer,JSONPath=`.status.counts.succeeded`
// +kubebuilder:printcolumn:name="Failed",type=integer,JSONPath=`.status.counts.failed`
// +kubebuilder:printcolumn:name="In Progress",type=integer,JSONPath=`.status.counts.inProgress`
// +kubebuilder:printcolumn:name="Pending",type=integer,JSONPath=`.status.counts.pending`
// +kubebuilder:printcolumn:name="Total",type=integer,JSONPath=`.status.counts.total`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type UpdateJob struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec says what to flash where, and how fast.
	// +required
	Spec UpdateJobSpec `json:"spec"`

	// status is what the operator last observed.
	// +optional
	Status UpdateJobStatus `json:"status,omitempty"`
}

// UpdateJobList is a list of UpdateJobs.
// +kubebuilder:object:root=true
type UpdateJobList struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the standard list metadata.
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	// items are the UpdateJobs.
	Items []UpdateJob `json:"items"`
}
