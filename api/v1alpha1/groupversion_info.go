// Package v1alpha1 contains the firmware.fwops.io/v1alpha1 API: UpdateTarget, PortPolicy,
// UpdateJob, TargetUpdate (the per-target child of an UpdateJob) and FirmwareBaseline.
// +kubebuilder:object:generate=true
// +groupName=firmware.fwops.io
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the group and version of these types.
	GroupVersion = schema.GroupVersion{Group: "firmware.fwops.io", Version: "v1alpha1"}

	// SchemeBuilder registers the types with a scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the types of this group and version to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion,
		&UpdateTarget{}, &UpdateTargetList{},
		&PortPolicy{}, &PortPolicyList{},
		&UpdateJob{}, &UpdateJobList{},
		&TargetUpdate{}, &TargetUpdateList{},
	)
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
