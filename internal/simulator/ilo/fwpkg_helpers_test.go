package ilo

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/fwops/firmware-operator/internal/simulator/fwimage"
	"github.com/fwops/firmware-operator/internal/simulator/fwpkg"
)

// Targets of the captured DL325's FirmwareInventory members (Oem.Hpe.Targets).
const (
	targetVideo  = "a6b1a447-382a-5a4f-102b-0538159000e4" // 12: Embedded Video Controller 2.5
	targetOCPNIC = "a6b1a447-382a-5a4f-1077-807010770073" // 11: Marvell 2P 25GbE OCP3 08.50.78
	targetROM    = "00000000-0000-0000-0000-000001413433" // 2: System ROM A43 v2.52
	targetAbsent = "a6b1a447-382a-5a4f-14e4-16d714e40000" // no member of this server
)

// The three kinds of package ilorest's flashfwpkg tells apart (FwpkgCommand._get_comp_type).
type pkgKind int

const (
	kindDirect      pkgKind = iota // type A: DirectFlashOk
	kindDirectReset                // type B: DirectFlashOk and ResetRequired
	kindUefi                       // type C: UefiFlashable only, through the task queue
)

// testPackage builds a one-device .fwpkg whose image is a simulator image of version.
func testPackage(kind pkgKind, target, version string) []byte {
	p := fwpkg.Payload{Name: "Test component", Version: version, UpdatableBy: []string{fwpkg.Bmc}}
	img := fwpkg.Image{DirectFlashOk: fwpkg.Flag(true)}
	var h fwimage.Header
	switch kind {
	case kindDirect:
		img.FileName = "video_" + version + ".bin"
		h = fwimage.Header{Component: "SmartComponent", Version: version, Target: "Embedded Video Controller"}
	case kindDirectReset:
		img.FileName = "A43_" + version + ".signed.flash"
		img.ResetRequired, img.UefiFlashable = true, true
		h = fwimage.Header{Component: "SystemROM", Version: version}
	case kindUefi:
		p.UpdatableBy = []string{fwpkg.Uefi}
		img.FileName = "nic_" + version + ".bin"
		img.DirectFlashOk, img.UefiFlashable = fwpkg.Flag(false), true
		h = fwimage.Header{Component: "SmartComponent", Version: version, Target: "Marvell 2P 25GbE SFP28 QL41232HQCU-HC OCP3 Adapter"}
	}
	p.Devices.Device = []fwpkg.Device{{DeviceName: "test device", Target: target, Version: version, FirmwareImages: []fwpkg.Image{img}}}
	return fwpkg.Build(p, map[string][]byte{img.FileName: fwimage.BuildHeader(h, []byte("payload"))})
}

// writeFile writes b into dir and returns the path.
func writeFile(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
