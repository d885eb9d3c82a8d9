package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
	"github.com/fwops/firmware-operator/internal/agent/runner"
	"github.com/fwops/firmware-operator/internal/fleet"
	"github.com/fwops/firmware-operator/internal/scheme"
	similo "github.com/fwops/firmware-operator/internal/simulator/ilo"
	"github.com/fwops/firmware-operator/internal/testutil/cluster"
)

// slowFlash keeps an iLO flashing long enough to look at its agent pod meanwhile.
var slowFlash = similo.Timings{Upload: 500 * time.Millisecond, Verify: 500 * time.Millisecond, Write: 15 * time.Second, Update: 2 * time.Second, Steps: 5}

// oneTargetJob is an iLO UpdateJob over one target, by name.
func oneTargetJob(f *fleet.Fleet, ns, name, target string) *fwv1.UpdateJob {
	j := f.Job(ns, name, fwv1.ComponentILO, defaultPolicy, 1)
	j.Spec.Targets = fwv1.TargetSelection{Names: []string{target}}
	return j
}

// runningAgent waits for the job's agent pod to run and returns it.
func runningAgent(ctx context.Context, t *testing.T, ns, job string) corev1.Pod {
	t.Helper()
	var pod corev1.Pod
	eventually(ctx, t, 3*time.Minute, "job "+job+"'s agent pod running", func(ctx context.Context) error {
		pods, err := agentPods(ctx, ns, job)
		if err != nil {
			return err
		}
		for _, p := range pods {
			if p.Status.Phase == corev1.PodRunning {
				pod = p
				return nil
			}
		}
		return fmt.Errorf("pods: %s", podSummary(ctx, ns, job))
	})
	return pod
}

