// Package plan works out, for one target, which components of a FirmwareBaseline to install
// and in what order, from what was read from the target: the applicable, out-of-date
// components, iLO first, then the system ROM, then the rest, each after its prerequisites.
// It decides; it talks to nothing.
package plan

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
	"github.com/fwops/firmware-operator/internal/fwversion"
)

// Inventory is what was read from a target before anything is installed.
type Inventory struct {
	// TargetType is the UpdateTarget's spec.type.
	TargetType fwv1.TargetType
	// Bay is set for an OA target that names a blade bay: it flashes that blade's iLO, not the OA.
	Bay bool
	// Model is the server model as its inventory names it ("ProLiant DL325 Gen10 Plus");
	// empty when the target has none (OA, Linux) or it could not be read.
	Model string
	// Versions are the versions read for the kinds with one entry per target: iLO,
	// SystemROM, OA.
	Versions map[fwv1.BaselineComponentKind]string
	// Devices are the firmware inventory entries a Smart Component can update, by the
	// device Target GUID of payload.json (Devices.Device[].Target), lower-case, to the
	// version each runs.
	Devices map[string]string
	// Installed are the versions a Linux host recorded, by baseline component name.
	Installed map[string]string
	// Recorded says the inventory is what the UpdateTarget's status last recorded (a dry
	// run), not read from the target: it holds no model and no devices, so components that
	// depend on them are left Undecided instead of judged not to apply.
	Recorded bool
}

// Step is one component to install.
type Step struct {
	Component fwv1.BaselineComponent
	// From is the version read (for a Smart Component, the oldest of its devices').
	From string
	// To is the baseline's version.
	To string
}

// Skipped is an applicable component the plan does not install, with why.
type Skipped struct {
	Name string
	// Kind is the component's kind: a current one's version read is what the target runs,
	// which the UpdateTarget records by kind.
	Kind     fwv1.BaselineComponentKind
	From, To string
	Reason   SkipReason
	Message  string
}

// SkipReason says why an applicable component is not installed.
type SkipReason string

const (
	// Current: the target already runs the baseline's version.
	Current SkipReason = "Current"
	// Newer: the target runs a newer version; a baseline never downgrades.
	Newer SkipReason = "Newer"
	// Unordered: the version read and the baseline's cannot be ordered, or none was read.
	Unordered SkipReason = "Unordered"
	// PrerequisiteUnmet: a prerequisite would not be at its minimum version.
	PrerequisiteUnmet SkipReason = "PrerequisiteUnmet"
	// Undecided: whether it applies depends on what a recorded inventory lacks (the model,
	// the devices); the agent decides once it reads the target.
	Undecided SkipReason = "Undecided"
)

// Plan is one target's plan.
type Plan struct {
	// Steps are the components to install, in order.
	Steps []Step
	// Skipped are the applicable components not installed, in baseline order.
	Skipped []Skipped
}

// Total is the number of applicable components.
func (p Plan) Total() int { return len(p.Steps) + len(p.Skipped) }

// RebootRequired says whether some step activates only at the server's next reboot: a
// system ROM flashed through the iLO, or a Smart Component (the iLO queues some for UEFI).
func (p Plan) RebootRequired() bool {
	return slices.ContainsFunc(p.Steps, func(s Step) bool {
		return s.Component.Kind == fwv1.BaselineKindSystemROM || s.Component.Kind == fwv1.BaselineKindSmartComponent
	})
}

// Rough durations, for a dry run's estimate only (never a deadline): an iLO flash with its
// reset, a staged system ROM or Smart Component, an OA flash with its restart, and the
// server's reboot and POST.
const (
	estimateILO       = 8 * time.Minute
	estimateStaged    = 4 * time.Minute
	estimateOA        = 15 * time.Minute
	estimateRebootAll = 10 * time.Minute
)

// Estimate is roughly how long the plan takes, its one reboot included when reboot is set.
func (p Plan) Estimate(reboot bool) time.Duration {
	var d time.Duration
	for _, s := range p.Steps {
		switch s.Component.Kind {
		case fwv1.BaselineKindILO:
			d += estimateILO
		case fwv1.BaselineKindOA:
			d += estimateOA
		default:
			d += estimateStaged
		}
	}
	if reboot && p.RebootRequired() {
		d += estimateRebootAll
	}
	return d
}

