package controllers

import (
	"context"
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
	"github.com/fwops/firmware-operator/internal/agent/plan"
)

// recordedInventory is what a dry run knows of a target before any agent reads it: the
// versions last recorded on its UpdateTarget, no model and no devices.
func recordedInventory(t *fwv1.UpdateTarget) plan.Inventory {
	inv := plan.Inventory{TargetType: t.Spec.Type, Bay: t.Spec.Bay != nil, Recorded: true,
		Versions: map[fwv1.BaselineComponentKind]string{}}
	// The kinds with one version per target, as plan.Inventory.Versions holds them.
	for _, k := range []fwv1.BaselineComponentKind{fwv1.BaselineKindILO, fwv1.BaselineKindSystemROM, fwv1.BaselineKindOA} {
		for _, v := range t.Status.FirmwareVersions {
			if v.Component == k.Component() {
				inv.Versions[k] = v.Version
			}
		}
	}
	return inv
}

// componentUpdates are a plan as a TargetUpdate shows it: the steps Pending in their order,
// then what is skipped, with why.
func componentUpdates(p plan.Plan) []fwv1.ComponentUpdate {
	var out []fwv1.ComponentUpdate
	for _, s := range p.Steps {
		out = append(out, fwv1.ComponentUpdate{Name: s.Component.Name, Kind: s.Component.Kind, From: s.From, To: s.To,
			Phase: fwv1.TargetPhasePending, Message: fmt.Sprintf("to install: %s -> %s", orUnread(s.From), s.To)})
	}
	for _, s := range p.Skipped {
		phase := fwv1.TargetPhaseSkipped
		if s.Reason == plan.Undecided {
			phase = fwv1.TargetPhasePending
		}
		out = append(out, fwv1.ComponentUpdate{Name: s.Name, Kind: s.Kind, From: s.From, To: s.To, Phase: phase, Message: string(s.Reason) + ": " + s.Message})
	}
	return out
}

func orUnread(v string) string {
	if v == "" {
		return "(not read)"
	}
	return v
}

// planMessage is a dry run's summary of one target's plan.
func planMessage(p plan.Plan, reboot fwv1.RebootPolicy) string {
	var steps []string
	for _, s := range p.Steps {
		steps = append(steps, fmt.Sprintf("%s %s -> %s", s.Component.Name, orUnread(s.From), s.To))
	}
	undecided := 0
	for _, s := range p.Skipped {
		if s.Reason == plan.Undecided {
			undecided++
		}
	}
	later := ""
	if undecided > 0 {
		later = fmt.Sprintf("; %d more depend on the server's model or devices, which the agent reads first", undecided)
	}
	if len(steps) == 0 {
		return fmt.Sprintf("dry run: nothing to install of the %d components that apply (see status.components)%s", p.Total(), later)
	}
	msg := fmt.Sprintf("dry run: would install %d of %d components, in this order: %s%s", len(steps), p.Total(), strings.Join(steps, ", "), later)
	switch {
	case p.RebootRequired() && reboot == fwv1.RebootIfRequired:
		msg += "; one reboot at the end"
	case p.RebootRequired():
		msg += "; no reboot (rollout.reboot Never): ends rebootRequired with the system ROM or Smart Components staged"
	}
	return msg + fmt.Sprintf("; about %s", p.Estimate(reboot == fwv1.RebootIfRequired).Round(time.Minute))
}

// writeTargetPlans writes, for a dry run of a baseline job, each target's plan on its
// TargetUpdate (status.components, componentsTotal, rebootRequired, message), from the
// versions last recorded: what the agent would install before anything runs.
func (r *UpdateJobReconciler) writeTargetPlans(ctx context.Context, job *fwv1.UpdateJob, baseline *fwv1.FirmwareBaseline,
	targets []*fwv1.UpdateTarget, tus map[string]*fwv1.TargetUpdate) error {
	for _, t := range targets {
		tu := tus[t.Name]
		if tu == nil || tu.Status.Phase.Finished() {
			continue
		}
		p := plan.Make(recordedInventory(t), baseline)
		before := writable(tu)
		tu.Status.Components = componentUpdates(p)
		tu.Status.ComponentsTotal = int32(p.Total())
		tu.Status.ComponentsDone = 0
		tu.Status.ComponentsProgress = fmt.Sprintf("0/%d", p.Total())
		tu.Status.RebootRequired = p.RebootRequired() && job.Spec.Rollout.Reboot != fwv1.RebootIfRequired
		tu.Status.Message = planMessage(p, job.Spec.Rollout.Reboot)
		if equality.Semantic.DeepEqual(before.Status, tu.Status) {
			continue
		}
		if err := r.patchTU(ctx, tu, before); err != nil {
			return err
		}
	}
	return nil
}
