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
	if r.refused == nil || !strings.Contains(r.refused.Error(), "handed to agent pod newer-agent") {
		t.Fatalf("refused = %v, want it to name the agent that owns the target now", r.refused)
	}
}

// An agent that starts while the API server restarts waits for it before it reads its
// targets. Before, the first refused read failed the target and the agent exited 1 (the chaos
// suite's API server restart: "reading TargetUpdate …: dial tcp …: connection refused").
func TestLoadOutlastsAnAPIServerRestart(t *testing.T) {
	tu := newTU(testJob, "t0")
	var refusals atomic.Int32
	funcs := interceptor.Funcs{Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
		if refusals.Add(1) <= 5 {
			return errors.New(`Get "https://127.0.0.1:1/api": dial tcp 127.0.0.1:1: connect: connection refused`)
		}
		return c.Get(ctx, key, obj, opts...)
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
