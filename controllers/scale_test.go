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
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
)

// createManyTargets makes n iLO 5 UpdateTargets labelled fleet=<fleet>, sharing one Secret,
// through a client with a client-side rate limit that does not pace them.
func createManyTargets(ns, fleet string, n int) {
	fast := rest.CopyConfig(cfg)
	fast.QPS, fast.Burst = 2000, 4000
	c, err := client.New(fast, client.Options{Scheme: k8sClient.Scheme()})
	gomega.Expect(err).NotTo(gomega.HaveOccurred())
	createSecret(ns, "creds-"+fleet, map[string]string{"username": "admin", "password": "pw"})
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 32)
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			errs <- c.Create(suiteCtx, &fwv1.UpdateTarget{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%05d", fleet, i), Namespace: ns, Labels: map[string]string{"fleet": fleet}},
				Spec: fwv1.UpdateTargetSpec{Type: fwv1.TargetTypeILO5, Address: fmt.Sprintf("127.0.%d.%d", 1+i/250, 1+i%250),
					CredentialsSecretRef: fwv1.SecretReference{Name: "creds-" + fleet}, TLS: &fwv1.TLSSpec{InsecureSkipVerify: true}},
			})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		gomega.Expect(err).NotTo(gomega.HaveOccurred())
	}
	// A job reads its targets from the manager's cache: one made while the cache still
	// catches up (a manager that was just restarted re-lists) plans the targets seen so far
	// and the rest a pass later; these specs count the first plan, so they wait for all n.
	gomega.Eventually(func() (int, error) {
		var list fwv1.UpdateTargetList
		err := mgrCache.List(suiteCtx, &list, client.InNamespace(ns), client.MatchingLabels{"fleet": fleet})
		return len(list.Items), err
	}, "2m").Should(gomega.Equal(n), "the manager's cache shows every target")
}

// readyTargets counts the namespace's UpdateTargets that the UpdateTarget controller found
// usable in their current generation.
func readyTargets(ns string) func() int {
	return func() int {
		var list fwv1.UpdateTargetList
		gomega.Expect(k8sClient.List(suiteCtx, &list, client.InNamespace(ns))).To(gomega.Succeed())
		n := 0
		for _, t := range list.Items {
			c := meta.FindStatusCondition(t.Status.Conditions, fwv1.ConditionReady)
			if c != nil && c.Status == metav1.ConditionTrue && c.ObservedGeneration == t.Generation {
				n++
			}
		}
		return n
	}
}

