package ilo

// Smart Components in HPE's .fwpkg format, installed the way HPE's own client does it
// (ilorest's flashfwpkg, FwpkgCommand.py): open the zip's payload.json, route the package on
// UpdatableBy and on each image's DirectFlashOk / ResetRequired / UefiFlashable, upload through
// the iLO's HttpPushUri (with the component's .compsig when the package holds one), and for
// UEFI-flashed firmware add an ApplyUpdate task to the iLO's update task queue, which the system
// ROM runs at the next POST. A package applies to the firmware inventory members whose
// Oem.Hpe.Targets list one of its Devices.Device[].Target GUIDs.
//
// This reader is the agent's own: it shares nothing with the simulator's.

import (
	"archive/zip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/fwops/firmware-operator/internal/agent/driver"
	"github.com/fwops/firmware-operator/internal/agent/redfish"
	"github.com/fwops/firmware-operator/internal/fwversion"
)

// smartPayload is the part of payload.json the driver reads.
type smartPayload struct {
	Name        string   `json:"Name"`
	Version     string   `json:"Version"`
	UpdatableBy []string `json:"UpdatableBy"`
	Devices     struct {
		Device []smartDevice `json:"Device"`
	} `json:"Devices"`
}

type smartDevice struct {
	DeviceName     string       `json:"DeviceName"`
	Target         string       `json:"Target"`
	Version        string       `json:"Version"`
	FirmwareImages []smartImage `json:"FirmwareImages"`
}

type smartImage struct {
	FileName      string `json:"FileName"`
	DirectFlashOk *bool  `json:"DirectFlashOk"`
	ResetRequired bool   `json:"ResetRequired"`
	UefiFlashable bool   `json:"UefiFlashable"`
}

// smartRoute is how a package is installed; the letters are ilorest's component types.
type smartRoute int

const (
	routeDirect      smartRoute = iota // A: the iLO flashes it now
	routeDirectReset                   // B: the iLO flashes it now; it activates at the next reboot
	routeUefi                          // C: the system ROM flashes it at the next POST, from the task queue
	routeHostOS                        // D: only an agent in the host OS (SUM, SUT) can install it
)

// smartPackage is an opened .fwpkg.
type smartPackage struct {
	file    string // the package's file name
	data    []byte
	payload smartPayload
	files   map[string][]byte
}

// maxSmartComponent bounds what the driver reads into memory from a package.
const maxSmartComponent = 1 << 30

// isFwpkg says whether the firmware is a .fwpkg Smart Component.
func isFwpkg(fw driver.Firmware) bool {
	return strings.EqualFold(path.Ext(fw.FileName), ".fwpkg") || fw.FileName == "" && strings.EqualFold(path.Ext(fw.LocalPath), ".fwpkg")
}

func openSmartPackage(localPath, name string) (*smartPackage, error) {
	if name == "" {
		name = path.Base(localPath)
	}
	zr, err := zip.OpenReader(localPath)
	if err != nil {
		return nil, fmt.Errorf("%s is not a readable .fwpkg (a zip): %w", name, err)
	}
	defer zr.Close()
	p := &smartPackage{file: name, files: map[string][]byte{}}
	var total int64
	for _, f := range zr.File {
		if f.FileInfo().IsDir() {
			continue
		}
		total += int64(f.UncompressedSize64)
		if total > maxSmartComponent {
			return nil, fmt.Errorf("%s unpacks to more than %d bytes", name, maxSmartComponent)
		}
		rc, err := f.Open()
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", name, f.Name, err)
		}
		b, err := io.ReadAll(io.LimitReader(rc, maxSmartComponent))
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", name, f.Name, err)
		}
		p.files[path.Base(f.Name)] = b
	}
	raw, ok := p.files["payload.json"]
	if !ok {
		return nil, fmt.Errorf("%s holds no payload.json: not a Smart Component in the .fwpkg format", name)
	}
	if err := json.Unmarshal(raw, &p.payload); err != nil {
		return nil, fmt.Errorf("%s: payload.json: %w", name, err)
	}
	if len(p.payload.Devices.Device) == 0 {
		return nil, fmt.Errorf("%s: payload.json lists no Devices.Device", name)
	}
	for _, d := range p.payload.Devices.Device {
		for _, im := range d.FirmwareImages {
			if _, ok := p.files[path.Base(im.FileName)]; !ok {
				return nil, fmt.Errorf("%s: payload.json names the image %q, which the package does not hold", name, im.FileName)
			}
		}
	}
	if p.data, err = os.ReadFile(localPath); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return p, nil
}