// Make plans baseline for the target whose inventory is inv.
func Make(inv Inventory, baseline *fwv1.FirmwareBaseline) Plan {
	m := maker{inv: inv, byName: map[string]*fwv1.BaselineComponent{}, state: map[string]string{}, done: map[string]bool{}}
	var applicable []*fwv1.BaselineComponent
	for i := range baseline.Spec.Components {
		c := &baseline.Spec.Components[i]
		if why := m.undecided(c); why != "" {
			m.plan.Skipped = append(m.plan.Skipped, Skipped{Name: c.Name, Kind: c.Kind, To: c.Firmware.Version, Reason: Undecided, Message: why})
			continue
		}
		if m.applies(c) {
			m.byName[c.Name] = c
			applicable = append(applicable, c)
		}
	}
	sort.SliceStable(applicable, func(i, j int) bool { return rank(applicable[i].Kind) < rank(applicable[j].Kind) })
	for _, c := range applicable {
		m.visit(c, nil)
	}
	return m.plan
}

// rank orders kinds as HPE installs them: the iLO first (it flashes the rest), then the
// system ROM, then everything else.
func rank(k fwv1.BaselineComponentKind) int {
	switch k {
	case fwv1.BaselineKindILO:
		return 0
	case fwv1.BaselineKindSystemROM:
		return 1
	}
	return 2
}

type maker struct {
	inv    Inventory
	byName map[string]*fwv1.BaselineComponent // applicable components
	// state is what each inventory slot will run after the steps planned so far.
	state map[string]string
	done  map[string]bool
	plan  Plan
}

// applies reports whether every appliesTo field matches the target.
func (m *maker) applies(c *fwv1.BaselineComponent) bool {
	a := c.AppliesTo
	if !slices.Contains(a.TargetTypes, m.inv.TargetType) {
		return false
	}
	if m.inv.TargetType == fwv1.TargetTypeOA && (c.Kind == fwv1.BaselineKindILO) != m.inv.Bay {
		return false // an OA target flashes either the OA or, with a bay, that blade's iLO
	}
	if len(a.Models) > 0 && !ModelMatches(a.Models, m.inv.Model) {
		return false
	}
	if c.Kind == fwv1.BaselineKindSmartComponent && len(m.devices(c)) == 0 {
		return false // none of its devices is in this server
	}
	return true
}

// ModelMatches says whether a server model, as its inventory names it, is one of models
// (appliesTo.models): the same name, whatever its case and surrounding spaces.
func ModelMatches(models []string, model string) bool {
	return slices.ContainsFunc(models, func(m string) bool {
		return strings.EqualFold(strings.TrimSpace(m), strings.TrimSpace(model))
	})
}

// undecided says why a recorded inventory cannot tell whether c applies, or "".
func (m *maker) undecided(c *fwv1.BaselineComponent) string {
	if !m.inv.Recorded || !slices.Contains(c.AppliesTo.TargetTypes, m.inv.TargetType) {
		return ""
	}
	switch {
	case c.Kind == fwv1.BaselineKindSmartComponent:
		return "applies if the server has one of its devices; the agent reads the inventory first"
	case len(c.AppliesTo.Models) > 0:
		return fmt.Sprintf("applies if the server is a %s; the agent reads its model first", strings.Join(c.AppliesTo.Models, " or "))
	}
	return ""
}

// devices are the component's payload devices present in the inventory.
func (m *maker) devices(c *fwv1.BaselineComponent) []string {
	var found []string
	for _, d := range c.AppliesTo.Devices {
		if _, ok := m.inv.Devices[strings.ToLower(d)]; ok {
			found = append(found, strings.ToLower(d))
		}
	}
	return found
}

// slots are the inventory entries a component installs into.
func (m *maker) slots(c *fwv1.BaselineComponent) []string {
	switch c.Kind {
	case fwv1.BaselineKindSmartComponent:
		var s []string
		for _, d := range m.devices(c) {
			s = append(s, "device/"+d)
		}
		return s
	case fwv1.BaselineKindLinuxSmartComponent:
		return []string{"installed/" + c.Name}
	}
	return []string{"kind/" + string(c.Kind)}
}

