package plan

import (
	"reflect"
	"slices"
	"testing"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
)

const (
	dl325    = "ProLiant DL325 Gen10 Plus"
	xl675d   = "ProLiant XL675d Gen10 Plus"
	nicGUID  = "a6b1a447-382a-5a4f-3b60-0013f0bb5aa1"
	nvmeGUID = "b5a71c44-16c1-4e6d-9e3a-2a1e3c8d5f01"
)

func component(name string, kind fwv1.BaselineComponentKind, version string, types ...fwv1.TargetType) fwv1.BaselineComponent {
	return fwv1.BaselineComponent{Name: name, Kind: kind, Firmware: fwv1.FirmwareSource{Version: version},
		AppliesTo: fwv1.ComponentApplicability{TargetTypes: types}}
}

func models(c fwv1.BaselineComponent, m ...string) fwv1.BaselineComponent {
	c.AppliesTo.Models = m
	return c
}

func devices(c fwv1.BaselineComponent, d ...string) fwv1.BaselineComponent {
	c.AppliesTo.Devices = d
	return c
}

func needs(c fwv1.BaselineComponent, name, minimum string) fwv1.BaselineComponent {
	c.Prerequisites = append(c.Prerequisites, fwv1.ComponentPrerequisite{Name: name, MinimumVersion: minimum})
	return c
}

// fleetBaseline is an SPP-like set for a mixed fleet; its components are listed in no
// particular order, so that the plan's order is the plan's own.
func fleetBaseline() *fwv1.FirmwareBaseline {
	return &fwv1.FirmwareBaseline{Spec: fwv1.FirmwareBaselineSpec{Version: "2026.09", Components: []fwv1.BaselineComponent{
		devices(component("nic-bcm57414", fwv1.BaselineKindSmartComponent, "08.60.12", fwv1.TargetTypeILO5, fwv1.TargetTypeILO6), nicGUID),
		needs(models(component("rom-a55", fwv1.BaselineKindSystemROM, "3.40", fwv1.TargetTypeILO5), dl325), "ilo5", "2.78"),
		models(component("rom-a48", fwv1.BaselineKindSystemROM, "3.40", fwv1.TargetTypeILO5), xl675d),
		component("ilo5", fwv1.BaselineKindILO, "3.10", fwv1.TargetTypeILO5),
		component("ilo6", fwv1.BaselineKindILO, "1.61", fwv1.TargetTypeILO6),
		component("ilo4", fwv1.BaselineKindILO, "2.82", fwv1.TargetTypeILO4),
		component("oa", fwv1.BaselineKindOA, "4.97", fwv1.TargetTypeOA),
		component("linux-nic", fwv1.BaselineKindLinuxSmartComponent, "1.2.0", fwv1.TargetTypeLinux),
	}}}
}

func ilo5(model, ilo, rom string, devs map[string]string) Inventory {
	return Inventory{TargetType: fwv1.TargetTypeILO5, Model: model, Devices: devs,
		Versions: map[fwv1.BaselineComponentKind]string{fwv1.BaselineKindILO: ilo, fwv1.BaselineKindSystemROM: rom}}
}

// brief is a plan in short: "name from->to" per step, "name:Reason" per skipped component.
func brief(p Plan) (steps, skipped []string) {
	for _, s := range p.Steps {
		steps = append(steps, s.Component.Name+" "+s.From+"->"+s.To)
	}
	for _, s := range p.Skipped {
		skipped = append(skipped, s.Name+":"+string(s.Reason))
	}
	return steps, skipped
}

