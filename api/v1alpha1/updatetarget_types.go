package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TargetType is the kind of endpoint an UpdateTarget is.
// +kubebuilder:validation:Enum=iLO4;iLO5;iLO6;OA;Linux
type TargetType string

const (
	TargetTypeILO4  TargetType = "iLO4"
	TargetTypeILO5  TargetType = "iLO5"
	TargetTypeILO6  TargetType = "iLO6"
	TargetTypeOA    TargetType = "OA"
	TargetTypeLinux TargetType = "Linux"
)

// ReceiveVia is how a target's messages reach its rule P5 receive port on the agent's node.
// +kubebuilder:validation:Enum=RedfishEvents;SSHCallback
type ReceiveVia string

const (
	// ReceiveViaRedfishEvents: the iLO posts Redfish events to the port, so a firewall
	// between the iLO and the node must let the iLO's address reach it.
	ReceiveViaRedfishEvents ReceiveVia = "RedfishEvents"
	// ReceiveViaSSHCallback: the Linux host's report of a run's end comes inside the SSH
	// session the agent opened (a remote port forward), and the agent relays it to the port on
	// its own node: no opening beyond the SSH one.
	ReceiveViaSSHCallback ReceiveVia = "SSHCallback"
)

// ReceiveVia is how targets of type t send to their receive port (rule P5); "" when they
// send nothing (iLO 4 has no event service the agent uses; an OA's CLI is only polled).
func (t TargetType) ReceiveVia() ReceiveVia {
	switch t {
	case TargetTypeILO5, TargetTypeILO6:
		return ReceiveViaRedfishEvents
	case TargetTypeLinux:
		return ReceiveViaSSHCallback
	}
	return ""
}

// Keys read from the Secret named by credentialsSecretRef.
const (
	SecretKeyUsername      = "username"
	SecretKeyPassword      = "password"
	SecretKeySSHPrivateKey = "ssh-privatekey"
	SecretKeyCABundle      = "ca.crt"
	SecretKeyKnownHosts    = "known_hosts"
)

// UpdateTargetSpec describes one managed endpoint.
// +kubebuilder:validation:XValidation:rule="!(self.type in ['OA', 'Linux']) || has(self.ssh) && (has(self.ssh.knownHostsSecretRef) || (has(self.ssh.insecureIgnoreHostKey) && self.ssh.insecureIgnoreHostKey))",message="spec.ssh.knownHostsSecretRef is required for OA and Linux targets unless spec.ssh.insecureIgnoreHostKey is true: host keys are always checked",fieldPath=".ssh"
// +kubebuilder:validation:XValidation:rule="self.type in ['iLO4', 'iLO5', 'iLO6'] || !has(self.tls)",message="spec.tls applies only to iLO targets (iLO4, iLO5, iLO6)",fieldPath=".tls"
// +kubebuilder:validation:XValidation:rule="self.type in ['OA', 'Linux'] || !has(self.ssh)",message="spec.ssh applies only to OA and Linux targets",fieldPath=".ssh"
// +kubebuilder:validation:XValidation:rule="self.type == 'OA' || !has(self.bay)",message="spec.bay applies only to OA targets",fieldPath=".bay"
// +kubebuilder:validation:XValidation:rule="self.type == 'Linux' || !has(self.linux)",message="spec.linux applies only to Linux targets",fieldPath=".linux"
type UpdateTargetSpec struct {
	// type is the kind of endpoint: iLO4, iLO5 or iLO6 (Redfish over HTTPS), OA (an Onboard
	// Administrator's SSH command line) or Linux (Smart Components over SSH).
	// +required
	Type TargetType `json:"type"`

	// address is the endpoint's host name or IP address, with an optional port
	// ("ilo-r12.example.net", "10.0.0.5:8443", "[fd00::5]:22"). No scheme, no path.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=261
	// +kubebuilder:validation:XValidation:rule="!self.contains('://') && !self.contains('/')",message="spec.address must be a host or host:port, without scheme or path"
	// +kubebuilder:validation:XValidation:rule="!self.contains(' ')",message="spec.address must not contain spaces"
	Address string `json:"address"`

	// credentialsSecretRef names the Secret, in this namespace, that holds the credentials:
	// the keys "username" and "password", and for SSH targets optionally "ssh-privatekey".
	// +required
	CredentialsSecretRef SecretReference `json:"credentialsSecretRef"`

	// tls says how the certificate of an iLO is checked. Verification is on unless
	// insecureSkipVerify is set.
	// +optional
	TLS *TLSSpec `json:"tls,omitempty"`

	// ssh says how an OA or Linux target is reached and its host key checked (rule P3).
	// +optional
	SSH *SSHSpec `json:"ssh,omitempty"`

	// bay, on an OA target, selects the blade in that enclosure bay whose iLO is flashed
	// through the OA (UPDATE ILO <bay>) instead of the OA's own firmware.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=16
	Bay *int32 `json:"bay,omitempty"`

	// linux says how a Linux target runs Smart Components: through sudo or not, and from
	// which directory.
	// +optional
	Linux *LinuxSpec `json:"linux,omitempty"`
}

