package runner

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
	"github.com/fwops/firmware-operator/internal/agent/config"
)

func reporterFor(t *testing.T, tu *fwv1.TargetUpdate, funcs interceptor.Funcs) (*reporter, client.Client) {
	t.Helper()
	s := runtime.NewScheme()
	if err := fwv1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	c := fake.NewClientBuilder().WithScheme(s).WithStatusSubresource(&fwv1.TargetUpdate{}).WithObjects(tu).
		WithInterceptorFuncs(funcs).Build()
	r := &reporter{c: c, log: slog.New(slog.DiscardHandler), redact: func(s string) string { return s }, now: time.Now,
		interval: time.Hour, target: config.Target{Name: tu.Spec.TargetName, TargetUpdate: tu.Name},
		pod: "agent-pod", retryWait: 10 * time.Millisecond, finalTimeout: 10 * time.Second}
	cfg := config.Config{Namespace: tu.Namespace, Job: tu.Spec.JobName}
	if err := r.load(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	return r, c
}

func phaseIn(t *testing.T, c client.Client, tu *fwv1.TargetUpdate) *fwv1.TargetUpdate {
	t.Helper()
	got := &fwv1.TargetUpdate{}
	if err := c.Get(context.Background(), client.ObjectKeyFromObject(tu), got); err != nil {
		t.Fatal(err)
	}
	return got
}

// The final status must outlast an API server that is away for a while (a restart): lost,
// the controller would count the target failed and a retry would flash it again.
func TestFinalStatusOutlastsAnAPIServerRestart(t *testing.T) {
	tu := newTU(testJob, "t0")
	var refusals atomic.Int32
	unavailable := apierrors.NewServiceUnavailable("the API server is restarting")
	r, c := reporterFor(t, tu, interceptor.Funcs{
		SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, p client.Patch, opts ...client.SubResourcePatchOption) error {
			if refusals.Add(1) <= 8 {
				return unavailable
			}
			return c.SubResource(sub).Patch(ctx, obj, p, opts...)
		},
	})
	r.finish(context.Background(), fwv1.TargetPhaseSucceeded, "flashed and verified", nil)
	if got := phaseIn(t, c, tu); got.Status.Phase != fwv1.TargetPhaseSucceeded {
		t.Fatalf("phase = %q after %d refused writes, want Succeeded", got.Status.Phase, refusals.Load())
	}
}

// A write computed on a stale copy is re-sent on the fresh one: the controller's claim
// (attempts, start time) survives the agent's progress report.
func TestStatusWriteKeepsTheControllersFields(t *testing.T) {
	tu := newTU(testJob, "t0")
	r, c := reporterFor(t, tu, interceptor.Funcs{})
	claimed := phaseIn(t, c, tu)
	claimed.Status.AgentPod, claimed.Status.Attempts = "agent-pod", 2
	if err := c.Status().Update(context.Background(), claimed); err != nil {
		t.Fatal(err)
	}
	r.update(context.Background(), true, func(s *fwv1.TargetUpdateStatus) { s.Phase = fwv1.TargetPhaseFlashing })
	got := phaseIn(t, c, tu)
	if got.Status.Phase != fwv1.TargetPhaseFlashing || got.Status.Attempts != 2 || got.Status.AgentPod != "agent-pod" {
		t.Fatalf("status = phase %q attempts %d pod %q, want Flashing, 2, agent-pod", got.Status.Phase, got.Status.Attempts, got.Status.AgentPod)
	}
}

// An agent whose target was handed to another pod (it was thought dead) stops writing it.
func TestStatusIsNotWrittenOnceTheTargetBelongsToAnotherAgent(t *testing.T) {
	tu := newTU(testJob, "t0")
	r, c := reporterFor(t, tu, interceptor.Funcs{})
	handed := phaseIn(t, c, tu)
	handed.Status.AgentPod, handed.Status.Phase = "newer-agent", fwv1.TargetPhaseDownloading
	if err := c.Status().Update(context.Background(), handed); err != nil {
		t.Fatal(err)
	}
	r.finish(context.Background(), fwv1.TargetPhaseFailed, "timed out", nil)
	got := phaseIn(t, c, tu)
	if got.Status.Phase != fwv1.TargetPhaseDownloading {
		t.Fatalf("phase = %q: the old agent wrote over the new one's target", got.Status.Phase)
	}
	if r.refused == nil || !strings.Contains(r.refused.Error(), "handed over") || !strings.Contains(r.refused.Error(), "assigned to agent pod newer-agent") {
		t.Fatalf("refused = %v, want it to name the agent that owns the target now", r.refused)
	}
}

