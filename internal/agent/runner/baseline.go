package runner

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
	"github.com/fwops/firmware-operator/internal/agent/driver"
	"github.com/fwops/firmware-operator/internal/agent/firmware"
	"github.com/fwops/firmware-operator/internal/agent/fwserver"
	"github.com/fwops/firmware-operator/internal/agent/plan"
)

// componentImage is a baseline component's verified image and the URL path it is served
// at, or why it cannot be installed.
type componentImage struct {
	once  sync.Once
	fetch func() (firmware.Image, string, error)
	img   firmware.Image
	path  string
	err   error
}

// load fetches, verifies and registers the image the first time a target's plan needs it: an
// SPP-sized baseline costs only what the fleet installs.
func (ci *componentImage) load() (firmware.Image, string, error) {
	ci.once.Do(func() { ci.img, ci.path, ci.err = ci.fetch() })
	return ci.img, ci.path, ci.err
}

// baseline reads the job's FirmwareBaseline once per agent (the generation the controller
// checked, whose sources it allowed) and starts the firmware server; each component's image is
// fetched, verified and served when a target's plan first needs it. msg, when not empty, is
// why no target of the agent can be installed.
func (a *agent) baseline(ctx context.Context) (*fwv1.FirmwareBaseline, map[string]*componentImage, string) {
	a.baseOnce.Do(func() {
		b := &fwv1.FirmwareBaseline{}
		if err := a.deps.Client.Get(ctx, client.ObjectKey{Namespace: a.cfg.Namespace, Name: a.cfg.Baseline}, b); err != nil {
			a.baseErr = fmt.Sprintf("cannot read FirmwareBaseline %s/%s, nothing was flashed: %v", a.cfg.Namespace, a.cfg.Baseline, err)
			return
		}
		if b.Generation != a.cfg.BaselineGeneration {
			a.baseErr = fmt.Sprintf("FirmwareBaseline %s changed after the job checked it (generation %d, checked %d), nothing was flashed: "+
				"create a new UpdateJob to roll out the changed baseline", b.Name, b.Generation, a.cfg.BaselineGeneration)
			return
		}
		if err := a.startServer(); err != nil {
			a.baseErr = "cannot serve the firmware images" + err.Error()
			return
		}
		a.imgOK.Store(true)
		comps := map[string]*componentImage{}
		for _, c := range b.Spec.Components {
			src := firmware.Source{URL: c.Firmware.URL, Path: a.cfg.ComponentPath(c.Name, c.Firmware), SHA256: strings.ToLower(c.Firmware.SHA256)}
			comps[c.Name] = &componentImage{fetch: func() (firmware.Image, string, error) {
				img, err := a.fetch(ctx, src, fmt.Sprintf("FirmwareBaseline %s component %s's firmware.sha256", b.Name, c.Name))
				if err != nil {
					return img, "", err
				}
				p, err := a.fw.Register(a.cfg.JobUID+"/"+a.cfg.Job+"/"+c.Name, img)
				if err != nil {
					return img, "", fmt.Errorf("cannot serve the image of component %s: %w", c.Name, err)
				}
				return img, p, nil
			}}
		}
		a.base, a.comps = b, comps
	})
	return a.base, a.comps, a.baseErr
}

