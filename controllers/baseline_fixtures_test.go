package controllers_test

import (
	"strings"

	"github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
)

// baselineComponent is a component of kind at version for targetTypes, read from source: a
// node path when it starts with "/", else a URL. Its digest is testSHA: no agent fetches it
// in these specs.
func baselineComponent(name string, kind fwv1.BaselineComponentKind, source, version string, targetTypes ...fwv1.TargetType) fwv1.BaselineComponent {
	fw := fwv1.FirmwareSource{URL: source, SHA256: testSHA, Version: version}
	if strings.HasPrefix(source, "/") {
		fw.URL, fw.NodePath = "", source
	}
	return fwv1.BaselineComponent{Name: name, Kind: kind, Firmware: fw,
		AppliesTo: fwv1.ComponentApplicability{TargetTypes: targetTypes}}
}

// ilo5Component is iLO 5 firmware at version, named ilo5, from a URL that names the version.
func ilo5Component(version string) fwv1.BaselineComponent {
	return baselineComponent("ilo5", fwv1.BaselineKindILO, "https://fw.example.net/ilo5_"+strings.ReplaceAll(version, ".", "")+".bin",
		version, fwv1.TargetTypeILO5)
}

// forModels binds c to the server models, as the inventory names them.
func forModels(c fwv1.BaselineComponent, models ...string) fwv1.BaselineComponent {
	c.AppliesTo.Models = models
	return c
}

// newBaseline is FirmwareBaseline name at version in ns, with components, not yet created.
func newBaseline(ns, name, version string, components ...fwv1.BaselineComponent) *fwv1.FirmwareBaseline {
	return &fwv1.FirmwareBaseline{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: fwv1.FirmwareBaselineSpec{Version: version, Components: components}}
}

// createBaseline creates newBaseline(ns, name, version, components...).
func createBaseline(ns, name, version string, components ...fwv1.BaselineComponent) *fwv1.FirmwareBaseline {
	b := newBaseline(ns, name, version, components...)
	gomega.Expect(k8sClient.Create(suiteCtx, b)).To(gomega.Succeed())
	return b
}
