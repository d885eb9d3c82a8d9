package compliance

import (
	"fmt"
	"reflect"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
)

func component(name string, kind fwv1.BaselineComponentKind, version string, types ...fwv1.TargetType) fwv1.BaselineComponent {
	return fwv1.BaselineComponent{Name: name, Kind: kind, Firmware: fwv1.FirmwareSource{Version: version},
		AppliesTo: fwv1.ComponentApplicability{TargetTypes: types}}
}

func target(name string, typ fwv1.TargetType, versions ...fwv1.ComponentVersion) fwv1.UpdateTarget {
	return fwv1.UpdateTarget{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: fwv1.UpdateTargetSpec{Type: typ},
		Status: fwv1.UpdateTargetStatus{FirmwareVersions: versions}}
}

func withModel(t fwv1.UpdateTarget, model string) fwv1.UpdateTarget {
	t.Status.Model = model
	return t
}

// withDevices records an inventory read, with these devices.
func withDevices(t fwv1.UpdateTarget, devs ...fwv1.DeviceVersion) fwv1.UpdateTarget {
	now := metav1.Now()
	t.Status.InventoryTime, t.Status.Devices = &now, devs
	return t
}

func device(target, version string) fwv1.DeviceVersion {
	return fwv1.DeviceVersion{Target: target, Version: version}
}

func manyDevices(n int) []fwv1.DeviceVersion {
	out := make([]fwv1.DeviceVersion, n)
	for i := range out {
		out[i] = device(fmt.Sprintf("00000000-0000-0000-0000-%012d", i), "1.0")
	}
	return out
}

func read(c fwv1.Component, v string) fwv1.ComponentVersion {
	return fwv1.ComponentVersion{Component: c, Version: v}
}

