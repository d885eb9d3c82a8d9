package controllers

import (
	"fmt"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
	"github.com/fwops/firmware-operator/internal/agent/config"
	"github.com/fwops/firmware-operator/internal/agentpod"
	"github.com/fwops/firmware-operator/internal/rollout"
)

func setCondition(job *fwv1.UpdateJob, typ string, status metav1.ConditionStatus, reason, msg string) {
	meta.SetStatusCondition(&job.Status.Conditions, metav1.Condition{
		Type: typ, Status: status, Reason: reason, Message: msg, ObservedGeneration: job.Generation,
	})
}

// setConditions sets Ready, Progressing and Failed at once, with one reason and message.
func setConditions(job *fwv1.UpdateJob, ready, progressing, failed metav1.ConditionStatus, reason, msg string) {
	setCondition(job, fwv1.ConditionReady, ready, reason, msg)
	setCondition(job, fwv1.ConditionProgressing, progressing, reason, msg)
	setCondition(job, fwv1.ConditionFailed, failed, reason, msg)
}

// blocked records that the job cannot proceed until a person acts.
func blocked(job *fwv1.UpdateJob, reason, msg string) {
	setCondition(job, fwv1.ConditionReady, metav1.ConditionFalse, reason, msg)
	setCondition(job, fwv1.ConditionProgressing, metav1.ConditionFalse, reason, msg)
	if job.Status.Phase == "" {
		job.Status.Phase = fwv1.JobPhasePending
	}
}

// updateStatus derives the job's phase and conditions from the counts. The counts are the
// whole truth: nothing else is remembered between passes.
func (r *UpdateJobReconciler) updateStatus(job *fwv1.UpdateJob, s summary, gate string, pods []corev1.Pod, tus map[string]*fwv1.TargetUpdate) {
	c := s.counts
	job.Status.Counts = c
	done := c.Succeeded + c.Failed + c.Skipped
	job.Status.Progress = fmt.Sprintf("%d/%d", done, c.Total)
	now := metav1.NewTime(r.Clock.Now())
	if s.started && job.Status.StartTime == nil {
		job.Status.StartTime = &now
	}
	job.Status.Agents = liveAgents(pods, tus)

	failures := s.budgetFailures()
	budget := rollout.BudgetExceeded(failures, s.allowed)
	progress := fmt.Sprintf("%d of %d targets done (%d succeeded, %d skipped, %d failed), %d in progress, %d pending",
		done, c.Total, c.Succeeded, c.Skipped, c.Failed, c.InProgress, c.Pending)
	if s.retrying > 0 {
		progress += fmt.Sprintf(" (%d of them waiting to retry)", s.retrying)
	}
	if s.unmade > 0 {
		progress += fmt.Sprintf("; TargetUpdates of %d targets still to be made", s.unmade)
	}
	// Once the budget is spent only retries start; the job ends when none is left.
	finished := c.InProgress == 0 && (done == c.Total || (budget && s.retrying == 0))
	switch {
	case finished && budget:
		msg := fmt.Sprintf("%d targets failed, more than spec.rollout.maxFailures allows (%d); %s", c.Failed, s.allowed, progress)
		job.Status.Phase = fwv1.JobPhaseFailed
		setConditions(job, metav1.ConditionFalse, metav1.ConditionFalse, metav1.ConditionTrue, ReasonFailureBudgetExceeded, msg)
	case finished:
		reason := ReasonSucceeded
		if c.Failed > 0 {
			reason = ReasonCompletedWithFailures
		}
		job.Status.Phase = fwv1.JobPhaseSucceeded
		setConditions(job, metav1.ConditionTrue, metav1.ConditionFalse, metav1.ConditionFalse, reason, progress)
	case budget:
		msg := fmt.Sprintf("%d targets failed, more than spec.rollout.maxFailures allows (%d): no new target starts; %s", failures, s.allowed, progress)
		job.Status.Phase = fwv1.JobPhaseRunning
		setConditions(job, metav1.ConditionFalse, metav1.ConditionTrue, metav1.ConditionTrue, ReasonFailureBudgetExceeded, msg)
	case gate == ReasonPaused:
		msg := "spec.rollout.paused: no new target starts; " + progress
		job.Status.Phase = fwv1.JobPhasePaused
		setConditions(job, metav1.ConditionFalse, metav1.ConditionFalse, metav1.ConditionFalse, ReasonPaused, msg)
	case gate == ReasonWaitingForWindow:
		msg := "outside spec.rollout.window: no new target starts until it opens; " + progress
		job.Status.Phase = fwv1.JobPhaseWaiting
		setConditions(job, metav1.ConditionFalse, metav1.ConditionTrue, metav1.ConditionFalse, ReasonWaitingForWindow, msg)
	default:
		if cur := meta.FindStatusCondition(job.Status.Conditions, fwv1.ConditionReady); cur != nil && cur.Reason == ReasonNoEligibleNodes && c.InProgress == 0 {
			return // startTargets found no node; keep its condition
		}
		job.Status.Phase = fwv1.JobPhaseRunning
		if !s.started {
			job.Status.Phase = fwv1.JobPhasePending
		}
		setConditions(job, metav1.ConditionFalse, metav1.ConditionTrue, metav1.ConditionFalse, ReasonProgressing, progress)
	}
	if finished && job.Status.CompletionTime == nil {
		job.Status.CompletionTime = &now
	}
	if !finished {
		job.Status.CompletionTime = nil
	}
	for phase, n := range map[string]int32{"Pending": c.Pending, "InProgress": c.InProgress, "Succeeded": c.Succeeded, "Failed": c.Failed, "Skipped": c.Skipped} {
		metricTargets.WithLabelValues(job.Namespace, job.Name, phase).Set(float64(n))
	}
	if c.Total > 0 {
		metricProgress.WithLabelValues(job.Namespace, job.Name).Set(float64(done) / float64(c.Total))
	}
}

