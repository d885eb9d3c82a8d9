package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
	"github.com/fwops/firmware-operator/internal/agentpod"
	"github.com/fwops/firmware-operator/internal/fleet"
	"github.com/fwops/firmware-operator/internal/simulator/ilo"
	"github.com/fwops/firmware-operator/internal/testutil/syncbuf"
)

// figures collects what each spec measured, printed at the end and kept in
// docs/reliability.md.
type figures struct {
	faults, targets, lost, doubleFlashes, peak, maxConcurrent int
}

func (f figures) String() string {
	return fmt.Sprintf("faults survived %d, targets %d, lost %d, flashed twice %d, peak concurrent flashes %d (maxConcurrent %d)",
		f.faults, f.targets, f.lost, f.doubleFlashes, f.peak, f.maxConcurrent)
}

// harness is what every spec of the suite shares: a namespace of its own, the fleet, the
// manager process, the agents' logs, and the judge. setUpHarness registers the hooks that
// make and clean them around each spec of the container it is called in.
type harness struct {
	ns   string
	f    *fleet.Fleet
	mgr  *managerProcess
	logs *syncbuf.Buffer
}

func setUpHarness() *harness {
	h := &harness{}
	ginkgo.BeforeEach(func() {
		h.ns = newNamespace("chaos")
		h.mgr = &managerProcess{}
		h.logs = &syncbuf.Buffer{}
	})
	ginkgo.AfterEach(func() {
		ns, mgr := h.ns, h.mgr
		if ginkgo.CurrentSpecReport().Failed() {
			keepWorkDir = true
			fmt.Fprintf(ginkgo.GinkgoWriter, "manager and agent-process logs are kept in %s; in-process agent logs (tail):\n%s\n", workDir, tail(h.logs.String(), 20000))
			dump(ns)
		}
		// Delete the jobs while a manager runs, so that their agents stop and nothing is left.
		if mgr.cmd == nil || mgr.cmd.ProcessState != nil {
			mgr.start()
		}
		// Stopped also when the clean-up below fails: a manager left running outlives the
		// suite (one was found an hour after a failed run).
		defer mgr.stop()
		gomega.Expect(k8sClient.DeleteAllOf(suiteCtx, &fwv1.UpdateJob{}, client.InNamespace(ns))).To(gomega.Succeed())
		gomega.Eventually(func() int {
			var pods corev1.PodList
			gomega.Expect(k8sClient.List(suiteCtx, &pods, client.InNamespace(ns))).To(gomega.Succeed())
			var jobs fwv1.UpdateJobList
			gomega.Expect(k8sClient.List(suiteCtx, &jobs, client.InNamespace(ns))).To(gomega.Succeed())
			return len(pods.Items) + len(jobs.Items)
		}).Should(gomega.BeZero())
		mgr.stop()
		if h.f != nil {
			gomega.Expect(h.f.Close()).To(gomega.Succeed())
			h.f = nil
		}
	})
	return h
}

// startFleet starts the spec's fleet, creates its objects and a PortPolicy for its jobs.
func (h *harness) startFleet(opts fleet.Options) {
	var err error
	h.f, err = fleet.Start(suiteCtx, opts)
	gomega.Expect(err).NotTo(gomega.HaveOccurred())
	gomega.Expect(h.f.Apply(suiteCtx, k8sClient, h.ns)).To(gomega.Succeed())
	policy := &fwv1.PortPolicy{ObjectMeta: metav1.ObjectMeta{Name: "policy-" + h.ns}}
	gomega.Expect(k8sClient.Create(suiteCtx, policy)).To(gomega.Succeed())
	ginkgo.DeferCleanup(func() { _ = k8sClient.Delete(suiteCtx, policy) })
}

// newJob is an iLO job over the fleet (not created), changed by mutate.
func (h *harness) newJob(name string, maxConcurrent int32, mutate func(*fwv1.UpdateJob)) *fwv1.UpdateJob {
	j := h.f.Job(h.ns, name, fwv1.ComponentILO, "policy-"+h.ns, maxConcurrent)
	if mutate != nil {
		mutate(j)
	}
	return j
}

