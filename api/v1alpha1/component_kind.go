package v1alpha1

// Component is the component that installs what a baseline component of kind k holds: what an
// UpdateJob's spec.component names for the same firmware, and so the component under which an
// UpdateTarget's status.firmwareVersions records its version. A Linux host's Smart Component
// is a SmartComponent there, as a spec.firmware job for it names it. The one mapping: the
// agent, the controllers and compliance all use it.
func (k BaselineComponentKind) Component() Component {
	switch k {
	case BaselineKindILO:
		return ComponentILO
	case BaselineKindSystemROM:
		return ComponentSystemROM
	case BaselineKindOA:
		return ComponentOA
	}
	return ComponentSmartComponent
}