func TestEvaluate(t *testing.T) {
	rom := component("rom-a43", fwv1.BaselineKindSystemROM, "2.68", fwv1.TargetTypeILO5)
	rom.AppliesTo.Models = []string{"ProLiant DL325 Gen10 Plus"}
	nic := component("nic", fwv1.BaselineKindSmartComponent, "08.60.12", fwv1.TargetTypeILO5)
	nic.AppliesTo.Devices = []string{"a6b1a447-382a-5a4f-1077-807010770073"}
	nic2 := nic
	nic2.AppliesTo.Devices = []string{"a6b1a447-382a-5a4f-1077-807010770073", "a6b1a447-382a-5a4f-1077-807010770074", "a6b1a447-382a-5a4f-1077-807010770075"}
	b := &fwv1.FirmwareBaseline{Spec: fwv1.FirmwareBaselineSpec{Components: []fwv1.BaselineComponent{
		component("ilo5", fwv1.BaselineKindILO, "2.78", fwv1.TargetTypeILO5),
		component("ilo6", fwv1.BaselineKindILO, "1.59", fwv1.TargetTypeILO6),
		component("oa", fwv1.BaselineKindOA, "5.00", fwv1.TargetTypeOA),
		component("linux-nic", fwv1.BaselineKindLinuxSmartComponent, "1.2", fwv1.TargetTypeLinux),
	}}}
	for _, tc := range []struct {
		name       string
		components []fwv1.BaselineComponent
		target     fwv1.UpdateTarget
		want       *Target // nil: the baseline does not apply
	}{
		{name: "at the version, written with a v", target: target("a", fwv1.TargetTypeILO6, read(fwv1.ComponentILO, "v1.59")),
			want: &Target{Name: "a", State: Compliant}},
		{name: "another version", target: target("b", fwv1.TargetTypeILO5, read(fwv1.ComponentILO, "2.65"), read(fwv1.ComponentSystemROM, "2.68")),
			want: &Target{Name: "b", State: Drifting, Drift: []fwv1.ComponentDrift{{Name: "ilo5", Version: "2.65", Wanted: "2.78"}}}},
		{name: "the version of another component does not count", target: target("c", fwv1.TargetTypeOA, read(fwv1.ComponentILO, "5.00")),
			want: &Target{Name: "c", State: Unknown, Unknown: []fwv1.UnknownComponent{{Name: "oa", Message: "no version read from the target yet"}}}},
		{name: "a Linux Smart Component is recorded as SmartComponent", target: target("d", fwv1.TargetTypeLinux, read(fwv1.ComponentSmartComponent, "1.1")),
			want: &Target{Name: "d", State: Drifting, Drift: []fwv1.ComponentDrift{{Name: "linux-nic", Version: "1.1", Wanted: "1.2"}}}},
		{name: "model-specific and device components cannot be told before an inventory is read", components: []fwv1.BaselineComponent{rom, nic},
			target: target("e", fwv1.TargetTypeILO5, read(fwv1.ComponentILO, "2.78"), read(fwv1.ComponentSystemROM, "2.68"), read(fwv1.ComponentSmartComponent, "08.60.12")),
			want: &Target{Name: "e", State: Unknown, Unknown: []fwv1.UnknownComponent{
				{Name: "rom-a43", Message: "the UpdateTarget records no server model yet (a baseline job reads it)"},
				{Name: "nic", Message: "no inventory read from the target yet (a baseline job's agent reads its devices)"}}}},
		{name: "a Smart Component's device at its version, named in another case", components: []fwv1.BaselineComponent{nic},
			target: withDevices(target("j", fwv1.TargetTypeILO5, read(fwv1.ComponentILO, "2.78")), device("A6B1A447-382A-5A4F-1077-807010770073", "08.60.12")),
			want:   &Target{Name: "j", State: Compliant}},
		{name: "a Smart Component drifts from its oldest device", components: []fwv1.BaselineComponent{nic2},
			target: withDevices(target("k", fwv1.TargetTypeILO5, read(fwv1.ComponentILO, "2.78")),
				device("a6b1a447-382a-5a4f-1077-807010770073", "08.60.12"), device("a6b1a447-382a-5a4f-1077-807010770074", "08.50.16"),
				device("a6b1a447-382a-5a4f-1077-807010770075", "08.55.00")),
			want: &Target{Name: "k", State: Drifting, Drift: []fwv1.ComponentDrift{{Name: "nic", Version: "08.50.16", Wanted: "08.60.12"}}}},
		{name: "a Smart Component whose devices the read inventory lacks does not apply", components: []fwv1.BaselineComponent{nic},
			target: withDevices(target("l", fwv1.TargetTypeILO5, read(fwv1.ComponentILO, "2.78")), device("b5a71c44-16c1-4e6d-9e3a-2a1e3c8d5f01", "1.0")),
			want:   &Target{Name: "l", State: Compliant}},
		{name: "an inventory with no devices at all still tells", components: []fwv1.BaselineComponent{nic},
			target: withDevices(target("m", fwv1.TargetTypeILO5, read(fwv1.ComponentILO, "2.78"))),
			want:   &Target{Name: "m", State: Compliant}},
		{name: "an inventory cut at the most devices recorded cannot tell", components: []fwv1.BaselineComponent{nic},
			target: withDevices(target("n", fwv1.TargetTypeILO5, read(fwv1.ComponentILO, "2.78")), manyDevices(fwv1.MaxRecordedDevices)...),
			want: &Target{Name: "n", State: Unknown, Unknown: []fwv1.UnknownComponent{{Name: "nic",
				Message: "none of its devices is among the 512 recorded, the most an UpdateTarget holds: whether the server has one cannot be told"}}}},
		{name: "drift wins over unknown", components: []fwv1.BaselineComponent{rom},
			target: target("f", fwv1.TargetTypeILO5, read(fwv1.ComponentILO, "2.44")),
			want: &Target{Name: "f", State: Drifting, Drift: []fwv1.ComponentDrift{{Name: "ilo5", Version: "2.44", Wanted: "2.78"}},
				Unknown: []fwv1.UnknownComponent{{Name: "rom-a43", Message: "the UpdateTarget records no server model yet (a baseline job reads it)"}}}},
		{name: "a model read by a baseline job tells which model's ROM applies", components: []fwv1.BaselineComponent{rom},
			target: withModel(target("h", fwv1.TargetTypeILO5, read(fwv1.ComponentILO, "2.78"), read(fwv1.ComponentSystemROM, "2.68")), "ProLiant DL325 Gen10 Plus"),
			want:   &Target{Name: "h", State: Compliant}},
		{name: "another model's ROM does not apply", components: []fwv1.BaselineComponent{rom},
			target: withModel(target("i", fwv1.TargetTypeILO5, read(fwv1.ComponentILO, "2.78"), read(fwv1.ComponentSystemROM, "2.52")), "ProLiant XL675d Gen10 Plus"),
			want:   &Target{Name: "i", State: Compliant}},
		{name: "no component for iLO 4", target: target("g", fwv1.TargetTypeILO4, read(fwv1.ComponentILO, "2.80"))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bl := b.DeepCopy()
			bl.Spec.Components = append(bl.Spec.Components, tc.components...)
			res := Evaluate(bl, []fwv1.UpdateTarget{tc.target})
			if tc.want == nil {
				if len(res.Targets) != 0 || res.Counts != (fwv1.ComplianceCounts{}) {
					t.Fatalf("got %+v, want the target left out", res)
				}
				return
			}
			if len(res.Targets) != 1 || !reflect.DeepEqual(res.Targets[0], *tc.want) {
				t.Fatalf("got %+v\nwant %+v", res.Targets, *tc.want)
			}
		})
	}
}