// TestTwoJobsOnOneNode runs two jobs at once on the one node. While the first agent runs:
// a pod that needs its host ports is kept Pending by the real scheduler (ports.md, "Across
// the cluster"), and the agent's own pod-bound ServiceAccount token can read neither a Secret
// nor the other job's TargetUpdate (the API server's answer). Both jobs end with their target flashed
// once; deleting them leaves no pod, TargetUpdate, Role, RoleBinding or ServiceAccount.
func TestTwoJobsOnOneNode(t *testing.T) {
	ctx := need(t)
	ns := newNamespace(ctx, t, "two-jobs")
	f := startFleet(ctx, t, ns, fleet.Options{ILO5: 2, Timings: slowFlash})
	targets := f.TargetNames()
	a, b := oneTargetJob(f, ns, "job-a", targets[0]), oneTargetJob(f, ns, "job-b", targets[1])
	if err := k8s.Create(ctx, a); err != nil {
		t.Fatal(err)
	}
	podA := runningAgent(ctx, t, ns, a.Name)
	if err := k8s.Create(ctx, b); err != nil {
		t.Fatal(err)
	}

	t.Run("the scheduler keeps a pod that needs the agent's ports Pending", func(t *testing.T) {
		// A second pod on the node that declares the agent's host ports, as another agent
		// assigned the same ports would.
		twin := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "needs-the-same-ports", Namespace: ns}, Spec: corev1.PodSpec{
			HostNetwork: true, Affinity: podA.Spec.Affinity, RestartPolicy: corev1.RestartPolicyNever,
			Containers: []corev1.Container{{Name: "c", Image: cluster.PauseImage, ImagePullPolicy: corev1.PullIfNotPresent,
				Ports: podA.Spec.Containers[0].Ports}},
		}}
		if err := k8s.Create(ctx, twin); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = k8s.Delete(context.Background(), twin, client.GracePeriodSeconds(0)) }()
		eventually(ctx, t, time.Minute, "the twin pod Unschedulable for its ports", func(ctx context.Context) error {
			if err := k8s.Get(ctx, client.ObjectKeyFromObject(twin), twin); err != nil {
				return err
			}
			for _, c := range twin.Status.Conditions {
				if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
					if !strings.Contains(c.Message, "free ports") {
						return fmt.Errorf("unschedulable for another reason: %s", c.Message)
					}
					return nil
				}
			}
			return fmt.Errorf("phase %s, node %q, conditions %+v", twin.Status.Phase, twin.Spec.NodeName, twin.Status.Conditions)
		})
	})

	t.Run("the agent's token reads no Secret and reads or writes no other job's TargetUpdate", func(t *testing.T) {
		// A token bound to the agent pod, as the kubelet projects it: the admission policy
		// reads the pod's name from it.
		req := authv1TokenRequest.DeepCopy()
		req.Spec.BoundObjectRef = &authenticationv1.BoundObjectReference{APIVersion: "v1", Kind: "Pod", Name: podA.Name, UID: podA.UID}
		tok, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, podA.Spec.ServiceAccountName, req, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cfg := rest.AnonymousClientConfig(node.Config)
		cfg.BearerToken = tok.Status.Token
		agent, err := client.New(cfg, client.Options{Scheme: scheme.New()})
		if err != nil {
			t.Fatal(err)
		}
		tusA, err := targetUpdates(ctx, ns, a.Name)
		if err != nil || len(tusA) != 1 {
			t.Fatalf("job a's TargetUpdates: %v %v", tusA, err)
		}
		own, err := runner.ReadTargetUpdate(ctx, agent, client.ObjectKeyFromObject(&tusA[0]))
		if err != nil || own.Status.AgentPod != podA.Name {
			t.Fatalf("the agent cannot read its own TargetUpdate as it does (%v, %+v), so the checks below prove nothing", err, own)
		}
		var tusB []fwv1.TargetUpdate
		eventually(ctx, t, time.Minute, "job b's TargetUpdate", func(ctx context.Context) error {
			tusB, err = targetUpdates(ctx, ns, b.Name)
			if err == nil && len(tusB) == 0 {
				err = errors.New("none yet")
			}
			return err
		})
		// The Role grants no get (RBAC refuses it); the agent's read, an empty status patch,
		// and any write go through the chart's ValidatingAdmissionPolicy (docs/security.md).
		key := client.ObjectKeyFromObject(&tusB[0])
		if err := agent.Get(ctx, key, &fwv1.TargetUpdate{}); !apierrors.IsForbidden(err) {
			t.Errorf("job a's agent reading job b's TargetUpdate %s: %v, want Forbidden", key.Name, err)
		}
		if _, err := runner.ReadTargetUpdate(ctx, agent, key); !apierrors.IsForbidden(err) {
			t.Errorf("job a's agent reading job b's TargetUpdate %s by an empty status patch: %v, want Forbidden", key.Name, err)
		}
		other := tusB[0].DeepCopy()
		if err := agent.Status().Patch(ctx, other, client.RawPatch(types.MergePatchType, []byte(`{"status":{"message":"job a's agent"}}`))); !apierrors.IsForbidden(err) {
			t.Errorf("job a's agent writing job b's TargetUpdate %s: %v, want Forbidden", key.Name, err)
		}
		var secrets corev1.SecretList
		if err := agent.List(ctx, &secrets, client.InNamespace(ns)); !apierrors.IsForbidden(err) {
			t.Errorf("the agent listing Secrets: %v, want Forbidden", err)
		}
		var secret corev1.Secret
		if err := agent.Get(ctx, client.ObjectKey{Namespace: ns, Name: ns + "-ilo-credentials"}, &secret); !apierrors.IsForbidden(err) {
			t.Errorf("the agent reading the credentials Secret: %v, want Forbidden", err)
		}
	})

	for _, j := range []*fwv1.UpdateJob{a, b} {
		waitSucceeded(ctx, t, ns, j.Name, 1, 5*time.Minute)
		if n := f.Flashes(j.Spec.Targets.Names[0]); n != 1 {
			t.Errorf("target %s flashed %d times", j.Spec.Targets.Names[0], n)
		}
	}

	t.Run("deleting the jobs leaves nothing behind", func(t *testing.T) {
		accounts := map[string]bool{}
		for _, j := range []*fwv1.UpdateJob{a, b} {
			pods, err := agentPods(ctx, ns, j.Name)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range pods {
				accounts[p.Spec.ServiceAccountName] = true
			}
			if err := k8s.Delete(ctx, j); err != nil {
				t.Fatal(err)
			}
		}
		if len(accounts) == 0 {
			t.Fatal("no agent pod named a ServiceAccount")
		}
		eventually(ctx, t, 2*time.Minute, "nothing of the jobs left", func(ctx context.Context) error {
			var left []string
			for _, j := range []*fwv1.UpdateJob{a, b} {
				if err := k8s.Get(ctx, client.ObjectKeyFromObject(j), &fwv1.UpdateJob{}); !apierrors.IsNotFound(err) {
					left = append(left, "job "+j.Name)
				}
				pods, _ := agentPods(ctx, ns, j.Name)
				for _, p := range pods {
					left = append(left, "pod "+p.Name)
				}
				tus, _ := targetUpdates(ctx, ns, j.Name)
				for _, tu := range tus {
					left = append(left, "TargetUpdate "+tu.Name)
				}
			}
			for sa := range accounts {
				for _, o := range []client.Object{&corev1.ServiceAccount{}, &rbacv1.Role{}, &rbacv1.RoleBinding{}} {
					if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: sa}, o); !apierrors.IsNotFound(err) {
						left = append(left, fmt.Sprintf("%T %s", o, sa))
					}
				}
			}
			if len(left) > 0 {
				return fmt.Errorf("left: %s", strings.Join(left, ", "))
			}
			return nil
		})
	})
}

