package ilo

import (
	"context"
	"fmt"
	"strings"

	"github.com/fwops/firmware-operator/internal/agent/driver"
	"github.com/fwops/firmware-operator/internal/fwversion"
)

// A system ROM flashed through the iLO runs only after the server reboots: the flash writes the
// backup side of the redundant ROM, which the inventory lists as "Redundant System ROM"
// (SystemRomBackup), while "System ROM" (SystemRomActive) keeps the running version until the
// next POST. See docs/hardware.md for the sources.

// stagedROM reads the redundant system ROM's version ("" when the inventory has none).
func (d *Driver) stagedROM(ctx context.Context) (string, error) {
	inv, err := d.c.FirmwareInventory(ctx)
	if err != nil {
		return "", err
	}
	for _, e := range inv {
		if e.Description == "SystemRomBackup" || strings.EqualFold(e.Name, "Redundant System ROM") {
			return NormalizeVersion(e.Version), nil
		}
	}
	return "", nil
}

// verifyROM waits, after a system ROM flash, for the new ROM either to run (someone rebooted the
// server) or to be staged on the redundant side; a staged ROM ends as finishStagedROM says.
func (d *Driver) verifyROM(ctx context.Context, fw driver.Firmware, res driver.Result, stagedBefore string, report func(driver.Progress)) (driver.Result, error) {
	want := NormalizeVersion(fw.Version)
	var running, staged string
	var activated bool
	err := d.pollReads(ctx, d.opts.VerifyTimeout, func(ctx context.Context) (bool, error) {
		raw, err := d.rawVersion(ctx, driver.ComponentSystemROM, "")
		if err != nil {
			return false, err
		}
		if staged, err = d.stagedROM(ctx); err != nil {
			return false, err
		}
		running = NormalizeVersion(raw)
		if want != "" {
			activated = fwversion.Same(running, want)
			return activated || fwversion.Same(staged, want), nil
		}
		activated = running != "" && !fwversion.Same(running, res.VersionBefore)
		return activated || staged != "" && staged != stagedBefore, nil
	})
	if err != nil {
		res.VersionAfter = running
		return res, d.unverified(fw, running, err)
	}
	if activated {
		res.VersionAfter = running
		res.Message = fmt.Sprintf("%s updated from %s to %s", fw.Component, orNone(res.VersionBefore), running)
		return res, nil
	}
	return d.finishStagedROM(ctx, fw, res, staged, "flashed", report)
}

// finishStagedROM ends a system ROM that is staged and not running: Succeeded with
// RebootRequired, or, when the job allows it, after a graceful reboot and POST.
func (d *Driver) finishStagedROM(ctx context.Context, fw driver.Firmware, res driver.Result, staged, how string, report func(driver.Progress)) (driver.Result, error) {
	res.VersionAfter, res.RebootRequired = staged, true
	res.Message = fmt.Sprintf("System ROM %s is %s and staged (the Redundant System ROM); it activates at the next reboot of the server, which runs %s until then",
		staged, how, orNone(res.VersionBefore))
	var running string
	rebooted, why, err := d.rebootToActivate(ctx, fw, "System ROM "+staged, func(ctx context.Context) (bool, string, error) {
		raw, err := d.rawVersion(ctx, driver.ComponentSystemROM, "")
		running = NormalizeVersion(raw)
		return err == nil && fwversion.Same(running, staged), "runs " + orNone(running), err
	}, report)
	if err != nil || !rebooted {
		if why != "" {
			res.Message += ". " + why
		}
		return res, err
	}
	res.VersionAfter, res.RebootRequired = running, false
	res.Message = fmt.Sprintf("System ROM updated from %s to %s: the server was rebooted gracefully (rollout.reboot: IfRequired) and runs it after POST",
		orNone(res.VersionBefore), running)
	return res, nil
}
