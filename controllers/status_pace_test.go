package controllers

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
)

// A status change of progress only (issue 13: counts moving with every target) waits for the
// interval; anything kstatus, Argo CD, Flux or the job's events read is written at once.
func TestProgressOnly(t *testing.T) {
	base := func() *fwv1.UpdateJobStatus {
		return &fwv1.UpdateJobStatus{
			ObservedGeneration: 1, Phase: fwv1.JobPhaseRunning, Progress: "1/10",
			Counts: fwv1.TargetCounts{Total: 10, Succeeded: 1, InProgress: 2, Pending: 7},
			Conditions: []metav1.Condition{{Type: fwv1.ConditionReady, Status: metav1.ConditionFalse, Reason: ReasonProgressing,
				Message: "1 of 10 targets done", LastTransitionTime: metav1.Unix(100, 0)}},
			Agents:    []fwv1.AgentStatus{{Node: "a", Pod: "p", Targets: []string{"t1"}}},
			StartTime: &metav1.Time{Time: time.Unix(100, 0)},
		}
	}
	cases := []struct {
		name   string
		change func(*fwv1.UpdateJobStatus)
		want   bool
	}{
		{"counts, progress and the condition's message", func(s *fwv1.UpdateJobStatus) {
			s.Counts.Succeeded, s.Counts.InProgress, s.Progress, s.Conditions[0].Message = 2, 1, "2/10", "2 of 10 targets done"
		}, true},
		{"the agents' targets", func(s *fwv1.UpdateJobStatus) { s.Agents[0].Targets = []string{"t2", "t3"} }, true},
		{"phase", func(s *fwv1.UpdateJobStatus) { s.Phase = fwv1.JobPhaseSucceeded }, false},
		{"a condition's reason", func(s *fwv1.UpdateJobStatus) { s.Conditions[0].Reason = ReasonFailureBudgetExceeded }, false},
		{"a condition's status", func(s *fwv1.UpdateJobStatus) { s.Conditions[0].Status = metav1.ConditionTrue }, false},
		{"a new condition", func(s *fwv1.UpdateJobStatus) {
			s.Conditions = append(s.Conditions, metav1.Condition{Type: fwv1.ConditionFailed, Status: metav1.ConditionFalse, Reason: ReasonProgressing})
		}, false},
		{"observedGeneration", func(s *fwv1.UpdateJobStatus) { s.ObservedGeneration = 2 }, false},
		{"completionTime", func(s *fwv1.UpdateJobStatus) { s.CompletionTime = &metav1.Time{Time: time.Unix(200, 0)} }, false},
		{"startTime", func(s *fwv1.UpdateJobStatus) { s.StartTime = nil }, false},
		{"baselineGeneration", func(s *fwv1.UpdateJobStatus) { s.BaselineGeneration = 3 }, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			after := base()
			c.change(after)
			if got := progressOnly(base(), after); got != c.want {
				t.Errorf("progressOnly = %v, want %v", got, c.want)
			}
		})
	}
}

func TestStatusWait(t *testing.T) {
	key := types.NamespacedName{Namespace: "fleet", Name: "job"}
	before := &fwv1.UpdateJob{Status: fwv1.UpdateJobStatus{Phase: fwv1.JobPhaseRunning, Counts: fwv1.TargetCounts{Total: 2, Pending: 2}}}
	counted := before.DeepCopy()
	counted.Status.Counts = fwv1.TargetCounts{Total: 2, Pending: 1, InProgress: 1}
	finished := before.DeepCopy()
	finished.Status.Phase = fwv1.JobPhaseSucceeded

	r := &UpdateJobReconciler{StatusInterval: time.Minute}
	if w := r.statusWait(key, before, counted); w != 0 {
		t.Errorf("first write of a job waits %s, want 0", w)
	}
	r.statusWritten.Store(key, time.Now())
	if w := r.statusWait(key, before, counted); w <= 0 || w > time.Minute {
		t.Errorf("progress written just now: the next waits %s, want (0, 1m]", w)
	}
	if w := r.statusWait(key, before, finished); w != 0 {
		t.Errorf("a phase change waits %s, want 0", w)
	}
	if w := r.statusWait(types.NamespacedName{Namespace: "fleet", Name: "other"}, before, counted); w != 0 {
		t.Errorf("another job waits %s for this one's write, want 0", w)
	}
	r.statusWritten.Store(key, time.Now().Add(-2*time.Minute))
	if w := r.statusWait(key, before, counted); w != 0 {
		t.Errorf("progress written 2m ago with a 1m interval: waits %s, want 0", w)
	}
}
