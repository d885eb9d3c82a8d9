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
)

// BaselineName is the demo's FirmwareBaseline; PlanJobName its dry run, BaselineJobName its
// rollout.
const (
	BaselineName    = "demo-baseline"
	PlanJobName     = "demo-plan"
	BaselineJobName = "demo-baseline"
)

// baselineOf is the demo's FirmwareBaseline: each image the fleet serves as one component,
// applying to the target types that take it (the simulated iLO 4, 5 and 6 all accept the one
// iLO image).
func baselineOf(fl *fleet.Fleet) *fwv1.FirmwareBaseline {
	b := &fwv1.FirmwareBaseline{
		ObjectMeta: metav1.ObjectMeta{Name: BaselineName, Namespace: Namespace, Labels: map[string]string{fleet.LabelFleet: fl.Name}},
		Spec:       fwv1.FirmwareBaselineSpec{Version: "demo-" + time.Now().UTC().Format("2006.01")},
	}
	for _, comp := range components(fl) {
		im := fl.Image(comp)
		name, kind := "ilo", fwv1.BaselineKindILO
		switch comp {
		case fwv1.ComponentOA:
			name, kind = "oa", fwv1.BaselineKindOA
		case fwv1.ComponentSmartComponent:
			name, kind = "linux-smart-component", fwv1.BaselineKindLinuxSmartComponent
		}
		b.Spec.Components = append(b.Spec.Components, fwv1.BaselineComponent{Name: name, Kind: kind,
			Firmware:  fwv1.FirmwareSource{URL: im.URL, SHA256: im.SHA256, Version: im.Version},
			AppliesTo: fwv1.ComponentApplicability{TargetTypes: typesOf(comp)}})
	}
	return b
}

// baselineJob is an UpdateJob of the demo's baseline over the whole fleet.
func baselineJob(fl *fleet.Fleet, name, policy string, maxConcurrent int32, dryRun bool) *fwv1.UpdateJob {
	return &fwv1.UpdateJob{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: Namespace, Labels: map[string]string{fleet.LabelFleet: fl.Name}},
		Spec: fwv1.UpdateJobSpec{
			Targets:        fwv1.TargetSelection{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{fleet.LabelFleet: fl.Name}}},
			BaselineRef:    &fwv1.BaselineReference{Name: BaselineName},
			PortPolicyName: policy,
			Rollout:        fwv1.Rollout{MaxConcurrent: maxConcurrent, Timeout: &metav1.Duration{Duration: 5 * time.Minute}},
			DryRun:         dryRun,
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
		p.say("  %-22s %-20s version %-8s for %s", comp.Name, comp.Kind, comp.Firmware.Version, strings.Join(types, ", "))
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
