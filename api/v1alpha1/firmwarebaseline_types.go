package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// BaselineComponentKind is what a baseline component installs.
// +kubebuilder:validation:Enum=iLO;SystemROM;SmartComponent;OA;LinuxSmartComponent
type BaselineComponentKind string

const (
	// BaselineKindILO is an iLO firmware image (.bin), flashed through the iLO (or an OA bay).
	BaselineKindILO BaselineComponentKind = "iLO"
	// BaselineKindSystemROM is a system ROM image, flashed through the iLO.
	BaselineKindSystemROM BaselineComponentKind = "SystemROM"
	// BaselineKindSmartComponent is a Smart Component in HPE's .fwpkg format (payload.json),
	// installed through an iLO 5 or 6.
	BaselineKindSmartComponent BaselineComponentKind = "SmartComponent"
	// BaselineKindOA is an Onboard Administrator image.
	BaselineKindOA BaselineComponentKind = "OA"
	// BaselineKindLinuxSmartComponent is a Smart Component run on a Linux host over SSH.
	BaselineKindLinuxSmartComponent BaselineComponentKind = "LinuxSmartComponent"
)

// ComponentApplicability says which targets a baseline component is for. A component applies
// to a target when every field set here matches it.
type ComponentApplicability struct {
	// targetTypes are the UpdateTarget types the component is installed on; they must suit
	// its kind (iLO: iLO4, iLO5, iLO6 or OA, which flashes a bay's iLO; SystemROM: iLO4,
	// iLO5, iLO6; SmartComponent: iLO5, iLO6; OA: OA; LinuxSmartComponent: Linux).
	// +required
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=5
	TargetTypes []TargetType `json:"targetTypes"`

	// models restricts the component to these server models, as the server's inventory names
	// them ("ProLiant DL325 Gen10 Plus"); every model when empty.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=128
	Models []string `json:"models,omitempty"`

	// devices, for a SmartComponent, are the Target GUIDs of its payload.json
	// (Devices.Device[].Target): the firmware inventory entries it updates.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=64
	Devices []string `json:"devices,omitempty"`
}

// ComponentPrerequisite is another component of the same baseline that must run at least a
// version before this one is installed (iLO 5 needs stepping releases, for one).
type ComponentPrerequisite struct {
	// name is the other component's name in this baseline.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	Name string `json:"name"`

	// minimumVersion is the lowest version of that component this one installs over.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	MinimumVersion string `json:"minimumVersion"`
}

