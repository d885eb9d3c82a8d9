package v1alpha1_test

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/gomega"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
)

func devices(n int) []fwv1.DeviceVersion {
	out := make([]fwv1.DeviceVersion, n)
	for i := range out {
		out[i] = fwv1.DeviceVersion{Target: fmt.Sprintf("00000000-0000-0000-0000-%012d", i), Version: "1.0"}
	}
	return out
}

func standings(n int) []fwv1.BaselineCompliance {
	out := make([]fwv1.BaselineCompliance, n)
	for i := range out {
		out[i] = fwv1.BaselineCompliance{Name: "b" + strconv.Itoa(i), Version: "1", State: fwv1.ComplianceCompliant}
	}
	return out
}

var _ = ginkgo.Describe("UpdateTarget compliance status validation", func() {
	var seq int
	ginkgo.DescribeTable("bounds what the operator records of a target's standing and devices",
		func(mutate func(*fwv1.UpdateTargetStatus), field string) {
			seq++
			ut := validTarget("compliance-status-" + strconv.Itoa(seq))
			gomega.Expect(k8sClient.Create(ctx, ut)).To(gomega.Succeed())
			mutate(&ut.Status)
			err := k8sClient.Status().Update(ctx, ut)
			if field == "" {
				gomega.Expect(err).NotTo(gomega.HaveOccurred())
			} else {
				gomega.Expect(err).To(beInvalidOn(field))
			}
		},
		ginkgo.Entry("a full record", func(s *fwv1.UpdateTargetStatus) {
			s.Devices, s.Baselines, s.Compliance = devices(fwv1.MaxRecordedDevices), standings(fwv1.MaxBaselinesShown), "32/32"
			s.Baselines[0].State = fwv1.ComplianceDrifting
			s.Baselines[0].Drift = []fwv1.ComponentDrift{{Name: "nic", Version: "08.50.16", Wanted: "08.60.12"}}
			s.Baselines[1].State = fwv1.ComplianceUnknown
			s.Baselines[1].Unknown = []fwv1.UnknownComponent{{Name: "rom", Message: "no version read from the target yet"}}
		}, ""),
		ginkgo.Entry("more devices than recorded", func(s *fwv1.UpdateTargetStatus) { s.Devices = devices(fwv1.MaxRecordedDevices + 1) }, "status.devices"),
		ginkgo.Entry("a device twice", func(s *fwv1.UpdateTargetStatus) { s.Devices = append(devices(1), devices(1)...) }, "status.devices[1]"),
		ginkgo.Entry("a device without a Target", func(s *fwv1.UpdateTargetStatus) { s.Devices = []fwv1.DeviceVersion{{Version: "1.0"}} }, "status.devices[0].target"),
		ginkgo.Entry("more baselines than shown", func(s *fwv1.UpdateTargetStatus) { s.Baselines = standings(fwv1.MaxBaselinesShown + 1) }, "status.baselines"),
		ginkgo.Entry("a state that is none of the three", func(s *fwv1.UpdateTargetStatus) {
			s.Baselines = standings(1)
			s.Baselines[0].State = "Green"
		}, "status.baselines[0].state"),
		ginkgo.Entry("an unknown reason longer than a message", func(s *fwv1.UpdateTargetStatus) {
			s.Baselines = standings(1)
			s.Baselines[0].Unknown = []fwv1.UnknownComponent{{Name: "rom", Message: strings.Repeat("x", 1025)}}
		}, "status.baselines[0].unknown[0].message"),
	)
})
