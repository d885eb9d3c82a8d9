package runner

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
	"github.com/fwops/firmware-operator/internal/agent/config"
	"github.com/fwops/firmware-operator/internal/agent/control"
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
		a.FirmwareServerPort != b.FirmwareServerPort || a.Node != b.Node || a.AgentPod != b.AgentPod
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
	refused   error // the TargetUpdate is not this job's: never written
}

// checkOwner refuses a TargetUpdate that belongs to another job (or another instance of a
// job of the same name), so that an agent never writes over someone else's status.
func checkOwner(tu *fwv1.TargetUpdate, cfg config.Config, t config.Target) error {
	switch {
	case tu.Labels[fwv1.LabelJob] != cfg.Job:
		return fmt.Errorf("TargetUpdate %s/%s has label %s=%q, not this agent's job %q: not writing it",
			tu.Namespace, tu.Name, fwv1.LabelJob, tu.Labels[fwv1.LabelJob], cfg.Job)
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

// load reads the TargetUpdate and checks it belongs to the agent's job.
func (r *reporter) load(ctx context.Context, cfg config.Config) error {
	tu := &fwv1.TargetUpdate{}
	key := types.NamespacedName{Namespace: cfg.Namespace, Name: r.target.TargetUpdate}
	if err := r.c.Get(ctx, key, tu); err != nil {
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

// phase is the phase as last read or set.
func (r *reporter) phase() fwv1.TargetPhase {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.live.Phase
}

// update applies f to the live status and writes it when shouldWrite says so (or force).
func (r *reporter) update(ctx context.Context, force bool, f func(s *fwv1.TargetUpdateStatus)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.obj == nil {
		return // refused or never read: nothing may be written
	}
	next := *r.live.DeepCopy()
	f(&next)
	next.Message = truncate(r.redact(next.Message), maxMessage)
	r.live = next
	r.updatedAt = r.now()
	now := r.now()
	if !force && !shouldWrite(r.obj.Status, next, r.lastWrite, now, r.interval) {
		return
	}
	r.writeLocked(ctx, next, now)
}

func (r *reporter) writeLocked(ctx context.Context, next fwv1.TargetUpdateStatus, now time.Time) {
	final := next.Phase.Finished()
	// A final state must land even when the run's context is over (the target timed out).
	wctx := ctx
	if final {
		var cancel context.CancelFunc
		wctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
	}
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		obj := r.obj.DeepCopy()
		base := client.MergeFrom(r.obj)
		obj.Status = *next.DeepCopy()
		if err = r.c.Status().Patch(wctx, obj, base); err == nil {
			r.obj = obj
			r.lastWrite = now
			return
		}
		if !final || wctx.Err() != nil {
			break
		}
		time.Sleep(time.Duration(attempt+1) * 200 * time.Millisecond)
	}
	r.log.Warn("could not write TargetUpdate status; will try again with the next change",
		"targetUpdate", r.target.TargetUpdate, "phase", next.Phase, "err", r.redact(err.Error()))
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

// maxMessage is the API's bound on status.message.
const maxMessage = 2048

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}
