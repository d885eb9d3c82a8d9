package ilo

import (
	"context"
	"fmt"
	"slices"

	"github.com/fwops/firmware-operator/internal/agent/driver"
	"github.com/fwops/firmware-operator/internal/agent/redfish"
	"github.com/fwops/firmware-operator/internal/fwversion"
)

// A Smart Component that activates at the next reboot (queued for UEFI, or flashed with
// ResetRequired) ends staged, Succeeded with RebootRequired; with rollout.reboot: IfRequired the
// driver reboots the server inside the job's window (rebootToActivate), and judges after POST.

// applyQueuedByReboot follows a package queued for UEFI (res as queueForUEFI left it) through
// the reboot the job allows: the system ROM runs the task during POST; then the task is removed,
// and the component unless the job keeps it (resumeQueued), and the inventory decides.
func (d *Driver) applyQueuedByReboot(ctx context.Context, fw driver.Firmware, pkg *smartPackage, want, where string, res driver.Result,
	report func(driver.Progress)) (driver.Result, error) {
	name := pkg.queueName()
	rebooted, why, err := d.rebootToActivate(ctx, fw, pkg.file, func(ctx context.Context) (bool, string, error) {
		tasks, err := d.c.UpdateTasks(ctx)
		if err != nil {
			return false, "", err
		}
		for _, t := range tasks {
			if t.Filename == name && t.Command == "ApplyUpdate" {
				ran := t.State == redfish.TaskComplete || t.State == redfish.TaskException || t.State == redfish.TaskExpired
				return ran, fmt.Sprintf("holds the task of %s in %s", name, orNone(t.State)), nil
			}
		}
		return true, "", nil // gone: the inventory decides
	}, report)
	if err != nil || !rebooted {
		if why != "" {
			res.Message += ". " + why
		}
		return res, err
	}
	matches, err := d.matchInventory(ctx, pkg)
	if err != nil {
		return res, err
	}
	if r, done, err := d.resumeQueued(ctx, pkg, matches, want, fw.KeepInRepository, res, report); done {
		return r, err
	}
	return d.afterReboot(pkg, matches, want, where, res, "the system ROM applied it during POST")
}

// activateStagedByReboot reboots, when the job allows it, a server whose Smart Component the iLO
// flashed and staged (ResetRequired), and verifies the version after POST.
func (d *Driver) activateStagedByReboot(ctx context.Context, fw driver.Firmware, pkg *smartPackage, want, where string, res driver.Result,
	report func(driver.Progress)) (driver.Result, error) {
	var matches []smartMatch
	rebooted, why, err := d.rebootToActivate(ctx, fw, pkg.file, func(ctx context.Context) (bool, string, error) {
		var err error
		if matches, err = d.matchInventory(ctx, pkg); err != nil {
			return false, "", err
		}
		return want == "" || anyAt(matches, want), "has " + where + " at " + orNone(versionOf(matches, want)), nil
	}, report)
	if err != nil || !rebooted {
		if why != "" {
			res.Message += ". " + why
		}
		return res, err
	}
	return d.afterReboot(pkg, matches, want, where, res, "it runs after POST")
}

// matchInventory reads the firmware inventory and finds the package's devices in it.
func (d *Driver) matchInventory(ctx context.Context, pkg *smartPackage) ([]smartMatch, error) {
	inv, err := d.c.InventoryDevices(ctx)
	if err != nil {
		return nil, fmt.Errorf("target %s: reading the firmware inventory: %w", d.t.Name, err)
	}
	return pkg.match(inv), nil
}

// afterReboot ends a Smart Component once the server rebooted to activate it.
func (d *Driver) afterReboot(pkg *smartPackage, matches []smartMatch, want, where string, res driver.Result, how string) (driver.Result, error) {
	after := versionOf(matches, want)
	if want != "" && !anyAt(matches, want) {
		return res, fmt.Errorf("target %s: %w: the server was rebooted to activate %s, but %s is at %q, want %q; see the iLO event log",
			d.t.Name, ErrVersionUnchanged, pkg.file, where, orNone(after), want)
	}
	res.VersionAfter, res.RebootRequired = after, false
	res.Message = fmt.Sprintf("%s updated from %s to %s: the server was rebooted gracefully (rollout.reboot: IfRequired) and %s",
		where, orNone(res.VersionBefore), orNone(after), how)
	return res, nil
}

// anyAt says whether a matched inventory entry runs want. A package's device Target can match
// several entries (a system ROM's also matches the server's Intelligent Platform Abstraction
// Data, which keeps its own version): one at the package's version shows it ran.
func anyAt(ms []smartMatch, want string) bool {
	return slices.ContainsFunc(ms, func(m smartMatch) bool { return fwversion.Same(NormalizeVersion(m.entry.Version), want) })
}

// versionOf is the version of the matched entry at want, else of the first one ("" without
// any).
func versionOf(ms []smartMatch, want string) string {
	for _, m := range ms {
		if v := NormalizeVersion(m.entry.Version); fwversion.Same(v, want) {
			return v
		}
	}
	if len(ms) == 0 {
		return ""
	}
	return NormalizeVersion(ms[0].entry.Version)
}