// LinuxSpec says how Smart Components run on a Linux host.
type LinuxSpec struct {
	// sudo runs each Smart Component, and the removal of what it left, through "sudo -n":
	// set it when the SSH user is not root. The user must be allowed to run commands without a
	// password (NOPASSWD); when sudo asks for one, the target fails with a message saying so
	// and nothing runs.
	// +optional
	Sudo bool `json:"sudo,omitempty"`

	// stagingDirectory is the absolute path of the directory on the host where Smart
	// Components are copied and run from, each in a private sub-directory that holds its
	// result until the agent has read it. It must be writable by the SSH user and on a file
	// system that allows execution: CIS-hardened hosts mount /tmp and /var/tmp noexec, so
	// name a directory such as /var/lib/fwops/staging there. When unset, /var/tmp.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=4096
	// +kubebuilder:validation:XValidation:rule="self.startsWith('/')",message="stagingDirectory must be an absolute path"
	// +kubebuilder:validation:XValidation:rule="!self.matches('(^|/)[.][.](/|$)')",message="stagingDirectory must not contain '..'"
	// +kubebuilder:validation:XValidation:rule="!self.matches('[[:space:]]')",message="stagingDirectory must not contain spaces or other white space"
	StagingDirectory string `json:"stagingDirectory,omitempty"`
}

// TLSSpec says how an iLO's certificate is verified. At most one of its fields may be set; with
// none, the certificate must chain to the system's roots.
// +kubebuilder:validation:XValidation:rule="[has(self.caBundleSecretRef), has(self.certificateSHA256), has(self.insecureSkipVerify) && self.insecureSkipVerify].filter(x, x).size() <= 1",message="spec.tls: set at most one of caBundleSecretRef, certificateSHA256 and insecureSkipVerify"
type TLSSpec struct {
	// caBundleSecretRef names a Secret whose key "ca.crt" holds the PEM CA bundle that signs
	// the iLO's certificate.
	// +optional
	CABundleSecretRef *SecretReference `json:"caBundleSecretRef,omitempty"`

	// certificateSHA256 pins the iLO's certificate by the SHA-256 of its DER encoding, as 64
	// hex characters, with or without colons. Suited to self-signed iLO certificates.
	// +optional
	// +kubebuilder:validation:Pattern=`^([0-9a-fA-F]{64}|([0-9a-fA-F]{2}:){31}[0-9a-fA-F]{2})$`
	CertificateSHA256 string `json:"certificateSHA256,omitempty"`

	// insecureSkipVerify turns certificate verification off. Only for lab use.
	// +optional
	InsecureSkipVerify bool `json:"insecureSkipVerify,omitempty"`
}

// SSHSpec says how an SSH target is reached.
type SSHSpec struct {
	// port is the target's SSH port; when unset, the PortPolicy's sshPort (rule P3, 22).
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port *int32 `json:"port,omitempty"`

	// knownHostsSecretRef names a Secret whose key "known_hosts" lists the target's host keys.
	// +optional
	KnownHostsSecretRef *SecretReference `json:"knownHostsSecretRef,omitempty"`

	// insecureIgnoreHostKey waives the host key check. Only for lab use.
	// +optional
	InsecureIgnoreHostKey bool `json:"insecureIgnoreHostKey,omitempty"`
}

// ComponentVersion is the version of one firmware component as last read from the target.
type ComponentVersion struct {
	// component names the component: iLO, SystemROM, SmartComponent or OA.
	// +required
	Component Component `json:"component"`

	// version is the version string the target reported.
	// +required
	Version string `json:"version"`
}

// MaxRecordedDevices bounds the device versions a TargetUpdate and an UpdateTarget record
// (status.devices' MaxItems): an inventory that lists more is cut, and compliance then cannot
// tell from a device's absence that the server lacks it.
const MaxRecordedDevices = 512

// DeviceVersion is the version of one firmware inventory entry as last read, by the device
// Target GUID a Smart Component's payload.json names it by (Devices.Device[].Target).
type DeviceVersion struct {
	// target is the device Target GUID, lower-case.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	Target string `json:"target"`

	// version is the version the inventory entry reported.
	// +required
	// +kubebuilder:validation:MaxLength=128
	Version string `json:"version"`
}

// ComplianceState is a target's standing against a FirmwareBaseline.
// +kubebuilder:validation:Enum=Compliant;Drifting;Unknown
type ComplianceState string

