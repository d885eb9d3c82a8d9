package controllers_test

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
	"github.com/fwops/firmware-operator/internal/agent/config"
	"github.com/fwops/firmware-operator/internal/agent/runner"
	"github.com/fwops/firmware-operator/internal/agentpod"
)

const testSHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

var nsSeq int

func newNamespace() string {
	nsSeq++
	ns := fmt.Sprintf("t%d-%d", nsSeq, time.Now().UnixNano()%100000)
	gomega.Expect(k8sClient.Create(suiteCtx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(gomega.Succeed())
	return ns
}

func createPolicy(name string, mutate func(*fwv1.PortPolicy)) *fwv1.PortPolicy {
	p := &fwv1.PortPolicy{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if mutate != nil {
		mutate(p)
	}
	gomega.Expect(k8sClient.Create(suiteCtx, p)).To(gomega.Succeed())
	return p
}

func createSecret(ns, name string, data map[string]string) {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, StringData: data}
	gomega.Expect(k8sClient.Create(suiteCtx, s)).To(gomega.Succeed())
}

// createILOTargets makes n iLO 5 targets labelled fleet=<fleet>, sharing one Secret.
func createILOTargets(ns, fleet string, n int) []string {
	createSecret(ns, "creds-"+fleet, map[string]string{"username": "admin", "password": "s3cret-" + fleet})
	var names []string
	for i := 0; i < n; i++ {
		t := &fwv1.UpdateTarget{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-ilo-%02d", fleet, i), Namespace: ns, Labels: map[string]string{"fleet": fleet}},
			Spec: fwv1.UpdateTargetSpec{Type: fwv1.TargetTypeILO5, Address: fmt.Sprintf("127.0.1.%d", i+1),
				CredentialsSecretRef: fwv1.SecretReference{Name: "creds-" + fleet}, TLS: &fwv1.TLSSpec{InsecureSkipVerify: true}},
		}
		gomega.Expect(k8sClient.Create(suiteCtx, t)).To(gomega.Succeed())
		names = append(names, t.Name)
	}
	return names
}

func newJob(ns, name, fleet, policy string, mutate func(*fwv1.UpdateJob)) *fwv1.UpdateJob {
	j := &fwv1.UpdateJob{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: fwv1.UpdateJobSpec{
			Targets:        fwv1.TargetSelection{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"fleet": fleet}}},
			Firmware:       &fwv1.FirmwareSource{URL: "http://127.0.0.1:1/ilo5.bin", SHA256: testSHA, Version: "2.78"},
			PortPolicyName: policy,
			Rollout:        fwv1.Rollout{MaxConcurrent: 2},
		},
	}
	if mutate != nil {
		mutate(j)
	}
	gomega.Expect(k8sClient.Create(suiteCtx, j)).To(gomega.Succeed())
	return j
}

func getJob(j *fwv1.UpdateJob) *fwv1.UpdateJob {
	cur := &fwv1.UpdateJob{}
	gomega.Expect(k8sClient.Get(suiteCtx, client.ObjectKeyFromObject(j), cur)).To(gomega.Succeed())
	return cur
}

func jobPhase(j *fwv1.UpdateJob) func() fwv1.JobPhase {
	return func() fwv1.JobPhase { return getJob(j).Status.Phase }
}

func condition(j *fwv1.UpdateJob, typ string) func() *metav1.Condition {
	return func() *metav1.Condition {
		return meta.FindStatusCondition(getJob(j).Status.Conditions, typ)
	}
}

func targetUpdates(ns, job string) []fwv1.TargetUpdate {
	var list fwv1.TargetUpdateList
	gomega.Expect(k8sClient.List(suiteCtx, &list, client.InNamespace(ns))).To(gomega.Succeed())
	var out []fwv1.TargetUpdate
	for _, tu := range list.Items {
		if tu.Spec.JobName == job {
			out = append(out, tu)
		}
	}
	return out
}

func agentPodsOf(ns, job string) []corev1.Pod {
	var list corev1.PodList
	gomega.Expect(k8sClient.List(suiteCtx, &list, client.InNamespace(ns), client.MatchingLabels{fwv1.LabelJob: job})).To(gomega.Succeed())
	return list.Items
}

func eventReasons(ns string) []string {
	var out []string
	var list corev1.EventList // core events mirror events.k8s.io events
	_ = k8sClient.List(suiteCtx, &list, client.InNamespace(ns))
	for _, e := range list.Items {
		out = append(out, e.Reason)
	}
	return out
}