// jobOf creates newJob(name, maxConcurrent, mutate).
func (h *harness) jobOf(name string, maxConcurrent int32, mutate func(*fwv1.UpdateJob)) *fwv1.UpdateJob {
	j := h.newJob(name, maxConcurrent, mutate)
	gomega.Expect(k8sClient.Create(suiteCtx, j)).To(gomega.Succeed())
	return j
}

func (h *harness) get(j *fwv1.UpdateJob) *fwv1.UpdateJob {
	cur := &fwv1.UpdateJob{}
	gomega.Expect(k8sClient.Get(suiteCtx, client.ObjectKeyFromObject(j), cur)).To(gomega.Succeed())
	return cur
}

func (h *harness) finished(j *fwv1.UpdateJob) bool {
	p := h.get(j).Status.Phase
	return p == fwv1.JobPhaseSucceeded || p == fwv1.JobPhaseFailed
}

// targetUpdates lists the TargetUpdates of job (all jobs when "").
func (h *harness) targetUpdates(job string) []fwv1.TargetUpdate {
	var list fwv1.TargetUpdateList
	gomega.Expect(k8sClient.List(suiteCtx, &list, client.InNamespace(h.ns))).To(gomega.Succeed())
	var out []fwv1.TargetUpdate
	for _, tu := range list.Items {
		if job == "" || tu.Spec.JobName == job {
			out = append(out, tu)
		}
	}
	return out
}

// judge counts, from the simulators, what the rollout did to each target: those of the given
// jobs (final phase) and every target of the fleet (flashes).
func (h *harness) judge(faults, maxConcurrent int, jobs ...*fwv1.UpdateJob) figures {
	f := h.f
	fig := figures{faults: faults, targets: len(f.TargetNames()), peak: f.MaxConcurrentILOFlashes(), maxConcurrent: maxConcurrent}
	for _, t := range f.TargetNames() {
		if n := f.Flashes(t); n > 1 {
			fig.doubleFlashes++
			fmt.Fprintf(ginkgo.GinkgoWriter, "target %s flashed %d times\n", t, n)
		}
	}
	final := 0
	for _, j := range jobs {
		for _, tu := range h.targetUpdates(j.Name) {
			if tu.Status.Phase.Finished() {
				final++
			}
		}
	}
	fig.lost = fig.targets - final
	fmt.Fprintf(ginkgo.GinkgoWriter, "%s: %s\n", ginkgo.CurrentSpecReport().LeafNodeText, fig)
	recordFigures(ginkgo.CurrentSpecReport().LeafNodeText, fig)
	return fig
}

func expectUnharmed(fig figures) {
	gomega.Expect(fig.lost).To(gomega.BeZero(), "targets without a final phase")
	gomega.Expect(fig.doubleFlashes).To(gomega.BeZero(), "targets flashed twice")
	gomega.Expect(fig.peak).To(gomega.BeNumerically("<=", fig.maxConcurrent), "maxConcurrent exceeded")
}