// driveBaseline installs one target's plan, component by component, each once: a component
// an earlier agent installed is not installed again, and one it was installing is followed
// (EarlierAttempt), not restarted. The one reboot, when the job allows it, comes with the
// last component that needs it.
func (a *agent) driveBaseline(ctx context.Context, tk *task, b *fwv1.FirmwareBaseline, comps map[string]*componentImage) {
	r, t := tk.rep, tk.target
	log := a.log.With("target", t.Name, "type", t.Type, "address", t.Address)
	fail := func(msg string) {
		log.Error("target failed", "reason", msg)
		r.finish(ctx, fwv1.TargetPhaseFailed, msg, nil)
	}
	if err := tk.err; err != nil {
		fail(err.Error())
		return
	}
	earlier := r.components()
	tctx, cancel := context.WithTimeout(ctx, a.cfg.Timeout)
	defer cancel()
	d, dctx, progress, closeTarget, err := a.connect(tctx, tk)
	if err != nil {
		if !a.leftForNextAgent(ctx, r, log) {
			msg := a.explain(ctx, tctx, "connecting to "+t.Address, err)
			if a := advice(err); a != "" {
				msg += "; " + a
			}
			fail(msg)
		}
		return
	}
	defer closeTarget()

	inv, err := inventory(dctx, d, t, b)
	if err != nil {
		if !a.leftForNextAgent(ctx, r, log) {
			fail(a.explain(ctx, tctx, "reading the inventory", err))
		}
		return
	}
	p := plan.Make(inv, b)
	list := planned(p, earlier)
	done, installedBefore := 0, 0
	for _, c := range list {
		if c.Phase.Finished() {
			done++
		}
		if c.Phase == fwv1.TargetPhaseSucceeded {
			installedBefore++ // by an earlier agent of this job
		}
	}
	log.Info("plan made", "steps", len(p.Steps), "applicable", p.Total())
	if a.cfg.InventoryOnly {
		a.finishInventoryOnly(ctx, r, b, inv, p, list)
		return
	}
	setComponent := func(name string, f func(c *fwv1.ComponentUpdate)) {
		r.update(tctx, true, func(s *fwv1.TargetUpdateStatus) {
			for k := range s.Components {
				if s.Components[k].Name == name {
					f(&s.Components[k])
				}
			}
			s.ComponentsDone = int32(done)
			s.ComponentsProgress = fmt.Sprintf("%d/%d", done, s.ComponentsTotal)
		})
	}
	r.update(tctx, true, func(s *fwv1.TargetUpdateStatus) {
		s.Components, s.ComponentsTotal, s.ComponentsDone = list, int32(len(list)), int32(done)
		s.Model = inv.Model
		readAt := metav1.NewTime(a.deps.Now())
		s.Devices, s.InventoryTime = recordedDevices(inv.Devices, b), &readAt
		s.ComponentsProgress = fmt.Sprintf("%d/%d", done, len(list))
		s.Phase, s.Percent = fwv1.TargetPhaseStaging, 0
		s.Message = fmt.Sprintf("installing %d of the %d components of FirmwareBaseline %s (%s) that apply", len(p.Steps), len(list), b.Name, b.Spec.Version)
	})

	lastReboot := -1
	for k, s := range p.Steps {
		if needsReboot(s.Component.Kind) && !earlier[s.Component.Name].Phase.Finished() {
			lastReboot = k
		}
	}
	staged := r.rebootRequired()
	var stagedNames []string // staged by this agent, for the message
	// stagedSteps are the steps staged by this agent until the reboot; activated, those that
	// the last step's install or reboot made run.
	var stagedSteps, activated []plan.Step
	installed := 0
	for k, s := range p.Steps {
		name := s.Component.Name
		if earlier[name].Phase.Finished() {
			continue // installed (or found not needed) by an earlier agent: never again
		}
		setComponent(name, func(c *fwv1.ComponentUpdate) {
			c.Phase, c.Message = fwv1.TargetPhaseDownloading, "downloading and verifying the image"
		})
		img, urlPath, err := comps[name].load()
		if err != nil {
			setComponent(name, func(c *fwv1.ComponentUpdate) { c.Phase, c.Message = fwv1.TargetPhaseFailed, err.Error() })
			fail(fmt.Sprintf("component %s (%s -> %s): %v; the components after it were not installed", name, orUnknown(s.From), s.To, err))
			return
		}
		fw := driver.Firmware{Component: driverComponent(s.Component), LocalPath: img.Path, FileName: img.FileName,
			SHA256: img.SHA256, Version: s.To, RebootIfRequired: a.cfg.RebootIfRequired && k == lastReboot,
			EarlierAttempt: askedBefore(earlier[name].Phase)}
		if err := a.setImageURLs(tctx, r, t, urlPath, &fw); err != nil {
			fail("cannot build the firmware URL for the target: " + err.Error())
			return
		}
		if fw.RebootIfRequired {
			fw.RebootBy = a.rebootBy(log)
		}
		a.red.add(fwserver.Token(fw.URL))
		setComponent(name, func(c *fwv1.ComponentUpdate) {
			c.Phase, c.Message = fwv1.TargetPhaseFlashing, fmt.Sprintf("installing %s over %s", s.To, orUnknown(s.From))
		})
		log.Info("installing component", "component", name, "from", s.From, "to", s.To, "imageURL", fwserver.Redact(fw.URL))
		res, err := d.Update(dctx, fw, progress)
		if err != nil {
			if a.leftForNextAgent(ctx, r, log) {
				return
			}
			msg := a.explain(ctx, tctx, "installing component "+name, err)
			setComponent(name, func(c *fwv1.ComponentUpdate) { c.Phase, c.Message = fwv1.TargetPhaseFailed, msg })
			fail(msg + "; the components after it were not installed")
			return
		}
		if res.RebootRequired {
			stagedNames = append(stagedNames, name)
			stagedSteps = append(stagedSteps, s)
		}
		staged = staged || res.RebootRequired
		if fw.RebootIfRequired && !res.RebootRequired {
			staged, stagedNames = false, nil // the one reboot activated everything staged before it
			activated, stagedSteps = stagedSteps, nil
		}
		done++
		installed++
		phase, msg := fwv1.TargetPhaseSucceeded, res.Message
		if res.NotNeeded {
			phase = fwv1.TargetPhaseSkipped
		}
		if msg == "" {
			msg = fmt.Sprintf("updated from %s to %s", orUnknown(res.VersionBefore), orUnknown(res.VersionAfter))
		}
		setComponent(name, func(c *fwv1.ComponentUpdate) { c.Phase, c.Message = phase, msg })
		if phase == fwv1.TargetPhaseSucceeded && !res.RebootRequired {
			activated = append(activated, s)
		}
		// The devices of the Smart Components that run now (installed, or activated by the
		// reboot) run the new version; those staged until a reboot do not yet.
		if len(activated) > 0 {
			r.update(tctx, true, func(st *fwv1.TargetUpdateStatus) {
				for _, a := range activated {
					if a.Component.Kind == fwv1.BaselineKindSmartComponent {
						setDevices(st.Devices, a.Component.AppliesTo.Devices, a.To)
					}
				}
			})
			activated = nil
		}
	}
	byEarlier := ""
	if installedBefore > 0 {
		byEarlier = fmt.Sprintf(" (%d by an earlier agent)", installedBefore)
	}
	msg := fmt.Sprintf("FirmwareBaseline %s (%s): %d of %d components installed%s, %d already current or skipped",
		b.Name, b.Spec.Version, installed+installedBefore, len(list), byEarlier, len(list)-installed-installedBefore)
	if staged {
		what := "the components staged before"
		if len(stagedNames) > 0 {
			what = strings.Join(stagedNames, ", ")
		}
		msg += fmt.Sprintf("; staged until the server's next reboot: %s (rollout.reboot IfRequired reboots once at the end)", what)
	}
	r.finish(ctx, fwv1.TargetPhaseSucceeded, msg, func(s *fwv1.TargetUpdateStatus) { s.RebootRequired = staged })
}