func TestMake(t *testing.T) {
	for _, tc := range []struct {
		name     string
		inv      Inventory
		baseline func() *fwv1.FirmwareBaseline
		steps    []string
		skipped  []string
		reboot   bool
	}{
		{
			name:  "DL325: iLO, then its own ROM (whose iLO prerequisite the iLO step meets), then the NIC",
			inv:   ilo5(dl325, "2.46", "2.40", map[string]string{nicGUID: "08.50.78"}),
			steps: []string{"ilo5 2.46->3.10", "rom-a55 2.40->3.40", "nic-bcm57414 08.50.78->08.60.12"}, reboot: true,
		},
		{
			name:  "XL675d: the other model's ROM, and no NIC in this server",
			inv:   ilo5(xl675d, "2.55", "2.52", map[string]string{nvmeGUID: "1.0"}),
			steps: []string{"ilo5 2.55->3.10", "rom-a48 2.52->3.40"}, reboot: true,
		},
		{
			name:    "current components are skipped, leading 'v' or not",
			inv:     ilo5(dl325, "v3.10", "3.40", map[string]string{nicGUID: "08.60.12"}),
			skipped: []string{"ilo5:Current", "rom-a55:Current", "nic-bcm57414:Current"},
		},
		{
			name:  "a newer iLO is never downgraded; the ROM still goes on",
			inv:   ilo5(dl325, "3.20", "2.40", nil),
			steps: []string{"rom-a55 2.40->3.40"}, reboot: true,
			skipped: []string{"ilo5:Newer"},
		},
		{
			name:    "versions that cannot be ordered are not installed over",
			inv:     ilo5(xl675d, "", "U32 custom", nil),
			skipped: []string{"ilo5:Unordered", "rom-a48:Unordered"},
		},
		{
			name:  "iLO 6: its own iLO and the NIC, nothing for iLO 5",
			inv:   Inventory{TargetType: fwv1.TargetTypeILO6, Model: "ProLiant DL365 Gen11", Versions: map[fwv1.BaselineComponentKind]string{fwv1.BaselineKindILO: "1.59"}, Devices: map[string]string{nicGUID: "08.50.78"}},
			steps: []string{"ilo6 1.59->1.61", "nic-bcm57414 08.50.78->08.60.12"}, reboot: true,
		},
		{
			name:  "iLO 4: the iLO only (no Smart Components without an iLO Repository)",
			inv:   Inventory{TargetType: fwv1.TargetTypeILO4, Versions: map[fwv1.BaselineComponentKind]string{fwv1.BaselineKindILO: "2.80"}},
			steps: []string{"ilo4 2.80->2.82"},
		},
		{
			name:  "OA: the OA image",
			inv:   Inventory{TargetType: fwv1.TargetTypeOA, Versions: map[fwv1.BaselineComponentKind]string{fwv1.BaselineKindOA: "4.95"}},
			steps: []string{"oa 4.95->4.97"},
		},
		{
			name:  "Linux: its Smart Component by name",
			inv:   Inventory{TargetType: fwv1.TargetTypeLinux, Installed: map[string]string{"linux-nic": "1.1.0"}},
			steps: []string{"linux-nic 1.1.0->1.2.0"},
		},
		{
			name:  "Linux: a component the host never recorded is installed (the Smart Component checks itself)",
			inv:   Inventory{TargetType: fwv1.TargetTypeLinux},
			steps: []string{"linux-nic ->1.2.0"},
		},
		{
			name:    "Linux: a current component is skipped",
			inv:     Inventory{TargetType: fwv1.TargetTypeLinux, Installed: map[string]string{"linux-nic": "1.2.0"}},
			skipped: []string{"linux-nic:Current"},
		},
		{
			name: "a prerequisite later in the baseline and of another kind goes first",
			inv:  ilo5(dl325, "3.10", "2.40", map[string]string{nicGUID: "08.50.78"}),
			baseline: func() *fwv1.FirmwareBaseline {
				b := fleetBaseline()
				b.Spec.Components[1] = needs(b.Spec.Components[1], "nic-bcm57414", "08.60.12") // ROM needs the NIC first
				return b
			},
			steps: []string{"nic-bcm57414 08.50.78->08.60.12", "rom-a55 2.40->3.40"}, reboot: true,
			skipped: []string{"ilo5:Current"},
		},
		{
			name: "a stepping release: iLO 2.46 goes through 2.78 before 3.10",
			inv:  ilo5(dl325, "2.46", "3.40", nil),
			baseline: func() *fwv1.FirmwareBaseline {
				b := fleetBaseline()
				b.Spec.Components[3] = needs(b.Spec.Components[3], "ilo5-step", "2.78")
				b.Spec.Components = append(b.Spec.Components, component("ilo5-step", fwv1.BaselineKindILO, "2.78", fwv1.TargetTypeILO5))
				return b
			},
			steps:   []string{"ilo5-step 2.46->2.78", "ilo5 2.78->3.10"},
			skipped: []string{"rom-a55:Current"},
		},
		{
			name: "a prerequisite the baseline cannot meet holds the component back",
			inv:  ilo5(dl325, "2.46", "2.40", nil),
			baseline: func() *fwv1.FirmwareBaseline {
				b := fleetBaseline()
				b.Spec.Components[1].Prerequisites[0].MinimumVersion = "3.50" // the baseline's iLO is 3.10
				return b
			},
			steps:   []string{"ilo5 2.46->3.10"},
			skipped: []string{"rom-a55:PrerequisiteUnmet"},
		},
		{
			name: "a prerequisite that does not apply to the target holds the component back",
			inv:  ilo5(dl325, "3.10", "2.40", nil), // no NIC in this server
			baseline: func() *fwv1.FirmwareBaseline {
				b := fleetBaseline()
				b.Spec.Components[1] = needs(b.Spec.Components[1], "nic-bcm57414", "08.60.12")
				return b
			},
			skipped: []string{"ilo5:Current", "rom-a55:PrerequisiteUnmet"},
		},
		{
			name: "a Smart Component with one device newer is not installed",
			inv:  ilo5(dl325, "3.10", "3.40", map[string]string{nicGUID: "08.50.78", nvmeGUID: "9.0"}),
			baseline: func() *fwv1.FirmwareBaseline {
				b := fleetBaseline()
				b.Spec.Components[0] = devices(b.Spec.Components[0], nicGUID, nvmeGUID)
				return b
			},
			skipped: []string{"ilo5:Current", "rom-a55:Current", "nic-bcm57414:Newer"},
		},
		{
			name: "a cycle of prerequisites ends, installing neither",
			inv:  ilo5(xl675d, "2.55", "2.52", nil),
			baseline: func() *fwv1.FirmwareBaseline {
				b := fleetBaseline()
				b.Spec.Components[2] = needs(b.Spec.Components[2], "ilo5", "3.10")
				b.Spec.Components[3] = needs(b.Spec.Components[3], "rom-a48", "3.40")
				return b
			},
			skipped: []string{"rom-a48:PrerequisiteUnmet", "ilo5:PrerequisiteUnmet"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := fleetBaseline
			if tc.baseline != nil {
				b = tc.baseline
			}
			p := Make(tc.inv, b())
			steps, skipped := brief(p)
			if !reflect.DeepEqual(steps, tc.steps) || !reflect.DeepEqual(skipped, tc.skipped) {
				t.Errorf("plan\n steps   %q\n skipped %q\nwant\n steps   %q\n skipped %q", steps, skipped, tc.steps, tc.skipped)
			}
			if p.RebootRequired() != tc.reboot {
				t.Errorf("RebootRequired() = %v, want %v", p.RebootRequired(), tc.reboot)
			}
			for _, s := range p.Skipped {
				if s.Message == "" {
					t.Errorf("%s skipped (%s) without a message", s.Name, s.Reason)
				}
			}
		})
	}
}

