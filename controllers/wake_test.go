package controllers

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
)

// Progress alone must not wake the job (issue 13: the controller's cost must not grow with the
// agents' percent reports); every change the job's status or decisions read must.
func TestTargetChangeMatters(t *testing.T) {
	base := func() *fwv1.TargetUpdate {
		return &fwv1.TargetUpdate{
			ObjectMeta: metav1.ObjectMeta{Name: "job-a", Generation: 1},
			Status:     fwv1.TargetUpdateStatus{Phase: fwv1.TargetPhaseFlashing, Percent: 10, Message: "flashing", AgentPod: "p", Attempts: 1},
		}
	}
	now := metav1.Now()
	cases := []struct {
		name   string
		change func(*fwv1.TargetUpdate)
		want   bool
	}{
		{"percent only", func(tu *fwv1.TargetUpdate) { tu.Status.Percent = 55 }, false},
		{"progress message only", func(tu *fwv1.TargetUpdate) { tu.Status.Message = "flashing: 55%" }, false},
		{"percent and message", func(tu *fwv1.TargetUpdate) { tu.Status.Percent, tu.Status.Message = 90, "verifying soon" }, false},
		{"phase", func(tu *fwv1.TargetUpdate) { tu.Status.Phase = fwv1.TargetPhaseVerifying }, true},
		{"final phase with message", func(tu *fwv1.TargetUpdate) {
			tu.Status.Phase, tu.Status.Message = fwv1.TargetPhaseFailed, "HTTP 500"
		}, true},
		{"agent pod", func(tu *fwv1.TargetUpdate) { tu.Status.AgentPod = "q" }, true},
		{"attempts", func(tu *fwv1.TargetUpdate) { tu.Status.Attempts = 2 }, true},
		{"retry time", func(tu *fwv1.TargetUpdate) { tu.Status.RetryAfter = &now }, true},
		{"ports reported", func(tu *fwv1.TargetUpdate) { tu.Status.FirmwareServerPort = 8081 }, true},
		{"spec", func(tu *fwv1.TargetUpdate) { tu.Generation = 2 }, true},
		{"deletion", func(tu *fwv1.TargetUpdate) { tu.DeletionTimestamp = &now }, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			oldTU, newTU := base(), base()
			c.change(newTU)
			if got := targetChangeMatters(oldTU, newTU); got != c.want {
				t.Errorf("targetChangeMatters = %v, want %v", got, c.want)
			}
		})
	}
}
