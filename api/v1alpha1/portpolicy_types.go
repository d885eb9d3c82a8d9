package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// PortSelection is how the firmware server picks a port inside its fallback range (rule P2).
// +kubebuilder:validation:Enum=Random;Lowest
type PortSelection string

const (
	// PortSelectionRandom picks a free port at random, as HP SUM does.
	PortSelectionRandom PortSelection = "Random"
	// PortSelectionLowest picks the lowest free port.
	PortSelectionLowest PortSelection = "Lowest"
)

// FirmwareServerTLS says whether the agent's firmware server offers HTTPS (rule P2's "internal
// secure web server").
// +kubebuilder:validation:Enum=Disabled;Preferred;Required
type FirmwareServerTLS string

const (
	// FirmwareServerTLSDisabled serves every target over plain HTTP.
	FirmwareServerTLSDisabled FirmwareServerTLS = "Disabled"
	// FirmwareServerTLSPreferred serves HTTPS to the targets that advertise it (iLO 5 and 6
	// listing HTTPS in SimpleUpdate's TransferProtocol) and HTTP to the others.
	FirmwareServerTLSPreferred FirmwareServerTLS = "Preferred"
	// FirmwareServerTLSRequired serves HTTPS only: a target that cannot fetch over HTTPS fails,
	// and nothing is flashed on it.
	FirmwareServerTLSRequired FirmwareServerTLS = "Required"
)

// PortRange is an inclusive range of TCP ports.
// +kubebuilder:validation:XValidation:rule="self.start <= self.end",message="start must be less than or equal to end"
type PortRange struct {
	// start is the first port of the range.
	// +required
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Start int32 `json:"start"`

	// end is the last port of the range, included.
	// +required
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	End int32 `json:"end"`
}

// FirmwareServerPorts are the ports of the agent's firmware server, from which iLOs and OAs
// pull the image (rule P2).
// +kubebuilder:validation:XValidation:rule="self.preferredPort < self.fallbackRange.start || self.preferredPort > self.fallbackRange.end",message="preferredPort must lie outside fallbackRange",fieldPath=".preferredPort"
type FirmwareServerPorts struct {
	// preferredPort is tried first (rule P2: 80). Binding it needs only NET_BIND_SERVICE.
	// +optional
	// +kubebuilder:default=80
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	PreferredPort int32 `json:"preferredPort,omitempty"`

	// fallbackRange is used when preferredPort is taken (rule P2: 63000-63007; 63000-63005 is
	// the conservative reading of HP SUM's guide).
	// +optional
	// +kubebuilder:default={start: 63000, end: 63007}
	FallbackRange *PortRange `json:"fallbackRange,omitempty"`

	// selection is how a port is chosen inside fallbackRange: Random (as HP SUM) or Lowest.
	// +optional
	// +kubebuilder:default=Random
	Selection PortSelection `json:"selection,omitempty"`

	// tls says whether the firmware server offers HTTPS, on the same port as HTTP, with a
	// self-signed certificate each agent makes in memory: Disabled (HTTP only), Preferred
	// (HTTPS to the targets that advertise it, HTTP to the others) or Required (a target that
	// cannot fetch over HTTPS fails). The image's SHA-256 is checked before it is served
	// either way.
	// +optional
	// +kubebuilder:default=Preferred
	TLS FirmwareServerTLS `json:"tls,omitempty"`
}