func TestMakeFromRecordedVersions(t *testing.T) {
	// A dry run knows only the versions last recorded on the UpdateTarget: the model-bound
	// ROMs and the NIC are undecided, the iLO is planned.
	inv := Inventory{TargetType: fwv1.TargetTypeILO5, Recorded: true,
		Versions: map[fwv1.BaselineComponentKind]string{fwv1.BaselineKindILO: "2.46"}}
	p := Make(inv, fleetBaseline())
	steps, skipped := brief(p)
	if want := []string{"ilo5 2.46->3.10"}; !reflect.DeepEqual(steps, want) {
		t.Errorf("steps %q, want %q", steps, want)
	}
	if want := []string{"nic-bcm57414:Undecided", "rom-a55:Undecided", "rom-a48:Undecided"}; !reflect.DeepEqual(skipped, want) {
		t.Errorf("skipped %q, want %q", skipped, want)
	}
}

// Before a first job, an UpdateTarget has recorded no version: the dry run plans the
// component with its version not read (the agent reads it, and skips a current one, before it
// installs anything). Before, the dry run said "nothing to install" for a fresh fleet.
func TestMakeFromNothingRecorded(t *testing.T) {
	p := Make(Inventory{TargetType: fwv1.TargetTypeILO5, Recorded: true}, fleetBaseline())
	if steps, _ := brief(p); !reflect.DeepEqual(steps, []string{"ilo5 ->3.10"}) {
		t.Errorf("steps %q, want the iLO with its version not read", steps)
	}
	// The agent's own inventory is never planned from a version it could not read.
	p = Make(Inventory{TargetType: fwv1.TargetTypeILO5}, fleetBaseline())
	if steps, skipped := brief(p); len(steps) != 0 || !slices.Contains(skipped, "ilo5:Unordered") {
		t.Errorf("steps %q, skipped %q: an unread version must not be installed over", steps, skipped)
	}
}

func TestEstimate(t *testing.T) {
	p := Make(ilo5(dl325, "2.46", "2.40", map[string]string{nicGUID: "08.50.78"}), fleetBaseline())
	if got, want := p.Estimate(false), estimateILO+2*estimateStaged; got != want {
		t.Errorf("Estimate(no reboot) = %s, want %s", got, want)
	}
	if got, want := p.Estimate(true), estimateILO+2*estimateStaged+estimateRebootAll; got != want {
		t.Errorf("Estimate(reboot) = %s, want %s", got, want)
	}
}
