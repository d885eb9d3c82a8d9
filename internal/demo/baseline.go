package demo

import (
	"context"
	"fmt"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
	"github.com/fwops/firmware-operator/internal/fleet"
	"github.com/fwops/firmware-operator/internal/simulator/fwimage"
)

// BaselineName is the demo's FirmwareBaseline; PlanJobName its dry run, BaselineJobName its
// rollout.
const (
	BaselineName    = "demo-baseline"
	PlanJobName     = "demo-plan"
	BaselineJobName = "demo-baseline"
)

// The demo baseline's own firmware, beyond the fleet's one image per component: an iLO 5
// stepping release that a server below it goes through first (HPE's iLO 5 releases name the
// version to update from), and each server model's system ROM, which activates at the one
// reboot at the end.
const (
	steppingVersion  = "2.78"
	romDL325Version  = "2.68" // A43, the DL325 Gen10 Plus's ROM family
	romXL675dVersion = "2.60" // A47, the XL675d Gen10 Plus's
)

// baselineOf is the demo's FirmwareBaseline over the fleet: the fleet's iLO image for every
// iLO, on iLO 5 after the stepping release it needs (a prerequisite), each server model's
// own system ROM, the OA image and the Linux host's Smart Component. Only what some target
// of the fleet takes is listed; the images it adds are published on the fleet's image server.
func baselineOf(fl *fleet.Fleet) *fwv1.FirmwareBaseline {
	b := &fwv1.FirmwareBaseline{
		ObjectMeta: metav1.ObjectMeta{Name: BaselineName, Namespace: Namespace, Labels: map[string]string{fleet.LabelFleet: fl.Name}},
		Spec:       fwv1.FirmwareBaselineSpec{Version: "demo-" + time.Now().UTC().Format("2006.01")},
	}
	add := func(name string, kind fwv1.BaselineComponentKind, im fleet.Image, types ...fwv1.TargetType) *fwv1.BaselineComponent {
		b.Spec.Components = append(b.Spec.Components, fwv1.BaselineComponent{Name: name, Kind: kind,
			Firmware:  fwv1.FirmwareSource{URL: im.URL, SHA256: im.SHA256, Version: im.Version},
			AppliesTo: fwv1.ComponentApplicability{TargetTypes: types}})
		return &b.Spec.Components[len(b.Spec.Components)-1]
	}
	present := func(types ...fwv1.TargetType) []fwv1.TargetType {
		var out []fwv1.TargetType
		for _, t := range types {
			if len(fl.TargetNames(t)) > 0 {
				out = append(out, t)
			}
		}
		return out
	}
	ilo := fl.Image(fwv1.ComponentILO)
	if types := present(fwv1.TargetTypeILO4, fwv1.TargetTypeILO6); len(types) > 0 {
		add("ilo", fwv1.BaselineKindILO, ilo, types...)
	}
	if len(present(fwv1.TargetTypeILO5)) > 0 {
		step := fl.Publish("ilo5_"+strings.ReplaceAll(steppingVersion, ".", "")+".bin", steppingVersion,
			fwimage.Build("iLO", steppingVersion, []byte(strings.Repeat("simulated iLO 5 stepping release\n", 2000))))
		add("ilo5-step", fwv1.BaselineKindILO, step, fwv1.TargetTypeILO5)
		add("ilo5", fwv1.BaselineKindILO, ilo, fwv1.TargetTypeILO5).Prerequisites =
			[]fwv1.ComponentPrerequisite{{Name: "ilo5-step", MinimumVersion: steppingVersion}}
	}
	for _, rom := range []struct{ name, family, version string }{{"rom-a43", "A43", romDL325Version}, {"rom-a47", "A47", romXL675dVersion}} {
		model := romModels[rom.family]
		if !fleetHasModel(fl, fwv1.TargetTypeILO5, model) {
			continue
		}
		im := fl.Publish(strings.ToLower(rom.family)+"_"+strings.ReplaceAll(rom.version, ".", "")+".fwpkg", rom.version,
			fwimage.Build("SystemROM", rom.version, []byte("simulated "+model+" system ROM, family "+rom.family+"\n")))
		add(rom.name, fwv1.BaselineKindSystemROM, im, fwv1.TargetTypeILO5).AppliesTo.Models = []string{model}
	}
	if len(present(fwv1.TargetTypeOA)) > 0 {
		add("oa", fwv1.BaselineKindOA, fl.Image(fwv1.ComponentOA), fwv1.TargetTypeOA)
	}
	if len(present(fwv1.TargetTypeLinux)) > 0 {
		add("linux-smart-component", fwv1.BaselineKindLinuxSmartComponent, fl.Image(fwv1.ComponentSmartComponent), fwv1.TargetTypeLinux)
	}
	return b
}

