package runner

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
	"github.com/fwops/firmware-operator/internal/agent/config"
	"github.com/fwops/firmware-operator/internal/agent/control"
	"github.com/fwops/firmware-operator/internal/kname"
)

// DefaultMinWriteInterval spaces status writes that neither change the phase nor cross a
// 10% step: a fleet of thousands of targets must not flood the API server.
const DefaultMinWriteInterval = 5 * time.Second

// shouldWrite says whether next must be written, given what was written last and when. Phase
// changes and final states are always written; percent in steps of 10; anything else at most
// once per interval.
func shouldWrite(last, next fwv1.TargetUpdateStatus, lastWrite, now time.Time, interval time.Duration) bool {
	switch {
	case next.Phase != last.Phase, next.Phase.Finished():
		return true
	case next.Percent/10 != last.Percent/10:
		return true
	case now.Sub(lastWrite) >= interval:
		return statusChanged(last, next)
	}
	return false
}

func statusChanged(a, b fwv1.TargetUpdateStatus) bool {
	return a.Phase != b.Phase || a.Percent != b.Percent || a.Message != b.Message ||
		a.VersionBefore != b.VersionBefore || a.VersionAfter != b.VersionAfter ||
		a.RebootRequired != b.RebootRequired || a.SessionPort != b.SessionPort ||
		a.FirmwareServerPort != b.FirmwareServerPort || a.ControlPort != b.ControlPort || a.IPCPort != b.IPCPort ||
		!slices.Equal(a.ReceivePorts, b.ReceivePorts) || a.ReceivePort != b.ReceivePort || a.ReceiveVia != b.ReceiveVia || a.Node != b.Node || a.AgentPod != b.AgentPod
}

// reportTo puts the ports the agent really bound into a target's status: the target's own
// session port (rule P4) and the agent's control (P1), firmware server (P2), inter-process
// and receive ports (P5). The controller shows them in the UpdateJob's status.agents from
// there (ports.md, "Across the cluster": the agent reports the ports it really bound). A
// target in slot i, of type typ, dials from the i-th session port and receives on the i-th
// receive port (receiveFor) when its type sends to one.
func (b Bound) reportTo(s *fwv1.TargetUpdateStatus, i int, typ fwv1.TargetType) {
	s.SessionPort = int32(b.session(i))
	s.ControlPort, s.FirmwareServerPort, s.IPCPort = int32(b.Control), int32(b.Firmware), int32(b.IPC)
	s.ReceivePorts = nil
	for _, p := range b.Reverse {
		s.ReceivePorts = append(s.ReceivePorts, int32(p))
	}
	s.ReceivePort, s.ReceiveVia = 0, ""
	if via := typ.ReceiveVia(); via != "" && i < len(b.Reverse) {
		s.ReceivePort, s.ReceiveVia = int32(b.Reverse[i]), via
	}
}

// reporter owns one target's TargetUpdate status: the live copy behind /status, and the
// throttled writes to the API server. Safe for concurrent use.
type reporter struct {
	c        client.Client
	log      *slog.Logger
	redact   func(string) string
	now      func() time.Time
	interval time.Duration

	mu        sync.Mutex
	target    config.Target
	obj       *fwv1.TargetUpdate // as last written (or read)
	live      fwv1.TargetUpdateStatus
	lastWrite time.Time
	updatedAt time.Time
	refused   error // not this job's, never readable or handed over: never written

	pod          string        // this agent's pod: a target handed to another is not written
	finalTimeout time.Duration // how long a final write is retried (DefaultFinalWriteTimeout)
	retryWait    time.Duration // the first wait between final-write tries
}

// checkOwner refuses a TargetUpdate that belongs to another job (or another instance of a
// job of the same name), so that an agent never writes over someone else's status.
func checkOwner(tu *fwv1.TargetUpdate, cfg config.Config, t config.Target) error {
	switch {
	case tu.Labels[fwv1.LabelJob] != kname.LabelValue(cfg.Job):
		return fmt.Errorf("TargetUpdate %s/%s has label %s=%q, not this agent's job %q: not writing it",
			tu.Namespace, tu.Name, fwv1.LabelJob, tu.Labels[fwv1.LabelJob], kname.LabelValue(cfg.Job))
	case tu.Spec.JobName != cfg.Job:
		return fmt.Errorf("TargetUpdate %s/%s is for job %q, not this agent's job %q: not writing it",
			tu.Namespace, tu.Name, tu.Spec.JobName, cfg.Job)
	case tu.Spec.TargetName != t.Name:
		return fmt.Errorf("TargetUpdate %s/%s is for target %q, not %q: not writing it",
			tu.Namespace, tu.Name, tu.Spec.TargetName, t.Name)
	}
	if cfg.JobUID != "" {
		for _, o := range tu.OwnerReferences {
			if o.Kind == "UpdateJob" && string(o.UID) != cfg.JobUID {
				return fmt.Errorf("TargetUpdate %s/%s belongs to another instance of job %q (uid %s, agent's %s): not writing it",
					tu.Namespace, tu.Name, cfg.Job, o.UID, cfg.JobUID)
			}
		}
	}
	return nil
}