func (p *smartPackage) updatableBy(who string) bool {
	return slices.Contains(p.payload.UpdatableBy, who)
}

// route repeats ilorest's _get_comp_type: Uefi with RuntimeAgent needs the host OS; otherwise
// each image decides, DirectFlashOk first (ResetRequired makes it B), then UefiFlashable.
func (p *smartPackage) route() (smartRoute, error) {
	if p.updatableBy("Uefi") && p.updatableBy("RuntimeAgent") {
		return routeHostOS, nil
	}
	r := routeHostOS
	for _, d := range p.payload.Devices.Device {
		for _, im := range d.FirmwareImages {
			if im.DirectFlashOk == nil {
				return 0, fmt.Errorf("%s: image %s has no DirectFlashOk in payload.json: HPE's tools refuse to flash it", p.file, im.FileName)
			}
			switch {
			case *im.DirectFlashOk && im.ResetRequired:
				r = routeDirectReset
			case *im.DirectFlashOk:
				r = routeDirect
			case im.UefiFlashable:
				r = routeUefi
			}
		}
	}
	if (r == routeDirect || r == routeDirectReset) && !p.updatableBy("Bmc") {
		// The iLO flashes only what is UpdatableBy Bmc.
		r = routeHostOS
	}
	return r, nil
}

// compsig finds the signature of file in the package: <file's base name>*.compsig.
func (p *smartPackage) compsig(file string) []byte {
	base := strings.TrimSuffix(file, path.Ext(file))
	names := make([]string, 0, len(p.files))
	for n := range p.files {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if strings.HasPrefix(n, base) && strings.HasSuffix(strings.ToLower(n), ".compsig") {
			return p.files[n]
		}
	}
	return nil
}

// smartMatch is a package device found in this server's inventory.
type smartMatch struct {
	device smartDevice
	entry  redfish.InventoryDevice
}

func (p *smartPackage) match(inv []redfish.InventoryDevice) []smartMatch {
	var out []smartMatch
	for _, d := range p.payload.Devices.Device {
		for _, e := range inv {
			if slices.ContainsFunc(e.Oem.Hpe.Targets, func(t string) bool { return d.Target != "" && strings.EqualFold(t, d.Target) }) {
				out = append(out, smartMatch{device: d, entry: e})
			}
		}
	}
	return out
}

// queueName is the repository file name of a package queued for UEFI: ilorest uploads the
// .fwpkg renamed to .zip.
func (p *smartPackage) queueName() string {
	return strings.TrimSuffix(p.file, path.Ext(p.file)) + ".zip"
}