// planned is the plan as the TargetUpdate shows it, steps first: components an earlier agent
// of this job already took to a final phase, or was installing, keep what it recorded.
func planned(p plan.Plan, earlier map[string]fwv1.ComponentUpdate) []fwv1.ComponentUpdate {
	var out []fwv1.ComponentUpdate
	for _, s := range p.Steps {
		c := fwv1.ComponentUpdate{Name: s.Component.Name, Kind: s.Component.Kind, From: s.From, To: s.To, Phase: fwv1.TargetPhasePending}
		if e, ok := earlier[c.Name]; ok && (e.Phase.Finished() || e.Phase.InProgress()) {
			c = e
		}
		out = append(out, c)
	}
	for _, s := range p.Skipped {
		if e, ok := earlier[s.Name]; ok && e.Phase == fwv1.TargetPhaseSucceeded {
			out = append(out, e) // installed by an earlier agent, now current
			continue
		}
		out = append(out, fwv1.ComponentUpdate{Name: s.Name, Kind: s.Kind, From: s.From, To: s.To, Phase: fwv1.TargetPhaseSkipped,
			Message: string(s.Reason) + ": " + s.Message})
	}
	return out
}

// askedBefore says whether an earlier agent may have asked the target for the component's
// flash: it recorded a phase from the flash on (not one while it fetched the image).
func askedBefore(p fwv1.TargetPhase) bool {
	return p == fwv1.TargetPhaseStaging || p == fwv1.TargetPhaseFlashing || p == fwv1.TargetPhaseVerifying
}