// romModels are the server models of the system ROM families the demo baseline carries.
var romModels = map[string]string{"A43": "ProLiant DL325 Gen10 Plus", "A47": "ProLiant XL675d Gen10 Plus"}

// fleetHasModel says whether some target of type t in the fleet is a server of model.
func fleetHasModel(fl *fleet.Fleet, t fwv1.TargetType, model string) bool {
	for _, tg := range fl.Targets() {
		if tg.Type == t && tg.Model == model {
			return true
		}
	}
	return false
}

// baselineJob is an UpdateJob of the demo's baseline over the whole fleet.
func baselineJob(fl *fleet.Fleet, name, policy string, maxConcurrent int32, dryRun bool) *fwv1.UpdateJob {
	return &fwv1.UpdateJob{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: Namespace, Labels: map[string]string{fleet.LabelFleet: fl.Name}},
		Spec: fwv1.UpdateJobSpec{
			Targets:        fwv1.TargetSelection{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{fleet.LabelFleet: fl.Name}}},
			BaselineRef:    &fwv1.BaselineReference{Name: BaselineName},
			PortPolicyName: policy,
			// One reboot at the end of each server's plan activates its system ROM.
			Rollout: fwv1.Rollout{MaxConcurrent: maxConcurrent, Timeout: &metav1.Duration{Duration: 5 * time.Minute},
				Reboot: fwv1.RebootIfRequired},
			DryRun: dryRun,
		},
	}
}

// applyBaseline applies the demo's FirmwareBaseline, shows each target's plan from a dry run
// of the job (what an administrator reads before the real thing), removes the dry run and
// applies the job itself, which it returns.
func applyBaseline(ctx context.Context, c client.Client, p *printer, fl *fleet.Fleet, policy string, maxConcurrent int32) (*fwv1.UpdateJob, error) {
	b := baselineOf(fl)
	p.step("Applying FirmwareBaseline %s (version %s): %d components", b.Name, b.Spec.Version, len(b.Spec.Components))
	for _, comp := range b.Spec.Components {
		types := make([]string, 0, len(comp.AppliesTo.TargetTypes))
		for _, t := range comp.AppliesTo.TargetTypes {
			types = append(types, string(t))
		}
		var extra []string
		if len(comp.AppliesTo.Models) > 0 {
			extra = append(extra, "model "+strings.Join(comp.AppliesTo.Models, " or "))
		}
		for _, pr := range comp.Prerequisites {
			extra = append(extra, fmt.Sprintf("needs %s at %s or later first", pr.Name, pr.MinimumVersion))
		}
		line := fmt.Sprintf("  %-22s %-20s version %-8s for %s", comp.Name, comp.Kind, comp.Firmware.Version, strings.Join(types, ", "))
		if len(extra) > 0 {
			line += " (" + strings.Join(extra, "; ") + ")"
		}
		p.say("%s", line)
	}
	if err := c.Create(ctx, b); err != nil {
		return nil, fmt.Errorf("creating FirmwareBaseline %s: %w", b.Name, err)
	}

	dry := baselineJob(fl, PlanJobName, policy, maxConcurrent, true)
	p.step("Applying UpdateJob %s with dryRun: each target's plan, before anything runs", dry.Name)
	if err := c.Create(ctx, dry); err != nil {
		return nil, fmt.Errorf("creating UpdateJob %s: %w", dry.Name, err)
	}
	plans, err := waitForPlans(ctx, c, fl, dry.Name)
	if err != nil {
		return nil, err
	}
	for _, t := range fl.Targets() {
		p.say("  %-16s %s", t.Name, plans[t.Name])
	}
	if err := c.Delete(ctx, dry); err != nil {
		return nil, fmt.Errorf("deleting the dry run %s: %w", dry.Name, err)
	}

	job := baselineJob(fl, BaselineJobName, policy, maxConcurrent, false)
	p.step("Applying UpdateJob %s: baseline %s, %d targets, maxConcurrent %d", job.Name, b.Name, len(fl.Targets()), maxConcurrent)
	if err := c.Create(ctx, job); err != nil {
		return nil, fmt.Errorf("creating UpdateJob %s: %w", job.Name, err)
	}
	return job, nil
}