// updateSmartComponent installs a .fwpkg.
func (d *Driver) updateSmartComponent(ctx context.Context, fw driver.Firmware, report func(driver.Progress)) (driver.Result, error) {
	var res driver.Result
	if d.t.Type == driver.TypeILO4 {
		return res, fmt.Errorf("target %s: iLO 4 has no iLO Repository: install Smart Components through the host (a Linux target): %w", d.t.Name, driver.ErrUnsupported)
	}
	pkg, err := openSmartPackage(fw.LocalPath, fw.FileName)
	if err != nil {
		return res, fmt.Errorf("target %s: %w", d.t.Name, err)
	}
	route, err := pkg.route()
	if err != nil {
		return res, fmt.Errorf("target %s: %w", d.t.Name, err)
	}
	if route == routeHostOS {
		return res, fmt.Errorf("target %s: %s (UpdatableBy %s) can only be installed from the server's operating system, not through the iLO: add the host as a Linux target and flash it there",
			d.t.Name, pkg.file, strings.Join(pkg.payload.UpdatableBy, ", "))
	}
	// The reads before the upload wait for an iLO that is not answering (whenUp), as Update's do.
	var inv []redfish.InventoryDevice
	err = d.whenUp(ctx, "reading the firmware inventory", report, func(ctx context.Context) (err error) {
		inv, err = d.c.InventoryDevices(ctx)
		return err
	})
	if err != nil {
		return res, fmt.Errorf("target %s: reading the firmware inventory: %w", d.t.Name, err)
	}
	matches := pkg.match(inv)
	if len(matches) == 0 {
		var targets []string
		for _, dev := range pkg.payload.Devices.Device {
			targets = append(targets, dev.Target)
		}
		res.NotNeeded = true
		res.Message = fmt.Sprintf("%s is not applicable to this server: none of its devices (Target %s) is in the iLO's firmware inventory",
			pkg.file, strings.Join(targets, ", "))
		return res, nil
	}
	res.VersionBefore = NormalizeVersion(matches[0].entry.Version)
	want := NormalizeVersion(fw.Version)
	if want == "" {
		want = NormalizeVersion(matches[0].device.Version)
	}
	where := matches[0].entry.Name
	if c := matches[0].entry.Oem.Hpe.DeviceContext; c != "" {
		where += " (" + c + ")"
	}
	if route == routeUefi {
		// A task left by an earlier run tells where this package stands.
		if r, done, err := d.resumeQueued(ctx, pkg, matches, want, fw.KeepInRepository, res, report); done {
			return r, err
		}
	}
	if want != "" && allAt(matches, want) {
		res.VersionAfter, res.NotNeeded = want, true
		res.Message = fmt.Sprintf("%s is already at version %s", where, want)
		return res, nil
	}
	if route == routeUefi {
		if res, err = d.queueForUEFI(ctx, pkg, where, res); err != nil {
			return res, err
		}
		return d.applyQueuedByReboot(ctx, fw, pkg, want, where, res, report) // fwpkg_reboot.go
	}
	return d.flashDirect(ctx, fw, pkg, route, matches, want, where, res, report)
}

func allAt(ms []smartMatch, want string) bool {
	for _, m := range ms {
		if !fwversion.Same(NormalizeVersion(m.entry.Version), want) {
			return false
		}
	}
	return true
}

// flashDirect has the iLO flash the package's images now, as ilorest's flashfwpkg does for its
// types A and B (uploadcomp --update_target: UpdateTarget, and not into the repository).
func (d *Driver) flashDirect(ctx context.Context, fw driver.Firmware, pkg *smartPackage, route smartRoute, matches []smartMatch, want, where string, res driver.Result, report func(driver.Progress)) (driver.Result, error) {
	var st redfish.UpdateStatus
	err := d.whenUp(ctx, "reading the update state before the flash", report, func(ctx context.Context) (err error) {
		st, err = d.c.UpdateStatus(ctx)
		return err
	})
	if err != nil {
		return res, fmt.Errorf("target %s: reading the update state: %w", d.t.Name, err)
	}
	following := st.Active()
	if following {
		// Never flash twice: a flash is running (an earlier agent's); follow it.
		report(driver.Progress{Phase: driver.PhaseFlashing, Message: "a flash is already running on the iLO (" + st.State + "); following it"})
	} else {
		var sent []string
		for _, m := range matches {
			for _, im := range m.device.FirmwareImages {
				name := path.Base(im.FileName)
				if slices.Contains(sent, name) || im.DirectFlashOk == nil || !*im.DirectFlashOk {
					continue
				}
				if len(sent) > 0 {
					// One flash at a time: the iLO refuses a second while one runs.
					if err := d.follow(ctx, false, redfish.UpdateAccepted{}, false, report); err != nil {
						return res, err
					}
				}
				report(driver.Progress{Phase: driver.PhaseFlashing, Message: "uploading " + name + " to the iLO"})
				err := d.c.PushComponent(ctx, redfish.PushRequest{Filename: name, Data: pkg.files[name], Compsig: pkg.compsig(name), UpdateTarget: true})
				if err != nil {
					return res, fmt.Errorf("target %s: %w", d.t.Name, err)
				}
				sent = append(sent, name)
			}
		}
	}
	if err := d.follow(ctx, false, redfish.UpdateAccepted{}, following, report); err != nil {
		return res, err
	}
	if route == routeDirectReset {
		res.RebootRequired = true
		res.Message = fmt.Sprintf("%s: %s %s is flashed and staged; it activates at the next reboot of the server", where, pkg.file, orNone(want))
		return d.activateStagedByReboot(ctx, fw, pkg, want, where, res, report) // fwpkg_reboot.go
	}
	report(driver.Progress{Phase: driver.PhaseVerifying, Percent: 100, Message: "reading the new version"})
	after, err := d.verify(ctx, driver.Firmware{Component: driver.ComponentSmartComponent, Version: want}, res.VersionBefore)
	res.VersionAfter = after
	if err != nil {
		return res, err
	}
	res.Message = fmt.Sprintf("%s updated from %s to %s", where, orNone(res.VersionBefore), after)
	return res, nil
}

