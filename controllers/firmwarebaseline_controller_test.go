package controllers_test

import (
	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
)

// recordVersions writes versions on a target's status as if a job had read them; a merge
// patch, so that it never conflicts with the UpdateTarget controller's own writes.
func recordVersions(ns, name string, versions ...fwv1.ComponentVersion) {
	t := &fwv1.UpdateTarget{}
	gomega.Expect(k8sClient.Get(suiteCtx, client.ObjectKey{Namespace: ns, Name: name}, t)).To(gomega.Succeed())
	before := t.DeepCopy()
	t.Status.FirmwareVersions = versions
	gomega.Expect(k8sClient.Status().Patch(suiteCtx, t, client.MergeFrom(before))).To(gomega.Succeed())
}

func iloAt(v string) fwv1.ComponentVersion {
	return fwv1.ComponentVersion{Component: fwv1.ComponentILO, Version: v}
}

func getBaseline(b *fwv1.FirmwareBaseline) *fwv1.FirmwareBaseline {
	cur := &fwv1.FirmwareBaseline{}
	gomega.Expect(k8sClient.Get(suiteCtx, client.ObjectKeyFromObject(b), cur)).To(gomega.Succeed())
	return cur
}

var _ = ginkgo.Describe("FirmwareBaseline compliance", func() {
	ginkgo.It("counts compliant, drifting and unknown targets from the versions last read, and turns Ready when all comply", func() {
		ns := newNamespace()
		ilo5 := createILOTargets(ns, "bl", 3)
		ilo6 := &fwv1.UpdateTarget{
			ObjectMeta: metav1.ObjectMeta{Name: "bl-ilo6", Namespace: ns, Labels: map[string]string{"fleet": "bl"}},
			Spec: fwv1.UpdateTargetSpec{Type: fwv1.TargetTypeILO6, Address: "127.0.1.9",
				CredentialsSecretRef: fwv1.SecretReference{Name: "creds-bl"}, TLS: &fwv1.TLSSpec{InsecureSkipVerify: true}},
		}
		gomega.Expect(k8sClient.Create(suiteCtx, ilo6)).To(gomega.Succeed())
		// Not selected: its drift must not count.
		other := createILOTargets(ns, "other", 1)
		recordVersions(ns, other[0], iloAt("2.10"))

		recordVersions(ns, ilo5[0], iloAt("2.78"))
		recordVersions(ns, ilo5[1], iloAt("2.65"), fwv1.ComponentVersion{Component: fwv1.ComponentSystemROM, Version: "2.68"})
		// ilo5[2]: never read.
		recordVersions(ns, ilo6.Name, iloAt("v1.59"))

		b := newBaseline(ns, "fleet-2026-09", "2026.09", ilo5Component("2.78"),
			baselineComponent("ilo6", fwv1.BaselineKindILO, "https://fw.example.net/ilo6_159.bin", "1.59", fwv1.TargetTypeILO6))
		b.Spec.TargetSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"fleet": "bl"}}
		gomega.Expect(k8sClient.Create(suiteCtx, b)).To(gomega.Succeed())

		gomega.Eventually(func() fwv1.ComplianceCounts { return getBaseline(b).Status.Counts }).
			Should(gomega.Equal(fwv1.ComplianceCounts{Compliant: 2, Drifting: 1, Unknown: 1}))
		cur := getBaseline(b)
		gomega.Expect(cur.Status.DriftingTargets).To(gomega.Equal([]fwv1.DriftingTarget{
			{Name: ilo5[1], Components: []fwv1.ComponentDrift{{Name: "ilo5", Version: "2.65", Wanted: "2.78"}}},
		}))
		ready := meta.FindStatusCondition(cur.Status.Conditions, fwv1.ConditionReady)
		gomega.Expect(ready).NotTo(gomega.BeNil())
		gomega.Expect(ready.Status).To(gomega.Equal(metav1.ConditionFalse))
		gomega.Expect(ready.Reason).To(gomega.Equal("Drifting"))
		gomega.Expect(ready.Message).To(gomega.ContainSubstring("1 of 4 targets run other versions than baseline 2026.09: " + ilo5[1]))
		gomega.Expect(cur.Status.ObservedGeneration).To(gomega.Equal(cur.Generation))
		gomega.Expect(getTable(ns, "firmwarebaselines")).To(gomega.MatchRegexp(`fleet-2026-09\t2026.09\t2/4\t1\t1\tFalse\t`))
		gomega.Expect(gatheredMetric("fwops_baseline_targets", map[string]string{"namespace": ns, "baseline": b.Name, "compliance": "drifting"})).To(gomega.Equal(1.0))
		gomega.Expect(gatheredMetric("fwops_baseline_targets", map[string]string{"namespace": ns, "baseline": b.Name, "compliance": "compliant"})).To(gomega.Equal(2.0))

		// The versions a later job reads wake the baseline.
		recordVersions(ns, ilo5[1], iloAt("2.78"))
		gomega.Eventually(func() fwv1.ComplianceCounts { return getBaseline(b).Status.Counts }).
			Should(gomega.Equal(fwv1.ComplianceCounts{Compliant: 3, Unknown: 1}))
		ready = meta.FindStatusCondition(getBaseline(b).Status.Conditions, fwv1.ConditionReady)
		gomega.Expect(ready.Reason).To(gomega.Equal("VersionsUnknown"))
		gomega.Expect(ready.Message).To(gomega.ContainSubstring(ilo5[2] + " (ilo5: no version read from the target yet)"))
		gomega.Expect(ready.Message).To(gomega.ContainSubstring("set the annotation firmware.fwops.io/refresh-requested"), "it says how to read them")
		gomega.Expect(getBaseline(b).Status.DriftingTargets).To(gomega.BeEmpty())

		recordVersions(ns, ilo5[2], iloAt("2.78"))
		gomega.Eventually(func() *metav1.Condition {
			return meta.FindStatusCondition(getBaseline(b).Status.Conditions, fwv1.ConditionReady)
		}).Should(gomega.And(
			gomega.HaveField("Status", metav1.ConditionTrue),
			gomega.HaveField("Reason", "Compliant"),
			gomega.HaveField("Message", "all 4 targets run baseline 2026.09"),
		))
		gomega.Expect(getBaseline(b).Status.Compliance).To(gomega.Equal("4/4"))
		gomega.Expect(gatheredMetric("fwops_baseline_targets", map[string]string{"namespace": ns, "baseline": b.Name, "compliance": "drifting"})).To(gomega.Equal(0.0))

		gomega.Expect(k8sClient.Delete(suiteCtx, b)).To(gomega.Succeed())
		gomega.Eventually(func() float64 {
			return gatheredMetric("fwops_baseline_targets", map[string]string{"namespace": ns, "baseline": b.Name})
		}).Should(gomega.Equal(-1.0), "a deleted baseline's metric must go")
	})

	ginkgo.It("says when no selected target is of a type its components apply to", func() {
		ns := newNamespace()
		createILOTargets(ns, "ilo-only", 1)
		b := createBaseline(ns, "oa-only", "1",
			baselineComponent("oa", fwv1.BaselineKindOA, "https://fw.example.net/hpoa500.bin", "5.00", fwv1.TargetTypeOA))
		gomega.Eventually(func() *metav1.Condition {
			return meta.FindStatusCondition(getBaseline(b).Status.Conditions, fwv1.ConditionReady)
		}).Should(gomega.And(
			gomega.HaveField("Status", metav1.ConditionFalse),
			gomega.HaveField("Reason", "NoApplicableTargets"),
		))
		gomega.Expect(getBaseline(b).Status.Compliance).To(gomega.Equal("0/0"))
	})
})
