package cluster_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
	"github.com/fwops/firmware-operator/internal/agentpod"
	"github.com/fwops/firmware-operator/internal/fleet"
	similo "github.com/fwops/firmware-operator/internal/simulator/ilo"
)

// defaultPolicy is the PortPolicy the chart installs (rules P1-P5 as HP SUM has them).
const defaultPolicy = "default"

// startFleet starts a simulated fleet and creates its Secrets and UpdateTargets in ns.
func startFleet(ctx context.Context, t *testing.T, ns string, opts fleet.Options) *fleet.Fleet {
	t.Helper()
	if opts.Linux {
		if err := fleet.Available(); err != nil {
			t.Fatalf("the Linux target needs a real sshd: %v", err)
		}
	}
	opts.Name = ns
	f, err := fleet.Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("sshd logs:\n%s", f.SSHDLogs())
		}
		_ = f.Close()
	})
	if err := f.Apply(ctx, k8s, ns); err != nil {
		t.Fatal(err)
	}
	return f
}

// targetUpdates lists a job's TargetUpdates.
func targetUpdates(ctx context.Context, ns, job string) ([]fwv1.TargetUpdate, error) {
	var list fwv1.TargetUpdateList
	if err := k8s.List(ctx, &list, client.InNamespace(ns)); err != nil {
		return nil, err
	}
	var out []fwv1.TargetUpdate
	for _, tu := range list.Items {
		if tu.Spec.JobName == job {
			out = append(out, tu)
		}
	}
	return out, nil
}

// agentPods lists a job's agent pods.
func agentPods(ctx context.Context, ns, job string) ([]corev1.Pod, error) {
	var list corev1.PodList
	err := k8s.List(ctx, &list, client.InNamespace(ns), client.MatchingLabels{fwv1.LabelJob: job, agentpod.LabelApp: agentpod.AppName})
	return list.Items, err
}

// waitSucceeded waits until every target of the job Succeeded and fails the test
// otherwise; a Failed target ends the wait at once with its message and its agent's log.
func waitSucceeded(ctx context.Context, t *testing.T, ns, job string, targets int, timeout time.Duration) []fwv1.TargetUpdate {
	t.Helper()
	tus, err := succeeded(ctx, ns, job, targets, timeout)
	if err != nil {
		t.Fatal(err)
	}
	return tus
}

