package controllers_test

import (
	"strings"
	"time"

	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
)

// Faults the controller must contain: every target ends with a message a person can act on,
// the failure budget bounds the damage, and nothing that blocks a job stays silent.
var _ = ginkgo.Describe("UpdateJob under faults", func() {
	var (
		ns     string
		policy string
		agent  *scriptedAgent
	)
	ginkgo.BeforeEach(func() {
		ns, policy = specNamespace(nil)
		agent = newScriptedAgent(300 * time.Millisecond)
		kubelet.Use(agent.run)
	})

	phaseOf := func(job *fwv1.UpdateJob, target string) func() fwv1.TargetPhase {
		return func() fwv1.TargetPhase {
			for _, tu := range targetUpdates(ns, job.Name) {
				if tu.Spec.TargetName == target {
					return tu.Status.Phase
				}
			}
			return ""
		}
	}
	messageOf := func(job *fwv1.UpdateJob, target string) string {
		for _, tu := range targetUpdates(ns, job.Name) {
			if tu.Spec.TargetName == target {
				return tu.Status.Message
			}
		}
		return ""
	}

	ginkgo.It("counts failed targets that wait to retry against maxFailures, so no fresh target starts", func() {
		targets := createILOTargets(ns, "budget-retry", 6)
		agent.fail[targets[0]] = true
		agent.fail[targets[1]] = true
		job := newJob(ns, "budget-retry", "budget-retry", policy, func(j *fwv1.UpdateJob) {
			j.Spec.Rollout.MaxConcurrent = 2
			// No failure allowed: the first failed attempt spends the budget, even while it
			// waits for its retry.
			j.Spec.Rollout.MaxFailures = ptr.To(intstr.FromInt32(0))
			j.Spec.Rollout.Retries = fwv1.RetryPolicy{Limit: 1, Backoff: &metav1.Duration{Duration: time.Minute}}
		})
		// Both of the first wave fail and wait out their backoff.
		gomega.Eventually(func() int {
			n := 0
			for _, tu := range targetUpdates(ns, job.Name) {
				if tu.Status.RetryAfter != nil && tu.Status.Phase == fwv1.TargetPhasePending {
					n++
				}
			}
			return n
		}).Should(gomega.Equal(2))
		gomega.Eventually(condition(job, fwv1.ConditionReady)).Should(gomega.HaveField("Reason", "FailureBudgetExceeded"))
		for _, t := range targets[2:] {
			gomega.Consistently(func() int { return agent.flashCount(t) }, "1s").Should(gomega.BeZero(), "fresh target %s started while the budget was spent", t)
		}
		// Their retries still run (they reach no new machine), fail, and the job ends.
		fakeClock.Step(2 * time.Minute)
		touch(job)
		gomega.Eventually(jobPhase(job)).Should(gomega.Equal(fwv1.JobPhaseFailed))
		gomega.Expect(agent.flashCount(targets[0])).To(gomega.Equal(2))
		gomega.Expect(agent.flashCount(targets[1])).To(gomega.Equal(2))
		for _, t := range targets[2:] {
			gomega.Expect(agent.flashCount(t)).To(gomega.BeZero(), "target %s", t)
		}
		gomega.Expect(condition(job, fwv1.ConditionStalled)()).To(gomega.And(
			gomega.HaveField("Status", metav1.ConditionTrue), gomega.HaveField("Reason", "FailureBudgetExceeded")),
			"kstatus reads a failed job as failed, not in progress")
	})

	ginkgo.It("fails an in-flight target whose agent goes silent past the timeout, and frees its slot", func() {
		targets := createILOTargets(ns, "silent", 2)
		agent.flashTime = time.Hour // the agent's node died: it never reports
		job := newJob(ns, "silent", "silent", policy, func(j *fwv1.UpdateJob) {
			j.Spec.Rollout.MaxConcurrent = 1
			j.Spec.Rollout.MaxFailures = ptr.To(intstr.FromInt32(1))
			j.Spec.Rollout.Timeout = &metav1.Duration{Duration: 10 * time.Minute}
		})
		gomega.Eventually(phaseOf(job, targets[0])).Should(gomega.Equal(fwv1.TargetPhaseFlashing))
		fakeClock.Step(12 * time.Minute)
		touch(job)
		gomega.Eventually(phaseOf(job, targets[0])).Should(gomega.Equal(fwv1.TargetPhaseFailed))
		gomega.Expect(messageOf(job, targets[0])).To(gomega.And(
			gomega.ContainSubstring("no result from agent pod"), gomega.ContainSubstring("spec.rollout.timeout"),
			gomega.ContainSubstring("may still be flashing")))
		gomega.Eventually(func() int { return agent.flashCount(targets[1]) }).Should(gomega.Equal(1), "the next target takes the freed slot")
	})

	ginkgo.It("skips, without failing, targets that leave the selector or are deleted before they start", func() {
		targets := createILOTargets(ns, "leavers", 3)
		job := newJob(ns, "leavers", "leavers", policy, func(j *fwv1.UpdateJob) { j.Spec.Rollout.Paused = true })
		gomega.Eventually(func() int { return len(targetUpdates(ns, job.Name)) }).Should(gomega.Equal(3))
		moved := &fwv1.UpdateTarget{}
		gomega.Expect(k8sClient.Get(suiteCtx, client.ObjectKey{Namespace: ns, Name: targets[1]}, moved)).To(gomega.Succeed())
		moved.Labels["fleet"] = "elsewhere"
		gomega.Expect(k8sClient.Update(suiteCtx, moved)).To(gomega.Succeed())
		gomega.Expect(k8sClient.Delete(suiteCtx, &fwv1.UpdateTarget{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: targets[2]}})).To(gomega.Succeed())
		managerSeesGone(ns, targets[2])
		gomega.Eventually(func() string {
			ut := &fwv1.UpdateTarget{}
			if err := mgrCache.Get(suiteCtx, client.ObjectKey{Namespace: ns, Name: targets[1]}, ut); err != nil {
				return err.Error()
			}
			return ut.Labels["fleet"]
		}).Should(gomega.Equal("elsewhere"), "the manager sees the relabelled target before the job resumes")
		updateJob(job, func(j *fwv1.UpdateJob) { j.Spec.Rollout.Paused = false })
		gomega.Eventually(jobPhase(job)).Should(gomega.Equal(fwv1.JobPhaseSucceeded))
		gomega.Expect(getJob(job).Status.Counts).To(gomega.Equal(fwv1.TargetCounts{Total: 3, Succeeded: 1, Skipped: 2}))
		gomega.Expect(messageOf(job, targets[1])).To(gomega.ContainSubstring("no longer matches spec.targets"))
		gomega.Expect(messageOf(job, targets[2])).To(gomega.ContainSubstring("was deleted"))
		gomega.Expect(agent.flashCount(targets[1]) + agent.flashCount(targets[2])).To(gomega.BeZero())
	})

	ginkgo.It("goes on when a named target is deleted after the job chose it", func() {
		targets := createILOTargets(ns, "named", 2)
		job := newJob(ns, "named", "named", policy, func(j *fwv1.UpdateJob) {
			j.Spec.Targets = fwv1.TargetSelection{Names: targets}
			j.Spec.Rollout.Paused = true
		})
		gomega.Eventually(func() int { return len(targetUpdates(ns, job.Name)) }).Should(gomega.Equal(2))
		gomega.Expect(k8sClient.Delete(suiteCtx, &fwv1.UpdateTarget{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: targets[1]}})).To(gomega.Succeed())
		managerSeesGone(ns, targets[1])
		updateJob(job, func(j *fwv1.UpdateJob) { j.Spec.Rollout.Paused = false })
		gomega.Eventually(jobPhase(job)).Should(gomega.Equal(fwv1.JobPhaseSucceeded))
		gomega.Expect(getJob(job).Status.Counts).To(gomega.Equal(fwv1.TargetCounts{Total: 2, Succeeded: 1, Skipped: 1}))
	})

	ginkgo.It("shows an agent pod the namespace's PodSecurity level refuses on the job, with what to do", func() {
		nsObj := &corev1.Namespace{}
		gomega.Expect(k8sClient.Get(suiteCtx, client.ObjectKey{Name: ns}, nsObj)).To(gomega.Succeed())
		nsObj.Labels["pod-security.kubernetes.io/enforce"] = "baseline"
		gomega.Expect(k8sClient.Update(suiteCtx, nsObj)).To(gomega.Succeed())
		createILOTargets(ns, "psa", 1)
		job := newJob(ns, "psa", "psa", policy, nil)
		gomega.Eventually(condition(job, fwv1.ConditionReady)).Should(gomega.And(
			gomega.HaveField("Status", metav1.ConditionFalse),
			gomega.HaveField("Reason", "AgentPodRejected"),
			gomega.HaveField("Message", gomega.And(gomega.ContainSubstring("PodSecurity"), gomega.ContainSubstring("pod-security.kubernetes.io/enforce=privileged")))))
		gomega.Expect(condition(job, fwv1.ConditionStalled)()).To(gomega.HaveField("Status", metav1.ConditionTrue))
		// The event says what to do too: whoever runs `kubectl get events` sees the label to set.
		gomega.Eventually(func() []corev1.Event { return warnings(ns) }).Should(gomega.ContainElement(gomega.And(
			gomega.HaveField("Reason", "AgentPodRejected"),
			gomega.HaveField("InvolvedObject.Name", job.Name),
			gomega.HaveField("Message", gomega.And(gomega.ContainSubstring("PodSecurity"), gomega.ContainSubstring("pod-security.kubernetes.io/enforce=privileged"))))))
		// Once the namespace allows it, the job goes on by itself.
		gomega.Expect(k8sClient.Get(suiteCtx, client.ObjectKey{Name: ns}, nsObj)).To(gomega.Succeed())
		nsObj.Labels["pod-security.kubernetes.io/enforce"] = "privileged"
		gomega.Expect(k8sClient.Update(suiteCtx, nsObj)).To(gomega.Succeed())
		gomega.Eventually(jobPhase(job)).Should(gomega.Equal(fwv1.JobPhaseSucceeded))
		gomega.Expect(condition(job, fwv1.ConditionStalled)()).To(gomega.HaveField("Status", metav1.ConditionFalse))
	})

	ginkgo.It("keeps apart the TargetUpdates of job a-b with target c and job a with target b-c", func() {
		createSecret(ns, "creds", map[string]string{"username": "admin", "password": "pw"})
		for _, name := range []string{"c", "b-c"} {
			t := &fwv1.UpdateTarget{
				ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"fleet": "pair-" + name}},
				Spec: fwv1.UpdateTargetSpec{Type: fwv1.TargetTypeILO5, Address: "127.0.1.1",
					CredentialsSecretRef: fwv1.SecretReference{Name: "creds"}, TLS: &fwv1.TLSSpec{InsecureSkipVerify: true}},
			}
			gomega.Expect(k8sClient.Create(suiteCtx, t)).To(gomega.Succeed())
		}
		first := newJob(ns, "a-b", "pair-c", policy, nil)
		second := newJob(ns, "a", "pair-b-c", policy, nil)
		gomega.Eventually(jobPhase(first)).Should(gomega.Equal(fwv1.JobPhaseSucceeded))
		gomega.Eventually(jobPhase(second)).Should(gomega.Equal(fwv1.JobPhaseSucceeded))
	})

	ginkgo.It("rolls out a job whose name is longer than a label value", func() {
		createILOTargets(ns, "longname", 1)
		job := newJob(ns, strings.Repeat("maintenance-", 6)+"ilo5", "longname", policy, nil)
		gomega.Expect(len(job.Name)).To(gomega.BeNumerically(">", 63))
		gomega.Eventually(jobPhase(job)).Should(gomega.Equal(fwv1.JobPhaseSucceeded))
	})
})

// warnings lists the namespace's Warning events.
func warnings(ns string) []corev1.Event {
	var list corev1.EventList
	_ = k8sClient.List(suiteCtx, &list, client.InNamespace(ns))
	var out []corev1.Event
	for _, e := range list.Items {
		if e.Type == corev1.EventTypeWarning {
			out = append(out, e)
		}
	}
	return out
}

// managerSeesGone waits until the manager's cache has seen an UpdateTarget's deletion. The
// job and its targets come through separate watches, so a job resumed right after a target
// is deleted may be read before the deletion is: the controller then starts the target it
// still sees, which is not what these specs are about.
func managerSeesGone(ns, name string) {
	ginkgo.GinkgoHelper()
	gomega.Eventually(func() bool {
		err := mgrCache.Get(suiteCtx, client.ObjectKey{Namespace: ns, Name: name}, &fwv1.UpdateTarget{})
		return apierrors.IsNotFound(err)
	}).Should(gomega.BeTrue(), "the manager's cache sees UpdateTarget %s/%s deleted", ns, name)
}
