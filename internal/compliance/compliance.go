// Package compliance judges UpdateTargets against a FirmwareBaseline from the versions last
// read from each target (UpdateTarget status.firmwareVersions).
package compliance

import (
	"slices"
	"sort"

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
	Unknown []string
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
		t, applies := evaluateTarget(b, &targets[i])
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

func evaluateTarget(b *fwv1.FirmwareBaseline, ut *fwv1.UpdateTarget) (Target, bool) {
	t := Target{Name: ut.Name}
	applies := false
	for _, c := range b.Spec.Components {
		if !slices.Contains(c.AppliesTo.TargetTypes, ut.Spec.Type) {
			continue
		}
		if len(c.AppliesTo.Models) > 0 && ut.Status.Model != "" && !plan.ModelMatches(c.AppliesTo.Models, ut.Status.Model) {
			continue // another model's component
		}
		applies = true
		if why := unknowable(c, ut); why != "" {
			t.Unknown = append(t.Unknown, c.Name+": "+why)
			continue
		}
		read, ok := versionRead(ut, c.Kind.Component())
		switch {
		case !ok:
			t.Unknown = append(t.Unknown, c.Name+": no version read from the target yet")
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

// unknowable says why a component cannot be judged from an UpdateTarget's status, which
// records no version per Smart Component device, and the server's model only once a
// baseline job's agent read it.
func unknowable(c fwv1.BaselineComponent, ut *fwv1.UpdateTarget) string {
	switch {
	case c.Kind == fwv1.BaselineKindSmartComponent:
		return "the UpdateTarget records no version per Smart Component device"
	case len(c.AppliesTo.Models) > 0 && ut.Status.Model == "":
		return "the UpdateTarget records no server model yet (a baseline job reads it)"
	}
	return ""
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
