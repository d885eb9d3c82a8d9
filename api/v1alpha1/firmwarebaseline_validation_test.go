package v1alpha1_test

import (
	"strconv"
	"time"

	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
)

// validBaseline is a baseline of an iLO 5 stepping release, the iLO 5 release that needs it,
// a system ROM and a NIC Smart Component.
func validBaseline(name string) *fwv1.FirmwareBaseline {
	return &fwv1.FirmwareBaseline{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: fwv1.FirmwareBaselineSpec{
			Version: "2026.09",
			Components: []fwv1.BaselineComponent{
				{
					Name: "ilo5-step", Kind: fwv1.BaselineKindILO,
					Firmware:  fwv1.FirmwareSource{URL: "https://fw.example.net/ilo5_265.bin", SHA256: goodSHA, Version: "2.65"},
					AppliesTo: fwv1.ComponentApplicability{TargetTypes: []fwv1.TargetType{fwv1.TargetTypeILO5}},
				},
				{
					Name: "ilo5", Kind: fwv1.BaselineKindILO,
					Firmware:      fwv1.FirmwareSource{URL: "https://fw.example.net/ilo5_278.bin", SHA256: goodSHA, Version: "2.78"},
					AppliesTo:     fwv1.ComponentApplicability{TargetTypes: []fwv1.TargetType{fwv1.TargetTypeILO5}},
					Prerequisites: []fwv1.ComponentPrerequisite{{Name: "ilo5-step", MinimumVersion: "2.65"}},
				},
				{
					Name: "rom-a43", Kind: fwv1.BaselineKindSystemROM,
					Firmware: fwv1.FirmwareSource{NodePath: "/var/lib/fw/A43_2.68.signed.bin", SHA256: goodSHA, Version: "2.68"},
					AppliesTo: fwv1.ComponentApplicability{
						TargetTypes: []fwv1.TargetType{fwv1.TargetTypeILO5},
						Models:      []string{"ProLiant DL325 Gen10 Plus"},
					},
				},
				{
					Name: "nic", Kind: fwv1.BaselineKindSmartComponent,
					Firmware: fwv1.FirmwareSource{
						PersistentVolumeClaim: &fwv1.PVCSource{ClaimName: "spp", Path: "nic.fwpkg"}, SHA256: goodSHA, Version: "08.60.12",
					},
					AppliesTo: fwv1.ComponentApplicability{
						TargetTypes: []fwv1.TargetType{fwv1.TargetTypeILO5, fwv1.TargetTypeILO6},
						Devices:     []string{"a6b1a447-382a-5a4f-3c10-86e0f9d2b1c4"},
					},
				},
			},
		},
	}
}

// component returns the baseline's component by name, for a mutation.
func component(b *fwv1.FirmwareBaseline, name string) *fwv1.BaselineComponent {
	for i := range b.Spec.Components {
		if b.Spec.Components[i].Name == name {
			return &b.Spec.Components[i]
		}
	}
	panic("no component " + name)
}

