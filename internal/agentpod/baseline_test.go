package agentpod

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
	"github.com/fwops/firmware-operator/internal/agent/config"
)

// TestBuildBaselineJob: a baseline job's agent is told which FirmwareBaseline (and which
// generation of it) to read, and gets each component's nodePath or claim source as its one
// file, read-only, under the component's name; url components need no mount.
func TestBuildBaselineJob(t *testing.T) {
	j := job()
	j.Spec.Firmware, j.Spec.BaselineRef = nil, &fwv1.BaselineReference{Name: "spp-2026-09"}
	b := &fwv1.FirmwareBaseline{ObjectMeta: metav1.ObjectMeta{Name: "spp-2026-09", Namespace: "fleet", Generation: 4},
		Spec: fwv1.FirmwareBaselineSpec{Version: "2026.09", Components: []fwv1.BaselineComponent{
			{Name: "ilo5", Kind: fwv1.BaselineKindILO, Firmware: fwv1.FirmwareSource{URL: "https://fw.example.net/ilo5.bin", SHA256: sha, Version: "3.10"}},
			{Name: "rom-a55", Kind: fwv1.BaselineKindSystemROM, Firmware: fwv1.FirmwareSource{NodePath: "/var/lib/firmware/a55.fwpkg", SHA256: sha, Version: "3.40"}},
			{Name: "nic", Kind: fwv1.BaselineKindSmartComponent, Firmware: fwv1.FirmwareSource{
				PersistentVolumeClaim: &fwv1.PVCSource{ClaimName: "spp", Path: "2026.09/nic.fwpkg"}, SHA256: sha, Version: "08.60.12"}},
		}}}
	pod := Build(Input{Job: j, Policy: policy(), Baseline: b, Node: "n", Image: "i", Targets: targets()[:1], Ports: assignment(t, false)})
	cfg, err := config.Parse(pod.Spec.Containers[0].Args[1:])
	if err != nil {
		t.Fatalf("the pod's arguments do not parse: %v", err)
	}
	if cfg.Baseline != "spp-2026-09" || cfg.BaselineGeneration != 4 || cfg.Firmware.SHA256 != "" || cfg.Firmware.URL != "" {
		t.Errorf("baseline %q generation %d, firmware %+v", cfg.Baseline, cfg.BaselineGeneration, cfg.Firmware)
	}
	if cfg.InventoryOnly {
		t.Errorf("a rollout's agent told --inventory-only")
	}
	j.Spec.InventoryOnly = true
	read, err := config.Parse(Build(Input{Job: j, Policy: policy(), Baseline: b, Node: "n", Image: "i", Targets: targets()[:1], Ports: assignment(t, false)}).Spec.Containers[0].Args[1:])
	if err != nil || !read.InventoryOnly {
		t.Errorf("a read-only job's agent: inventoryOnly %v, %v; want told --inventory-only", read.InventoryOnly, err)
	}
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range pod.Spec.Containers[0].VolumeMounts {
		mounts[m.MountPath] = m
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Spec.Volumes {
		volumes[v.Name] = v
	}
	node, ok := mounts[config.StagedDir+"/rom-a55/a55.fwpkg"]
	if !ok || !node.ReadOnly || volumes[node.Name].HostPath == nil || volumes[node.Name].HostPath.Path != "/var/lib/firmware/a55.fwpkg" ||
		*volumes[node.Name].HostPath.Type != corev1.HostPathFile {
		t.Errorf("rom-a55's node path: mount %+v volume %+v", node, volumes[node.Name])
	}
	claim, ok := mounts[config.PVCDir+"/nic/nic.fwpkg"]
	if !ok || !claim.ReadOnly || claim.SubPath != "2026.09/nic.fwpkg" || volumes[claim.Name].PersistentVolumeClaim == nil ||
		volumes[claim.Name].PersistentVolumeClaim.ClaimName != "spp" || !volumes[claim.Name].PersistentVolumeClaim.ReadOnly {
		t.Errorf("nic's claim: mount %+v volume %+v", claim, volumes[claim.Name])
	}
	if _, ok := volumes["firmware-source"]; ok {
		t.Errorf("a baseline job has no spec.firmware source to mount")
	}
	for path := range mounts {
		if path == config.StagedDir+"/ilo5" || path == config.PVCDir+"/ilo5" {
			t.Errorf("a url component got a mount: %s", path)
		}
	}
}
