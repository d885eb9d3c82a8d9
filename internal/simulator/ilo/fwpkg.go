package ilo

// Smart Components in the .fwpkg format (see package fwpkg for the format and its sources):
// what the iLO checks before it flashes one itself, and what a flash changes in the inventory.
// A package applies to the inventory members whose Oem.Hpe.Targets list one of its
// Devices.Device[].Target GUIDs (ilorest matches them the same way).

import (
	"bytes"
	"errors"
	"strings"

	"github.com/fwops/firmware-operator/internal/simulator/fwimage"
	"github.com/fwops/firmware-operator/internal/simulator/fwpkg"
)

// Refusals of a package. HPE's documents do not list the ids a real iLO gives; the simulator
// names them in HPE's style.
const (
	MsgNotBmcUpdatable = "iLO.2.14.ComponentNotUpdatableByBmc"
	MsgNotApplicable   = "iLO.2.14.ComponentNotApplicable"
)

// verifyPackage checks a file the iLO is asked to flash itself. It returns a nil package for a
// file that is not a .fwpkg, and a MessageId with its reason when the iLO refuses the package.
func (s *Sim) verifyPackage(img []byte) (pkg *fwpkg.Package, msgID, why string) {
	pkg, err := fwpkg.Open(img)
	switch {
	case errors.Is(err, fwpkg.ErrNotFwpkg):
		return nil, "", ""
	case err != nil:
		return nil, MsgInvalidImage, err.Error()
	}
	if !pkg.Payload.Has(fwpkg.Bmc) {
		return nil, MsgNotBmcUpdatable, "UpdatableBy " + strings.Join(pkg.Payload.UpdatableBy, ",") +
			": the iLO cannot apply this component itself; queue it in the UpdateTaskQueue"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	matched := 0
	for _, d := range pkg.Payload.Devices.Device {
		if len(s.devicesFor(d.Target)) == 0 {
			continue
		}
		matched++
		for _, im := range d.FirmwareImages {
			if im.DirectFlashOk == nil || !*im.DirectFlashOk {
				return nil, MsgNotBmcUpdatable, im.FileName + " cannot be flashed directly (DirectFlashOk false)"
			}
		}
	}
	if matched == 0 {
		return nil, MsgNotApplicable, "no device of this server matches the package's targets " + strings.Join(pkg.Payload.Targets(), ",")
	}
	return pkg, "", ""
}

// devicesFor lists the paths of the inventory members whose Oem.Hpe.Targets hold target.
// Callers hold s.mu.
func (s *Sim) devicesFor(target string) []string {
	var out []string
	if target == "" {
		return nil
	}
	for _, p := range s.tree.inventory() {
		for _, t := range anyList(field(s.tree.get(p), "Oem", "Hpe")["Targets"]) {
			if strings.EqualFold(str(t), target) {
				out = append(out, p)
				break
			}
		}
	}
	return out
}

// installPackageLocked records what a direct (Bmc) flash of pkg changes. It returns the iLO
// firmware version the package flashed, if any: the iLO runs it only after its reset.
func (s *Sim) installPackageLocked(pkg *fwpkg.Package) (iloVersion string) {
	_, iloVersion = s.applyPackageLocked(pkg, false)
	return iloVersion
}

// applyPackageLocked applies pkg's images to the devices they target: the directly flashable
// ones, or with uefi the ones the system ROM applies at POST. It returns how many devices it
// updated and the new iLO version, when the package holds the iLO's own firmware.
func (s *Sim) applyPackageLocked(pkg *fwpkg.Package, uefi bool) (n int, iloVersion string) {
	for _, d := range pkg.Payload.Devices.Device {
		entries := s.devicesFor(d.Target)
		for _, im := range d.FirmwareImages {
			if uefi && !im.UefiFlashable || !uefi && (im.DirectFlashOk == nil || !*im.DirectFlashOk) {
				continue
			}
			version := d.Version
			if h, err := fwimage.Parse(bytes.NewReader(pkg.Files[im.FileName])); err == nil {
				version = h.Version
			}
			if version == "" {
				continue
			}
			for _, e := range entries {
				if s.setDeviceVersionLocked(e, version, im.ResetRequired && !uefi) {
					iloVersion = version
				}
				n++
			}
		}
	}
	return n, iloVersion
}

// setDeviceVersionLocked writes a flashed version where clients read it: the system ROM through
// applyVersion (staged until the next POST); another device at once, or at the next POST when
// its image needs a reset. It writes nothing for the iLO itself and says so: the iLO's new
// firmware runs after its reset.
func (s *Sim) setDeviceVersionLocked(p, version string, atPOST bool) (isILO bool) {
	is := func(component string) bool {
		c := s.tree.inventoryEntry(component, "")
		return c != "" && key(c) == key(p)
	}
	switch {
	case is("iLO"):
		return true
	case is("SystemROM"):
		s.applyVersion("SystemROM", version, "")
	case atPOST:
		s.repo.pendingAtPOST[p] = version
	default:
		s.tree.edit(p)["Version"] = version
	}
	return false
}

// activatePendingLocked applies, at POST, the versions of images that needed a reset.
func (s *Sim) activatePendingLocked() {
	for p, v := range s.repo.pendingAtPOST {
		if e := s.tree.edit(p); e != nil {
			e["Version"] = v
		}
		delete(s.repo.pendingAtPOST, p)
	}
}