var _ = ginkgo.Describe("A rollout under faults", func() {
	h := setUpHarness()

	ginkgo.It("survives 20 SIGKILLs of the manager during a 200-target rollout", func() {
		h.startFleet(fleet.Options{Name: "kills", ILO5: 120, ILO6: 80,
			Timings: ilo.Timings{Upload: 100 * time.Millisecond, Verify: 100 * time.Millisecond, Write: 100 * time.Millisecond,
				Update: 3 * time.Second, Steps: 3,
				ResetDelay: 100 * time.Millisecond, ILOReset: time.Second, HalfUp: 500 * time.Millisecond, POST: time.Second}})
		kubelet.Use(h.f.AgentFunc(k8sClient, fleet.AgentOptions{Log: h.logs}))
		h.mgr.start()
		const maxConcurrent = 20
		job := h.jobOf("kills", maxConcurrent, nil)
		seed := uint64(time.Now().UnixNano())
		fmt.Fprintf(ginkgo.GinkgoWriter, "kill moments seeded with %d\n", seed)
		rng := rand.New(rand.NewPCG(seed, seed>>1))
		kills := 0
		for ; kills < 20 && !h.finished(job); kills++ {
			// The chaos itself: a random moment, not a wait for a condition.
			time.Sleep(time.Duration(200+rng.IntN(1300)) * time.Millisecond)
			h.mgr.kill()
			h.mgr.start()
		}
		gomega.Expect(kills).To(gomega.Equal(20), "the rollout ended before the 20th kill: slow the simulated flash")
		gomega.Eventually(func() fwv1.JobPhase { return h.get(job).Status.Phase }, 5*time.Minute).Should(gomega.Equal(fwv1.JobPhaseSucceeded))
		gomega.Expect(h.get(job).Status.Counts).To(gomega.Equal(fwv1.TargetCounts{Total: 200, Succeeded: 200}))
		expectUnharmed(h.judge(kills, maxConcurrent, job))
	})

	ginkgo.It("rides out etcd stopping and starting again mid-rollout", func() {
		h.startFleet(fleet.Options{Name: "etcd", ILO5: 20,
			Timings: quickFlash(2*time.Second, 3)})
		kubelet.Use(h.f.AgentFunc(k8sClient, fleet.AgentOptions{Log: h.logs}))
		h.mgr.start()
		const maxConcurrent = 5
		job := h.jobOf("etcd", maxConcurrent, nil)
		gomega.Eventually(func() int32 { return h.get(job).Status.Counts.Succeeded }).Should(gomega.BeNumerically(">=", 3))
		etcd := testEnv.ControlPlane.Etcd
		expectStopped(etcd.Stop())
		// While etcd is down the API server answers every write with an error: agents finish
		// flashes they cannot report, the manager's watches break.
		time.Sleep(5 * time.Second)
		gomega.Expect(etcd.Start()).To(gomega.Succeed())
		gomega.Eventually(func() fwv1.JobPhase { return h.get(job).Status.Phase }, 5*time.Minute).Should(gomega.Equal(fwv1.JobPhaseSucceeded))
		gomega.Expect(h.get(job).Status.Counts).To(gomega.Equal(fwv1.TargetCounts{Total: 20, Succeeded: 20}))
		expectUnharmed(h.judge(1, maxConcurrent, job))
	})

	ginkgo.It("fails or re-places, within the per-target timeout, the targets of a node that dies with its agent", func() {
		h.startFleet(fleet.Options{Name: "deadnode", ILO5: 8,
			Timings: quickFlash(500*time.Millisecond, 3)})
		real := h.f.AgentFunc(k8sClient, fleet.AgentOptions{Log: h.logs})
		// node-b's agents start and then say nothing, as on a node that lost power.
		kubelet.Use(func(ctx context.Context, pod *corev1.Pod, args []string) error {
			if agentpod.Node(pod) == "node-b" {
				<-ctx.Done()
				return ctx.Err()
			}
			return real(ctx, pod, args)
		})
		h.mgr.start()
		const maxConcurrent = 4
		timeout := time.Minute // the API's minimum
		job := h.jobOf("deadnode", maxConcurrent, func(j *fwv1.UpdateJob) {
			j.Spec.Rollout.Timeout = &metav1.Duration{Duration: timeout}
			j.Spec.Rollout.Retries = fwv1.RetryPolicy{Limit: 1, Backoff: &metav1.Duration{Duration: time.Second}}
			j.Spec.Rollout.MaxFailures = ptr.To(intstr.FromInt32(8))
		})
		// The node goes NotReady once its agents hold targets.
		gomega.Eventually(func() bool {
			var list fwv1.TargetUpdateList
			gomega.Expect(k8sClient.List(suiteCtx, &list, client.InNamespace(h.ns))).To(gomega.Succeed())
			for _, tu := range list.Items {
				if tu.Status.Node == "node-b" && tu.Status.Phase.InProgress() {
					return true
				}
			}
			return false
		}).Should(gomega.BeTrue())
		died := time.Now()
		node := &corev1.Node{}
		gomega.Expect(k8sClient.Get(suiteCtx, client.ObjectKey{Name: "node-b"}, node)).To(gomega.Succeed())
		node.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionUnknown,
			Reason: "NodeStatusUnknown", Message: "Kubelet stopped posting node status.", LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}}
		gomega.Expect(k8sClient.Status().Update(suiteCtx, node)).To(gomega.Succeed())
		ginkgo.DeferCleanup(func() {
			n := &corev1.Node{}
			gomega.Expect(k8sClient.Get(suiteCtx, client.ObjectKey{Name: "node-b"}, n)).To(gomega.Succeed())
			n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}}
			gomega.Expect(k8sClient.Status().Update(suiteCtx, n)).To(gomega.Succeed())
		})

		gomega.Eventually(func() fwv1.JobPhase { return h.get(job).Status.Phase }, 3*time.Minute).Should(gomega.Equal(fwv1.JobPhaseSucceeded))
		took := time.Since(died)
		fmt.Fprintf(ginkgo.GinkgoWriter, "rollout ended %s after node-b died (timeout %s)\n", took.Round(time.Second), timeout)
		gomega.Expect(h.get(job).Status.Counts).To(gomega.Equal(fwv1.TargetCounts{Total: 8, Succeeded: 8}), "node-b's targets were re-placed on node-a")
		var list fwv1.TargetUpdateList
		gomega.Expect(k8sClient.List(suiteCtx, &list, client.InNamespace(h.ns))).To(gomega.Succeed())
		retried := 0
		for _, tu := range list.Items {
			if tu.Status.Attempts > 1 {
				retried++
				gomega.Expect(tu.Status.Node).To(gomega.Equal("node-a"), "%s was retried on the dead node", tu.Name)
			}
		}
		gomega.Expect(retried).To(gomega.BeNumerically(">", 0), "some targets had been placed on node-b")
		expectUnharmed(h.judge(1, maxConcurrent, job))
	})
})

