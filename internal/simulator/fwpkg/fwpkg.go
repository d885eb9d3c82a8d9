// Package fwpkg builds and reads HPE Smart Components in the .fwpkg format, for the iLO
// simulator and for tests: a zip holding payload.json and the firmware image(s) it names.
//
// The format is read from HPE's own client, ilorest (FwpkgCommand.py, installed by the Debian
// package): it opens the zip, reads payload.json, routes the package on "UpdatableBy" and on
// each "Devices"."Device"[]."FirmwareImages"[] entry's "DirectFlashOk", "ResetRequired" and
// "UefiFlashable", and uploads the images named by "FileName". "Devices"."Device"[]."Target" is
// the GUID that iLO's FirmwareInventory members list in Oem.Hpe.Targets. The descriptive fields
// ("PackageFormat", "Name", "Version", "DeviceClass", a device's "DeviceName" and "Version")
// are those HPE's packages carry; ilorest does not read them.
//
// It deliberately shares nothing with the agent's reader (internal/agent/ilo): a mistake shared
// by both would pass unseen. ilorest, which reads the packages this package builds, judges both.
package fwpkg

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
)

// PayloadFile is the name of the package's description inside the zip.
const PayloadFile = "payload.json"

// UpdatableBy values as HPE writes them.
const (
	Bmc          = "Bmc"
	Uefi         = "Uefi"
	RuntimeAgent = "RuntimeAgent"
)

// Image is one firmware image of a device.
type Image struct {
	FileName string `json:"FileName"`
	// DirectFlashOk is a pointer because ilorest refuses ("Cannot flash this firmware.") an
	// image that lacks the key; Build always writes it.
	DirectFlashOk *bool `json:"DirectFlashOk,omitempty"`
	ResetRequired bool  `json:"ResetRequired"`
	UefiFlashable bool  `json:"UefiFlashable"`
}

// Device is one device the package updates.
type Device struct {
	DeviceName     string  `json:"DeviceName,omitempty"`
	Target         string  `json:"Target"`
	Version        string  `json:"Version,omitempty"`
	FirmwareImages []Image `json:"FirmwareImages"`
}

// Payload is payload.json.
type Payload struct {
	PackageFormat string   `json:"PackageFormat,omitempty"`
	Name          string   `json:"Name,omitempty"`
	Version       string   `json:"Version,omitempty"`
	DeviceClass   string   `json:"DeviceClass,omitempty"`
	UpdatableBy   []string `json:"UpdatableBy"`
	Devices       struct {
		Device []Device `json:"Device"`
	} `json:"Devices"`
}

// Package is an opened .fwpkg: its payload and its files by name.
type Package struct {
	Payload Payload
	Files   map[string][]byte
}

// ErrNotFwpkg is returned by Open for data that is not a zip with a payload.json.
var ErrNotFwpkg = errors.New("not a .fwpkg (no zip with a payload.json)")

// maxFile bounds one extracted file.
const maxFile = 512 << 20

// Open reads a .fwpkg. It returns ErrNotFwpkg (wrapped) when b is not a zip holding a
// payload.json, and another error when the payload is malformed or names a missing image.
func Open(b []byte) (*Package, error) {
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotFwpkg, err)
	}
	p := &Package{Files: map[string][]byte{}}
	for _, f := range zr.File {
		if f.FileInfo().IsDir() {
			continue
		}
		rc, err := f.Open()
		if err != nil {
			return nil, fmt.Errorf("fwpkg: %s: %w", f.Name, err)
		}
		data, err := io.ReadAll(io.LimitReader(rc, maxFile+1))
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("fwpkg: %s: %w", f.Name, err)
		}
		if len(data) > maxFile {
			return nil, fmt.Errorf("fwpkg: %s is larger than %d bytes", f.Name, maxFile)
		}
		p.Files[f.Name] = data
	}
	raw, ok := p.Files[PayloadFile]
	if !ok {
		return nil, ErrNotFwpkg
	}
	if err := json.Unmarshal(raw, &p.Payload); err != nil {
		return nil, fmt.Errorf("fwpkg: payload.json: %w", err)
	}
	if len(p.Payload.Devices.Device) == 0 {
		return nil, errors.New("fwpkg: payload.json lists no Devices.Device")
	}
	for _, d := range p.Payload.Devices.Device {
		for _, im := range d.FirmwareImages {
			if _, ok := p.Files[im.FileName]; !ok {
				return nil, fmt.Errorf("fwpkg: payload.json names %q, which the package does not hold", im.FileName)
			}
		}
	}
	return p, nil
}

// Has reports whether the payload's UpdatableBy lists who.
func (p Payload) Has(who string) bool {
	for _, u := range p.UpdatableBy {
		if u == who {
			return true
		}
	}
	return false
}

// Targets lists the devices' Target GUIDs.
func (p Payload) Targets() []string {
	var out []string
	for _, d := range p.Devices.Device {
		if d.Target != "" {
			out = append(out, d.Target)
		}
	}
	return out
}

// Flag is a helper for Image.DirectFlashOk.
func Flag(b bool) *bool { return &b }

// Build writes a .fwpkg holding payload.json (from p), the images in files and any other
// files given (a .compsig, say). Image files must be in files.
func Build(p Payload, files map[string][]byte) []byte {
	if p.PackageFormat == "" {
		p.PackageFormat = "FWPKG-v2"
	}
	for i := range p.Devices.Device {
		for j := range p.Devices.Device[i].FirmwareImages {
			im := &p.Devices.Device[i].FirmwareImages[j]
			if im.DirectFlashOk == nil {
				im.DirectFlashOk = Flag(false)
			}
		}
	}
	payload, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		panic(err) // plain structs always marshal
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	write := func(name string, data []byte) {
		w, err := zw.Create(name)
		if err == nil {
			_, err = w.Write(data)
		}
		if err != nil {
			panic(err) // writes to a bytes.Buffer do not fail
		}
	}
	write(PayloadFile, payload)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		write(n, files[n])
	}
	if err := zw.Close(); err != nil {
		panic(err)
	}
	return buf.Bytes()
}