// scriptedAgent stands in for the agent process in rollout tests that are about pacing: it
// reports each target through its TargetUpdate as the agent does, and counts what it did.
type scriptedAgent struct {
	flashTime time.Duration
	fail      map[string]bool // target names whose flash fails
	failOnce  map[string]bool // target names whose first flash fails

	mu          sync.Mutex
	inFlight    int
	maxInFlight int
	flashes     map[string]int
}

func newScriptedAgent(flashTime time.Duration) *scriptedAgent {
	return &scriptedAgent{flashTime: flashTime, fail: map[string]bool{}, failOnce: map[string]bool{}, flashes: map[string]int{}}
}

// rolloutSpec gives each spec of a Describe a namespace, a PortPolicy and a scripted agent,
// and cleans the namespace after it, dumping it first when the spec failed.
type rolloutSpec struct {
	ns, policy string
	agent      *scriptedAgent
}

func newRolloutSpec(flashTime time.Duration) *rolloutSpec {
	s := &rolloutSpec{}
	ginkgo.BeforeEach(func() {
		s.ns = newNamespace()
		s.policy = "policy-" + s.ns
		createPolicy(s.policy, nil)
		s.agent = newScriptedAgent(flashTime)
		kubelet.Use(s.agent.run)
	})
	ginkgo.AfterEach(func() {
		if ginkgo.CurrentSpecReport().Failed() {
			dumpNamespace(s.ns)
		}
		cleanNamespace(s.ns)
	})
	return s
}

func (a *scriptedAgent) flashCount(target string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.flashes[target]
}

func (a *scriptedAgent) peak() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.maxInFlight
}

// run plays the agent of a pod as the agent follows it: it takes each target assigned on the
// pod's annotation once, until the pod is deleted.
func (a *scriptedAgent) run(ctx context.Context, pod *corev1.Pod, args []string) error {
	cfg := parseAgentArgs(args)
	var wg sync.WaitGroup
	seen := map[string]bool{}
	src := runner.PodAssignments{Client: k8sClient.(client.WithWatch), Namespace: pod.Namespace, Pod: pod.Name}
	err := src.Follow(ctx, func(ts []config.Target) {
		for _, t := range ts {
			if seen[t.Key()] {
				continue
			}
			seen[t.Key()] = true
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = a.one(ctx, cfg.Namespace, pod.Name, t, cfg.Firmware.Version)
			}()
		}
	})
	wg.Wait()
	if err != nil && ctx.Err() == nil {
		return err
	}
	return nil // the pod was deleted
}

func (a *scriptedAgent) one(ctx context.Context, ns, pod string, t config.Target, version string) error {
	target := t.Name
	tu := &fwv1.TargetUpdate{}
	// As the agent does, work on a target only once the controller claimed it for this pod
	// and attempt (it annotates the pod first).
	for {
		if err := k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: t.TargetUpdate}, tu); err != nil {
			return err
		}
		if tu.Status.Phase.Finished() && tu.Status.Attempts <= t.Attempt {
			return nil // resume safety: never flash a finished target again
		}
		if tu.Status.AgentPod == pod && tu.Status.Attempts == t.Attempt {
			break
		}
		if tu.Status.Attempts >= t.Attempt {
			return nil // another pod's
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond): // the agent stand-in polls its claim
		}
	}
	a.mu.Lock()
	a.flashes[target]++
	n := a.flashes[target]
	a.inFlight++
	a.maxInFlight = max(a.maxInFlight, a.inFlight)
	a.mu.Unlock()
	// In flight from the claim to the final report: once the report is sent the controller
	// may start the next target, before this goroutine sees the answer to its patch.
	var landed sync.Once
	done := func() { landed.Do(func() { a.mu.Lock(); a.inFlight--; a.mu.Unlock() }) }
	defer done()

	patch := func(mutate func(*fwv1.TargetUpdate)) error {
		before := tu.DeepCopy()
		mutate(tu)
		return k8sClient.Status().Patch(context.Background(), tu, client.MergeFrom(before))
	}
	if err := patch(func(tu *fwv1.TargetUpdate) {
		tu.Status.Phase = fwv1.TargetPhaseFlashing
		tu.Status.VersionBefore = "2.46"
	}); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(a.flashTime):
	}
	now := metav1.Now()
	if a.fail[target] || (a.failOnce[target] && n == 1) {
		msg := "iLO reported Error: iLO.2.14.UpdateFailed"
		done()
		_ = patch(func(tu *fwv1.TargetUpdate) {
			tu.Status.Phase, tu.Status.Message, tu.Status.CompletionTime = fwv1.TargetPhaseFailed, msg, &now
		})
		return fmt.Errorf("%s: %s", target, msg)
	}
	done()
	return patch(func(tu *fwv1.TargetUpdate) {
		tu.Status.Phase, tu.Status.VersionAfter, tu.Status.Percent, tu.Status.CompletionTime = fwv1.TargetPhaseSucceeded, version, 100, &now
		tu.Status.Message = "flashed and verified"
	})
}