// needsReboot says whether a kind may activate only at the server's next reboot.
func needsReboot(k fwv1.BaselineComponentKind) bool {
	return k == fwv1.BaselineKindSystemROM || k == fwv1.BaselineKindSmartComponent
}

// driverComponent is what the driver installs for a baseline component. A Linux host
// records each Smart Component's version under the component's name.
func driverComponent(c fwv1.BaselineComponent) driver.Component {
	if c.Kind == fwv1.BaselineKindLinuxSmartComponent {
		return driver.Component(c.Name)
	}
	return driver.Component(c.Kind.Component())
}

// recordedDevices are the inventory's devices as the TargetUpdate records them, by GUID, the
// ones b's Smart Components name first, at most fwv1.MaxRecordedDevices: the UpdateTarget
// keeps them so that compliance judges Smart Components against any baseline, which needs
// the devices the server has as much as their versions.
func recordedDevices(devices map[string]string, b *fwv1.FirmwareBaseline) []fwv1.DeviceVersion {
	named := map[string]bool{}
	for _, c := range b.Spec.Components {
		for _, d := range c.AppliesTo.Devices {
			named[strings.ToLower(d)] = true
		}
	}
	out := make([]fwv1.DeviceVersion, 0, len(devices))
	for guid, v := range devices {
		out = append(out, fwv1.DeviceVersion{Target: guid, Version: truncate(v, maxVersion)})
	}
	sort.Slice(out, func(i, j int) bool {
		if ni, nj := named[out[i].Target], named[out[j].Target]; ni != nj {
			return ni
		}
		return out[i].Target < out[j].Target
	})
	if len(out) > fwv1.MaxRecordedDevices {
		out = out[:fwv1.MaxRecordedDevices]
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Target < out[j].Target })
	return out
}

// maxVersion is the API's bound on a recorded version.
const maxVersion = 128

// setDevices records version for the devices of guids that the list holds.
func setDevices(list []fwv1.DeviceVersion, guids []string, version string) {
	for i := range list {
		for _, g := range guids {
			if strings.EqualFold(list[i].Target, g) {
				list[i].Version = version
			}
		}
	}
}

// inventory reads what the plan needs from the target: the whole inventory from a driver
// that has one (iLO), else the version of each kind the target type can run.
func inventory(ctx context.Context, d driver.Driver, t driver.Target, b *fwv1.FirmwareBaseline) (plan.Inventory, error) {
	inv := plan.Inventory{TargetType: fwv1.TargetType(t.Type), Bay: t.Bay != 0,
		Versions: map[fwv1.BaselineComponentKind]string{}, Devices: map[string]string{}, Installed: map[string]string{}}
	read := func(kind fwv1.BaselineComponentKind) error {
		v, err := d.Version(ctx, driver.Component(kind.Component()))
		inv.Versions[kind] = v
		return err
	}
	if di, ok := d.(driver.Inventorier); ok {
		got, err := di.Inventory(ctx)
		if err != nil {
			return inv, err
		}
		inv.Model, inv.Devices = got.Model, got.Devices
		for _, k := range []fwv1.BaselineComponentKind{fwv1.BaselineKindILO, fwv1.BaselineKindSystemROM} {
			inv.Versions[k] = got.Versions[driver.Component(k.Component())]
		}
		return inv, nil
	}
	switch t.Type {
	case driver.TypeOA:
		if t.Bay != 0 {
			return inv, read(fwv1.BaselineKindILO)
		}
		return inv, read(fwv1.BaselineKindOA)
	case driver.TypeLinux:
		for _, c := range b.Spec.Components {
			if c.Kind != fwv1.BaselineKindLinuxSmartComponent {
				continue
			}
			v, err := d.Version(ctx, driverComponent(c))
			if err != nil {
				return inv, err
			}
			inv.Installed[c.Name] = v
		}
		return inv, nil
	}
	if err := read(fwv1.BaselineKindILO); err != nil {
		return inv, err
	}
	return inv, read(fwv1.BaselineKindSystemROM)
}
