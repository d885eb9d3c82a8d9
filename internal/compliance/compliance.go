// Package compliance judges UpdateTargets against a FirmwareBaseline from the versions last
// read from each target (UpdateTarget status.firmwareVersions, and status.devices for Smart
// Components).
package compliance

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
	"github.com/fwops/firmware-operator/internal/agent/plan"
	"github.com/fwops/firmware-operator/internal/fwversion"
)

// State is a target's standing against a baseline.
type State string

const (
	// Compliant: every applicable component runs the baseline's version.
	Compliant State = "compliant"
	// Drifting: some applicable component runs another version.
	Drifting State = "drifting"
	// Unknown: nothing drifts, but some applicable component's version was never read, or
	// whether a component applies cannot be told from what the UpdateTarget records.
	Unknown State = "unknown"
)

// Target is one target's standing.
type Target struct {
	Name  string
	State State
	// Drift lists the drifting components.
	Drift []fwv1.ComponentDrift
	// Unknown names the components whose version or applicability is unknown, with why.
	Unknown []fwv1.UnknownComponent
}

// API is the state as the UpdateTarget's status.baselines shows it.
func (s State) API() fwv1.ComplianceState {
	switch s {
	case Compliant:
		return fwv1.ComplianceCompliant
	case Drifting:
		return fwv1.ComplianceDrifting
	}
	return fwv1.ComplianceUnknown
}

// Reasons joins the unknown components' reasons, for a message.
func (t Target) Reasons() string {
	var out []string
	for _, u := range t.Unknown {
		out = append(out, u.Name+": "+u.Message)
	}
	return strings.Join(out, "; ")
}

// Result is the standing of the targets a baseline applies to, by name.
type Result struct {
	Counts  fwv1.ComplianceCounts
	Targets []Target
}

// Evaluate judges each target against b. Targets no component applies to are left out.
func Evaluate(b *fwv1.FirmwareBaseline, targets []fwv1.UpdateTarget) Result {
	var res Result
	for i := range targets {
		t, applies := EvaluateTarget(b, &targets[i])
		if !applies {
			continue
		}
		switch t.State {
		case Compliant:
			res.Counts.Compliant++
		case Drifting:
			res.Counts.Drifting++
		default:
			res.Counts.Unknown++
		}
		res.Targets = append(res.Targets, t)
	}
	sort.Slice(res.Targets, func(i, j int) bool { return res.Targets[i].Name < res.Targets[j].Name })
	return res
}

// EvaluateTarget judges one target against b, whose targetSelector the caller checked; false
// when no component of b applies to the target.
func EvaluateTarget(b *fwv1.FirmwareBaseline, ut *fwv1.UpdateTarget) (Target, bool) {
	t := Target{Name: ut.Name}
	applies := false
	unknown := func(c fwv1.BaselineComponent, why string) {
		t.Unknown = append(t.Unknown, fwv1.UnknownComponent{Name: c.Name, Message: why})
	}
	for _, c := range b.Spec.Components {
		if !slices.Contains(c.AppliesTo.TargetTypes, ut.Spec.Type) {
			continue
		}
		if len(c.AppliesTo.Models) > 0 && ut.Status.Model != "" && !plan.ModelMatches(c.AppliesTo.Models, ut.Status.Model) {
			continue // another model's component
		}
		if len(c.AppliesTo.Models) > 0 && ut.Status.Model == "" {
			applies = true
			unknown(c, "the UpdateTarget records no server model yet (a baseline job reads it)")
			continue
		}
		if c.Kind == fwv1.BaselineKindSmartComponent {
			read, why, inServer := devicesRead(c, ut)
			if !inServer {
				continue // none of its devices is in this server
			}
			applies = true
			if why != "" {
				unknown(c, why)
				continue
			}
			if v, ok := drifting(read, c.Firmware.Version); ok {
				t.Drift = append(t.Drift, fwv1.ComponentDrift{Name: c.Name, Version: v, Wanted: c.Firmware.Version})
			}
			continue
		}
		applies = true
		read, ok := versionRead(ut, c.Kind.Component())
		switch {
		case !ok:
			unknown(c, "no version read from the target yet")
		case steppingRelease(b, c, ut) && atLeast(read, c.Firmware.Version):
			// A stepping release is a way to a later version, not where the target stays.
		case !fwversion.Same(read, c.Firmware.Version):
			t.Drift = append(t.Drift, fwv1.ComponentDrift{Name: c.Name, Version: read, Wanted: c.Firmware.Version})
		}
	}
	switch {
	case len(t.Drift) > 0:
		t.State = Drifting
	case len(t.Unknown) > 0:
		t.State = Unknown
	default:
		t.State = Compliant
	}
	return t, applies
}

// devicesRead are the versions the UpdateTarget records for the devices a Smart Component
// names. inServer is false when the recorded inventory shows none of them is in the server;
// why says why that cannot be told, or "".
func devicesRead(c fwv1.BaselineComponent, ut *fwv1.UpdateTarget) (read []string, why string, inServer bool) {
	if ut.Status.InventoryTime == nil {
		return nil, "no inventory read from the target yet (a baseline job's agent reads its devices)", true
	}
	for _, d := range c.AppliesTo.Devices {
		for _, dv := range ut.Status.Devices {
			if strings.EqualFold(dv.Target, d) {
				read = append(read, dv.Version)
			}
		}
	}
	switch {
	case len(read) > 0:
		return read, "", true
	case len(ut.Status.Devices) >= fwv1.MaxRecordedDevices:
		return nil, fmt.Sprintf("none of its devices is among the %d recorded, the most an UpdateTarget holds: whether the server has one cannot be told", fwv1.MaxRecordedDevices), true
	}
	return nil, "", false
}

// drifting returns the oldest of the versions read that is not the wanted one, as the plan
// takes a Smart Component's oldest device for its "from".
func drifting(read []string, wanted string) (string, bool) {
	oldest, found := "", false
	for _, v := range read {
		if fwversion.Same(v, wanted) {
			continue
		}
		if o, ok := fwversion.Compare(v, oldest); !found || ok && o < 0 {
			oldest = v
		}
		found = true
	}
	return oldest, found
}

// steppingRelease says whether c is a stepping release on ut: the prerequisite of another
// component of its kind that applies to ut (iLO 5 2.78 on the way to 3.10). A target that
// runs that later version, or any at least c's, complies with c.
func steppingRelease(b *fwv1.FirmwareBaseline, c fwv1.BaselineComponent, ut *fwv1.UpdateTarget) bool {
	return slices.ContainsFunc(b.Spec.Components, func(o fwv1.BaselineComponent) bool {
		return o.Kind == c.Kind && slices.Contains(o.AppliesTo.TargetTypes, ut.Spec.Type) &&
			slices.ContainsFunc(o.Prerequisites, func(p fwv1.ComponentPrerequisite) bool { return p.Name == c.Name })
	})
}

func atLeast(v, min string) bool {
	o, ok := fwversion.Compare(v, min)
	return ok && o >= 0
}

func versionRead(t *fwv1.UpdateTarget, c fwv1.Component) (string, bool) {
	for _, v := range t.Status.FirmwareVersions {
		if v.Component == c && v.Version != "" {
			return v.Version, true
		}
	}
	return "", false
}