func succeeded(ctx context.Context, ns, job string, targets int, timeout time.Duration) ([]fwv1.TargetUpdate, error) {
	var tus []fwv1.TargetUpdate
	err := poll(ctx, timeout, func(ctx context.Context) error {
		var err error
		if tus, err = targetUpdates(ctx, ns, job); err != nil {
			return err
		}
		if len(tus) != targets {
			return fmt.Errorf("%d TargetUpdates, want %d", len(tus), targets)
		}
		var waiting []string
		for _, tu := range tus {
			switch tu.Status.Phase {
			case fwv1.TargetPhaseSucceeded:
			case fwv1.TargetPhaseFailed:
				return gomega.StopTrying("a target failed").Wrap(fmt.Errorf("target %s failed: %s\nagent log:\n%s", tu.Spec.TargetName, tu.Status.Message, agentLog(ns, tu.Status.AgentPod)))
			default:
				waiting = append(waiting, fmt.Sprintf("%s %s %q", tu.Spec.TargetName, tu.Status.Phase, tu.Status.Message))
			}
		}
		if len(waiting) > 0 {
			return fmt.Errorf("waiting for %s; pods: %s", strings.Join(waiting, ", "), podSummary(ctx, ns, job))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("job %s: %w", job, err)
	}
	return tus, nil
}

// agentLog is an agent pod's log, every container, from the kubelet's pod log folder.
func agentLog(ns, pod string) string {
	if pod == "" {
		return "(no pod)"
	}
	logs := node.PodLogs(ns, pod)
	names := make([]string, 0, len(logs))
	for n := range logs {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		fmt.Fprintf(&b, "--- %s/%s\n%s", pod, n, logs[n])
	}
	return b.String()
}

// podSummary says where each agent pod of the job stands, for failure messages.
func podSummary(ctx context.Context, ns, job string) string {
	pods, err := agentPods(ctx, ns, job)
	if err != nil {
		return err.Error()
	}
	var parts []string
	for _, p := range pods {
		s := p.Name + " " + string(p.Status.Phase)
		for _, c := range p.Status.Conditions {
			if c.Status != corev1.ConditionTrue && c.Message != "" {
				s += fmt.Sprintf(" [%s: %s %s]", c.Type, c.Reason, c.Message)
			}
		}
		for _, c := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
			if w := c.State.Waiting; w != nil {
				s += fmt.Sprintf(" [%s waiting: %s %s]", c.Name, w.Reason, w.Message)
			}
			if x := c.State.Terminated; x != nil {
				s += fmt.Sprintf(" [%s exited %d: %s %s]", c.Name, x.ExitCode, x.Reason, x.Message)
			}
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "; ")
}

// TestRolloutWithRealAgentPods is the rollout of make demo on the real node: an UpdateJob
// per component over iLO 4, 5 and 6, an Onboard Administrator and a Linux host; every target
// Succeeded and was flashed exactly once by the simulators' own count; the agents ran as
// real containers; the manager's and the agents' logs say what happened.
func TestRolloutWithRealAgentPods(t *testing.T) {
	ctx := need(t)
	ns := newNamespace(ctx, t, "rollout")
	f := startFleet(ctx, t, ns, fleet.Options{ILO4: 1, ILO5: 1, ILO6: 1, OA: 1, Linux: true,
		Timings: similo.Timings{Upload: 200 * time.Millisecond, Verify: 200 * time.Millisecond, Write: time.Second, Update: time.Second, Steps: 4}})
	type jobOf struct {
		comp  fwv1.Component
		types []fwv1.TargetType
	}
	jobs := map[string]jobOf{
		"ilo":   {fwv1.ComponentILO, []fwv1.TargetType{fwv1.TargetTypeILO4, fwv1.TargetTypeILO5, fwv1.TargetTypeILO6}},
		"oa":    {fwv1.ComponentOA, []fwv1.TargetType{fwv1.TargetTypeOA}},
		"linux": {fwv1.ComponentSmartComponent, []fwv1.TargetType{fwv1.TargetTypeLinux}},
	}
	agents, stopObserving := observeAgents(ctx, t, ns)
	defer stopObserving()
	for name, j := range jobs {
		if err := k8s.Create(ctx, f.Job(ns, name, j.comp, defaultPolicy, 3)); err != nil {
			t.Fatal(err)
		}
	}
	for name, j := range jobs {
		targets := f.TargetNames(j.types...)
		tus, err := succeeded(ctx, ns, name, len(targets), 6*time.Minute)
		if err != nil {
			t.Error(err) // and go on: the other jobs and the manager's log say more
			continue
		}
		want := f.Image(j.comp).Version
		for _, tu := range tus {
			if !strings.HasPrefix(tu.Status.VersionAfter, want) {
				t.Errorf("%s: versionAfter %q, want %s", tu.Spec.TargetName, tu.Status.VersionAfter, want)
			}
			if tu.Status.Attempts != 1 {
				t.Errorf("%s started %d times", tu.Spec.TargetName, tu.Status.Attempts)
			}
		}
		for _, target := range targets {
			if n := f.Flashes(target); n != 1 {
				t.Errorf("target %s was flashed %d times by its own count, want once", target, n)
			}
		}
		// The agents ran as containers of containerd, and logged what they did.
		seen := agents.of(name)
		if len(seen) == 0 {
			t.Errorf("job %s: no agent pod seen while it ran", name)
		}
		logged := 0
		for pod, s := range seen {
			if s.containerID != "" && !strings.HasPrefix(s.containerID, "containerd://") {
				t.Errorf("pod %s: container %q not run by containerd", pod, s.containerID)
			}
			if s.logged {
				logged++
			}
		}
		if len(seen) > 0 && logged == 0 {
			t.Errorf("job %s: none of its agent pods %v was seen running under containerd with a log that says something", name, seen)
		}
		// Once the job is done, its agent pods are deleted (issue 13): nothing piles up for
		// the kube-controller-manager's terminated-pod collector.
		eventually(ctx, t, 2*time.Minute, "job "+name+"'s agent pods deleted once it is done", func(ctx context.Context) error {
			pods, err := agentPods(ctx, ns, name)
			if err != nil {
				return err
			}
			if len(pods) > 0 {
				return fmt.Errorf("%d agent pods left: %s", len(pods), podSummary(ctx, ns, name))
			}
			return nil
		})
	}
	// The manager, run as the chart runs it, logs what it does.
	if log := managerLog(); !strings.Contains(log, "starting manager") || !strings.Contains(log, "UpdateJob") {
		t.Errorf("the manager's log (kubelet's pod log folder) does not say what it did:\n%q", truncate(log, 4000))
	}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
