package v1alpha1

// Condition types shared by the kinds of this API. They follow the conventions that kstatus,
// Argo CD and Flux read: Ready is the summary, Progressing and Failed refine it.
const (
	// ConditionReady is True when the object is in its wanted state.
	ConditionReady = "Ready"
	// ConditionProgressing is True while work is under way.
	ConditionProgressing = "Progressing"
	// ConditionFailed is True when the object cannot reach its wanted state without help.
	ConditionFailed = "Failed"
	// ConditionStalled is True when the controller cannot make progress until a person acts
	// (a failed job, a missing policy or target, an agent pod the API server refuses): the
	// abnormal-true condition kstatus (Flux, Argo CD) reads as "failed" rather than
	// "in progress".
	ConditionStalled = "Stalled"
	// ConditionCompliant, on an UpdateTarget, is its standing against the FirmwareBaselines
	// that apply to it: True when it runs their versions, False when a component drifts,
	// Unknown when a version was never read. None of the types above says it: Ready on an
	// UpdateTarget means jobs can reach it, and a drifting target is not failed, stalled or
	// in progress; folding drift into Ready would make every out-of-date server look broken
	// to kstatus. The FirmwareBaseline's own Ready sums the fleet up.
	ConditionCompliant = "Compliant"
)

// SecretReference names a Secret in the namespace of the object that refers to it.
type SecretReference struct {
	// name is the name of the Secret.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}
