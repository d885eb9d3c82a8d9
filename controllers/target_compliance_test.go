package controllers_test

import (
	"time"

	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
)

const (
	nicGUID  = "a6b1a447-382a-5a4f-3b60-0013f0bb5aa1"
	nvmeGUID = "b5a71c44-16c1-4e6d-9e3a-2a1e3c8d5f01"
)

func getTarget(ns, name string) *fwv1.UpdateTarget {
	t := &fwv1.UpdateTarget{}
	gomega.Expect(k8sClient.Get(suiteCtx, client.ObjectKey{Namespace: ns, Name: name}, t)).To(gomega.Succeed())
	return t
}

func compliantCondition(ns, name string) func() *metav1.Condition {
	return func() *metav1.Condition {
		return meta.FindStatusCondition(getTarget(ns, name).Status.Conditions, fwv1.ConditionCompliant)
	}
}

// finishBaselineRollout leaves on a new TargetUpdate what a baseline job's agent leaves
// when it finished with the target a minute after it read the inventory at readAt: the
// plan's components, the model and the devices it read.
func finishBaselineRollout(ns, job, target string, readAt time.Time, devices []fwv1.DeviceVersion, comps ...fwv1.ComponentUpdate) {
	finishBaselineRolloutAt(ns, job, target, readAt, readAt.Add(time.Minute), devices, comps...)
}

func finishBaselineRolloutAt(ns, job, target string, readAt, doneAt time.Time, devices []fwv1.DeviceVersion, comps ...fwv1.ComponentUpdate) {
	tu := &fwv1.TargetUpdate{
		ObjectMeta: metav1.ObjectMeta{Name: job + "-" + target, Namespace: ns},
		Spec:       fwv1.TargetUpdateSpec{JobName: job, TargetName: target, TargetType: fwv1.TargetTypeILO5},
	}
	gomega.Expect(k8sClient.Create(suiteCtx, tu)).To(gomega.Succeed())
	read, done := metav1.NewTime(readAt), metav1.NewTime(doneAt)
	tu.Status = fwv1.TargetUpdateStatus{Phase: fwv1.TargetPhaseSucceeded, CompletionTime: &done, InventoryTime: &read,
		Model: "ProLiant DL325 Gen10 Plus", Devices: devices, Components: comps}
	gomega.Expect(k8sClient.Status().Update(suiteCtx, tu)).To(gomega.Succeed())
}

func skippedAt(name string, kind fwv1.BaselineComponentKind, from, to string) fwv1.ComponentUpdate {
	return fwv1.ComponentUpdate{Name: name, Kind: kind, From: from, To: to, Phase: fwv1.TargetPhaseSkipped}
}

