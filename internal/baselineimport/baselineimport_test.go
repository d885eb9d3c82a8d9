package baselineimport_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
	"github.com/fwops/firmware-operator/internal/baselineimport"
	"github.com/fwops/firmware-operator/internal/simulator/fwimage"
	"github.com/fwops/firmware-operator/internal/simulator/fwpkg"
	"github.com/fwops/firmware-operator/internal/testutil/apiserver"
)

// Targets of the captured DL325's FirmwareInventory members (Oem.Hpe.Targets).
const (
	targetOCPNIC = "a6b1a447-382a-5a4f-1077-807010770073" // Marvell 2P 25GbE OCP3
	targetVideo  = "a6b1a447-382a-5a4f-102b-0538159000e4" // Embedded Video Controller
)

// writePackage writes a one-image .fwpkg built as HPE's are (internal/simulator/fwpkg).
func writePackage(t *testing.T, dir, file string, p fwpkg.Payload, direct bool) []byte {
	t.Helper()
	im := fwpkg.Image{FileName: strings.TrimSuffix(file, ".fwpkg") + ".bin", DirectFlashOk: fwpkg.Flag(direct), UefiFlashable: !direct}
	for i := range p.Devices.Device {
		p.Devices.Device[i].FirmwareImages = []fwpkg.Image{im}
	}
	b := fwpkg.Build(p, map[string][]byte{im.FileName: fwimage.Build("SmartComponent", p.Version, []byte("firmware"))})
	writeFile(t, dir, file, b)
	return b
}