// load reads the TargetUpdate and checks it belongs to the agent's job. An API server that
// cannot be reached (restarting) is waited for as long as a final write would be: an agent
// that gave up at once left its target failed with nothing but its pod's exit code.
func (r *reporter) load(ctx context.Context, cfg config.Config) error {
	key := types.NamespacedName{Namespace: cfg.Namespace, Name: r.target.TargetUpdate}
	tu, err := r.readPatiently(ctx, key)
	if err != nil {
		r.mu.Lock()
		r.refused = fmt.Errorf("reading TargetUpdate %s: %w", key, err)
		r.mu.Unlock()
		return r.refused
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := checkOwner(tu, cfg, r.target); err != nil {
		r.refused = err
		return err
	}
	r.obj = tu
	r.live = *tu.Status.DeepCopy()
	r.updatedAt = r.now()
	return nil
}

// ReadTargetUpdate is how an agent reads a TargetUpdate: an empty merge patch of its status,
// whose answer is the whole object as it is. The job's Role grants agents no get, list or
// watch on TargetUpdates, because admission never sees a read; a patch goes through the
// ValidatingAdmissionPolicy firmware-operator-agent-writes, which lets an agent pod read only
// the TargetUpdates assigned to it (status.agentPod) and refuses the others with Forbidden.
// An empty patch changes nothing, so the API server writes nothing and no watch fires.
func ReadTargetUpdate(ctx context.Context, c client.Client, key types.NamespacedName) (*fwv1.TargetUpdate, error) {
	tu := &fwv1.TargetUpdate{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}
	if err := c.Status().Patch(ctx, tu, client.RawPatch(types.MergePatchType, []byte("{}"))); err != nil {
		return nil, err
	}
	return tu, nil
}

// readPatiently reads key for up to finalWriteTimeout, trying again while the error may pass:
// an API server away (restarting), or Forbidden before the controller has assigned the
// TargetUpdate to this pod (it creates the pod first, then sets status.agentPod, and the
// admission policy refuses the pod until then). A missing object or token is not waited for.
func (r *reporter) readPatiently(ctx context.Context, key types.NamespacedName) (*fwv1.TargetUpdate, error) {
	ctx, cancel := context.WithTimeout(ctx, r.finalWriteTimeout())
	defer cancel()
	wait := r.retryBase()
	for {
		tu, err := ReadTargetUpdate(ctx, r.c, key)
		switch {
		case err == nil || apierrors.IsNotFound(err) || apierrors.IsUnauthorized(err):
			return tu, err
		case PolicyRefused(err):
			r.log.Info("the API server does not let this pod read its TargetUpdate yet: waiting for the controller to assign it (status.agentPod)",
				"targetUpdate", key.Name, "in", wait, "err", r.redact(err.Error()))
		case apierrors.IsForbidden(err):
			r.log.Warn("the API server does not authorize this pod's ServiceAccount to read its TargetUpdate (the job's Role): retrying, "+
				"as a kube-apiserver that has just started does until its authorization cache is filled",
				"targetUpdate", key.Name, "in", wait, "err", r.redact(err.Error()))
		default:
			r.log.Warn("could not read the TargetUpdate; retrying", "targetUpdate", key.Name, "in", wait, "err", r.redact(err.Error()))
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(wait):
		}
		wait = min(2*wait, 10*time.Second)
	}
}

// phase is the phase as last read or set.
func (r *reporter) phase() fwv1.TargetPhase {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.live.Phase
}

// versionBefore is the version recorded before a flash, by this agent or an earlier one.
func (r *reporter) versionBefore() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.live.VersionBefore
}

// update applies f to the live status and writes it when shouldWrite says so (or force).
func (r *reporter) update(ctx context.Context, force bool, f func(s *fwv1.TargetUpdateStatus)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	next, ok := r.applyLocked(f)
	if !ok {
		return
	}
	now := r.now()
	if !force && !shouldWrite(r.obj.Status, next, r.lastWrite, now, r.interval) {
		return
	}
	r.writeLocked(ctx, next, now)
}