// DefaultStatusInterval is the least time between two status writes of one job that change
// only its progress. One second, as the Kubernetes Job controller batches its pods' updates:
// the counts stay current to a person watching, and a job no longer writes its status on
// every pass that moves a count (issue 13: 0.14 writes per target at 1,000 targets).
const DefaultStatusInterval = time.Second

func (r *UpdateJobReconciler) statusInterval() time.Duration {
	if r.StatusInterval > 0 {
		return r.StatusInterval
	}
	return DefaultStatusInterval
}

// statusWait is how long the status change from before to after waits before it is written:
// 0 unless it changes only the job's progress and the job's status was written less than
// StatusInterval ago. The pace is kept on the real clock, not r.Clock: it is the API server's
// load, not the rollout's time (which tests move by hand).
func (r *UpdateJobReconciler) statusWait(key types.NamespacedName, before, after *fwv1.UpdateJob) time.Duration {
	if !progressOnly(&before.Status, &after.Status) {
		return 0
	}
	last, ok := r.statusWritten.Load(key)
	if !ok {
		return 0
	}
	return max(r.statusInterval()-time.Since(last.(time.Time)), 0)
}

// progressOnly says whether after differs from before only in what moves as targets go
// through the rollout: the counts, status.progress, status.agents and the conditions'
// messages (which repeat the counts). A phase, a condition's status or reason, a start or
// completion time, observedGeneration or the baseline's generation is never held back:
// those are what kstatus, Argo CD and Flux read, and what the job's events follow.
func progressOnly(before, after *fwv1.UpdateJobStatus) bool {
	strip := func(s *fwv1.UpdateJobStatus) *fwv1.UpdateJobStatus {
		c := s.DeepCopy()
		c.Counts, c.Progress, c.Agents = fwv1.TargetCounts{}, "", nil
		for i := range c.Conditions {
			c.Conditions[i].Message = ""
		}
		return c
	}
	return equality.Semantic.DeepEqual(strip(before), strip(after))
}

// liveAgents lists the running agent pods with their targets and ports. The ports are the
// ones the agent reports bound on its TargetUpdates once it did, and before that the ones the
// controller assigned and declared on the pod (ports.md, "Across the cluster": a process
// outside Kubernetes may hold an assigned port, and the agent then binds the next one).
func liveAgents(pods []corev1.Pod, tus map[string]*fwv1.TargetUpdate) []fwv1.AgentStatus {
	byName := make(map[string]*fwv1.TargetUpdate, len(tus))
	for _, tu := range tus {
		byName[tu.Name] = tu
	}
	var out []fwv1.AgentStatus
	for i := range pods {
		p := &pods[i]
		if podFinished(p) {
			continue
		}
		st := fwv1.AgentStatus{Node: agentpod.Node(p), Pod: p.Name, Slots: int32(agentpod.Slots(p)), Ports: agentPorts(agentpod.DeclaredPorts(p))}
		var reported bool
		// Each claim names its slot, whose session port it dials from (rule P4).
		for _, c := range podClaims(p) {
			tu := byName[c.name]
			if tu == nil || (tu.Status.AgentPod != p.Name && !assignmentLive(tu, p.Name, config.Target{TargetUpdate: c.name, Attempt: c.attempt})) {
				continue
			}
			slot := c.slot
			st.Targets = append(st.Targets, tu.Spec.TargetName)
			if !reportedPorts(tu, p.Name, c.attempt) {
				continue
			}
			s := tu.Status
			if slot < len(st.Ports.Sessions) && s.SessionPort != 0 {
				st.Ports.Sessions[slot] = s.SessionPort
			}
			if !reported { // the agent's own ports are the same on each of its targets
				reported = true
				st.Ports.Control, st.Ports.FirmwareServer, st.Ports.IPC = s.ControlPort, s.FirmwareServerPort, s.IPCPort
				st.Ports.Reverse = append([]int32(nil), s.ReceivePorts...)
			}
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Pod < out[j].Pod })
	return out
}

