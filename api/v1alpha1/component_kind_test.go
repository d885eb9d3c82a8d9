package v1alpha1

import "testing"

func TestBaselineKindComponent(t *testing.T) {
	for kind, want := range map[BaselineComponentKind]Component{
		BaselineKindILO:                 ComponentILO,
		BaselineKindSystemROM:           ComponentSystemROM,
		BaselineKindOA:                  ComponentOA,
		BaselineKindSmartComponent:      ComponentSmartComponent,
		BaselineKindLinuxSmartComponent: ComponentSmartComponent,
	} {
		if got := kind.Component(); got != want {
			t.Errorf("%s.Component() = %s, want %s", kind, got, want)
		}
	}
}