// note applies f to the live status (/status shows it at once) without writing it: the
// target's next write carries it. For what a person reading the TargetUpdate needs no
// sooner than the step that follows (issue 13: every agent write is paid per target).
func (r *reporter) note(f func(s *fwv1.TargetUpdateStatus)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.applyLocked(f)
}

// applyLocked applies f to a copy of the live status, redacts it, and makes it the live
// status; ok is false when nothing may be written (refused, handed over or never read).
func (r *reporter) applyLocked(f func(s *fwv1.TargetUpdateStatus)) (next fwv1.TargetUpdateStatus, ok bool) {
	if r.obj == nil || r.refused != nil {
		return next, false // refused, handed over or never read: nothing may be written
	}
	next = *r.live.DeepCopy()
	f(&next)
	next.Message = truncate(r.redact(next.Message), maxMessage)
	for i := range next.Components { // a driver's message may quote the image URL and its token
		next.Components[i].Message = truncate(r.redact(next.Components[i].Message), maxComponentMessage)
	}
	r.live = next
	r.updatedAt = r.now()
	return next, true
}

func (r *reporter) writeLocked(ctx context.Context, next fwv1.TargetUpdateStatus, now time.Time) {
	final := next.Phase.Finished()
	wctx := ctx
	if final {
		// A final state must land even when the run's context is over (the target timed out)
		// and while the API server restarts: lost, the retry would flash the target again.
		var cancel context.CancelFunc
		wctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), r.finalWriteTimeout())
		defer cancel()
	}
	wait := r.retryBase()
	for {
		err := r.patchStatusLocked(wctx, next)
		if err == nil {
			r.lastWrite = now
			return
		}
		if r.refused != nil {
			return // handed over (logged): never written again
		}
		if !final || wctx.Err() != nil {
			r.log.Warn("could not write TargetUpdate status; will try again with the next change",
				"targetUpdate", r.target.TargetUpdate, "phase", next.Phase, "err", r.redact(err.Error()))
			return
		}
		r.log.Warn("could not write the final TargetUpdate status; retrying",
			"targetUpdate", r.target.TargetUpdate, "phase", next.Phase, "in", wait, "err", r.redact(err.Error()))
		select {
		case <-wctx.Done():
		case <-time.After(wait):
		}
		wait = min(2*wait, 10*time.Second)
	}
}

// DefaultFinalWriteTimeout is how long the agent keeps trying to write a target's final
// status: longer than an API server restart takes.
const DefaultFinalWriteTimeout = 5 * time.Minute

func (r *reporter) finalWriteTimeout() time.Duration {
	if r.finalTimeout > 0 {
		return r.finalTimeout
	}
	return DefaultFinalWriteTimeout
}

func (r *reporter) retryBase() time.Duration {
	if r.retryWait > 0 {
		return r.retryWait
	}
	return 200 * time.Millisecond
}

// patchStatusLocked writes the agent's change (next against what it last wrote or read) on
// the current TargetUpdate only: the patch carries the resourceVersion it was computed on.
// On a conflict it reads the TargetUpdate again and re-sends its change, unless the target
// has been handed to another agent pod, which then owns its status.
func (r *reporter) patchStatusLocked(ctx context.Context, next fwv1.TargetUpdateStatus) error {
	desired := r.obj.DeepCopy()
	desired.Status = *next.DeepCopy()
	diff, err := client.MergeFrom(r.obj).Data(desired)
	if err != nil {
		return err
	}
	cur := r.obj
	for range 5 {
		data, err := withResourceVersion(diff, cur.ResourceVersion)
		if err != nil {
			return err
		}
		out := cur.DeepCopy()
		err = r.c.Status().Patch(ctx, out, client.RawPatch(types.MergePatchType, data))
		if err == nil {
			r.obj = out
			return nil
		}
		if PolicyRefused(err) {
			return r.handedOverLocked(err.Error())
		}
		if !apierrors.IsConflict(err) {
			return err
		}
		fresh, err := ReadTargetUpdate(ctx, r.c, client.ObjectKeyFromObject(cur))
		if PolicyRefused(err) {
			return r.handedOverLocked(err.Error())
		}
		if err != nil {
			return err
		}
		if r.pod != "" && fresh.Status.AgentPod != "" && fresh.Status.AgentPod != r.pod {
			return r.handedOverLocked("it is assigned to agent pod " + fresh.Status.AgentPod)
		}
		cur = fresh
	}
	return fmt.Errorf("TargetUpdate %s kept changing under the agent's write", r.obj.Name)
}

