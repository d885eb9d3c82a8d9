package ports

import (
	"reflect"
	"testing"

	"k8s.io/utils/ptr"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
)

func TestFromSpec_EmptySpecIsPortsMD(t *testing.T) {
	if got := FromSpec(fwv1.PortPolicySpec{}); !reflect.DeepEqual(got, DefaultPolicy()) {
		t.Fatalf("FromSpec(empty) = %+v, want the defaults %+v", got, DefaultPolicy())
	}
}

func TestFromSpec_EveryFieldCarriesOver(t *testing.T) {
	got := FromSpec(fwv1.PortPolicySpec{
		ControlPort: 40001,
		FirmwareServer: fwv1.FirmwareServerPorts{
			PreferredPort: 8080, FallbackRange: &fwv1.PortRange{Start: 63000, End: 63005}, Selection: fwv1.PortSelectionLowest,
		},
		SSHPort: 2222, SessionBasePort: 50000, ReverseBasePort: 51000, SingleNICIPv4: ptr.To(false),
	})
	want := Policy{
		ControlPort:     40001,
		FirmwareServer:  FirmwareServer{PreferredPort: 8080, FallbackRange: Range{Start: 63000, End: 63005}, Selection: SelectionLowest},
		SSHPort:         2222,
		SessionBasePort: 50000,
		ReverseBasePort: 51000,
		SingleNICIPv4:   false,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("FromSpec = %+v, want %+v", got, want)
	}
}