var _ = ginkgo.Describe("UpdateTarget compliance", func() {
	ginkgo.It("shows each target's standing against every baseline that applies to it, judging Smart Components by the devices the agent read", func() {
		ns := newNamespace()
		targets := createILOTargets(ns, "tc", 2)
		spp := &fwv1.FirmwareBaseline{
			ObjectMeta: metav1.ObjectMeta{Name: "spp", Namespace: ns},
			Spec: fwv1.FirmwareBaselineSpec{Version: "2026.09",
				TargetSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"fleet": "tc"}},
				Components: []fwv1.BaselineComponent{
					{Name: "ilo5", Kind: fwv1.BaselineKindILO,
						Firmware:  fwv1.FirmwareSource{URL: "https://fw.example.net/ilo5_278.bin", SHA256: testSHA, Version: "2.78"},
						AppliesTo: fwv1.ComponentApplicability{TargetTypes: []fwv1.TargetType{fwv1.TargetTypeILO5}}},
					{Name: "nic", Kind: fwv1.BaselineKindSmartComponent,
						Firmware: fwv1.FirmwareSource{URL: "https://fw.example.net/nic.fwpkg", SHA256: testSHA, Version: "08.60.12"},
						AppliesTo: fwv1.ComponentApplicability{TargetTypes: []fwv1.TargetType{fwv1.TargetTypeILO5},
							Devices: []string{nicGUID}}},
					// No server here has this device: it applies to none.
					{Name: "nvme", Kind: fwv1.BaselineKindSmartComponent,
						Firmware: fwv1.FirmwareSource{URL: "https://fw.example.net/nvme.fwpkg", SHA256: testSHA, Version: "1.2"},
						AppliesTo: fwv1.ComponentApplicability{TargetTypes: []fwv1.TargetType{fwv1.TargetTypeILO5},
							Devices: []string{nvmeGUID}}},
				}},
		}
		iloOnly := &fwv1.FirmwareBaseline{
			ObjectMeta: metav1.ObjectMeta{Name: "ilo-only", Namespace: ns},
			Spec:       fwv1.FirmwareBaselineSpec{Version: "1", Components: []fwv1.BaselineComponent{spp.Spec.Components[0]}},
		}
		// Applies to no target here: never listed.
		oa := &fwv1.FirmwareBaseline{
			ObjectMeta: metav1.ObjectMeta{Name: "oa", Namespace: ns},
			Spec: fwv1.FirmwareBaselineSpec{Version: "1", Components: []fwv1.BaselineComponent{
				{Name: "oa", Kind: fwv1.BaselineKindOA,
					Firmware:  fwv1.FirmwareSource{URL: "https://fw.example.net/hpoa500.bin", SHA256: testSHA, Version: "5.00"},
					AppliesTo: fwv1.ComponentApplicability{TargetTypes: []fwv1.TargetType{fwv1.TargetTypeOA}}},
			}},
		}
		for _, b := range []*fwv1.FirmwareBaseline{spp, iloOnly, oa} {
			gomega.Expect(k8sClient.Create(suiteCtx, b)).To(gomega.Succeed())
		}

		// Nothing read yet: unknown, saying what reads it. The two baselines that apply are
		// judged once the controller's cache holds both (they were created one after the
		// other, and the condition already reads Unknown with spp alone).
		gomega.Eventually(func() string { return getTarget(ns, targets[0]).Status.Compliance }).Should(gomega.Equal("0/2"))
		gomega.Eventually(compliantCondition(ns, targets[0])).Should(gomega.And(
			gomega.HaveField("Status", metav1.ConditionUnknown),
			gomega.HaveField("Reason", "VersionsUnknown"),
			gomega.HaveField("Message", gomega.ContainSubstring("spp (2026.09) [ilo5: no version read from the target yet; nic: no inventory read from the target yet")),
		))
		t0 := getTarget(ns, targets[0])
		gomega.Expect(t0.Status.Baselines).To(gomega.HaveLen(2))
		gomega.Expect(t0.Status.Baselines[1]).To(gomega.Equal(fwv1.BaselineCompliance{Name: "spp", Version: "2026.09", State: fwv1.ComplianceUnknown,
			Unknown: []fwv1.UnknownComponent{
				{Name: "ilo5", Message: "no version read from the target yet"},
				{Name: "nic", Message: "no inventory read from the target yet (a baseline job's agent reads its devices)"},
				{Name: "nvme", Message: "no inventory read from the target yet (a baseline job's agent reads its devices)"},
			}}))
		gomega.Expect(gatheredMetric("fwops_target_compliance", map[string]string{"namespace": ns, "target": targets[0], "baseline": "spp", "state": "unknown"})).To(gomega.Equal(1.0))
		gomega.Expect(gatheredMetric("fwops_target_compliance", map[string]string{"namespace": ns, "target": targets[0], "baseline": "oa"})).To(gomega.Equal(-1.0))

		// A baseline job's agent read target 0: the iLO current, the NIC installed (its
		// device now at the baseline's version), no NVMe drive in the server.
		readAt := time.Now()
		finishBaselineRollout(ns, "rollout", targets[0], readAt,
			[]fwv1.DeviceVersion{{Target: nicGUID, Version: "08.60.12"}, {Target: "c0ffee00-0000-4000-8000-000000000001", Version: "1.44"}},
			skippedAt("ilo5", fwv1.BaselineKindILO, "2.78", "2.78"),
			fwv1.ComponentUpdate{Name: "nic", Kind: fwv1.BaselineKindSmartComponent, From: "08.50.16", To: "08.60.12", Phase: fwv1.TargetPhaseSucceeded})
		// Target 1: its iLO newer than the baseline's, its NIC never installed.
		finishBaselineRollout(ns, "rollout", targets[1], readAt,
			[]fwv1.DeviceVersion{{Target: nicGUID, Version: "08.50.16"}},
			skippedAt("ilo5", fwv1.BaselineKindILO, "2.80", "2.78"),
			skippedAt("nic", fwv1.BaselineKindSmartComponent, "08.50.16", "08.60.12"))

		gomega.Eventually(compliantCondition(ns, targets[0])).Should(gomega.And(
			gomega.HaveField("Status", metav1.ConditionTrue),
			gomega.HaveField("Reason", "Compliant"),
		))
		t0 = getTarget(ns, targets[0])
		gomega.Expect(t0.Status.Compliance).To(gomega.Equal("2/2"))
		gomega.Expect(t0.Status.Devices).To(gomega.ContainElement(fwv1.DeviceVersion{Target: nicGUID, Version: "08.60.12"}))
		gomega.Expect(t0.Status.InventoryTime.Unix()).To(gomega.Equal(readAt.Unix()))
		gomega.Expect(t0.Status.Baselines).To(gomega.ConsistOf(
			fwv1.BaselineCompliance{Name: "ilo-only", Version: "1", State: fwv1.ComplianceCompliant},
			fwv1.BaselineCompliance{Name: "spp", Version: "2026.09", State: fwv1.ComplianceCompliant},
		))

		gomega.Eventually(compliantCondition(ns, targets[1])).Should(gomega.And(
			gomega.HaveField("Status", metav1.ConditionFalse),
			gomega.HaveField("Reason", "Drifting"),
			gomega.HaveField("Message", gomega.ContainSubstring("spp (2026.09) [ilo5 2.80 -> 2.78, nic 08.50.16 -> 08.60.12]")),
		))
		gomega.Expect(getTarget(ns, targets[1]).Status.Baselines).To(gomega.ContainElement(fwv1.BaselineCompliance{
			Name: "spp", Version: "2026.09", State: fwv1.ComplianceDrifting, Drift: []fwv1.ComponentDrift{
				{Name: "ilo5", Version: "2.80", Wanted: "2.78"}, {Name: "nic", Version: "08.50.16", Wanted: "08.60.12"}}}))
		gomega.Expect(getTable(ns, "updatetargets")).To(gomega.And(
			gomega.MatchRegexp(targets[0]+`\tiLO5\t\S+\tTrue\tCompliant\t`),
			gomega.MatchRegexp(targets[1]+`\tiLO5\t\S+\tTrue\tDrifting\t`),
		))
		metric := func(target, baseline, state string) func() float64 {
			return func() float64 {
				return gatheredMetric("fwops_target_compliance", map[string]string{"namespace": ns, "target": target, "baseline": baseline, "state": state})
			}
		}
		gomega.Expect(metric(targets[1], "spp", "drifting")()).To(gomega.Equal(1.0))
		gomega.Expect(metric(targets[1], "spp", "unknown")()).To(gomega.Equal(-1.0), "one series per target and baseline")
		gomega.Expect(metric(targets[0], "spp", "compliant")()).To(gomega.Equal(1.0))
		// The baseline's own view agrees.
		gomega.Eventually(func() fwv1.ComplianceCounts { return getBaseline(spp).Status.Counts }).
			Should(gomega.Equal(fwv1.ComplianceCounts{Compliant: 1, Drifting: 1}))

		// A relabelled target leaves the baseline that selected it.
		cur := getTarget(ns, targets[1])
		cur.Labels = map[string]string{"fleet": "elsewhere"}
		gomega.Expect(k8sClient.Update(suiteCtx, cur)).To(gomega.Succeed())
		gomega.Eventually(func() []fwv1.BaselineCompliance { return getTarget(ns, targets[1]).Status.Baselines }).Should(gomega.Equal(
			[]fwv1.BaselineCompliance{{Name: "ilo-only", Version: "1", State: fwv1.ComplianceDrifting,
				Drift: []fwv1.ComponentDrift{{Name: "ilo5", Version: "2.80", Wanted: "2.78"}}}}))
		gomega.Eventually(metric(targets[1], "spp", "drifting")).Should(gomega.Equal(-1.0))

		// A baseline's change re-judges its targets; a deleted one leaves them.
		b := getBaseline(iloOnly)
		b.Spec.Components[0].Firmware.Version = "2.80"
		gomega.Expect(k8sClient.Update(suiteCtx, b)).To(gomega.Succeed())
		gomega.Eventually(compliantCondition(ns, targets[1])).Should(gomega.HaveField("Reason", "Compliant"))
		gomega.Expect(k8sClient.Delete(suiteCtx, iloOnly)).To(gomega.Succeed())
		gomega.Eventually(compliantCondition(ns, targets[1])).Should(gomega.BeNil(), "no baseline applies any more")
		gomega.Expect(getTarget(ns, targets[1]).Status.Compliance).To(gomega.BeEmpty())
		gomega.Eventually(metric(targets[0], "ilo-only", "drifting")).Should(gomega.Equal(-1.0))
		gomega.Eventually(func() float64 {
			return gatheredMetric("fwops_target_compliance", map[string]string{"namespace": ns, "baseline": "ilo-only"})
		}).Should(gomega.Equal(-1.0), "a deleted baseline's series must go")

		// A deleted target's series go.
		gomega.Expect(k8sClient.Delete(suiteCtx, getTarget(ns, targets[0]))).To(gomega.Succeed())
		gomega.Eventually(func() float64 {
			return gatheredMetric("fwops_target_compliance", map[string]string{"namespace": ns, "target": targets[0]})
		}).Should(gomega.Equal(-1.0))
	})

	ginkgo.It("keeps the devices of the newest inventory read, not of the last job to finish", func() {
		ns := newNamespace()
		targets := createILOTargets(ns, "newest", 1)
		read := time.Now()
		finishBaselineRollout(ns, "second", targets[0], read, []fwv1.DeviceVersion{{Target: nicGUID, Version: "08.60.12"}})
		gomega.Eventually(func() []fwv1.DeviceVersion { return getTarget(ns, targets[0]).Status.Devices }).
			Should(gomega.Equal([]fwv1.DeviceVersion{{Target: nicGUID, Version: "08.60.12"}}))
		// An older read whose TargetUpdate finishes later (an agent that was slow to write).
		finishBaselineRolloutAt(ns, "first", targets[0], read.Add(-time.Hour), read.Add(time.Hour), []fwv1.DeviceVersion{{Target: nicGUID, Version: "08.50.16"}})
		gomega.Eventually(func() string { return getTarget(ns, targets[0]).Status.LastJob }).Should(gomega.Equal("first"))
		gomega.Expect(getTarget(ns, targets[0]).Status.Devices).To(gomega.Equal([]fwv1.DeviceVersion{{Target: nicGUID, Version: "08.60.12"}}))
	})
})