const (
	// ComplianceCompliant: every component of the baseline that applies runs its version.
	ComplianceCompliant ComplianceState = "Compliant"
	// ComplianceDrifting: some component that applies runs another version.
	ComplianceDrifting ComplianceState = "Drifting"
	// ComplianceUnknown: nothing drifts, but some component's version was never read, or
	// whether it applies cannot be told from what the UpdateTarget records.
	ComplianceUnknown ComplianceState = "Unknown"
)

// UnknownComponent is a baseline component a target cannot be judged against yet, with why.
type UnknownComponent struct {
	// name is the baseline component.
	// +required
	// +kubebuilder:validation:MaxLength=63
	Name string `json:"name"`
	// message says why it cannot be judged, and what records what is missing.
	// +required
	// +kubebuilder:validation:MaxLength=1024
	Message string `json:"message"`
}

// BaselineCompliance is a target's standing against one FirmwareBaseline of its namespace
// that applies to it.
type BaselineCompliance struct {
	// name is the FirmwareBaseline.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`

	// version is the baseline's spec.version.
	// +required
	// +kubebuilder:validation:MaxLength=64
	Version string `json:"version"`

	// state is Compliant, Drifting or Unknown.
	// +required
	State ComplianceState `json:"state"`

	// drift lists the components that run another version than the baseline's.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=200
	Drift []ComponentDrift `json:"drift,omitempty"`

	// unknown lists the components that cannot be judged yet, with why.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=200
	Unknown []UnknownComponent `json:"unknown,omitempty"`
}

// MaxBaselinesShown bounds status.baselines (its MaxItems); status.compliance counts all.
const MaxBaselinesShown = 32

// UpdateTargetStatus is the observed state of an UpdateTarget.
type UpdateTargetStatus struct {
	// observedGeneration is the generation last reconciled successfully.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions: Ready is True when the referenced Secrets exist with the keys this target
	// needs. Compliant, present while some FirmwareBaseline of the namespace applies to the
	// target, is True when it runs every applicable component at each such baseline's
	// version, False when some component drifts, Unknown when some version was never read.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// firmwareVersions are the versions last read from the target, by component.
	// +optional
	// +listType=map
	// +listMapKey=component
	FirmwareVersions []ComponentVersion `json:"firmwareVersions,omitempty"`

	// model is the server model as its inventory names it, last read by a baseline job's
	// agent; compliance tells by it which model-bound baseline components apply.
	// +optional
	// +kubebuilder:validation:MaxLength=128
	Model string `json:"model,omitempty"`

	// devices are the firmware inventory entries last read by a baseline job's agent, by the
	// device Target GUIDs Smart Components name them by, with the version each runs;
	// compliance judges Smart Component (.fwpkg) components by them. At most 512.
	// +optional
	// +listType=map
	// +listMapKey=target
	// +kubebuilder:validation:MaxItems=512
	Devices []DeviceVersion `json:"devices,omitempty"`

	// inventoryTime is when a baseline job's agent last read the target's inventory (model
	// and devices): a device missing from devices then is not in the server.
	// +optional
	InventoryTime *metav1.Time `json:"inventoryTime,omitempty"`

	// baselines is the target's standing against each FirmwareBaseline of its namespace
	// that selects it and has a component for its type, by name, at most 32.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=32
	Baselines []BaselineCompliance `json:"baselines,omitempty"`

	// compliance is "compliant/total" over the baselines that apply, for print columns.
	// +optional
	// +kubebuilder:validation:MaxLength=32
	Compliance string `json:"compliance,omitempty"`

	// lastJob names the last UpdateJob that touched this target.
	// +optional
	LastJob string `json:"lastJob,omitempty"`

	// lastUpdateTime is when a job last finished with this target.
	// +optional
	LastUpdateTime *metav1.Time `json:"lastUpdateTime,omitempty"`
}

// UpdateTarget is one managed endpoint: an iLO, an Onboard Administrator or a Linux host.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=ut,categories=firmware
// +kubebuilder:printcolumn:name="Type",type=string,JSONPath=`.spec.type`
// +kubebuilder:printcolumn:name="Address",type=string,JSONPath=`.spec.address`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Compliance",type=string,JSONPath=`.status.conditions[?(@.type=="Compliant")].reason`
// +kubebuilder:printcolumn:name="Baselines",type=string,JSONPath=`.status.compliance`,priority=1
// +kubebuilder:printcolumn:name="Last Job",type=string,JSONPath=`.status.lastJob`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type UpdateTarget struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec describes the endpoint.
	// +required
	Spec UpdateTargetSpec `json:"spec"`

	// status is what the operator last observed.
	// +optional
	Status UpdateTargetStatus `json:"status,omitempty"`
}

// UpdateTargetList is a list of UpdateTargets.
// +kubebuilder:object:root=true
type UpdateTargetList struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the standard list metadata.
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	// items are the UpdateTargets.
	Items []UpdateTarget `json:"items"`
}
