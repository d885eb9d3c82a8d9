package controllers_test

import (
	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
)

// A job that rolls out a FirmwareBaseline (spec.baselineRef) checks the baseline before it
// starts anything: it must exist, and each component's source must pass the PortPolicy's
// allow-list exactly as a job's own spec.firmware does.
var _ = ginkgo.Describe("UpdateJob with a baselineRef", func() {
	var ns, policy string
	ginkgo.BeforeEach(func() {
		ns, policy = specNamespace(func(p *fwv1.PortPolicy) {
			p.Spec.FirmwareSources.NodePathPrefixes = []fwv1.NodePathPrefix{"/var/lib/firmware/"}
		})
	})

	// blockedWith waits for Ready=False and Stalled=True with reason, and a Warning event,
	// all with a message containing each of want; no agent pod starts.
	blockedWith := func(job *fwv1.UpdateJob, reason string, want ...string) {
		var msg []gomega.OmegaMatcher
		for _, w := range want {
			msg = append(msg, gomega.ContainSubstring(w))
		}
		gomega.Eventually(condition(job, fwv1.ConditionReady)).Should(gomega.And(
			gomega.HaveField("Reason", reason), gomega.HaveField("Message", gomega.And(msg...))))
		gomega.Expect(condition(job, fwv1.ConditionStalled)()).To(gomega.And(
			gomega.HaveField("Status", metav1.ConditionTrue), gomega.HaveField("Reason", reason)))
		gomega.Eventually(func() []corev1.Event {
			var list corev1.EventList
			_ = k8sClient.List(suiteCtx, &list, client.InNamespace(ns))
			return list.Items
		}).Should(gomega.ContainElement(gomega.And(
			gomega.HaveField("Type", corev1.EventTypeWarning),
			gomega.HaveField("Reason", reason),
			gomega.HaveField("Message", gomega.And(msg...)))))
		gomega.Expect(agentPodsOf(ns, job.Name)).To(gomega.BeEmpty())
	}

	ginkgo.It("waits for a missing baseline, saying what to create, then checks its components' sources", func() {
		createILOTargets(ns, "bj", 1)
		job := newJob(ns, "rollout", "bj", policy, func(j *fwv1.UpdateJob) {
			j.Spec.Firmware, j.Spec.BaselineRef = nil, &fwv1.BaselineReference{Name: "spp-2026-09"}
		})
		blockedWith(job, "BaselineNotFound", `FirmwareBaseline "spp-2026-09"`, "spec.baselineRef.name", "baseline import")

		// The baselines' watch brings the job back; the second component reads a node path
		// the policy does not allow, and the message names the component and the field.
		createBaseline(ns, "spp-2026-09", "2026.09",
			baselineComponent("ilo5", fwv1.BaselineKindILO, "/var/lib/firmware/ilo5_310.bin", "3.10", fwv1.TargetTypeILO5),
			baselineComponent("rom-a55", fwv1.BaselineKindSystemROM, "/etc/shadow", "3.40", fwv1.TargetTypeILO5))
		blockedWith(job, "FirmwareSourceNotAllowed", "component rom-a55", "spec.components[1].firmware.nodePath", `"/etc/shadow"`)
	})

	ginkgo.It("in a dry run, writes each target's plan on its TargetUpdate next to the firewall plan, starting nothing", func() {
		targets := createILOTargets(ns, "dry", 2)
		recordVersions(ns, targets[0], iloAt("2.46"))
		recordVersions(ns, targets[1], iloAt("v3.10"))
		createBaseline(ns, "spp", "2026.09",
			forModels(baselineComponent("rom-a55", fwv1.BaselineKindSystemROM, "https://fw.example.net/a55.fwpkg", "3.40", fwv1.TargetTypeILO5),
				"ProLiant DL325 Gen10 Plus"),
			ilo5Component("3.10"),
			baselineComponent("ilo6", fwv1.BaselineKindILO, "https://fw.example.net/ilo6_161.bin", "1.61", fwv1.TargetTypeILO6))
		job := newJob(ns, "dry", "dry", policy, func(j *fwv1.UpdateJob) {
			j.Spec.Firmware, j.Spec.BaselineRef = nil, &fwv1.BaselineReference{Name: "spp"}
			j.Spec.DryRun, j.Spec.Rollout.MaxConcurrent = true, 2
		})
		gomega.Eventually(jobPhase(job)).Should(gomega.Equal(fwv1.JobPhasePlanned))
		gomega.Expect(condition(job, fwv1.ConditionReady)()).To(gomega.HaveField("Message", gomega.And(
			gomega.ContainSubstring("status.agents"), gomega.ContainSubstring("status.components"))))
		gomega.Expect(getJob(job).Status.Agents).NotTo(gomega.BeEmpty(), "the firewall plan is still written")

		byTarget := map[string]fwv1.TargetUpdate{}
		gomega.Eventually(func() int {
			for _, tu := range targetUpdates(ns, job.Name) {
				if tu.Status.ComponentsTotal > 0 {
					byTarget[tu.Spec.TargetName] = tu
				}
			}
			return len(byTarget)
		}).Should(gomega.Equal(2))
		old, current := byTarget[targets[0]].Status, byTarget[targets[1]].Status
		// The iLO first; the model-bound ROM waits for the agent to read the model; iLO 6's
		// component does not apply to an iLO 5.
		gomega.Expect(old.Components).To(gomega.HaveExactElements(
			gomega.And(gomega.HaveField("Name", "ilo5"), gomega.HaveField("From", "2.46"), gomega.HaveField("To", "3.10"),
				gomega.HaveField("Phase", fwv1.TargetPhasePending)),
			gomega.And(gomega.HaveField("Name", "rom-a55"), gomega.HaveField("Message", gomega.ContainSubstring("DL325")))))
		gomega.Expect(old.ComponentsProgress).To(gomega.Equal("0/2"))
		gomega.Expect(old.Message).To(gomega.And(gomega.ContainSubstring("ilo5 2.46 -> 3.10"), gomega.ContainSubstring("about 8m")))
		gomega.Expect(current.Components).To(gomega.ContainElement(gomega.And(
			gomega.HaveField("Name", "ilo5"), gomega.HaveField("Phase", fwv1.TargetPhaseSkipped))))
		gomega.Expect(current.Message).To(gomega.ContainSubstring("nothing to install"))
		for _, tu := range byTarget {
			gomega.Expect(tu.Status.Phase).NotTo(gomega.BeElementOf(fwv1.TargetPhaseFlashing, fwv1.TargetPhaseSucceeded))
		}
		gomega.Expect(agentPodsOf(ns, job.Name)).To(gomega.BeEmpty())
	})

	ginkgo.It("records a finished baseline rollout's versions on the UpdateTarget, so that compliance turns green", func() {
		targets := createILOTargets(ns, "rec", 1)
		recordVersions(ns, targets[0], iloAt("2.46"), fwv1.ComponentVersion{Component: fwv1.ComponentSystemROM, Version: "2.40"})
		b := createBaseline(ns, "spp", "2026.09", ilo5Component("3.10"),
			forModels(baselineComponent("rom", fwv1.BaselineKindSystemROM, "https://fw.example.net/rom.fwpkg", "3.40", fwv1.TargetTypeILO5),
				"ProLiant DL325 Gen10 Plus"))
		// The model-bound ROM cannot be judged before an agent read the model.
		gomega.Eventually(func() int32 { return getBaseline(b).Status.Counts.Drifting }).Should(gomega.Equal(int32(1)))

		// What a baseline job's agent leaves on the TargetUpdate it finished: the iLO and the
		// ROM installed, the ROM activated by the one reboot.
		tu := &fwv1.TargetUpdate{
			ObjectMeta: metav1.ObjectMeta{Name: "rollout-" + targets[0], Namespace: ns},
			Spec:       fwv1.TargetUpdateSpec{JobName: "rollout", TargetName: targets[0], TargetType: fwv1.TargetTypeILO5},
		}
		gomega.Expect(k8sClient.Create(suiteCtx, tu)).To(gomega.Succeed())
		now := metav1.Now()
		tu.Status = fwv1.TargetUpdateStatus{Phase: fwv1.TargetPhaseSucceeded, CompletionTime: &now, ComponentsDone: 2, ComponentsTotal: 2,
			Model:              "ProLiant DL325 Gen10 Plus",
			ComponentsProgress: "2/2", Components: []fwv1.ComponentUpdate{
				{Name: "ilo5", Kind: fwv1.BaselineKindILO, From: "2.46", To: "3.10", Phase: fwv1.TargetPhaseSucceeded},
				{Name: "rom", Kind: fwv1.BaselineKindSystemROM, From: "2.40", To: "3.40", Phase: fwv1.TargetPhaseSucceeded},
			}}
		gomega.Expect(k8sClient.Status().Update(suiteCtx, tu)).To(gomega.Succeed())

		gomega.Eventually(func() []fwv1.ComponentVersion {
			t := &fwv1.UpdateTarget{}
			gomega.Expect(k8sClient.Get(suiteCtx, client.ObjectKey{Namespace: ns, Name: targets[0]}, t)).To(gomega.Succeed())
			return t.Status.FirmwareVersions
		}).Should(gomega.ConsistOf(iloAt("3.10"), fwv1.ComponentVersion{Component: fwv1.ComponentSystemROM, Version: "3.40"}))
		ut := &fwv1.UpdateTarget{}
		gomega.Expect(k8sClient.Get(suiteCtx, client.ObjectKey{Namespace: ns, Name: targets[0]}, ut)).To(gomega.Succeed())
		gomega.Expect(ut.Status.Model).To(gomega.Equal("ProLiant DL325 Gen10 Plus"), "the model the agent read")
		gomega.Eventually(func() string { return getBaseline(b).Status.Compliance }).Should(gomega.Equal("1/1"))
	})

	ginkgo.It("never mixes two versions of a baseline: a changed baseline holds the job, saying to create a new one", func() {
		createILOTargets(ns, "pin", 1)
		b := createBaseline(ns, "spp", "2026.09", ilo5Component("3.10"))
		job := newJob(ns, "pin", "pin", policy, func(j *fwv1.UpdateJob) {
			j.Spec.Firmware, j.Spec.BaselineRef, j.Spec.DryRun = nil, &fwv1.BaselineReference{Name: "spp"}, true
		})
		gomega.Eventually(jobPhase(job)).Should(gomega.Equal(fwv1.JobPhasePlanned))
		gomega.Expect(getJob(job).Status.BaselineGeneration).To(gomega.Equal(getBaseline(b).Generation))

		cur := getBaseline(b)
		cur.Spec.Components[0].Firmware.Version = "3.11"
		gomega.Expect(k8sClient.Update(suiteCtx, cur)).To(gomega.Succeed())
		blockedWith(job, "BaselineChanged", "FirmwareBaseline spp changed (generation 2)", "generation 1", "create a new UpdateJob")
	})
})