var _ = ginkgo.Describe("UpdateJob at fleet scale", func() {
	ginkgo.It("plans 1,500 targets with one TargetUpdate each and a job status that stays small", func() {
		const n = 1500
		ns := newNamespace()
		policy := createPolicy("scale-"+ns, nil)
		createManyTargets(ns, "big", n)
		start := time.Now()
		job := newJob(ns, "big", "big", policy.Name, func(j *fwv1.UpdateJob) {
			j.Spec.DryRun = true
			j.Spec.Rollout.MaxConcurrent = 50
		})
		gomega.Eventually(jobPhase(job), "3m").Should(gomega.Equal(fwv1.JobPhasePlanned))
		fmt.Fprintf(ginkgo.GinkgoWriter, "planned %d targets in %s\n", n, time.Since(start))
		cur := getJob(job)
		gomega.Expect(cur.Status.Counts.Total).To(gomega.Equal(int32(n)))
		gomega.Expect(targetUpdates(ns, job.Name)).To(gomega.HaveLen(n))
		planned := 0
		for _, a := range cur.Status.Agents {
			planned += len(a.Targets)
		}
		gomega.Expect(planned).To(gomega.Equal(50), "the plan covers the first wave")
		raw, err := yaml.Marshal(cur)
		gomega.Expect(err).NotTo(gomega.HaveOccurred())
		gomega.Expect(len(raw)).To(gomega.BeNumerically("<", 32<<10), "per-target state lives in TargetUpdates, not in the job")
	})

	// Issue 13: at 10,000 targets the first flash came 401 s after the job was applied, because
	// every TargetUpdate was made before any target started. The API server's watch gives the
	// order of the writes: the first claim must come before the last TargetUpdate is made.
	ginkgo.It("starts its first wave before it has made the TargetUpdates of all its targets, counts them all, and writes none that waits", func() {
		const n, wave = 1200, 20 // more than two passes' worth of TargetUpdates (MaxCreatesPerPass 500)
		ns := newNamespace()
		ginkgo.DeferCleanup(cleanNamespace, ns)
		policy := createPolicy("scale-start-"+ns, nil)
		kubelet.Use(func(ctx context.Context, _ *corev1.Pod, _ []string) error { <-ctx.Done(); return nil }) // agents that never report
		createManyTargets(ns, "wave", n)
		gomega.Eventually(readyTargets(ns), "2m").Should(gomega.Equal(n), "the UpdateTarget controller checks every target first")

		wc, err := client.NewWithWatch(cfg, client.Options{Scheme: k8sClient.Scheme()})
		gomega.Expect(err).NotTo(gomega.HaveOccurred())
		ctx, stop := context.WithCancel(suiteCtx)
		defer stop()
		w, err := wc.Watch(ctx, &fwv1.TargetUpdateList{}, client.InNamespace(ns))
		gomega.Expect(err).NotTo(gomega.HaveOccurred())
		defer w.Stop()
		madeAtFirstClaim := make(chan int, 1)
		go func() {
			defer ginkgo.GinkgoRecover()
			made := map[string]bool{}
			for ev := range w.ResultChan() {
				tu, ok := ev.Object.(*fwv1.TargetUpdate)
				if !ok {
					continue
				}
				if ev.Type == watch.Added {
					made[tu.Name] = true
				}
				if tu.Status.AgentPod != "" {
					madeAtFirstClaim <- len(made)
					return
				}
			}
		}()

		job := newJob(ns, "wave", "wave", policy.Name, func(j *fwv1.UpdateJob) { j.Spec.Rollout.MaxConcurrent = wave })
		var made int
		gomega.Eventually(madeAtFirstClaim, "2m").Should(gomega.Receive(&made))
		fmt.Fprintf(ginkgo.GinkgoWriter, "first claim after %d of %d TargetUpdates were made\n", made, n)
		gomega.Expect(made).To(gomega.BeNumerically("<", n), "a target started only once every TargetUpdate existed")

		// The status counts every target from the first pass, made or not; all are made in the end.
		gomega.Eventually(func() fwv1.TargetCounts { return getJob(job).Status.Counts }, "2m").Should(gomega.Equal(
			fwv1.TargetCounts{Total: n, InProgress: wave, Pending: n - wave}))
		gomega.Eventually(func() int { return len(targetUpdates(ns, job.Name)) }, "2m").Should(gomega.Equal(n))
		// A target waiting for a slot costs no write beyond its creation (issue 13: at most 3
		// manager writes per target): no phase, and no status write in its managedFields. The
		// job says how many wait, and why.
		waiting := 0
		for _, tu := range targetUpdates(ns, job.Name) {
			if tu.Status.AgentPod != "" {
				continue
			}
			waiting++
			gomega.Expect(tu.Status).To(gomega.Equal(fwv1.TargetUpdateStatus{}), "TargetUpdate %s waits with no status", tu.Name)
			for _, m := range tu.ManagedFields {
				gomega.Expect(m.Subresource).NotTo(gomega.Equal("status"), "TargetUpdate %s: %s wrote its status", tu.Name, m.Manager)
			}
		}
		gomega.Expect(waiting).To(gomega.Equal(n - wave))
		gomega.Expect(condition(job, fwv1.ConditionProgressing)()).To(gomega.HaveField("Message",
			gomega.ContainSubstring(fmt.Sprintf("%d in progress, %d pending", wave, n-wave))))
		gomega.Expect(getJob(job).Status.Phase).To(gomega.Equal(fwv1.JobPhaseRunning))
	})
})