// reportedPorts says whether the agent of pod reported its bound ports on tu for this
// attempt: the controller's claim names the pod and the attempt, the agent's first write adds
// its control port (rule P1), which every agent binds.
func reportedPorts(tu *fwv1.TargetUpdate, pod string, attempt int32) bool {
	return tu.Status.AgentPod == pod && tu.Status.Attempts == attempt && tu.Status.ControlPort != 0
}

// forgetReportedPorts clears the ports an agent reported on a target that leaves it, so that
// the next attempt's agent reports its own and none is taken for them.
func forgetReportedPorts(s *fwv1.TargetUpdateStatus) {
	s.ControlPort, s.FirmwareServerPort, s.SessionPort, s.IPCPort, s.ReceivePorts = 0, 0, 0, 0, nil
}

// emitTransitionEvents records the job's milestones as events, once each: they are derived
// from the change between the status before and after the pass.
func (r *UpdateJobReconciler) emitTransitionEvents(before, after *fwv1.UpdateJob) {
	if r.Recorder == nil {
		return
	}
	if before.Status.StartTime == nil && after.Status.StartTime != nil {
		r.Recorder.Eventf(after, nil, corev1.EventTypeNormal, ReasonStarted, "Rollout",
			"rollout started: %d targets, at most %d at a time", after.Status.Counts.Total, after.Spec.Rollout.MaxConcurrent)
	}
	oldReady := meta.FindStatusCondition(before.Status.Conditions, fwv1.ConditionReady)
	newReady := meta.FindStatusCondition(after.Status.Conditions, fwv1.ConditionReady)
	if newReady != nil && (oldReady == nil || oldReady.Reason != newReady.Reason) {
		switch newReady.Reason {
		case ReasonSucceeded, ReasonDryRun:
			r.Recorder.Eventf(after, nil, corev1.EventTypeNormal, newReady.Reason, "Rollout", "%s", newReady.Message)
		case ReasonProgressing, ReasonPaused, ReasonWaitingForWindow:
			// Visible in conditions; not worth an event each time.
		default:
			metricErrors.WithLabelValues(newReady.Reason).Inc()
			r.Recorder.Eventf(after, nil, corev1.EventTypeWarning, newReady.Reason, "Rollout", "%s", newReady.Message)
		}
	}
}

// observeTargetTransition records metrics when a target finishes, and a warning event when it
// failed: the failure's message says what to do, on the object a person looks at. A success
// gets no event of its own (one write per target, issue 13): the TargetUpdate's phase and
// versions say it, the job's counts and its Succeeded event sum it up.
func (r *UpdateJobReconciler) observeTargetTransition(old, cur *fwv1.TargetUpdate) {
	if old.Status.Phase.Finished() || !cur.Status.Phase.Finished() {
		return
	}
	if cur.Status.StartTime != nil && cur.Status.CompletionTime != nil {
		d := cur.Status.CompletionTime.Sub(cur.Status.StartTime.Time)
		metricFlashDuration.WithLabelValues(string(cur.Spec.TargetType), string(cur.Status.Phase)).Observe(max(d, 0).Seconds())
	}
	if cur.Status.Phase != fwv1.TargetPhaseFailed {
		return
	}
	metricErrors.WithLabelValues(ReasonTargetFailed).Inc()
	if r.Recorder != nil {
		r.Recorder.Eventf(cur, nil, corev1.EventTypeWarning, ReasonTargetFailed, "Update", "%s", cur.Status.Message)
	}
}