// specNamespace makes a namespace for the running spec and a PortPolicy policy-<namespace>
// (mutate may set it up; nil for the defaults); when the spec ends it prints the
// namespace's objects if the spec failed, and cleans the namespace. Call it in a BeforeEach
// or an It.
func specNamespace(mutate func(*fwv1.PortPolicy)) (ns, policy string) {
	ns = newNamespace()
	policy = "policy-" + ns
	createPolicy(policy, mutate)
	ginkgo.DeferCleanup(func() {
		if ginkgo.CurrentSpecReport().Failed() {
			dumpNamespace(ns)
		}
		cleanNamespace(ns)
	})
	return ns, policy
}

// cleanNamespace deletes the namespace's UpdateJobs and waits until their agent pods and
// TargetUpdates are gone. envtest runs no namespace controller, so without it a spec's agent
// pods would stay on the shared nodes and hold ports that a later spec expects free.
func cleanNamespace(ns string) {
	gomega.Expect(k8sClient.DeleteAllOf(suiteCtx, &fwv1.UpdateJob{}, client.InNamespace(ns))).To(gomega.Succeed())
	gomega.Eventually(func() int {
		var jobs fwv1.UpdateJobList
		gomega.Expect(k8sClient.List(suiteCtx, &jobs, client.InNamespace(ns))).To(gomega.Succeed())
		var pods corev1.PodList
		gomega.Expect(k8sClient.List(suiteCtx, &pods, client.InNamespace(ns), client.HasLabels{fwv1.LabelJob})).To(gomega.Succeed())
		return len(jobs.Items) + len(pods.Items)
	}).Should(gomega.BeZero(), "namespace %s still has jobs or agent pods", ns)
}

// updateJob applies mutate to the job's latest copy, retrying on conflicts with the
// controller's own writes.
func updateJob(job *fwv1.UpdateJob, mutate func(*fwv1.UpdateJob)) {
	gomega.Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur := &fwv1.UpdateJob{}
		if err := k8sClient.Get(suiteCtx, client.ObjectKeyFromObject(job), cur); err != nil {
			return err
		}
		mutate(cur)
		return k8sClient.Update(suiteCtx, cur)
	})).To(gomega.Succeed())
}

// dumpNamespace prints a failed spec's objects, so that a failure explains itself.
func dumpNamespace(ns string) {
	w := ginkgo.GinkgoWriter
	var jobs fwv1.UpdateJobList
	_ = k8sClient.List(suiteCtx, &jobs, client.InNamespace(ns))
	for _, j := range jobs.Items {
		fmt.Fprintf(w, "job %s: phase=%s counts=%+v conditions=%+v\n", j.Name, j.Status.Phase, j.Status.Counts, j.Status.Conditions)
	}
	var targets fwv1.UpdateTargetList
	_ = k8sClient.List(suiteCtx, &targets, client.InNamespace(ns))
	for _, t := range targets.Items {
		fmt.Fprintf(w, "target %s gen=%d: %+v versions=%+v\n", t.Name, t.Generation, t.Status.Conditions, t.Status.FirmwareVersions)
	}
	var tus fwv1.TargetUpdateList
	_ = k8sClient.List(suiteCtx, &tus, client.InNamespace(ns))
	for _, tu := range tus.Items {
		fmt.Fprintf(w, "targetupdate %s: phase=%s attempts=%d pod=%s msg=%q\n", tu.Name, tu.Status.Phase, tu.Status.Attempts, tu.Status.AgentPod, tu.Status.Message)
	}
	var pods corev1.PodList
	_ = k8sClient.List(suiteCtx, &pods, client.InNamespace(ns))
	for _, p := range pods.Items {
		fmt.Fprintf(w, "pod %s: phase=%s assignments=%s\n", p.Name, p.Status.Phase, p.Annotations[agentpod.AnnotationAssignments])
	}
}

// parseAgentArgs reads a pod's agent configuration, as the agent does.
func parseAgentArgs(args []string) config.Config {
	cfg, err := config.Parse(args)
	if err != nil {
		panic(fmt.Sprintf("the pod's agent arguments do not parse: %v", err))
	}
	return cfg
}