// PolicyRefused reports whether err is the admission policy firmware-operator-agent-writes
// refusing this pod a TargetUpdate that is no longer assigned to it. Any other Forbidden is
// authorization (RBAC), which can be passing: a kube-apiserver that has just restarted refuses
// requests its Role cache has not caught up with ("role ... not found") for a few seconds.
// Taken for a hand-over, that left a finished flash unreported and its target failed.
func PolicyRefused(err error) bool {
	return apierrors.IsForbidden(err) && strings.Contains(err.Error(), "ValidatingAdmissionPolicy")
}

// handedOver says the TargetUpdate is another agent's now, or never was this job's: this
// agent leaves it to them.
func (r *reporter) handedOver() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.refused != nil
}

// handedOverLocked stops every write of a TargetUpdate this agent read before and that is
// no longer its own: the controller handed it to another agent pod (this one was thought
// dead) or took it back. Either the admission policy refused this pod (Forbidden: the
// TargetUpdate's status.agentPod is no longer this pod) or a fresh read showed another pod.
func (r *reporter) handedOverLocked(why string) error {
	r.refused = fmt.Errorf("TargetUpdate %s was handed over: this agent (pod %s) no longer writes it: %s",
		r.obj.Name, r.pod, r.redact(why))
	r.log.Warn("target handed over: no longer writing its TargetUpdate", "targetUpdate", r.obj.Name, "err", r.refused.Error())
	return r.refused
}

// withResourceVersion adds metadata.resourceVersion to a merge patch, which makes the API
// server refuse it with a conflict when the object has changed since that version.
func withResourceVersion(patch []byte, rv string) ([]byte, error) {
	m := map[string]any{}
	if err := json.Unmarshal(patch, &m); err != nil {
		return nil, err
	}
	md, _ := m["metadata"].(map[string]any)
	if md == nil {
		md = map[string]any{}
	}
	md["resourceVersion"] = rv
	m["metadata"] = md
	return json.Marshal(m)
}

// snapshot is the live status for /status.
func (r *reporter) snapshot() control.TargetStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	ts := control.TargetStatus{
		Name: r.target.Name, Phase: string(r.live.Phase), Percent: int(r.live.Percent),
		Message: r.live.Message, VersionBefore: r.live.VersionBefore, VersionAfter: r.live.VersionAfter,
		SessionPort: int(r.live.SessionPort), UpdatedAt: r.updatedAt,
	}
	if r.refused != nil {
		ts.Phase, ts.Message = string(fwv1.TargetPhaseFailed), r.redact(r.refused.Error())
	}
	if ts.Phase == "" {
		ts.Phase = string(fwv1.TargetPhasePending)
	}
	return ts
}

// finish sets a final phase with its condition and completion time, and writes it.
func (r *reporter) finish(ctx context.Context, phase fwv1.TargetPhase, msg string, f func(s *fwv1.TargetUpdateStatus)) {
	r.update(ctx, true, func(s *fwv1.TargetUpdateStatus) {
		if f != nil {
			f(s)
		}
		s.Phase, s.Message = phase, msg
		if phase != fwv1.TargetPhaseFailed {
			s.Percent = 100
		}
		now := metav1.NewTime(r.now())
		s.CompletionTime = &now
		cond := metav1.Condition{Type: fwv1.ConditionReady, Status: metav1.ConditionTrue, Reason: string(phase), Message: r.redact(msg)}
		if phase == fwv1.TargetPhaseFailed {
			cond.Status, cond.Reason = metav1.ConditionFalse, "Failed"
		}
		if len(cond.Message) > 32768 {
			cond.Message = cond.Message[:32768]
		}
		if r.obj != nil {
			cond.ObservedGeneration = r.obj.Generation
		}
		meta.SetStatusCondition(&s.Conditions, cond)
	})
}

// maxMessage and maxComponentMessage are the API's bounds on status.message and
// status.components[].message.
const (
	maxMessage          = 2048
	maxComponentMessage = 1024
)

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}

// components are the baseline components as recorded before this agent, by name.
func (r *reporter) components() map[string]fwv1.ComponentUpdate {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]fwv1.ComponentUpdate{}
	for _, c := range r.live.Components {
		out[c.Name] = c
	}
	return out
}

// rebootRequired is what the status says of staged firmware, by this agent or an earlier one.
func (r *reporter) rebootRequired() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.live.RebootRequired
}
