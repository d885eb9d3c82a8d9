package driver

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// FakeBehavior says how a Fake target acts. The zero value opens, reports version "" and
// flashes at once with success.
type FakeBehavior struct {
	// Version is the version the target reports before its first flash.
	Version string
	// Delay is how long Update takes; progress is reported in steps of 10% over it.
	Delay time.Duration
	// OpenErr makes the factory fail (unreachable target, bad credentials).
	OpenErr error
	// VersionErr makes Version fail.
	VersionErr error
	// UpdateErr makes Update fail after Delay, leaving the version as it was.
	UpdateErr error
	// NotNeeded makes Update report that nothing was needed (Smart Component exit code 2).
	NotNeeded bool
	// RebootRequired is reported by a successful Update (Smart Component exit code 1).
	RebootRequired bool
	// VersionAfter is the version after a successful flash; empty means the wanted version.
	VersionAfter string
}

// Fake is a Driver factory for tests of the agent and the controller: per-target behaviour,
// a count of flashes per target, and the source ports asked for (rule P4). It is safe for
// concurrent use; each opened driver belongs to one goroutine, as Driver says.
type Fake struct {
	mu        sync.Mutex
	def       FakeBehavior
	per       map[string]FakeBehavior
	versions  map[string]string
	flashes   map[string]int
	opens     map[string]int
	ports     map[string][]int
	lastFirmw map[string]Firmware
}

// NewFake returns a Fake whose targets all behave as def unless Set says otherwise.
func NewFake(def FakeBehavior) *Fake {
	return &Fake{
		def: def, per: map[string]FakeBehavior{}, versions: map[string]string{},
		flashes: map[string]int{}, opens: map[string]int{}, ports: map[string][]int{},
		lastFirmw: map[string]Firmware{},
	}
}

// Set gives target its own behaviour; its current version becomes b.Version.
func (f *Fake) Set(target string, b FakeBehavior) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.per[target] = b
	f.versions[target] = b.Version
}

// SetVersion changes the version target reports, as if someone flashed it behind the agent.
func (f *Fake) SetVersion(target, version string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.versions[target] = version
}

// Version is target's current version.
func (f *Fake) Version(target string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.version(target)
}

func (f *Fake) version(target string) string {
	if v, ok := f.versions[target]; ok {
		return v
	}
	return f.behavior(target).Version
}

func (f *Fake) behavior(target string) FakeBehavior {
	if b, ok := f.per[target]; ok {
		return b
	}
	return f.def
}

// Flashes is how many Updates of target started.
func (f *Fake) Flashes(target string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.flashes[target]
}

// TotalFlashes is how many Updates started, all targets together.
func (f *Fake) TotalFlashes() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.flashes {
		n += c
	}
	return n
}

// Opens is how many times the factory was called for target.
func (f *Fake) Opens(target string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.opens[target]
}

// LocalPorts are the rule P4 source ports the agent asked for when opening target.
func (f *Fake) LocalPorts(target string) []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]int(nil), f.ports[target]...)
}

// LastFirmware is the Firmware of target's last Update (its URL, say).
func (f *Fake) LastFirmware(target string) Firmware {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lastFirmw[target]
}

// Factory opens fake drivers.
func (f *Fake) Factory() Factory {
	return func(_ context.Context, t Target) (Driver, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.opens[t.Name]++
		f.ports[t.Name] = append(f.ports[t.Name], t.LocalPort)
		if err := f.behavior(t.Name).OpenErr; err != nil {
			return nil, fmt.Errorf("target %s: %w", t.Name, err)
		}
		return &fakeDriver{f: f, name: t.Name}, nil
	}
}

// Registry returns a Registry with the fake for every target type.
func (f *Fake) Registry() Registry {
	r := Registry{}
	for _, t := range []Type{TypeILO4, TypeILO5, TypeILO6, TypeOA, TypeLinux} {
		r[t] = f.Factory()
	}
	return r
}

type fakeDriver struct {
	f    *Fake
	name string
}

func (d *fakeDriver) Version(context.Context, Component) (string, error) {
	d.f.mu.Lock()
	defer d.f.mu.Unlock()
	if err := d.f.behavior(d.name).VersionErr; err != nil {
		return "", err
	}
	return d.f.version(d.name), nil
}

func (d *fakeDriver) Update(ctx context.Context, fw Firmware, report func(Progress)) (Result, error) {
	if report == nil {
		report = func(Progress) {}
	}
	d.f.mu.Lock()
	d.f.flashes[d.name]++
	d.f.lastFirmw[d.name] = fw
	b := d.f.behavior(d.name)
	before := d.f.version(d.name)
	d.f.mu.Unlock()

	report(Progress{Phase: PhaseStaging, Message: "staging"})
	step := b.Delay / 10
	for pct := 0; pct <= 100; pct += 10 {
		report(Progress{Phase: PhaseFlashing, Percent: pct, Message: "flashing"})
		if step > 0 {
			select {
			case <-ctx.Done():
				return Result{VersionBefore: before}, fmt.Errorf("target %s: flash interrupted: %w", d.name, ctx.Err())
			case <-time.After(step):
			}
		}
	}
	if b.UpdateErr != nil {
		return Result{VersionBefore: before}, b.UpdateErr
	}
	res := Result{VersionBefore: before, RebootRequired: b.RebootRequired, NotNeeded: b.NotNeeded}
	if b.NotNeeded {
		res.VersionAfter, res.Message = before, "not needed"
		return res, nil
	}
	after := b.VersionAfter
	if after == "" {
		after = fw.Version
	}
	report(Progress{Phase: PhaseVerifying, Percent: 100, Message: "verifying"})
	d.f.mu.Lock()
	d.f.versions[d.name] = after
	d.f.mu.Unlock()
	res.VersionAfter, res.Message = after, fmt.Sprintf("updated from %q to %q", before, after)
	return res, nil
}

func (d *fakeDriver) Close() error { return nil }