// An iLO 5 stepping release is where a target passes on its way to the release that needs
// it: a target at that later release complies with both; one below it drifts from both.
func TestEvaluateSteppingRelease(t *testing.T) {
	final := component("ilo5", fwv1.BaselineKindILO, "3.10", fwv1.TargetTypeILO5)
	final.Prerequisites = []fwv1.ComponentPrerequisite{{Name: "ilo5-step", MinimumVersion: "2.78"}}
	b := &fwv1.FirmwareBaseline{Spec: fwv1.FirmwareBaselineSpec{Components: []fwv1.BaselineComponent{
		component("ilo5-step", fwv1.BaselineKindILO, "2.78", fwv1.TargetTypeILO5), final,
		component("ilo6", fwv1.BaselineKindILO, "1.59", fwv1.TargetTypeILO6),
	}}}
	for _, tc := range []struct {
		target fwv1.UpdateTarget
		want   Target
	}{
		{target("at-the-release", fwv1.TargetTypeILO5, read(fwv1.ComponentILO, "3.10")), Target{Name: "at-the-release", State: Compliant}},
		{target("below-the-step", fwv1.TargetTypeILO5, read(fwv1.ComponentILO, "2.46")), Target{Name: "below-the-step", State: Drifting,
			Drift: []fwv1.ComponentDrift{{Name: "ilo5-step", Version: "2.46", Wanted: "2.78"}, {Name: "ilo5", Version: "2.46", Wanted: "3.10"}}}},
		{target("at-the-step", fwv1.TargetTypeILO5, read(fwv1.ComponentILO, "2.78")), Target{Name: "at-the-step", State: Drifting,
			Drift: []fwv1.ComponentDrift{{Name: "ilo5", Version: "2.78", Wanted: "3.10"}}}},
	} {
		res := Evaluate(b, []fwv1.UpdateTarget{tc.target})
		if len(res.Targets) != 1 || !reflect.DeepEqual(res.Targets[0], tc.want) {
			t.Errorf("%s: got %+v\nwant %+v", tc.target.Name, res.Targets, tc.want)
		}
	}
}

func TestEvaluateCountsAndOrder(t *testing.T) {
	b := &fwv1.FirmwareBaseline{Spec: fwv1.FirmwareBaselineSpec{Components: []fwv1.BaselineComponent{
		component("ilo5", fwv1.BaselineKindILO, "2.78", fwv1.TargetTypeILO5),
	}}}
	res := Evaluate(b, []fwv1.UpdateTarget{
		target("z", fwv1.TargetTypeILO5, read(fwv1.ComponentILO, "2.78")),
		target("y", fwv1.TargetTypeILO5, read(fwv1.ComponentILO, "2.72")),
		target("x", fwv1.TargetTypeILO5),
		target("w", fwv1.TargetTypeILO5, read(fwv1.ComponentILO, "2.78")),
		target("linux", fwv1.TargetTypeLinux),
	})
	if want := (fwv1.ComplianceCounts{Compliant: 2, Drifting: 1, Unknown: 1}); res.Counts != want {
		t.Errorf("counts %+v, want %+v", res.Counts, want)
	}
	var names []string
	for _, t := range res.Targets {
		names = append(names, t.Name)
	}
	if want := []string{"w", "x", "y", "z"}; !reflect.DeepEqual(names, want) {
		t.Errorf("targets %v, want %v (by name, the Linux host left out)", names, want)
	}
}

func TestEvaluateLeavesOutTargetsWithoutTheDevices(t *testing.T) {
	nic := component("nic", fwv1.BaselineKindSmartComponent, "08.60.12", fwv1.TargetTypeILO5)
	nic.AppliesTo.Devices = []string{"a6b1a447-382a-5a4f-1077-807010770073"}
	b := &fwv1.FirmwareBaseline{Spec: fwv1.FirmwareBaselineSpec{Components: []fwv1.BaselineComponent{nic}}}
	res := Evaluate(b, []fwv1.UpdateTarget{
		withDevices(target("without", fwv1.TargetTypeILO5), device("b5a71c44-16c1-4e6d-9e3a-2a1e3c8d5f01", "1.0")),
		withDevices(target("with", fwv1.TargetTypeILO5), device("a6b1a447-382a-5a4f-1077-807010770073", "08.60.12")),
		target("unread", fwv1.TargetTypeILO5),
	})
	if want := (fwv1.ComplianceCounts{Compliant: 1, Unknown: 1}); res.Counts != want {
		t.Errorf("counts %+v, want %+v (the server without the NIC left out)", res.Counts, want)
	}
}