// An agent that starts while the API server restarts waits for it before it reads its
// targets. Before, the first refused read failed the target and the agent exited 1 (the chaos
// suite's API server restart: "reading TargetUpdate …: dial tcp …: connection refused").
func TestLoadOutlastsAnAPIServerRestart(t *testing.T) {
	tu := newTU(testJob, "t0")
	var refusals atomic.Int32
	funcs := interceptor.Funcs{SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, p client.Patch, opts ...client.SubResourcePatchOption) error {
		if refusals.Add(1) <= 5 {
			return errors.New(`Patch "https://127.0.0.1:1/apis": dial tcp 127.0.0.1:1: connect: connection refused`)
		}
		return c.SubResource(sub).Patch(ctx, obj, p, opts...)
	}}
	r, _ := reporterFor(t, tu, funcs)
	if r.obj == nil || r.refused != nil || refusals.Load() != 6 {
		t.Fatalf("after %d reads: obj %v, refused %v; want the TargetUpdate read once the API server answers", refusals.Load(), r.obj, r.refused)
	}

	// A TargetUpdate that is not there is not waited for.
	missing := newTU(testJob, "t1")
	s := runtime.NewScheme()
	if err := fwv1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	r2 := &reporter{c: fake.NewClientBuilder().WithScheme(s).Build(), log: slog.New(slog.DiscardHandler), redact: func(s string) string { return s },
		now: time.Now, target: config.Target{Name: "t1", TargetUpdate: missing.Name}, retryWait: time.Hour, finalTimeout: time.Hour}
	if err := r2.load(context.Background(), config.Config{Namespace: testNS, Job: testJob}); !apierrors.IsNotFound(errors.Unwrap(err)) {
		t.Fatalf("load of a missing TargetUpdate: %v, want NotFound at once", err)
	}
}

// policyRefusal is the API server's answer when the admission policy
// firmware-operator-agent-writes refuses an agent pod a TargetUpdate that is not its own.
func policyRefusal(name, assignee string) error {
	return apierrors.NewForbidden(fwv1.GroupVersion.WithResource("targetupdates").GroupResource(), name,
		errors.New("ValidatingAdmissionPolicy 'firmware-operator-agent-writes' with binding 'firmware-operator-agent-writes' denied request: "+
			"pod agent-pod may read and write only the TargetUpdates assigned to it (status.agentPod); "+name+" is assigned to "+assignee))
}

func isRead(p client.Patch, obj client.Object) bool {
	data, err := p.Data(obj)
	return err == nil && string(data) == "{}"
}

// An agent pod starts before the controller records its claim (status.agentPod), and the
// admission policy refuses it its TargetUpdate until then: the agent waits, says so in its
// log, and works on the target once it is assigned. Before, a refused read failed the
// target at once ("not working on target").
func TestLoadWaitsForTheClaim(t *testing.T) {
	tu := newTU(testJob, "t0")
	var reads atomic.Int32
	logs := &strings.Builder{}
	s := runtime.NewScheme()
	if err := fwv1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	c := fake.NewClientBuilder().WithScheme(s).WithStatusSubresource(&fwv1.TargetUpdate{}).WithObjects(tu).
		WithInterceptorFuncs(interceptor.Funcs{SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, p client.Patch, opts ...client.SubResourcePatchOption) error {
			if isRead(p, obj) && reads.Add(1) <= 3 {
				return policyRefusal(tu.Name, "no pod")
			}
			return c.SubResource(sub).Patch(ctx, obj, p, opts...)
		}}).Build()
	newReporter := func(finalTimeout time.Duration) *reporter {
		return &reporter{c: c, log: slog.New(slog.NewTextHandler(logs, nil)), redact: func(s string) string { return s }, now: time.Now,
			interval: time.Hour, target: config.Target{Name: "t0", TargetUpdate: tu.Name},
			pod: "agent-pod", retryWait: 10 * time.Millisecond, finalTimeout: finalTimeout}
	}
	cfg := config.Config{Namespace: testNS, Job: testJob}
	r := newReporter(10 * time.Second)
	if err := r.load(context.Background(), cfg); err != nil || r.obj == nil || reads.Load() != 4 {
		t.Fatalf("load after %d reads: %v; want the TargetUpdate once the claim lets the agent read it", reads.Load(), err)
	}
	if !strings.Contains(logs.String(), "waiting for the controller to assign it (status.agentPod)") {
		t.Errorf("the wait is not in the agent's log:\n%s", logs)
	}

	// Never assigned: the wait ends with the timeout, and the target is refused, not written.
	reads.Store(-1 << 20)
	r = newReporter(100 * time.Millisecond)
	err := r.load(context.Background(), cfg)
	if !apierrors.IsForbidden(errors.Unwrap(err)) || r.refused == nil || !strings.Contains(err.Error(), "is assigned to no pod") {
		t.Fatalf("load of a TargetUpdate never assigned: %v, want the policy's Forbidden", err)
	}
}