// BaselineComponent is one firmware component of a baseline.
// +kubebuilder:validation:XValidation:rule="has(self.firmware.version) && size(self.firmware.version) > 0",message="firmware.version is required in a baseline: compliance compares the targets' versions with it",fieldPath=".firmware.version"
// +kubebuilder:validation:XValidation:rule="self.kind != 'iLO' || self.appliesTo.targetTypes.all(t, t in ['iLO4', 'iLO5', 'iLO6', 'OA'])",message="an iLO component applies only to iLO4, iLO5, iLO6 or OA (a bay's iLO) targets",fieldPath=".appliesTo.targetTypes"
// +kubebuilder:validation:XValidation:rule="self.kind != 'SystemROM' || self.appliesTo.targetTypes.all(t, t in ['iLO4', 'iLO5', 'iLO6'])",message="a SystemROM component applies only to iLO4, iLO5 or iLO6 targets",fieldPath=".appliesTo.targetTypes"
// +kubebuilder:validation:XValidation:rule="self.kind != 'SmartComponent' || self.appliesTo.targetTypes.all(t, t in ['iLO5', 'iLO6'])",message="a SmartComponent (.fwpkg) applies only to iLO5 or iLO6 targets: iLO 4 has no iLO Repository",fieldPath=".appliesTo.targetTypes"
// +kubebuilder:validation:XValidation:rule="self.kind != 'OA' || self.appliesTo.targetTypes.all(t, t == 'OA')",message="an OA component applies only to OA targets",fieldPath=".appliesTo.targetTypes"
// +kubebuilder:validation:XValidation:rule="self.kind != 'LinuxSmartComponent' || self.appliesTo.targetTypes.all(t, t == 'Linux')",message="a LinuxSmartComponent applies only to Linux targets",fieldPath=".appliesTo.targetTypes"
// +kubebuilder:validation:XValidation:rule="self.kind == 'SmartComponent' ? has(self.appliesTo.devices) && size(self.appliesTo.devices) > 0 : !has(self.appliesTo.devices) || size(self.appliesTo.devices) == 0",message="appliesTo.devices (the payload.json Devices.Device[].Target GUIDs) is required for a SmartComponent and only allowed there",fieldPath=".appliesTo.devices"
// +kubebuilder:validation:XValidation:rule="!has(self.prerequisites) || self.prerequisites.all(p, p.name != self.name)",message="a component cannot be its own prerequisite",fieldPath=".prerequisites"
type BaselineComponent struct {
	// name identifies the component in the baseline, a DNS label ("ilo5", "nic-bcm57414").
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`

	// kind is what the component installs: iLO, SystemROM, SmartComponent (.fwpkg), OA or
	// LinuxSmartComponent.
	// +required
	Kind BaselineComponentKind `json:"kind"`

	// firmware is the component's image, as an UpdateJob names one: exactly one source (url,
	// persistentVolumeClaim or nodePath), its SHA-256 and, required here, the version it
	// installs.
	// +required
	Firmware FirmwareSource `json:"firmware"`

	// appliesTo says which targets the component is for.
	// +required
	AppliesTo ComponentApplicability `json:"appliesTo"`

	// prerequisites are components of this baseline that must be at a minimum version first.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=4
	Prerequisites []ComponentPrerequisite `json:"prerequisites,omitempty"`
}

// FirmwareBaselineSpec is a named, versioned set of firmware components.
// +kubebuilder:validation:XValidation:rule="self.components.all(c, !has(c.prerequisites) || c.prerequisites.all(p, self.components.exists(o, o.name == p.name)))",message="every prerequisite must name a component of this baseline",fieldPath=".components"
type FirmwareBaselineSpec struct {
	// version is the baseline's version ("2026.09"), as a Service Pack for ProLiant names its
	// release.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	Version string `json:"version"`

	// targetSelector picks, by label, the UpdateTargets of this namespace the baseline is
	// checked against; every UpdateTarget of the namespace when unset.
	// +optional
	TargetSelector *metav1.LabelSelector `json:"targetSelector,omitempty"`

	// refreshInterval, when set, has the versions of the baseline's targets read again this
	// often: the controller creates a read-only UpdateJob (spec.inventoryOnly) for them when
	// the last refresh is older than the interval. At least 1h. A refresh on demand: set the
	// annotation firmware.fwops.io/refresh-requested to a new value.
	// +optional
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1h')",message="refreshInterval must be at least 1h"
	RefreshInterval *metav1.Duration `json:"refreshInterval,omitempty"`

	// components are the baseline's firmware components.
	// +required
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=200
	Components []BaselineComponent `json:"components"`
}

// ComponentDrift is a component a target runs at another version than the baseline's.
type ComponentDrift struct {
	// name is the baseline component.
	// +required
	Name string `json:"name"`
	// version is the version last read from the target.
	// +required
	Version string `json:"version"`
	// wanted is the baseline's version.
	// +required
	Wanted string `json:"wanted"`
}

// DriftingTarget is an UpdateTarget that runs some component at another version than the
// baseline's.
type DriftingTarget struct {
	// name is the UpdateTarget.
	// +required
	Name string `json:"name"`
	// components are the drifting components.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=200
	Components []ComponentDrift `json:"components,omitempty"`
}

// ComplianceCounts counts the targets a baseline applies to by compliance.
type ComplianceCounts struct {
	// compliant targets run every applicable component at the baseline's version.
	// +optional
	Compliant int32 `json:"compliant"`
	// drifting targets run at least one applicable component at another version.
	// +optional
	Drifting int32 `json:"drifting"`
	// unknown targets have an applicable component whose version was never read, or whose
	// applicability cannot be told from what the UpdateTarget records (models, devices).
	// +optional
	Unknown int32 `json:"unknown"`
}

// FirmwareBaselineStatus is how the fleet stands against the baseline, from the versions last
// read from each target (UpdateTarget status.firmwareVersions).
type FirmwareBaselineStatus struct {
	// observedGeneration is the generation last reconciled successfully.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions: Ready is True when every target the baseline applies to is compliant.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// counts counts the targets by compliance.
	// +optional
	Counts ComplianceCounts `json:"counts,omitempty"`

	// compliance is "compliant/total", for print columns.
	// +optional
	Compliance string `json:"compliance,omitempty"`

	// driftingTargets lists drifting targets, by name, at most 50; counts.drifting says how
	// many there are.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=50
	DriftingTargets []DriftingTarget `json:"driftingTargets,omitempty"`

	// lastRefresh is the last read-only UpdateJob the controller created to read the
	// targets' versions again (on demand or on spec.refreshInterval).
	// +optional
	LastRefresh *BaselineRefresh `json:"lastRefresh,omitempty"`
}

// AnnotationRefreshRequested on a FirmwareBaseline asks for its targets' versions to be read
// again: each new value makes the controller create one read-only UpdateJob.
const AnnotationRefreshRequested = "firmware.fwops.io/refresh-requested"

// LabelRefreshOf on an UpdateJob names the FirmwareBaseline whose refresh it is.
const LabelRefreshOf = "firmware.fwops.io/refresh-of"

// BaselineRefresh is one refresh of a baseline's targets' versions.
type BaselineRefresh struct {
	// requested is the value of the refresh-requested annotation this refresh handled; empty
	// for a scheduled one.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Requested string `json:"requested,omitempty"`
	// job is the read-only UpdateJob created.
	// +required
	Job string `json:"job"`
	// time is when it was created.
	// +required
	Time metav1.Time `json:"time"`
}

// FirmwareBaseline is a named, versioned set of firmware components, each for the targets it
// applies to, like a Service Pack for ProLiant; its status shows which targets drift from it.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=fwb,categories=firmware
// +kubebuilder:printcolumn:name="Version",type=string,JSONPath=`.spec.version`
// +kubebuilder:printcolumn:name="Compliant",type=string,JSONPath=`.status.compliance`
// +kubebuilder:printcolumn:name="Drifting",type=integer,JSONPath=`.status.counts.drifting`
// +kubebuilder:printcolumn:name="Unknown",type=integer,JSONPath=`.status.counts.unknown`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type FirmwareBaseline struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec lists the baseline's components.
	// +required
	Spec FirmwareBaselineSpec `json:"spec"`

	// status is how the targets stand against the baseline.
	// +optional
	Status FirmwareBaselineStatus `json:"status,omitempty"`
}

// FirmwareBaselineList is a list of FirmwareBaselines.
// +kubebuilder:object:root=true
type FirmwareBaselineList struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the standard list metadata.
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	// items are the FirmwareBaselines.
	Items []FirmwareBaseline `json:"items"`
}

func init() {
	// Registered here rather than in addKnownTypes so that this kind lives in one file.
	SchemeBuilder.Register(func(s *runtime.Scheme) error {
		s.AddKnownTypes(GroupVersion, &FirmwareBaseline{}, &FirmwareBaselineList{})
		return nil
	})
}