// version is what a slot runs now, or after the steps planned so far.
func (m *maker) version(slot string) string {
	if v, ok := m.state[slot]; ok {
		return v
	}
	kind, key, _ := strings.Cut(slot, "/")
	switch kind {
	case "device":
		return m.inv.Devices[key]
	case "installed":
		return m.inv.Installed[key]
	}
	return m.inv.Versions[fwv1.BaselineComponentKind(key)]
}

// visit plans c after its prerequisites; path holds the components being visited, so that
// a cycle of prerequisites ends instead of recursing.
func (m *maker) visit(c *fwv1.BaselineComponent, path []string) {
	if m.done[c.Name] {
		return
	}
	if slices.Contains(path, c.Name) {
		return
	}
	path = append(path, c.Name)
	for _, p := range c.Prerequisites {
		if pc := m.byName[p.Name]; pc != nil {
			m.visit(pc, path)
		}
	}
	m.done[c.Name] = true
	m.decide(c)
}

// decide adds c to the steps or to the skipped components.
func (m *maker) decide(c *fwv1.BaselineComponent) {
	to := c.Firmware.Version
	from, reason, msg := m.compare(c)
	skip := func(reason SkipReason, msg string) {
		m.plan.Skipped = append(m.plan.Skipped, Skipped{Name: c.Name, Kind: c.Kind, From: from, To: to, Reason: reason, Message: msg})
	}
	if reason != "" {
		skip(reason, msg)
		return
	}
	if msg := m.unmet(c); msg != "" {
		skip(PrerequisiteUnmet, msg)
		return
	}
	m.plan.Steps = append(m.plan.Steps, Step{Component: *c, From: from, To: to})
	for _, s := range m.slots(c) {
		m.state[s] = to
	}
}

// compare reads c's slots against its version: from is the oldest version read; reason is
// empty when c is out of date and may be installed.
func (m *maker) compare(c *fwv1.BaselineComponent) (from string, reason SkipReason, msg string) {
	to := c.Firmware.Version
	older := 0
	for _, s := range m.slots(c) {
		v := m.version(s)
		order, ok := fwversion.Compare(v, to)
		switch {
		case v == "" && c.Kind == fwv1.BaselineKindLinuxSmartComponent:
			// A host records a version only once a job installed the component; HPE's
			// Smart Components check what they find themselves (exit code 2: not needed).
			older++
		case v == "" && m.inv.Recorded:
			// A dry run plans from what the UpdateTarget recorded, which is nothing before a
			// first job: the agent reads the version before it installs anything, and skips
			// a current one then. Planning it shows the firewall and time budget the most
			// the job can take, where "not installed" would promise nothing will run.
			older++
		case !ok && v == "":
			return v, Unordered, fmt.Sprintf("no %s version was read from the target: not installed", what(s))
		case !ok:
			return v, Unordered, fmt.Sprintf("%s runs %s, which cannot be ordered against %s: not installed (an UpdateJob with spec.firmware installs it)", what(s), v, to)
		case order > 0:
			return v, Newer, fmt.Sprintf("%s runs %s, newer than %s: a baseline never downgrades", what(s), v, to)
		case order < 0:
			older++
			if from == "" || lessThan(v, from) {
				from = v
			}
		default:
			if from == "" {
				from = v
			}
		}
	}
	if older == 0 {
		return from, Current, "already at " + to
	}
	return from, "", ""
}

func lessThan(a, b string) bool { o, ok := fwversion.Compare(a, b); return ok && o < 0 }

// what names a slot in a message.
func what(slot string) string {
	kind, key, _ := strings.Cut(slot, "/")
	switch kind {
	case "device":
		return "device " + key
	case "installed":
		return "component " + key
	}
	return "the " + key
}

// unmet says which prerequisite of c would not be at its minimum version once the steps
// planned before c ran, or "" when all would.
func (m *maker) unmet(c *fwv1.BaselineComponent) string {
	for _, p := range c.Prerequisites {
		pc := m.byName[p.Name]
		if pc == nil {
			return fmt.Sprintf("prerequisite %s (at least %s) does not apply to this target: not installed", p.Name, p.MinimumVersion)
		}
		for _, s := range m.slots(pc) {
			v := m.version(s)
			if o, ok := fwversion.Compare(v, p.MinimumVersion); !ok || o < 0 {
				return fmt.Sprintf("prerequisite %s must be at least %s first, and %s would run %q: not installed", p.Name, p.MinimumVersion, what(s), v)
			}
		}
	}
	return ""
}
