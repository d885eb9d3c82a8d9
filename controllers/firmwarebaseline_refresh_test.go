package controllers_test

import (
	"time"

	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
)

// refreshJobs are the UpdateJobs that refresh baseline b's targets' versions.
func refreshJobs(b *fwv1.FirmwareBaseline) func() []fwv1.UpdateJob {
	return func() []fwv1.UpdateJob {
		var list fwv1.UpdateJobList
		gomega.Expect(k8sClient.List(suiteCtx, &list, client.InNamespace(b.Namespace),
			client.MatchingLabels{fwv1.LabelRefreshOf: b.Name})).To(gomega.Succeed())
		var live []fwv1.UpdateJob
		for _, j := range list.Items {
			if j.DeletionTimestamp == nil {
				live = append(live, j)
			}
		}
		return live
	}
}

// requestRefresh sets the baseline's refresh-requested annotation, retrying on conflicts.
func requestRefresh(b *fwv1.FirmwareBaseline, value string) {
	gomega.Eventually(func() error {
		cur := getBaseline(b)
		if cur.Annotations == nil {
			cur.Annotations = map[string]string{}
		}
		cur.Annotations[fwv1.AnnotationRefreshRequested] = value
		return k8sClient.Update(suiteCtx, cur)
	}).Should(gomega.Succeed())
}

var _ = ginkgo.Describe("FirmwareBaseline refresh", func() {
	ginkgo.It("creates one read-only UpdateJob per new refresh-requested value, never while one is unfinished", func() {
		ns := newNamespace()
		createILOTargets(ns, "rf", 2)
		b := newBaseline(ns, "spp", "2026.09", ilo5Component("2.78"))
		b.Spec.TargetSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"fleet": "rf"}}
		gomega.Expect(k8sClient.Create(suiteCtx, b)).To(gomega.Succeed())
		gomega.Consistently(refreshJobs(b), time.Second).Should(gomega.BeEmpty(), "no refresh asked, none scheduled")

		requestRefresh(b, "1")
		gomega.Eventually(refreshJobs(b)).Should(gomega.HaveLen(1))
		first := refreshJobs(b)()[0]
		gomega.Expect(first.Spec.InventoryOnly).To(gomega.BeTrue())
		gomega.Expect(first.Spec.BaselineRef).To(gomega.Equal(&fwv1.BaselineReference{Name: "spp"}))
		gomega.Expect(first.Spec.Targets.Selector).To(gomega.Equal(b.Spec.TargetSelector))
		gomega.Expect(first.Name).To(gomega.HavePrefix("spp-refresh-"))
		gomega.Expect(metav1.GetControllerOf(&first)).To(gomega.HaveField("Name", "spp"))
		gomega.Eventually(func() *fwv1.BaselineRefresh { return getBaseline(b).Status.LastRefresh }).Should(gomega.And(
			gomega.Not(gomega.BeNil()), gomega.HaveField("Requested", "1"), gomega.HaveField("Job", first.Name)))

		// The same value again (another change wakes the baseline): no second job.
		gomega.Eventually(func() error {
			cur := getBaseline(b)
			cur.Labels = map[string]string{"touched": "yes"}
			return k8sClient.Update(suiteCtx, cur)
		}).Should(gomega.Succeed())
		gomega.Consistently(refreshJobs(b), time.Second).Should(gomega.HaveLen(1))

		// A new value while the first refresh is unfinished (no PortPolicy: it waits) starts
		// nothing; once it is gone, the new value gets its one job.
		requestRefresh(b, "2")
		gomega.Consistently(refreshJobs(b), time.Second).Should(gomega.ConsistOf(gomega.HaveField("Name", first.Name)))
		gomega.Expect(getJob(&first).Status.CompletionTime).To(gomega.BeNil())
		gomega.Expect(k8sClient.Delete(suiteCtx, &first)).To(gomega.Succeed())
		gomega.Eventually(refreshJobs(b)).Should(gomega.ConsistOf(gomega.HaveField("Name", gomega.Not(gomega.Equal(first.Name)))))
		gomega.Eventually(func() *fwv1.BaselineRefresh { return getBaseline(b).Status.LastRefresh }).Should(gomega.HaveField("Requested", "2"))
		gomega.Consistently(refreshJobs(b), time.Second).Should(gomega.HaveLen(1))
	})

	ginkgo.It("refreshes on spec.refreshInterval: at once when set, then when the interval has passed since the last", func() {
		ns := newNamespace()
		createILOTargets(ns, "sched", 1)
		b := newBaseline(ns, "spp", "2026.09", ilo5Component("2.78"))
		b.Spec.TargetSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"fleet": "sched"}}
		b.Spec.RefreshInterval = &metav1.Duration{Duration: 24 * time.Hour}
		gomega.Expect(k8sClient.Create(suiteCtx, b)).To(gomega.Succeed())
		gomega.Eventually(refreshJobs(b)).Should(gomega.HaveLen(1), "the first scheduled refresh runs when the interval is set")
		first := refreshJobs(b)()[0]
		gomega.Expect(first.Spec.InventoryOnly).To(gomega.BeTrue())
		gomega.Eventually(func() *fwv1.BaselineRefresh { return getBaseline(b).Status.LastRefresh }).Should(gomega.And(
			gomega.Not(gomega.BeNil()), gomega.HaveField("Job", first.Name)))

		// The refresh is over (its job gone); before the interval has passed, nothing new.
		gomega.Expect(k8sClient.Delete(suiteCtx, &first)).To(gomega.Succeed())
		gomega.Eventually(refreshJobs(b)).Should(gomega.BeEmpty())
		fakeClock.Step(23 * time.Hour)
		touchBaseline(b)
		gomega.Consistently(refreshJobs(b), time.Second).Should(gomega.BeEmpty(), "23 h after the last refresh of a 24 h interval")

		fakeClock.Step(2 * time.Hour)
		touchBaseline(b)
		gomega.Eventually(refreshJobs(b)).Should(gomega.ConsistOf(gomega.HaveField("Name", gomega.Not(gomega.Equal(first.Name)))),
			"25 h after the last refresh: the next one")
		gomega.Consistently(refreshJobs(b), time.Second).Should(gomega.HaveLen(1))
	})
})

// touchBaseline changes a label of the baseline, which wakes its controller, retrying on
// conflicts: the fake clock moves without waking anything.
func touchBaseline(b *fwv1.FirmwareBaseline) {
	gomega.Eventually(func() error {
		cur := getBaseline(b)
		if cur.Labels == nil {
			cur.Labels = map[string]string{}
		}
		cur.Labels["touched"] = fakeClock.Now().Format("150405")
		return k8sClient.Update(suiteCtx, cur)
	}).Should(gomega.Succeed())
}