// TestAgentMovesWhenPortsAreHeld: a process outside Kubernetes holds the P1 control port
// 62286 and the P2 port 80, and answers probes with an error. The agent binds the next ports,
// its probes follow it (the pod becomes Ready and is not restarted), the target is flashed
// once, and the status shows the ports really bound.
func TestAgentMovesWhenPortsAreHeld(t *testing.T) {
	ctx := need(t)
	ns := newNamespace(ctx, t, "held-ports")
	for _, port := range []string{"62286", "80"} {
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", port))
		if err != nil {
			t.Logf("port %s is already held by another process: %v", port, err)
			continue
		}
		srv := &http.Server{ReadHeaderTimeout: time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "not the agent: a process outside Kubernetes", http.StatusInternalServerError)
		})}
		go func() { _ = srv.Serve(ln) }()
		t.Cleanup(func() { _ = srv.Close() })
	}
	f := startFleet(ctx, t, ns, fleet.Options{ILO5: 1, Timings: slowFlash})
	target := f.TargetNames()[0]
	job := oneTargetJob(f, ns, "held", target)
	if err := k8s.Create(ctx, job); err != nil {
		t.Fatal(err)
	}
	pod := runningAgent(ctx, t, ns, job.Name)
	eventually(ctx, t, 2*time.Minute, "the agent pod Ready through its probes", func(ctx context.Context) error {
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(&pod), &pod); err != nil {
			return err
		}
		for _, c := range pod.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				return nil
			}
		}
		return fmt.Errorf("not Ready: %s", podSummary(ctx, ns, job.Name))
	})
	// While the agent runs, the job's status.agents shows the ports it really bound, as it
	// reported them on its TargetUpdate, not the assigned 62286 and 80 (rules P1, P2).
	var shown fwv1.AgentPorts
	eventually(ctx, t, 2*time.Minute, "status.agents showing the ports the agent bound", func(ctx context.Context) error {
		cur := &fwv1.UpdateJob{}
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(job), cur); err != nil {
			return err
		}
		tus, err := targetUpdates(ctx, ns, job.Name)
		if err != nil {
			return err
		}
		if len(tus) != 1 {
			return fmt.Errorf("%d TargetUpdates, want 1", len(tus))
		}
		rep := tus[0].Status
		for _, a := range cur.Status.Agents {
			if a.Pod != pod.Name {
				continue
			}
			if rep.ControlPort == 0 || a.Ports.Control != rep.ControlPort || a.Ports.FirmwareServer != rep.FirmwareServerPort {
				return fmt.Errorf("status.agents ports %+v; the agent reported control %d, firmware %d", a.Ports, rep.ControlPort, rep.FirmwareServerPort)
			}
			shown = a.Ports
			return nil
		}
		return fmt.Errorf("status.agents %+v does not list pod %s", cur.Status.Agents, pod.Name)
	})
	if shown.Control == 62286 || shown.FirmwareServer == 80 {
		t.Errorf("status.agents shows control %d, firmware %d: a held port (rules P1, P2)", shown.Control, shown.FirmwareServer)
	}
	tus := waitSucceeded(ctx, t, ns, job.Name, 1, 5*time.Minute)
	if n := f.Flashes(target); n != 1 {
		t.Errorf("target flashed %d times", n)
	}
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(&pod), &pod); err != nil {
		t.Fatal(err)
	}
	for _, c := range pod.Status.ContainerStatuses {
		if c.RestartCount != 0 {
			t.Errorf("container %s restarted %d times", c.Name, c.RestartCount)
		}
	}
	if got := tus[0].Status.FirmwareServerPort; got == 80 || got == 0 {
		t.Errorf("TargetUpdate firmwareServerPort %d, want the fallback port the agent bound (rule P2)", got)
	}
	// The agent's log names the same ports the job's status showed.
	log := agentLog(ns, pod.Name)
	m := regexp.MustCompile(`"msg":"ports bound".*?"control":(\d+),"firmwareServer":(\d+)`).FindStringSubmatch(log)
	switch {
	case m == nil:
		t.Errorf("the agent's log does not say which ports it bound:\n%s", log)
	case m[1] == "62286":
		t.Errorf("the agent bound the held control port 62286 (rule P1): %s", m[0])
	case m[2] == "80":
		t.Errorf("the agent bound the held firmware port 80 (rule P2): %s", m[0])
	case m[1] != fmt.Sprint(shown.Control) || m[2] != fmt.Sprint(shown.FirmwareServer):
		t.Errorf("the agent bound control %s, firmware %s; status.agents showed %d, %d", m[1], m[2], shown.Control, shown.FirmwareServer)
	}
}

// authv1TokenRequest asks for a short-lived token of the agent's ServiceAccount, as the
// kubelet does for the pod's projected token.
var authv1TokenRequest = authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](600)}}
