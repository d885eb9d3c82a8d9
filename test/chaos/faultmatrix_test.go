package chaos

import (
	"fmt"
	"strings"
	"time"

	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
	"github.com/fwops/firmware-operator/internal/fleet"
	"github.com/fwops/firmware-operator/internal/simulator/ilo"
	"github.com/fwops/firmware-operator/internal/simulator/oa"
)

// injected is one fault the simulators inject, and what the target's message must say for a
// person to act on it.
type injected struct {
	name   string
	inject func(h *harness, target string)
	// says are the parts of the message that name the cause.
	says []string
}

var _ = ginkgo.Describe("Every fault the simulators inject", func() {
	h := setUpHarness()

	ginkgo.It("ends its target with a message a person can act on, and the job stops starting targets at maxFailures", func() {
		h.startFleet(fleet.Options{Name: "faults", ILO5: 13, OA: 1, PinEvery: -1,
			Timings: quickFlash(500*time.Millisecond, 2)})
		kubelet.Use(h.f.AgentFunc(k8sClient, fleet.AgentOptions{Log: h.logs}))
		h.mgr.start()
		iloFaults := func(f ilo.Faults) func(*harness, string) {
			return func(h *harness, t string) { h.f.ILO(t).SetFaults(f) }
		}
		matrix := []injected{
			{"5xx", iloFaults(ilo.Faults{FailNext: 1000, FailStatus: 503}), []string{"HTTP 503", "retry later"}},
			{"stall", iloFaults(ilo.Faults{StallMS: 120000}), []string{"timed out after 1m0s (the job's per-target timeout)"}},
			{"dropped connections", iloFaults(ilo.Faults{DropNext: 100000}), []string{"closed the connection without an answer", "check that spec.address"}},
			{"flash ends in Error", iloFaults(ilo.Faults{FlashError: ilo.MsgUpdateFailed}), []string{"iLO.2.14.UpdateFailed", "see the iLO event log"}},
			{"version unchanged", iloFaults(ilo.Faults{VersionUnchanged: true}), []string{"version unchanged after the flash", `want "2.99"`}},
			{"TLS certificate mismatch", iloFaults(ilo.Faults{WrongCert: true}), []string{"x509", "does not match the UpdateTarget's spec.tls"}},
			{"stalled download", iloFaults(ilo.Faults{DownloadBytesPerSec: 1}), []string{"timed out after 1m0s", "last state Uploading"}},
		}
		iloTargets := h.f.TargetNames(fwv1.TargetTypeILO5)
		var names []string
		for i, m := range matrix {
			m.inject(h, iloTargets[i])
			names = append(names, iloTargets[i])
		}
		job := h.jobOf("matrix", int32(len(matrix)), func(j *fwv1.UpdateJob) {
			j.Spec.Targets = fwv1.TargetSelection{Names: names}
			j.Spec.Rollout.Timeout = &metav1.Duration{Duration: time.Minute} // the API's minimum
			j.Spec.Rollout.MaxFailures = ptr.To(intstr.FromString("100%"))
		})

		// The SHA-256 of the job does not match the image: a job of its own.
		sha := h.jobOf("wrong-sha", 1, func(j *fwv1.UpdateJob) {
			j.Spec.Targets = fwv1.TargetSelection{Names: []string{iloTargets[len(matrix)]}}
			j.Spec.Firmware.SHA256 = "0000000000000000000000000000000000000000000000000000000000000000"
		})

		// The OA answers with another host key than its known_hosts Secret holds.
		oaTarget := h.f.TargetNames(fwv1.TargetTypeOA)[0]
		other, err := oa.Start(oa.Config{Listen: "127.0.0.1:0"})
		gomega.Expect(err).NotTo(gomega.HaveOccurred())
		gomega.Expect(other.Close()).To(gomega.Succeed())
		kh := &corev1.Secret{}
		gomega.Expect(k8sClient.Get(suiteCtx, client.ObjectKey{Namespace: h.ns, Name: oaTarget + "-known-hosts"}, kh)).To(gomega.Succeed())
		// The OA's own host pattern, the other OA's key.
		host := strings.Fields(h.f.OA(oaTarget).KnownHostsLine())[0]
		key := strings.Fields(other.KnownHostsLine())[1:]
		kh.Data[fwv1.SecretKeyKnownHosts] = []byte(host + " " + strings.Join(key, " ") + "\n")
		gomega.Expect(k8sClient.Update(suiteCtx, kh)).To(gomega.Succeed())
		hostKey := h.f.Job(h.ns, "host-key", fwv1.ComponentOA, "policy-"+h.ns, 1)
		hostKey.Spec.Targets = fwv1.TargetSelection{Names: []string{oaTarget}}
		gomega.Expect(k8sClient.Create(suiteCtx, hostKey)).To(gomega.Succeed())

		// The failure budget: every flash fails; maxFailures 2 with one retry each and one
		// target at a time. The job may reach 3 machines (the third failure exceeds the
		// budget), each tried twice, and never a fourth.
		const maxFailures = 2
		budgetTargets := iloTargets[len(matrix)+1:]
		for _, t := range budgetTargets {
			h.f.ILO(t).SetFaults(ilo.Faults{FlashError: ilo.MsgUpdateFailed})
		}
		budget := h.jobOf("budget", 1, func(j *fwv1.UpdateJob) {
			j.Spec.Targets = fwv1.TargetSelection{Names: budgetTargets}
			j.Spec.Rollout.MaxFailures = ptr.To(intstr.FromInt32(maxFailures))
			j.Spec.Rollout.Retries = fwv1.RetryPolicy{Limit: 1, Backoff: &metav1.Duration{Duration: time.Second}}
		})

		for _, j := range []*fwv1.UpdateJob{job, sha, hostKey, budget} {
			gomega.Eventually(func() bool { return h.finished(j) }, 3*time.Minute).Should(gomega.BeTrue(), "job %s", j.Name)
		}
		messageOf := func(j *fwv1.UpdateJob, target string) fwv1.TargetUpdateStatus {
			for _, tu := range h.targetUpdates(j.Name) {
				if tu.Spec.TargetName == target {
					return tu.Status
				}
			}
			return fwv1.TargetUpdateStatus{}
		}
		// check: Failed, the message names the cause (and the target, unless the cause is the
		// job's own: its image), nothing flashed twice.
		check := func(name string, j *fwv1.UpdateJob, target string, says []string) {
			st := messageOf(j, target)
			fmt.Fprintf(ginkgo.GinkgoWriter, "%-26s %s: %s\n", name, st.Phase, st.Message)
			gomega.Expect(st.Phase).To(gomega.Equal(fwv1.TargetPhaseFailed), "%s on %s", name, target)
			if j != sha {
				gomega.Expect(st.Message).To(gomega.ContainSubstring(target), "%s: the message names the target", name)
			}
			for _, s := range says {
				gomega.Expect(st.Message).To(gomega.ContainSubstring(s), "%s: the message names the cause", name)
			}
			gomega.Expect(h.f.Flashes(target)).To(gomega.BeNumerically("<=", 1), "%s flashed twice", target)
		}
		for i, m := range matrix {
			check(m.name, job, iloTargets[i], m.says)
		}
		gomega.Expect(h.get(budget).Status.Phase).To(gomega.Equal(fwv1.JobPhaseFailed))
		reached, requests := 0, 0
		for _, t := range budgetTargets {
			if n := h.f.ILO(t).Stats().FlashRequests; n > 0 {
				reached++
				requests += n
			}
		}
		overshoot := reached - (maxFailures + 1)
		fmt.Fprintf(ginkgo.GinkgoWriter, "budget: maxFailures %d, %d of %d targets reached, %d flash requests, overshoot %d\n",
			maxFailures, reached, len(budgetTargets), requests, overshoot)
		gomega.Expect(reached).To(gomega.Equal(maxFailures+1), "targets the job reached with maxFailures %d", maxFailures)
		gomega.Expect(requests).To(gomega.Equal(2*(maxFailures+1)), "each reached target tried twice (retries.limit 1)")
		for _, tu := range h.targetUpdates(budget.Name) {
			if tu.Status.Attempts == 0 {
				gomega.Expect(tu.Status.Phase.Finished()).To(gomega.BeFalse(), "%s was never tried", tu.Name)
			}
		}
		recordBudget(maxFailures, reached, len(budgetTargets), overshoot)

		check("wrong SHA-256", sha, iloTargets[len(matrix)], []string{"does not hash to the job's sha256", "nothing was flashed"})
		check("SSH host-key mismatch", hostKey, oaTarget, []string{"ssh host key mismatch", "update the Secret"})
	})
})

// recordBudget appends the budget figures to $CHAOS_FIGURES (see recordFigures).
func recordBudget(maxFailures, reached, targets, overshoot int) {
	recordLine(fmt.Sprintf("budget: maxFailures %d, %d of %d targets reached, overshoot %d", maxFailures, reached, targets, overshoot))
}
