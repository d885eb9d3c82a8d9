package runner

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
	"github.com/fwops/firmware-operator/internal/agent/config"
	"github.com/fwops/firmware-operator/internal/agent/driver"
)

// baselineFixture makes the fixture's agent roll out baseline b (written to the fake API)
// instead of its one image: t0 is an iLO 5, t1 an iLO 6.
func baselineFixture(t *testing.T, b *fwv1.FirmwareBaseline) *fixture {
	t.Helper()
	f := newFixture(t, 2, driver.FakeBehavior{Version: "1.0"})
	f.cfg.Targets[1].Type = "iLO6"
	b.Namespace, b.Generation = testNS, 1
	if err := f.c.Create(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	f.cfg.Firmware = config.Firmware{Component: "iLO"}
	f.cfg.Baseline, f.cfg.BaselineGeneration = b.Name, b.Generation
	return f
}

// stagedComponent is a baseline component whose image is the fixture's staged file.
func stagedComponent(name string, typ fwv1.TargetType, sha string) fwv1.BaselineComponent {
	return fwv1.BaselineComponent{Name: name, Kind: fwv1.BaselineKindILO,
		Firmware:  fwv1.FirmwareSource{NodePath: "/var/lib/firmware/" + name + ".bin", SHA256: sha, Version: "2.0"},
		AppliesTo: fwv1.ComponentApplicability{TargetTypes: []fwv1.TargetType{typ}}}
}

// TestBaselineBadDigestFailsOnlyTheTargetsThatNeedIt: a component whose file does not hash
// to its sha256 fails the targets whose plan installs it, naming the component's field, and
// flashes nothing there; the others are installed. A component no plan needs is never read.
func TestBaselineBadDigestFailsOnlyTheTargetsThatNeedIt(t *testing.T) {
	b := &fwv1.FirmwareBaseline{ObjectMeta: metav1.ObjectMeta{Name: "spp"}, Spec: fwv1.FirmwareBaselineSpec{Version: "2026.09"}}
	f := baselineFixture(t, b)
	staged, err := os.ReadFile(filepath.Join(f.cfg.MountRoot, config.StagedDir, "fw.bin"))
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.Repeat("ab", 32)
	cur := &fwv1.FirmwareBaseline{}
	if err := f.c.Get(context.Background(), client.ObjectKeyFromObject(b), cur); err != nil {
		t.Fatal(err)
	}
	sum := digest(staged)
	cur.Spec.Components = []fwv1.BaselineComponent{
		stagedComponent("ilo5", fwv1.TargetTypeILO5, bad),
		stagedComponent("ilo6", fwv1.TargetTypeILO6, sum),
		stagedComponent("ilo4", fwv1.TargetTypeILO4, sum), // no iLO 4 here: never read
	}
	if err := f.c.Update(context.Background(), cur); err != nil {
		t.Fatal(err)
	}
	f.cfg.BaselineGeneration = cur.Generation
	for _, c := range cur.Spec.Components[:2] {
		writeFile(t, f.cfg.ComponentPath(c.Name, c.Firmware), staged)
	}
	// ilo4's file is absent: reading it would fail loudly.

	err = f.run(t, nil)
	if err == nil || !strings.Contains(err.Error(), "t0") || strings.Contains(err.Error(), "t1") {
		t.Fatalf("Run = %v, want an error naming t0 only", err)
	}
	s0 := f.tu(t, "t0").Status
	if s0.Phase != fwv1.TargetPhaseFailed || !strings.Contains(s0.Message, "component ilo5's firmware.sha256") || !strings.Contains(s0.Message, bad) {
		t.Errorf("t0: %s %q; want Failed naming component ilo5's firmware.sha256 %s", s0.Phase, s0.Message, bad)
	}
	if len(s0.Components) != 1 || s0.Components[0].Phase != fwv1.TargetPhaseFailed {
		t.Errorf("t0 components %+v; want ilo5 Failed", s0.Components)
	}
	s1 := f.tu(t, "t1").Status
	if s1.Phase != fwv1.TargetPhaseSucceeded || s1.ComponentsProgress != "1/1" {
		t.Errorf("t1: %s %s %q; want Succeeded 1/1", s1.Phase, s1.ComponentsProgress, s1.Message)
	}
	if f.fake.Flashes("t0") != 0 || f.fake.Flashes("t1") != 1 {
		t.Errorf("flashes t0=%d t1=%d; want 0 and 1", f.fake.Flashes("t0"), f.fake.Flashes("t1"))
	}
	if logs := f.logs.String(); strings.Contains(logs, "ilo4.bin") {
		t.Errorf("the agent read ilo4's image, which no plan needs:\n%s", logs)
	}
}

// TestBaselineChangedGenerationFlashesNothing: an agent given another generation than the
// baseline's refuses it for every target.
func TestBaselineChangedGenerationFlashesNothing(t *testing.T) {
	f := baselineFixture(t, &fwv1.FirmwareBaseline{ObjectMeta: metav1.ObjectMeta{Name: "spp"}, Spec: fwv1.FirmwareBaselineSpec{Version: "2026.09",
		Components: []fwv1.BaselineComponent{{Name: "ilo5", Kind: fwv1.BaselineKindILO,
			Firmware:  fwv1.FirmwareSource{URL: "http://127.0.0.1:1/ilo5.bin", SHA256: strings.Repeat("ab", 32), Version: "2.0"},
			AppliesTo: fwv1.ComponentApplicability{TargetTypes: []fwv1.TargetType{fwv1.TargetTypeILO5}}}}}})
	f.cfg.BaselineGeneration = 7
	if err := f.run(t, nil); err == nil {
		t.Fatal("Run succeeded with another generation of the baseline")
	}
	for _, n := range []string{"t0", "t1"} {
		if s := f.tu(t, n).Status; s.Phase != fwv1.TargetPhaseFailed || !strings.Contains(s.Message, "checked 7") {
			t.Errorf("%s: %s %q", n, s.Phase, s.Message)
		}
	}
	if f.fake.TotalFlashes() != 0 {
		t.Error("flashed with a baseline the controller did not check")
	}
}