// queueForUEFI adds the package to the iLO Repository and an ApplyUpdate task to the update
// task queue (ilorest's flashfwpkg type C); the system ROM applies it at the next POST.
func (d *Driver) queueForUEFI(ctx context.Context, pkg *smartPackage, where string, res driver.Result) (driver.Result, error) {
	tasks, err := d.c.UpdateTasks(ctx)
	if err != nil {
		return res, fmt.Errorf("target %s: %w", d.t.Name, err)
	}
	for _, t := range tasks {
		if t.State == redfish.TaskException || t.State == redfish.TaskExpired {
			return res, fmt.Errorf("target %s: the iLO's update task queue holds task %q in %s (%s); it stalls every task behind it, so this update would never run: delete it (ilorest taskqueue --cleanqueue) and retry",
				d.t.Name, t.Name, t.State, orNone(t.Result.MessageID))
		}
	}
	name := pkg.queueName()
	if err := d.c.PushComponent(ctx, redfish.PushRequest{Filename: name, Data: pkg.data, Compsig: pkg.compsig(name), UpdateRepository: true}); err != nil {
		return res, fmt.Errorf("target %s: adding %s to the iLO Repository: %w", d.t.Name, name, err)
	}
	comp, err := d.waitForComponent(ctx, name)
	if err != nil {
		return res, err
	}
	by := comp.UpdatableBy
	if len(by) == 0 {
		by = pkg.payload.UpdatableBy
	}
	task := redfish.UpdateTaskRequest{Name: "fwops " + name, Command: "ApplyUpdate", Filename: name, UpdatableBy: by}
	if err := d.c.CreateUpdateTask(ctx, task); err != nil {
		// Leave nothing behind that no task uses.
		if derr := d.c.Delete(context.WithoutCancel(ctx), comp.ODataID); derr != nil {
			err = errors.Join(err, derr)
		}
		return res, fmt.Errorf("target %s: %w", d.t.Name, err)
	}
	res.RebootRequired = true
	res.Message = fmt.Sprintf("%s: %s is queued in the iLO's update task queue (task %q) and activates at the next reboot of the server, when the system ROM applies it; the running version stays %s until then",
		where, pkg.file, task.Name, orNone(res.VersionBefore))
	return res, nil
}

