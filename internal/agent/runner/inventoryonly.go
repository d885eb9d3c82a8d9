package runner

import (
	"context"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
	"github.com/fwops/firmware-operator/internal/agent/plan"
)

// finishInventoryOnly ends a target of a read-only job (spec.inventoryOnly): it records the
// inventory just read, exactly as a rollout does, and shows each component Skipped with what
// a rollout of the baseline would do. Nothing is installed, nothing rebooted. The target
// ends Succeeded: the read, which is what the job was asked for, succeeded; Skipped would
// say the target is already current, which a drifting one is not.
func (a *agent) finishInventoryOnly(ctx context.Context, r *reporter, b *fwv1.FirmwareBaseline, inv plan.Inventory, p plan.Plan, list []fwv1.ComponentUpdate) {
	steps := map[string]plan.Step{}
	for _, s := range p.Steps {
		steps[s.Component.Name] = s
	}
	for k := range list {
		c := &list[k]
		if s, ok := steps[c.Name]; ok {
			c.Phase, c.Message = fwv1.TargetPhaseSkipped, fmt.Sprintf("inventory only: would install %s -> %s", orUnknown(s.From), s.To)
		}
	}
	msg := fmt.Sprintf("inventory only: read against FirmwareBaseline %s (%s); a rollout would install %d of its %d components that apply, nothing was installed",
		b.Name, b.Spec.Version, len(p.Steps), len(list))
	readAt := metav1.NewTime(a.deps.Now())
	r.finish(ctx, fwv1.TargetPhaseSucceeded, msg, func(s *fwv1.TargetUpdateStatus) {
		s.Components, s.ComponentsTotal, s.ComponentsDone = list, int32(len(list)), int32(len(list))
		s.ComponentsProgress = fmt.Sprintf("%d/%d", len(list), len(list))
		s.Model = inv.Model
		s.Devices, s.InventoryTime = recordedDevices(inv.Devices, b), &readAt
	})
}
