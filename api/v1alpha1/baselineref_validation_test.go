package v1alpha1_test

import (
	"strconv"

	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/gomega"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
)

// baselineJob is a valid UpdateJob that rolls out the FirmwareBaseline "spp-2026-09".
func baselineJob(name string) *fwv1.UpdateJob {
	j := validJob(name)
	j.Spec.Firmware = nil
	j.Spec.BaselineRef = &fwv1.BaselineReference{Name: "spp-2026-09"}
	return j
}

const oneOfMessage = "spec needs exactly one of firmware (one image) and baselineRef (a FirmwareBaseline of this namespace)"

var _ = ginkgo.Describe("UpdateJob baselineRef validation", func() {
	var seq int
	name := func() string { seq++; return "bref-" + strconv.Itoa(seq) }

	ginkgo.DescribeTable("accepts a job with exactly one of firmware and baselineRef",
		func(job func(string) *fwv1.UpdateJob) {
			gomega.Expect(k8sClient.Create(ctx, job(name()))).To(gomega.Succeed())
		},
		ginkgo.Entry("one image", validJob),
		ginkgo.Entry("a baseline", baselineJob),
		ginkgo.Entry("a read-only baseline job", func(n string) *fwv1.UpdateJob {
			j := baselineJob(n)
			j.Spec.InventoryOnly = true
			return j
		}),
		ginkgo.Entry("a baseline whose servers may be rebooted once at the end", func(n string) *fwv1.UpdateJob {
			j := baselineJob(n)
			j.Spec.Rollout.Reboot = fwv1.RebootIfRequired
			return j
		}),
	)

	ginkgo.DescribeTable("rejects a job, naming the fields",
		func(mutate func(*fwv1.UpdateJob), field, message string) {
			j := baselineJob(name())
			mutate(j)
			err := k8sClient.Create(ctx, j)
			gomega.Expect(err).To(beInvalidOn(field))
			gomega.Expect(err.Error()).To(gomega.ContainSubstring(message))
		},
		ginkgo.Entry("both firmware and baselineRef", func(o *fwv1.UpdateJob) {
			o.Spec.Firmware = validJob("x").Spec.Firmware
		}, "spec", oneOfMessage),
		ginkgo.Entry("neither firmware nor baselineRef", func(o *fwv1.UpdateJob) { o.Spec.BaselineRef = nil }, "spec", oneOfMessage),
		ginkgo.Entry("a baselineRef with no name", func(o *fwv1.UpdateJob) { o.Spec.BaselineRef.Name = "" }, "spec.baselineRef.name", "at least 1"),
		ginkgo.Entry("inventoryOnly on an image job", func(o *fwv1.UpdateJob) {
			o.Spec.BaselineRef, o.Spec.Firmware, o.Spec.InventoryOnly = nil, validJob("x").Spec.Firmware, true
		}, "spec.inventoryOnly", "inventoryOnly reads a target's inventory as a baseline job does: it needs a baselineRef"),
	)

	ginkgo.DescribeTable("refuses to swap what the job rolls out",
		func(create func(string) *fwv1.UpdateJob, mutate func(*fwv1.UpdateJob), field, message string) {
			j := create(name())
			gomega.Expect(k8sClient.Create(ctx, j)).To(gomega.Succeed())
			mutate(j)
			err := k8sClient.Update(ctx, j)
			gomega.Expect(err).To(beInvalidOn(field))
			gomega.Expect(err.Error()).To(gomega.ContainSubstring(message))
		},
		ginkgo.Entry("another baseline", baselineJob, func(o *fwv1.UpdateJob) { o.Spec.BaselineRef.Name = "spp-2027-03" },
			"spec.baselineRef", "baselineRef is immutable"),
		ginkgo.Entry("a rollout turned read-only", baselineJob, func(o *fwv1.UpdateJob) { o.Spec.InventoryOnly = true },
			"spec.inventoryOnly", "inventoryOnly is immutable"),
		ginkgo.Entry("a read-only job turned into a rollout", func(n string) *fwv1.UpdateJob {
			j := baselineJob(n)
			j.Spec.InventoryOnly = true
			return j
		}, func(o *fwv1.UpdateJob) { o.Spec.InventoryOnly = false }, "spec.inventoryOnly", "inventoryOnly is immutable"),
		ginkgo.Entry("a baseline job turned into an image job", baselineJob, func(o *fwv1.UpdateJob) {
			o.Spec.BaselineRef, o.Spec.Firmware = nil, validJob("x").Spec.Firmware
		}, "spec", "firmware and baselineRef cannot be added or removed"),
		ginkgo.Entry("an image job turned into a baseline job", validJob, func(o *fwv1.UpdateJob) {
			o.Spec.BaselineRef, o.Spec.Firmware = &fwv1.BaselineReference{Name: "spp-2026-09"}, nil
		}, "spec", "firmware and baselineRef cannot be added or removed"),
	)
})