func writeFile(t *testing.T, dir, file string, b []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, file), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func digest(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// sppFolder is an SPP-like folder: a NIC package the iLO flashes directly, a UEFI-flashed
// package for two devices, one only the host OS can install, an iLO, an OA and a system ROM
// image, and a file that is no firmware. It returns the files' contents by name.
func sppFolder(t *testing.T) (string, map[string][]byte) {
	dir := filepath.Join(t.TempDir(), "2026.09")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	nic := fwpkg.Payload{Name: "Marvell FastLinQ firmware", Version: "08.60.12", UpdatableBy: []string{fwpkg.Bmc}}
	nic.Devices.Device = []fwpkg.Device{{DeviceName: "Marvell 2P 25GbE OCP3", Target: targetOCPNIC, Version: "08.60.12"}}
	files["cp900100.fwpkg"] = writePackage(t, dir, "cp900100.fwpkg", nic, true)
	video := fwpkg.Payload{Name: "Video and OCP firmware", UpdatableBy: []string{fwpkg.Uefi}}
	video.Devices.Device = []fwpkg.Device{
		{DeviceName: "Embedded Video Controller", Target: targetVideo, Version: "2.6"},
		{DeviceName: "Marvell 2P 25GbE OCP3", Target: targetOCPNIC, Version: "2.6"},
	}
	files["cp900200.fwpkg"] = writePackage(t, dir, "cp900200.fwpkg", video, false)
	host := fwpkg.Payload{Name: "Drive firmware", Version: "HPD8", UpdatableBy: []string{fwpkg.Uefi, fwpkg.RuntimeAgent}}
	host.Devices.Device = []fwpkg.Device{{DeviceName: "SSD", Target: "a6b1a447-382a-5a4f-0000-000000000001", Version: "HPD8"}}
	writePackage(t, dir, "cp900300.fwpkg", host, false)
	for name, b := range map[string][]byte{
		"ilo5_278.bin":            fwimage.Build("iLO", "2.78", []byte("iLO 5")),
		"hpoa500.bin":             fwimage.Build("OA", "5.00", []byte("OA")),
		"A43_2.68_10_29_2021.bin": fwimage.Build("SystemROM", "2.68", []byte("ROM")),
	} {
		writeFile(t, dir, name, b)
		files[name] = b
	}
	writeFile(t, dir, "README.txt", []byte("not firmware"))
	return dir, files
}

func TestImportWritesABaselineTheAPIServerAccepts(t *testing.T) {
	dir, files := sppFolder(t)
	var stdout, stderr bytes.Buffer
	err := baselineimport.Run(context.Background(), []string{"import", "--url-prefix", "https://fw.example.net/spp/", dir}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("baseline import: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "left out cp900300.fwpkg: UpdatableBy Uefi, RuntimeAgent") {
		t.Errorf("stderr should say the host-OS-only package is left out and why, got %q", stderr.String())
	}

	var b fwv1.FirmwareBaseline
	if err := yaml.UnmarshalStrict(stdout.Bytes(), &b); err != nil {
		t.Fatalf("output is not a FirmwareBaseline: %v\n%s", err, stdout.String())
	}
	if b.Name != "2026.09" || b.Spec.Version != "2026.09" || b.Kind != "FirmwareBaseline" || b.APIVersion != fwv1.GroupVersion.String() {
		t.Errorf("header: kind %q apiVersion %q name %q version %q", b.Kind, b.APIVersion, b.Name, b.Spec.Version)
	}
	type want struct {
		name, kind, version string
		types               []fwv1.TargetType
		devices             []string
	}
	wants := map[string]want{
		"A43_2.68_10_29_2021.bin": {"a43-2-68-10-29-2021", "SystemROM", "2.68", []fwv1.TargetType{"iLO4", "iLO5", "iLO6"}, nil},
		"cp900100.fwpkg":          {"cp900100", "SmartComponent", "08.60.12", []fwv1.TargetType{"iLO5", "iLO6"}, []string{targetOCPNIC}},
		// No package Version: the first device's.
		"cp900200.fwpkg": {"cp900200", "SmartComponent", "2.6", []fwv1.TargetType{"iLO5", "iLO6"}, []string{targetVideo, targetOCPNIC}},
		"hpoa500.bin":    {"hpoa500", "OA", "5.00", []fwv1.TargetType{"OA"}, nil},
		"ilo5_278.bin":   {"ilo5-278", "iLO", "2.78", []fwv1.TargetType{"iLO5"}, nil},
	}
	if len(b.Spec.Components) != len(wants) {
		t.Fatalf("%d components, want %d:\n%s", len(b.Spec.Components), len(wants), stdout.String())
	}
	for _, c := range b.Spec.Components {
		file := strings.TrimPrefix(c.Firmware.URL, "https://fw.example.net/spp/")
		w, ok := wants[file]
		if !ok {
			t.Errorf("component %s: unexpected URL %q", c.Name, c.Firmware.URL)
			continue
		}
		if c.Name != w.name || string(c.Kind) != w.kind || c.Firmware.Version != w.version {
			t.Errorf("%s: name %q kind %q version %q, want %q %q %q", file, c.Name, c.Kind, c.Firmware.Version, w.name, w.kind, w.version)
		}
		if c.Firmware.SHA256 != digest(files[file]) {
			t.Errorf("%s: sha256 %s, want %s", file, c.Firmware.SHA256, digest(files[file]))
		}
		if !equal(c.AppliesTo.TargetTypes, w.types) || !equal(c.AppliesTo.Devices, w.devices) {
			t.Errorf("%s: appliesTo %+v, want types %v devices %v", file, c.AppliesTo, w.types, w.devices)
		}
	}

	_, c := apiserver.StartForTest(t)
	// The output as written, not as our types read it: unknown fields would be refused.
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal(stdout.Bytes(), &u.Object); err != nil {
		t.Fatal(err)
	}
	u.SetNamespace("default")
	if err := c.Create(context.Background(), u, client.FieldValidation("Strict")); err != nil {
		t.Fatalf("the API server refuses the imported baseline: %v\n%s", err, stdout.String())
	}
}

func equal[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestImportNodePaths(t *testing.T) {
	dir, _ := sppFolder(t)
	b, _, err := baselineimport.Import(dir, baselineimport.Options{Name: "b", Version: "1", NodePathPrefix: "/var/lib/fwops/spp"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range b.Spec.Components {
		if c.Firmware.URL != "" || !strings.HasPrefix(c.Firmware.NodePath, "/var/lib/fwops/spp/") {
			t.Errorf("%s: url %q nodePath %q, want only a node path under the prefix", c.Name, c.Firmware.URL, c.Firmware.NodePath)
		}
	}
}

func TestImportErrorsNameTheFile(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		data       []byte
		opts       baselineimport.Options
		want       string
	}{
		{name: "a .bin named otherwise than HPE does", file: "firmware.bin", data: []byte("x"),
			opts: baselineimport.Options{URLPrefix: "https://fw.example.net/"}, want: "firmware.bin: a .bin carries no readable version"},
		{name: "a .fwpkg without payload.json", file: "broken.fwpkg", data: []byte("not a zip"),
			opts: baselineimport.Options{URLPrefix: "https://fw.example.net/"}, want: "broken.fwpkg is not a readable .fwpkg"},
		{name: "no source prefix", file: "ilo5_278.bin", data: []byte("x"),
			want: "give exactly one of --url-prefix and --node-path-prefix"},
		{name: "an ftp prefix", file: "ilo5_278.bin", data: []byte("x"),
			opts: baselineimport.Options{URLPrefix: "ftp://fw.example.net/"}, want: `--url-prefix "ftp://fw.example.net/" is not an absolute http or https URL`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFile(t, dir, tc.file, tc.data)
			_, _, err := baselineimport.Import(dir, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}