// Once the agent has read its TargetUpdate, a refusal by the admission policy means the
// controller handed the target to another pod (this one was thought dead) or took it back:
// the agent stops writing it at once, also when the refusal comes on the re-read after a
// conflict. Before, a refused final write was retried for finalTimeout, and the refused
// re-read returned the error without marking the target handed over.
func TestPolicyRefusalMeansHandedOver(t *testing.T) {
	for _, refuse := range []string{"the write", "the re-read after a conflict"} {
		t.Run(refuse, func(t *testing.T) {
			tu := newTU(testJob, "t0")
			var handed atomic.Bool
			var writes atomic.Int32
			r, c := reporterFor(t, tu, interceptor.Funcs{
				SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, p client.Patch, opts ...client.SubResourcePatchOption) error {
					read := isRead(p, obj)
					switch {
					case !handed.Load():
					case !read && refuse == "the write":
						writes.Add(1)
						return policyRefusal(tu.Name, "pod newer-agent")
					case !read:
						writes.Add(1)
						return apierrors.NewConflict(fwv1.GroupVersion.WithResource("targetupdates").GroupResource(), tu.Name, errors.New("the object has been modified"))
					default:
						return policyRefusal(tu.Name, "pod newer-agent")
					}
					return c.SubResource(sub).Patch(ctx, obj, p, opts...)
				},
			})
			handed.Store(true)
			start := time.Now()
			r.finish(context.Background(), fwv1.TargetPhaseFailed, "timed out", nil)
			if r.refused == nil || !strings.Contains(r.refused.Error(), "handed over") || !strings.Contains(r.refused.Error(), "is assigned to pod newer-agent") {
				t.Fatalf("refused = %v, want the target handed over, naming its assignee", r.refused)
			}
			if writes.Load() != 1 || time.Since(start) > 5*time.Second {
				t.Errorf("%d write tries in %s: a handed-over target must not be retried", writes.Load(), time.Since(start))
			}
			if got := phaseIn(t, c, tu); got.Status.Phase == fwv1.TargetPhaseFailed {
				t.Error("the handed-over target was written")
			}
			r.update(context.Background(), true, func(s *fwv1.TargetUpdateStatus) { s.Message = "later" })
			if writes.Load() != 1 {
				t.Error("a handed-over target was written again")
			}
		})
	}
}

// rbacRefusal is what a kube-apiserver that has just restarted answers until its RBAC cache
// holds the job's Role again (seen in the chaos suite once agents used their pod's token).
func rbacRefusal(name string) error {
	return apierrors.NewForbidden(fwv1.GroupVersion.WithResource("targetupdates/status").GroupResource(), name,
		errors.New(`User "system:serviceaccount:`+testNS+`:job-agent" cannot patch resource "targetupdates/status" in API group "firmware.fwops.io" `+
			`in the namespace "`+testNS+`": RBAC: role.rbac.authorization.k8s.io "job-agent" not found`))
}

// An authorization refusal is not a hand-over: the final status of a finished flash is
// retried until it lands. Before, any Forbidden stopped every write, the target was failed as
// "agent pod ended before the target finished", and its retry flashed it again.
func TestAuthorizationRefusalIsRetried(t *testing.T) {
	tu := newTU(testJob, "t0")
	var refusals atomic.Int32
	r, c := reporterFor(t, tu, interceptor.Funcs{
		SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, p client.Patch, opts ...client.SubResourcePatchOption) error {
			if !isRead(p, obj) && refusals.Add(1) <= 3 {
				return rbacRefusal(tu.Name)
			}
			return c.SubResource(sub).Patch(ctx, obj, p, opts...)
		},
	})
	r.finish(context.Background(), fwv1.TargetPhaseSucceeded, "flashed and verified", nil)
	if r.refused != nil {
		t.Fatalf("an RBAC refusal was taken for a hand-over: %v", r.refused)
	}
	if got := phaseIn(t, c, tu); got.Status.Phase != fwv1.TargetPhaseSucceeded {
		t.Fatalf("phase = %q after %d refused writes, want Succeeded", got.Status.Phase, refusals.Load())
	}
}
