package ilo

import (
	"bytes"
	"os"
	"path"
	"path/filepath"
	"testing"

	"github.com/fwops/firmware-operator/internal/simulator/fwimage"
	"github.com/fwops/firmware-operator/internal/simulator/fwpkg"
)

// FuzzOpenSmartPackage feeds the .fwpkg reader (a zip holding payload.json and the images it
// names) archives from an image source the agent does not control: it never panics, and a
// package it accepts names only images it holds.
func FuzzOpenSmartPackage(f *testing.F) {
	p := fwpkg.Payload{Name: "Test component", Version: "1.0", UpdatableBy: []string{fwpkg.Bmc}}
	im := fwpkg.Image{FileName: "image_1.0.bin", DirectFlashOk: fwpkg.Flag(true)}
	p.Devices.Device = []fwpkg.Device{{DeviceName: "test device", Target: "t", Version: "1.0", FirmwareImages: []fwpkg.Image{im}}}
	img := fwimage.BuildHeader(fwimage.Header{Component: "SmartComponent", Version: "1.0", Target: "Embedded Video Controller"}, []byte("payload"))
	good := fwpkg.Build(p, map[string][]byte{im.FileName: img, "image_1.0.compsig": []byte("signature")})
	f.Add(good)
	f.Add(fwpkg.Build(p, nil))                                                    // names an image it lacks
	f.Add(fwpkg.Build(fwpkg.Payload{Name: "empty"}, map[string][]byte{"x": {1}})) // no devices
	f.Add(good[:len(good)/2])                                                     // truncated
	f.Add([]byte("PK\x03\x04"))
	f.Add([]byte{})
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		file := filepath.Join(dir, "cp000001.fwpkg")
		if err := os.WriteFile(file, data, 0o600); err != nil {
			t.Fatal(err)
		}
		pkg, err := openSmartPackage(file, "")
		if err != nil {
			if pkg != nil {
				t.Fatalf("a package with error %v", err)
			}
			return
		}
		if len(pkg.payload.Devices.Device) == 0 {
			t.Fatal("accepted a package with no devices")
		}
		for _, d := range pkg.payload.Devices.Device {
			for _, im := range d.FirmwareImages {
				if _, ok := pkg.files[path.Base(im.FileName)]; !ok {
					t.Fatalf("accepted a package naming %q, which it does not hold", im.FileName)
				}
			}
		}
		if !bytes.Equal(pkg.data, data) {
			t.Fatal("the package's data differs from the file")
		}
	})
}