var _ = ginkgo.Describe("FirmwareBaseline validation", func() {
	var seq int
	name := func() string { seq++; return "baseline-" + strconv.Itoa(seq) }

	ginkgo.It("accepts a baseline with a prerequisite, models and Smart Component devices", func() {
		gomega.Expect(k8sClient.Create(ctx, validBaseline(name()))).To(gomega.Succeed())
	})

	ginkgo.It("accepts a baseline refreshed every 24 hours", func() {
		b := validBaseline(name())
		b.Spec.RefreshInterval = &metav1.Duration{Duration: 24 * time.Hour}
		gomega.Expect(k8sClient.Create(ctx, b)).To(gomega.Succeed())
	})

	ginkgo.DescribeTable("rejects a bad FirmwareBaseline, naming the field",
		func(mutate func(*fwv1.FirmwareBaseline), field string) {
			obj := validBaseline(name())
			mutate(obj)
			err := k8sClient.Create(ctx, obj)
			gomega.Expect(err).To(beInvalidOn(field))
			gomega.Expect(apierrors.IsNotFound(k8sClient.Get(ctx, client.ObjectKeyFromObject(obj), &fwv1.FirmwareBaseline{}))).To(gomega.BeTrue(), "a rejected object must not be stored")
		},
		ginkgo.Entry("no version", func(o *fwv1.FirmwareBaseline) { o.Spec.Version = "" }, "spec.version"),
		ginkgo.Entry("no components", func(o *fwv1.FirmwareBaseline) { o.Spec.Components = nil }, "spec.components"),
		ginkgo.Entry("a refresh every 10 minutes", func(o *fwv1.FirmwareBaseline) {
			o.Spec.RefreshInterval = &metav1.Duration{Duration: 10 * time.Minute}
		}, "spec.refreshInterval"),
		ginkgo.Entry("two components of one name", func(o *fwv1.FirmwareBaseline) {
			component(o, "ilo5").Prerequisites = nil
			component(o, "ilo5-step").Name = "ilo5"
		}, "spec.components[1]: Duplicate value"),
		ginkgo.Entry("a component name that is not a DNS label", func(o *fwv1.FirmwareBaseline) {
			component(o, "nic").Name = "NIC_firmware"
		}, "spec.components[3].name"),
		ginkgo.Entry("an unknown kind", func(o *fwv1.FirmwareBaseline) { component(o, "nic").Kind = "BIOS" }, "spec.components[3].kind"),
		ginkgo.Entry("no SHA-256", func(o *fwv1.FirmwareBaseline) { component(o, "ilo5").Firmware.SHA256 = "" }, "spec.components[1].firmware.sha256"),
		ginkgo.Entry("a SHA-256 of 63 hex characters", func(o *fwv1.FirmwareBaseline) {
			component(o, "ilo5").Firmware.SHA256 = goodSHA[:63]
		}, "spec.components[1].firmware.sha256"),
		ginkgo.Entry("no firmware version", func(o *fwv1.FirmwareBaseline) { component(o, "ilo5").Firmware.Version = "" }, "spec.components[1].firmware.version"),
		ginkgo.Entry("two sources", func(o *fwv1.FirmwareBaseline) {
			component(o, "ilo5").Firmware.NodePath = "/var/lib/fw/ilo5_278.bin"
		}, "spec.components[1].firmware"),
		ginkgo.Entry("no source", func(o *fwv1.FirmwareBaseline) { component(o, "ilo5").Firmware.URL = "" }, "spec.components[1].firmware"),
		ginkgo.Entry("an ftp URL", func(o *fwv1.FirmwareBaseline) {
			component(o, "ilo5").Firmware.URL = "ftp://fw.example.net/ilo5_278.bin"
		}, "spec.components[1].firmware.url"),
		ginkgo.Entry("a node path that climbs", func(o *fwv1.FirmwareBaseline) {
			component(o, "rom-a43").Firmware.NodePath = "/var/lib/fw/../../etc/shadow"
		}, "spec.components[2].firmware.nodePath"),
		ginkgo.Entry("no target types", func(o *fwv1.FirmwareBaseline) {
			component(o, "ilo5").AppliesTo.TargetTypes = nil
		}, "spec.components[1].appliesTo.targetTypes"),
		ginkgo.Entry("an unknown target type", func(o *fwv1.FirmwareBaseline) {
			component(o, "ilo5").AppliesTo.TargetTypes = []fwv1.TargetType{"iLO3"}
		}, "spec.components[1].appliesTo.targetTypes[0]"),
		ginkgo.Entry("an iLO image for a Linux host", func(o *fwv1.FirmwareBaseline) {
			component(o, "ilo5").AppliesTo.TargetTypes = []fwv1.TargetType{fwv1.TargetTypeLinux}
		}, "spec.components[1].appliesTo.targetTypes"),
		ginkgo.Entry("a system ROM for an OA", func(o *fwv1.FirmwareBaseline) {
			component(o, "rom-a43").AppliesTo.TargetTypes = []fwv1.TargetType{fwv1.TargetTypeOA}
		}, "spec.components[2].appliesTo.targetTypes"),
		ginkgo.Entry("a .fwpkg for an iLO 4, which has no repository", func(o *fwv1.FirmwareBaseline) {
			component(o, "nic").AppliesTo.TargetTypes = []fwv1.TargetType{fwv1.TargetTypeILO4}
		}, "spec.components[3].appliesTo.targetTypes"),
		ginkgo.Entry("an OA image for an iLO", func(o *fwv1.FirmwareBaseline) {
			c := component(o, "ilo5")
			c.Kind, c.Prerequisites = fwv1.BaselineKindOA, nil
		}, "spec.components[1].appliesTo.targetTypes"),
		ginkgo.Entry("a Linux Smart Component for an iLO", func(o *fwv1.FirmwareBaseline) {
			component(o, "rom-a43").Kind = fwv1.BaselineKindLinuxSmartComponent
		}, "spec.components[2].appliesTo.targetTypes"),
		ginkgo.Entry("a Smart Component without devices", func(o *fwv1.FirmwareBaseline) {
			component(o, "nic").AppliesTo.Devices = nil
		}, "spec.components[3].appliesTo.devices"),
		ginkgo.Entry("devices on an iLO image", func(o *fwv1.FirmwareBaseline) {
			component(o, "ilo5").AppliesTo.Devices = []string{"a6b1a447-382a-5a4f-3c10-86e0f9d2b1c4"}
		}, "spec.components[1].appliesTo.devices"),
		ginkgo.Entry("an empty model", func(o *fwv1.FirmwareBaseline) {
			component(o, "rom-a43").AppliesTo.Models = []string{""}
		}, "spec.components[2].appliesTo.models[0]"),
		ginkgo.Entry("a prerequisite that is not in the baseline", func(o *fwv1.FirmwareBaseline) {
			component(o, "ilo5").Prerequisites[0].Name = "ilo5-stepping"
		}, "spec.components: Invalid value: every prerequisite must name a component of this baseline"),
		ginkgo.Entry("a component that is its own prerequisite", func(o *fwv1.FirmwareBaseline) {
			component(o, "ilo5").Prerequisites[0].Name = "ilo5"
		}, "spec.components[1].prerequisites"),
		ginkgo.Entry("a prerequisite without a minimum version", func(o *fwv1.FirmwareBaseline) {
			component(o, "ilo5").Prerequisites[0].MinimumVersion = ""
		}, "spec.components[1].prerequisites[0].minimumVersion"),
	)
})