// waitForPlans waits for the dry run to have written every target's plan on its
// TargetUpdate, and returns each plan's message by target.
func waitForPlans(ctx context.Context, c client.Client, fl *fleet.Fleet, job string) (map[string]string, error) {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		var tus fwv1.TargetUpdateList
		if err := c.List(ctx, &tus, client.InNamespace(Namespace)); err != nil {
			return nil, err
		}
		plans := map[string]string{}
		for _, tu := range tus.Items {
			if tu.Spec.JobName == job && tu.Status.ComponentsProgress != "" {
				plans[tu.Spec.TargetName] = tu.Status.Message
			}
		}
		if len(plans) == len(fl.Targets()) {
			return plans, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for the plans of dry run %s (%d of %d written): %w", job, len(plans), len(fl.Targets()), ctx.Err())
		case <-tick.C:
		}
	}
}

// componentVersions is a baseline target's versions as the summary shows them: each
// installed component's from -> to.
func componentVersions(cs []fwv1.ComponentUpdate) string {
	var out []string
	for _, c := range cs {
		if c.Phase == fwv1.TargetPhaseSucceeded {
			out = append(out, fmt.Sprintf("%s %s", c.Name, versions(c.From, c.To)))
		}
	}
	return strings.Join(out, ", ")
}

// installed is how many images a finished TargetUpdate's job installed: each component a
// baseline job installed, else the one image.
func installed(st fwv1.TargetUpdateStatus) int {
	if len(st.Components) == 0 {
		return 1
	}
	n := 0
	for _, c := range st.Components {
		if c.Phase == fwv1.TargetPhaseSucceeded {
			n++
		}
	}
	return n
}

// waitForCompliance waits, within ctx (the rollout's time), for the baseline's compliance
// view to count every target compliant, as it does once the finished TargetUpdates have
// recorded the versions installed, and says how the fleet stands then.
func waitForCompliance(ctx context.Context, c client.Client, targets int, every time.Duration) string {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		b := &fwv1.FirmwareBaseline{}
		err := c.Get(ctx, client.ObjectKey{Namespace: Namespace, Name: BaselineName}, b)
		line := fmt.Sprintf("FirmwareBaseline %s: %v", BaselineName, err)
		if err == nil {
			n := b.Status.Counts
			line = fmt.Sprintf("FirmwareBaseline %s: %d compliant, %d drifting, %d unknown (status.compliance %q)",
				BaselineName, n.Compliant, n.Drifting, n.Unknown, b.Status.Compliance)
			if int(n.Compliant) == targets {
				return line
			}
		}
		select {
		case <-ctx.Done():
			return line
		case <-tick.C:
		}
	}
}
