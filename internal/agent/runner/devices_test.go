package runner

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
)

// TestRecordedDevicesKeepTheBaselinesOwnWhenCut: an inventory with more device Targets than
// a TargetUpdate holds is cut, but never the devices the job's baseline names.
func TestRecordedDevicesKeepTheBaselinesOwnWhenCut(t *testing.T) {
	inv := map[string]string{}
	for i := range fwv1.MaxRecordedDevices + 88 {
		inv[fmt.Sprintf("00000000-0000-0000-0000-%012d", i)] = "1.0"
	}
	const nic = "ffffffff-382a-5a4f-1077-807010770073" // sorts last
	inv[nic] = "08.50.78"
	b := &fwv1.FirmwareBaseline{Spec: fwv1.FirmwareBaselineSpec{Components: []fwv1.BaselineComponent{
		{Name: "nic", Kind: fwv1.BaselineKindSmartComponent, AppliesTo: fwv1.ComponentApplicability{Devices: []string{"FFFFFFFF-382A-5A4F-1077-807010770073"}}},
	}}}
	got := recordedDevices(inv, b)
	if len(got) != fwv1.MaxRecordedDevices {
		t.Fatalf("%d devices recorded, want %d", len(got), fwv1.MaxRecordedDevices)
	}
	if !slices.Contains(got, fwv1.DeviceVersion{Target: nic, Version: "08.50.78"}) {
		t.Errorf("the baseline's NIC was cut")
	}
	if !slices.IsSortedFunc(got, func(a, b fwv1.DeviceVersion) int { return strings.Compare(a.Target, b.Target) }) {
		t.Errorf("devices not sorted by Target")
	}

	setDevices(got, []string{"FFFFFFFF-382A-5A4F-1077-807010770073"}, "08.60.12")
	if !slices.Contains(got, fwv1.DeviceVersion{Target: nic, Version: "08.60.12"}) {
		t.Errorf("the installed NIC's version not recorded: %v", got[len(got)-1])
	}
}