// quickFlash are iLO timings for specs that need many flashes soon: short steps, an Updating
// of update in steps, and a reset of a second and a half.
func quickFlash(update time.Duration, steps int) ilo.Timings {
	return ilo.Timings{Upload: 50 * time.Millisecond, Verify: 50 * time.Millisecond, Write: 50 * time.Millisecond,
		Update: update, Steps: steps,
		ResetDelay: 100 * time.Millisecond, ILOReset: time.Second, HalfUp: 500 * time.Millisecond, POST: time.Second}
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}

// recordFigures appends a spec's figures to $CHAOS_FIGURES when set (make chaos-figures
// writes them into docs/reliability.md).
func recordFigures(spec string, fig figures) {
	recordLine(fmt.Sprintf("| %s | %d | %d | %d | %d | %d / %d |", spec, fig.faults, fig.targets, fig.lost, fig.doubleFlashes, fig.peak, fig.maxConcurrent))
}

// recordLine appends a line to $CHAOS_FIGURES when set.
func recordLine(line string) {
	path := os.Getenv("CHAOS_FIGURES")
	if path == "" {
		return
	}
	f, err := os.OpenFile(filepath.Clean(path), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintln(f, line)
}

// dump prints a failed spec's jobs and a count of its TargetUpdates by phase and message.
func dump(ns string) {
	w := ginkgo.GinkgoWriter
	var jobs fwv1.UpdateJobList
	_ = k8sClient.List(suiteCtx, &jobs, client.InNamespace(ns))
	for _, j := range jobs.Items {
		fmt.Fprintf(w, "job %s: phase=%s counts=%+v conditions=%+v\n", j.Name, j.Status.Phase, j.Status.Counts, j.Status.Conditions)
	}
	var tus fwv1.TargetUpdateList
	_ = k8sClient.List(suiteCtx, &tus, client.InNamespace(ns))
	byState := map[string]int{}
	for _, tu := range tus.Items {
		byState[fmt.Sprintf("%s attempts=%d pod=%q: %s", tu.Status.Phase, tu.Status.Attempts, tu.Status.AgentPod, tu.Status.Message)]++
	}
	for k, n := range byState {
		fmt.Fprintf(w, "%4d × %s\n", n, k)
	}
	var pods corev1.PodList
	_ = k8sClient.List(suiteCtx, &pods, client.InNamespace(ns))
	fmt.Fprintf(w, "%d pods\n", len(pods.Items))
}
