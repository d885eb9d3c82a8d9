package chaos

import (
	"fmt"
	"time"

	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
	"github.com/fwops/firmware-operator/internal/fleet"
)

var _ = ginkgo.Describe("A GitOps cycle", func() {
	h := setUpHarness()

	// apply server-side applies job as a GitOps tool does: its own field manager, the
	// manifest's fields only.
	apply := func(job *fwv1.UpdateJob) {
		m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(job)
		gomega.Expect(err).NotTo(gomega.HaveOccurred())
		u := &unstructured.Unstructured{Object: m}
		u.SetAPIVersion(fwv1.GroupVersion.String())
		u.SetKind("UpdateJob")
		unstructured.RemoveNestedField(u.Object, "status")
		unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
		gomega.Expect(k8sClient.Apply(suiteCtx, client.ApplyConfigurationFromUnstructured(u),
			client.FieldOwner("gitops"), client.ForceOwnership)).To(gomega.Succeed())
	}

	ginkgo.It("applied twice, edited and pruned mid-rollout flashes nothing twice and leaves nothing behind, and re-applied flashes the rest once", func() {
		h.startFleet(fleet.Options{Name: "gitops", ILO5: 12,
			Timings: quickFlash(2*time.Second, 3)})
		kubelet.Use(h.f.AgentFunc(k8sClient, fleet.AgentOptions{Log: h.logs}))
		h.mgr.start()

		manifest := h.newJob("gitops", 2, nil)
		apply(manifest)
		gomega.Eventually(func() int32 { return h.get(manifest).Status.Counts.InProgress }).Should(gomega.BeNumerically(">", 0))
		first := h.get(manifest)
		gomega.Expect(first.Finalizers).NotTo(gomega.BeEmpty(), "the manager's finalizer")

		// The same manifest again (a sync with nothing changed): no new generation, the
		// manager's finalizer kept.
		apply(manifest)
		again := h.get(manifest)
		gomega.Expect(again.Generation).To(gomega.Equal(first.Generation))
		gomega.Expect(again.Finalizers).To(gomega.Equal(first.Finalizers))

		// An edit of what may change mid-rollout: the pace, and a label.
		manifest.Spec.Rollout.MaxConcurrent = 4
		manifest.Labels["team"] = "firmware"
		apply(manifest)
		gomega.Eventually(func() int64 { return h.get(manifest).Status.ObservedGeneration }).Should(gomega.Equal(first.Generation + 1))
		gomega.Eventually(func() int32 { return h.get(manifest).Status.Counts.Succeeded }).Should(gomega.BeNumerically(">=", 3))

		// Pruned mid-rollout: the manifest left the repository.
		mid := h.get(manifest).Status.Counts
		gomega.Expect(mid.InProgress).To(gomega.BeNumerically(">", 0), "the job was pruned mid-rollout")
		gomega.Expect(k8sClient.Delete(suiteCtx, manifest)).To(gomega.Succeed())
		left := func() string {
			counts := map[string]int{}
			for name, list := range map[string]client.ObjectList{
				"UpdateJobs": &fwv1.UpdateJobList{}, "TargetUpdates": &fwv1.TargetUpdateList{}, "Pods": &corev1.PodList{},
				"Roles": &rbacv1.RoleList{}, "RoleBindings": &rbacv1.RoleBindingList{}, "ServiceAccounts": &corev1.ServiceAccountList{},
			} {
				gomega.Expect(k8sClient.List(suiteCtx, list, client.InNamespace(h.ns))).To(gomega.Succeed())
				if n := len(mustItems(list)); n > 0 {
					counts[name] = n
				}
			}
			if len(counts) == 0 {
				return ""
			}
			return fmt.Sprint(counts)
		}
		gomega.Eventually(left).Should(gomega.BeEmpty(), "objects left behind after the prune")
		fmt.Fprintf(ginkgo.GinkgoWriter, "pruned with %d succeeded, %d in progress, %d pending\n", mid.Succeeded, mid.InProgress, mid.Pending)

		// Judged by the simulators: nothing flashed twice; the flashes the pruned agents left
		// running end on their own.
		flashed := 0
		for _, t := range h.f.TargetNames() {
			n := h.f.Flashes(t)
			gomega.Expect(n).To(gomega.BeNumerically("<=", 1), "%s flashed %d times", t, n)
			flashed += n
		}
		gomega.Expect(flashed).To(gomega.BeNumerically("<", len(h.f.TargetNames())), "the prune stopped the rollout")

		// The manifest comes back (a revert): the new job flashes only what the pruned one
		// had not, once the flashes it left running are over.
		gomega.Eventually(func() int {
			busy := 0
			for _, t := range h.f.TargetNames() {
				if st := h.f.ILO(t).Stats(); st.FlashesStarted > st.FlashesCompleted+st.FlashesFailed || h.f.ILO(t).ILOPhase() != "" {
					busy++
				}
			}
			return busy
		}).Should(gomega.BeZero())
		manifest = h.newJob("gitops", 4, nil)
		apply(manifest)
		gomega.Eventually(func() bool { return h.finished(manifest) }, 3*time.Minute).Should(gomega.BeTrue())
		back := h.get(manifest).Status.Counts
		fmt.Fprintf(ginkgo.GinkgoWriter, "re-applied: %d succeeded, %d skipped (flashed by the pruned job), %d failed\n", back.Succeeded, back.Skipped, back.Failed)
		gomega.Expect(back.Failed).To(gomega.BeZero())
		gomega.Expect(back.Skipped).To(gomega.Equal(int32(flashed)), "the targets the pruned job flashed are skipped")
		for _, t := range h.f.TargetNames() {
			gomega.Expect(h.f.Flashes(t)).To(gomega.Equal(1), "%s", t)
		}
		fig := figures{faults: 4, targets: len(h.f.TargetNames()), peak: h.f.MaxConcurrentILOFlashes(), maxConcurrent: 4}
		fmt.Fprintf(ginkgo.GinkgoWriter, "%s: %s; %d of %d flashed before the prune; left behind: none\n",
			ginkgo.CurrentSpecReport().LeafNodeText, fig, flashed, fig.targets)
		recordFigures(ginkgo.CurrentSpecReport().LeafNodeText, fig)
		gomega.Expect(fig.peak).To(gomega.BeNumerically("<=", fig.maxConcurrent))
	})
})

// mustItems is the items of a typed list.
func mustItems(list client.ObjectList) []runtime.Object {
	items, err := meta.ExtractList(list)
	gomega.Expect(err).NotTo(gomega.HaveOccurred())
	return items
}