// waitForComponent waits for the iLO to finish processing an upload and finds it in the
// repository.
func (d *Driver) waitForComponent(ctx context.Context, name string) (redfish.Component, error) {
	ctx, cancel := context.WithTimeout(ctx, d.opts.FlashTimeout)
	defer cancel()
	tick := time.NewTicker(d.opts.PollInterval)
	defer tick.Stop()
	listed := true // until a read of the repository misses it
	for {
		st, err := d.c.UpdateStatus(ctx)
		switch {
		case err != nil:
			return redfish.Component{}, fmt.Errorf("target %s: after uploading %s: %w", d.t.Name, name, err)
		case st.State == redfish.StateError:
			return redfish.Component{}, &FlashError{Target: d.t.Name, MessageID: st.MessageID}
		case !st.Active():
			comps, err := d.c.Components(ctx)
			if err != nil {
				return redfish.Component{}, fmt.Errorf("target %s: %w", d.t.Name, err)
			}
			for _, c := range comps {
				if c.Filename == name {
					return c, nil
				}
			}
			listed = false
		}
		select {
		case <-ctx.Done():
			if listed {
				return redfish.Component{}, fmt.Errorf("target %s: the iLO still processes %s: %w", d.t.Name, name, ctx.Err())
			}
			return redfish.Component{}, fmt.Errorf("target %s: the iLO accepted %s but does not list it in its repository: %w", d.t.Name, name, ctx.Err())
		case <-tick.C:
		}
	}
}

// resumeQueued looks for the task an earlier run queued for this package. done is true when it
// decides the outcome: still queued (Succeeded, reboot required, not queued twice), failed, or
// applied (then the task is removed, and the component unless keep says to keep it in the
// repository, and the version decides).
func (d *Driver) resumeQueued(ctx context.Context, pkg *smartPackage, matches []smartMatch, want string, keep bool, res driver.Result, report func(driver.Progress)) (driver.Result, bool, error) {
	var tasks []redfish.UpdateTask
	err := d.whenUp(ctx, "reading the update task queue", report, func(ctx context.Context) (err error) {
		tasks, err = d.c.UpdateTasks(ctx)
		return err
	})
	if err != nil {
		return res, true, fmt.Errorf("target %s: %w", d.t.Name, err)
	}
	name := pkg.queueName()
	for _, t := range tasks {
		if t.Filename != name || t.Command != "ApplyUpdate" {
			continue
		}
		switch t.State {
		case redfish.TaskComplete:
			if err := d.removeQueued(ctx, t, name, keep); err != nil {
				return res, true, fmt.Errorf("target %s: removing the finished task of %s: %w", d.t.Name, name, err)
			}
			if want != "" && !allAt(matches, want) {
				return res, true, fmt.Errorf("target %s: %w: the iLO's task for %s is Complete but the device is at %q, want %q",
					d.t.Name, ErrVersionUnchanged, pkg.file, orNone(NormalizeVersion(matches[0].entry.Version)), want)
			}
			return res, false, nil
		case redfish.TaskException, redfish.TaskExpired:
			return res, true, fmt.Errorf("target %s: the iLO's update task %q for %s ended in %s (%s): see the iLO event log; delete the task (ilorest taskqueue --cleanqueue) before retrying",
				d.t.Name, t.Name, pkg.file, t.State, orNone(t.Result.MessageID))
		default:
			res.RebootRequired = true
			res.Message = fmt.Sprintf("%s is already queued in the iLO's update task queue (task %q, %s) and activates at the next reboot of the server",
				pkg.file, t.Name, t.State)
			return res, true, nil
		}
	}
	return res, false, nil
}

// removeQueued deletes a finished task and, unless keep (spec.firmware.keepInRepository), the
// component it locked: the driver leaves nothing it added behind in the iLO Repository.
func (d *Driver) removeQueued(ctx context.Context, t redfish.UpdateTask, name string, keep bool) error {
	if err := d.c.Delete(ctx, t.ODataID); err != nil {
		return err
	}
	if keep {
		return nil
	}
	comps, err := d.c.Components(ctx)
	if err != nil {
		return err
	}
	for _, c := range comps {
		if c.Filename == name && !c.Locked {
			return d.c.Delete(ctx, c.ODataID)
		}
	}
	return nil
}
