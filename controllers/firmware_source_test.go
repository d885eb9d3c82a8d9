package controllers_test

import (
	"time"

	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
)

// The allow-list of firmware sources on the cluster's own storage (docs/security.md): a job
// whose nodePath or claim its PortPolicy does not list starts nothing, and says so.
var _ = ginkgo.Describe("Firmware sources on the cluster's storage", func() {
	var ns, policy string
	ginkgo.BeforeEach(func() {
		ns, policy = specNamespace(func(p *fwv1.PortPolicy) {
			p.Spec.FirmwareSources.PersistentVolumeClaims = []fwv1.ClaimReference{{Namespace: "elsewhere"}}
		})
		kubelet.Use(newScriptedAgent(100 * time.Millisecond).run)
	})

	// refusedWith waits for the job's Ready=False reason and a Warning event, both naming want.
	refusedWith := func(job *fwv1.UpdateJob, want ...string) {
		msg := gomega.And(gomega.ContainSubstring(want[0]), gomega.ContainSubstring(want[1]))
		gomega.Eventually(condition(job, fwv1.ConditionReady)).Should(gomega.And(
			gomega.HaveField("Reason", "FirmwareSourceNotAllowed"), gomega.HaveField("Message", msg)))
		gomega.Eventually(func() []corev1.Event {
			var list corev1.EventList
			_ = k8sClient.List(suiteCtx, &list, client.InNamespace(ns))
			return list.Items
		}).Should(gomega.ContainElement(gomega.And(
			gomega.HaveField("Type", corev1.EventTypeWarning),
			gomega.HaveField("Reason", "FirmwareSourceNotAllowed"),
			gomega.HaveField("Message", msg))))
		gomega.Expect(condition(job, fwv1.ConditionStalled)()).To(gomega.HaveField("Status", gomega.BeEquivalentTo("True")))
		gomega.Consistently(func() int { return len(agentPodsOf(ns, job.Name)) }, "1s").Should(gomega.BeZero())
	}

	ginkgo.It("refuses a nodePath outside the allow-list, naming the path and the list, until an administrator allows it", func() {
		createILOTargets(ns, "np", 1)
		job := newJob(ns, "nodepath", "np", policy, func(j *fwv1.UpdateJob) {
			j.Spec.Firmware.URL, j.Spec.Firmware.NodePath = "", "/etc/shadow"
		})
		refusedWith(job, `"/etc/shadow"`, "spec.firmwareSources.nodePathPrefixes []")

		// A prefix that is only a string prefix of the directory does not allow it. (The
		// reason is unchanged, so no second event: the condition shows the new list.)
		setPrefixes(policy, "/etc/shadow.d/", "/var/lib/firmware/")
		gomega.Eventually(condition(job, fwv1.ConditionReady)).Should(gomega.And(
			gomega.HaveField("Reason", "FirmwareSourceNotAllowed"),
			gomega.HaveField("Message", gomega.ContainSubstring(`["/etc/shadow.d/", "/var/lib/firmware/"]`))))
		gomega.Consistently(func() int { return len(agentPodsOf(ns, job.Name)) }, "1s").Should(gomega.BeZero())

		allowed := newJob(ns, "allowed", "np", policy, func(j *fwv1.UpdateJob) {
			j.Spec.Firmware.URL, j.Spec.Firmware.NodePath = "", "/var/lib/firmware/ilo5.bin"
		})
		gomega.Eventually(jobPhase(allowed)).Should(gomega.Equal(fwv1.JobPhaseSucceeded))
	})

	ginkgo.It("refuses a claim of a namespace the allow-list does not name", func() {
		createILOTargets(ns, "pvc", 1)
		job := newJob(ns, "pvc", "pvc", policy, func(j *fwv1.UpdateJob) {
			j.Spec.Firmware.URL = ""
			j.Spec.Firmware.PersistentVolumeClaim = &fwv1.PVCSource{ClaimName: "images", Path: "ilo5.bin"}
		})
		refusedWith(job, ns+"/images", `["elsewhere/*"]`)
		gomega.Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
			p := &fwv1.PortPolicy{}
			if err := k8sClient.Get(suiteCtx, client.ObjectKey{Name: policy}, p); err != nil {
				return err
			}
			p.Spec.FirmwareSources.PersistentVolumeClaims = append(p.Spec.FirmwareSources.PersistentVolumeClaims, fwv1.ClaimReference{Namespace: ns, ClaimName: "images"})
			return k8sClient.Update(suiteCtx, p)
		})).To(gomega.Succeed())
		gomega.Eventually(jobPhase(job)).Should(gomega.Equal(fwv1.JobPhaseSucceeded), "the policy's watch brings the job back once allowed")
	})
})

// setPrefixes replaces a PortPolicy's allowed node path prefixes, retrying on conflicts.
func setPrefixes(policy string, prefixes ...fwv1.NodePathPrefix) {
	gomega.Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
		p := &fwv1.PortPolicy{}
		if err := k8sClient.Get(suiteCtx, client.ObjectKey{Name: policy}, p); err != nil {
			return err
		}
		p.Spec.FirmwareSources.NodePathPrefixes = prefixes
		return k8sClient.Update(suiteCtx, p)
	})).To(gomega.Succeed())
}