// AgentPlacement says which nodes may run agent pods.
type AgentPlacement struct {
	// nodeSelector restricts agents to nodes with these labels.
	// +optional
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`

	// tolerations let agents run on tainted nodes.
	// +optional
	// +listType=atomic
	Tolerations []corev1.Toleration `json:"tolerations,omitempty"`
}

// NodePathPrefix is a directory of agent nodes, absolute and ending in '/', under which a job's
// spec.firmware.nodePath may name a file.
// +kubebuilder:validation:MinLength=2
// +kubebuilder:validation:MaxLength=4096
// +kubebuilder:validation:XValidation:rule="self.startsWith('/') && self.endsWith('/') && !self.contains('//') && !self.matches('(^|/)[.][.]?(/|$)')",message="a node path prefix must be an absolute directory ending in '/', without '.', '..' or '//'"
// +kubebuilder:validation:XValidation:rule="self != '/'",message="a node path prefix of '/' would let jobs read any file of a node"
type NodePathPrefix string

// ClaimReference allows the PersistentVolumeClaims of one namespace as firmware sources.
type ClaimReference struct {
	// namespace is the claims' namespace.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	Namespace string `json:"namespace"`

	// claimName is the one claim allowed; every claim of the namespace when empty.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	ClaimName string `json:"claimName,omitempty"`
}

// FirmwareSourcePolicy says which files on the cluster's own storage jobs may serve to
// targets. A job's agent reads its source with the agent's privileges (a node's root, or a
// claim the job's author might not otherwise read), so only an administrator may say which.
// URL sources need no allow-list: the agent downloads them as anyone on the network could.
type FirmwareSourcePolicy struct {
	// nodePathPrefixes are the node directories under which spec.firmware.nodePath may name a
	// file, for example "/var/lib/firmware/". Empty, the default, refuses every nodePath job.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	NodePathPrefixes []NodePathPrefix `json:"nodePathPrefixes,omitempty"`

	// persistentVolumeClaims are the claims spec.firmware.persistentVolumeClaim may name.
	// Empty, the default, refuses every persistentVolumeClaim job.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=256
	PersistentVolumeClaims []ClaimReference `json:"persistentVolumeClaims,omitempty"`
}

// PortPolicySpec holds the port rules of HP Smart Update Manager (P1-P5) as data.
// +kubebuilder:validation:XValidation:rule="self.controlPort < self.firmwareServer.fallbackRange.start || self.controlPort > self.firmwareServer.fallbackRange.end",message="controlPort must lie outside firmwareServer.fallbackRange",fieldPath=".controlPort"
// +kubebuilder:validation:XValidation:rule="self.controlPort != self.firmwareServer.preferredPort",message="controlPort must differ from firmwareServer.preferredPort",fieldPath=".controlPort"
// +kubebuilder:validation:XValidation:rule="self.sessionBasePort != self.reverseBasePort",message="sessionBasePort and reverseBasePort must differ",fieldPath=".reverseBasePort"
type PortPolicySpec struct {
	// controlPort is the agent's control listener: probes, metrics, live progress (rule P1:
	// 62286, then the next free port).
	// +optional
	// +kubebuilder:default=62286
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	ControlPort int32 `json:"controlPort,omitempty"`

	// firmwareServer holds the ports of the firmware server (rule P2).
	// +optional
	// +kubebuilder:default={preferredPort: 80, fallbackRange: {start: 63000, end: 63007}, selection: Random}
	FirmwareServer FirmwareServerPorts `json:"firmwareServer,omitempty"`

	// sshPort is the SSH port of Linux and OA targets unless a target sets its own (rule P3).
	// +optional
	// +kubebuilder:default=22
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	SSHPort int32 `json:"sshPort,omitempty"`

	// sessionBasePort is the first outbound session port, one per target, next free on
	// conflict, not capped (rule P4: 60000).
	// +optional
	// +kubebuilder:default=60000
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	SessionBasePort int32 `json:"sessionBasePort,omitempty"`

	// reverseBasePort is the first port that receives from targets (rule P5: 61000).
	// +optional
	// +kubebuilder:default=61000
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	ReverseBasePort int32 `json:"reverseBasePort,omitempty"`

	// singleNICIPv4 applies P5's single-NIC IPv4 rule: the lowest free port from
	// reverseBasePort is the agent's local inter-process channel and the next ones receive
	// from targets.
	// +optional
	// +kubebuilder:default=true
	SingleNICIPv4 *bool `json:"singleNICIPv4,omitempty"`

	// agents says which nodes may run agent pods.
	// +optional
	Agents AgentPlacement `json:"agents,omitempty"`

	// firmwareSources allows firmware sources on the cluster's own storage (nodePath,
	// persistentVolumeClaim) to the jobs that use this policy. Without it only url sources run.
	// +optional
	FirmwareSources FirmwareSourcePolicy `json:"firmwareSources,omitempty"`
}

// PortPolicyStatus is the observed state of a PortPolicy.
type PortPolicyStatus struct {
	// observedGeneration is the generation last reconciled successfully.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions: Ready is True when the policy is valid.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// usedBy lists the UpdateJobs ("namespace/name") that use this policy; while it is not
	// empty the policy cannot be deleted.
	// +optional
	// +listType=set
	UsedBy []string `json:"usedBy,omitempty"`
}

// PortPolicy holds the network port rules the agents follow, the nodes they may run on and the
// node paths and claims they may read firmware from. It is cluster-scoped: an administrator
// owns it, and a namespace's jobs only name it.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=pp,categories=firmware
// +kubebuilder:printcolumn:name="Control",type=integer,JSONPath=`.spec.controlPort`
// +kubebuilder:printcolumn:name="Firmware",type=integer,JSONPath=`.spec.firmwareServer.preferredPort`
// +kubebuilder:printcolumn:name="Session",type=integer,JSONPath=`.spec.sessionBasePort`
// +kubebuilder:printcolumn:name="Reverse",type=integer,JSONPath=`.spec.reverseBasePort`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type PortPolicy struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec holds the port rules; every field defaults to ports.md.
	// +optional
	// +kubebuilder:default={controlPort: 62286, firmwareServer: {preferredPort: 80, fallbackRange: {start: 63000, end: 63007}, selection: Random}, sshPort: 22, sessionBasePort: 60000, reverseBasePort: 61000, singleNICIPv4: true}
	Spec PortPolicySpec `json:"spec,omitempty"`

	// status is what the operator last observed.
	// +optional
	Status PortPolicyStatus `json:"status,omitempty"`
}

// PortPolicyList is a list of PortPolicies.
// +kubebuilder:object:root=true
type PortPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the standard list metadata.
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	// items are the PortPolicies.
	Items []PortPolicy `json:"items"`
}
