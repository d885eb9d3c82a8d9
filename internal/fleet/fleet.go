// Package fleet starts a simulated fleet on loopback (iLO 4/5/6 simulators, Onboard
// Administrators, a Linux host over a real sshd, a firmware image server), describes it as
// Kubernetes objects (UpdateTargets and their Secrets), plays the agent container of agent
// pods in-process against it (AgentFunc, for internal/kubeletsim), and counts what the
// targets saw: flashes, concurrency, source ports.
//
// The end-to-end tests and `make demo` share it. Everything listens and connects on
// 127.0.0.0/8 only.
package fleet

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/fwops/firmware-operator/internal/sshdhost"
	"net"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
	"github.com/fwops/firmware-operator/internal/simulator/fwimage"
	similo "github.com/fwops/firmware-operator/internal/simulator/ilo"
	simoa "github.com/fwops/firmware-operator/internal/simulator/oa"
)

// Labels on every UpdateTarget of a fleet, so that a job can select a fleet, a type or a
// component.
const (
	// LabelFleet is the fleet's name.
	LabelFleet = "fleet"
	// LabelType is the target's spec.type (iLO4, iLO5, iLO6, OA, Linux).
	LabelType = "type"
	// LabelComponent is the component a job installs on the target: iLO for iLOs, OA for
	// Onboard Administrators, SmartComponent for Linux hosts. One UpdateJob has one image and
	// one component, so a rollout over the whole fleet is one job per component.
	LabelComponent = "component"
)

// DefaultMockup is the Redfish capture the iLO simulators serve, relative to a folder that
// holds `shared` (the repository's parent): a ProLiant DL325 Gen10 Plus.
const DefaultMockup = "shared/testdata/redfish-mockups/ilo5-dl325-gen10plus-v2.46"

// XL675dMockup is the second capture, a ProLiant XL675d Gen10 Plus: the iLO 5 simulators of
// Options.XL675d serve it, so that a fleet holds two server models.
const XL675dMockup = "shared/testdata/redfish-mockups/ilo5-xl675d-gen10plus-v2.55"

// Password is the password of every simulated iLO and OA.
const Password = "Fl33t-Sim-Passw0rd"

// Username is the login of every simulated iLO and OA.
const Username = "Administrator"

// Options describe the fleet to start. The zero value starts nothing but the image server.
type Options struct {
	// Name labels every target (fleet=<Name>) and prefixes object names; default "sim".
	Name string
	// ILO4, ILO5 and ILO6 are how many iLO simulators of each generation to start. Each
	// listens on an address of its own, 127.0.1.1, 127.0.1.2, … (Linux routes all of
	// 127.0.0.0/8 to lo), on ILOPort.
	ILO4, ILO5, ILO6 int
	// ILOPort is the iLOs' HTTPS port; 0 lets each pick a free one (no root needed, and two
	// fleets on one machine do not collide).
	ILOPort int
	// XL675d is how many more iLO 5 simulators to start, from the XL675d capture (another
	// server model, its own system ROM), after the others.
	XL675d int
	// OA is how many Onboard Administrator simulators to start (each on 127.0.0.1, a free port).
	OA int
	// Linux starts one Linux host: a real OpenSSH sshd on 127.0.0.1 (see Available).
	Linux bool
	// MockupDir is the Redfish capture; default: DefaultMockup found by walking up from the
	// working directory.
	MockupDir string
	// XL675dMockupDir is the XL675d's capture; default: XL675dMockup found the same way.
	XL675dMockupDir string
	// Timings are the iLO simulators' flash step durations (zero: the simulator's defaults).
	Timings similo.Timings
	// OARestartDelay is how long an OA refuses connections after a flash; default 200ms.
	OARestartDelay time.Duration
	// Version is the iLO firmware version the image server publishes; default "2.99".
	Version string
	// OAVersion is the OA firmware version published; default "5.00".
	OAVersion string
	// LinuxVersion is the Smart Component's version; default "1.0.1".
	LinuxVersion string
	// PinEvery makes every PinEvery-th iLO use a certificateSHA256 pin instead of a CA
	// bundle Secret (default 3; negative: always a CA bundle).
	PinEvery int
	// Logf, when set, receives the simulators' notable events.
	Logf func(format string, args ...any)
}

// Target is one simulated target, as its UpdateTarget describes it.
type Target struct {
	// Name is the UpdateTarget's name.
	Name string
	// Type is the UpdateTarget's spec.type.
	Type fwv1.TargetType
	// Address is the UpdateTarget's spec.address (host:port for iLOs and OAs, host for Linux).
	Address string
	// SSHPort is the SSH port of OA and Linux targets (rule P3: a test sshd is not on 22).
	SSHPort int
	// Model is an iLO's server model, as its capture's ComputerSystem names it.
	Model string

	ilo   *similo.Sim
	oa    *simoa.Simulator
	linux *sshdhost.Server
}

// Image is a firmware image the fleet's image server publishes.
type Image struct {
	// Component is what a job with this image installs.
	Component fwv1.Component
	// URL is on 127.0.0.1; SHA256 is its digest (hex); Version is what it installs.
	URL, SHA256, Version string
	// Data is the image itself.
	Data []byte
}

// Fleet is a running simulated fleet. Its methods are safe for concurrent use.
type Fleet struct {
	// Name is Options.Name.
	Name string

	opts    Options
	dir     string
	targets []*Target
	byName  map[string]*Target
	images  map[fwv1.Component]Image
	// files are what the image server serves, by file name: the images and what Publish adds.
	files   map[string][]byte
	counter *similo.Counter
	linux   *sshdhost.Server

	imgLn  net.Listener
	imgSrv *http.Server

	mu        sync.Mutex
	nodeAddrs map[string]string
	agentRuns int
	// imgGate, when set, holds image requests until it is closed (HoldImages);
	// imgWaiting counts the requests it holds.
	imgGate    chan struct{}
	imgWaiting int
}

// Start starts the fleet's simulators and image server; Close stops them. ctx bounds the
// start only.
func Start(ctx context.Context, opts Options) (f *Fleet, err error) {
	if opts.Name == "" {
		opts.Name = "sim"
	}
	if opts.Version == "" {
		opts.Version = "2.99"
	}
	if opts.OAVersion == "" {
		opts.OAVersion = "5.00"
	}
	if opts.LinuxVersion == "" {
		opts.LinuxVersion = "1.0.1"
	}
	if opts.OARestartDelay == 0 {
		opts.OARestartDelay = 200 * time.Millisecond
	}
	if opts.PinEvery == 0 {
		opts.PinEvery = 3
	}
	nILO := opts.ILO4 + opts.ILO5 + opts.ILO6 + opts.XL675d
	if opts.ILO4+opts.ILO5+opts.ILO6 > 0 && opts.MockupDir == "" {
		if opts.MockupDir, err = FindMockup(); err != nil {
			return nil, err
		}
	}
	if opts.XL675d > 0 && opts.XL675dMockupDir == "" {
		if opts.XL675dMockupDir, err = findShared(XL675dMockup); err != nil {
			return nil, err
		}
	}
	if nILO > 250*250 {
		return nil, fmt.Errorf("fleet: %d iLOs is more than loopback addresses can hold here", nILO)
	}
	dir, err := os.MkdirTemp("", "fwops-fleet-")
	if err != nil {
		return nil, err
	}
	f = &Fleet{Name: opts.Name, opts: opts, dir: dir, byName: map[string]*Target{},
		images: map[fwv1.Component]Image{}, files: map[string][]byte{}, counter: &similo.Counter{}, nodeAddrs: map[string]string{}}
	defer func() {
		if err != nil {
			_ = f.Close()
			f = nil
		}
	}()

	if err := f.startImages(); err != nil {
		return nil, err
	}
	// One parsed capture per model for the whole fleet: each simulator keeps only what it changes.
	var capture, xlCapture *similo.Capture
	var dlModel, xlModel string
	if opts.ILO4+opts.ILO5+opts.ILO6 > 0 {
		if capture, dlModel, err = loadCapture(opts.MockupDir); err != nil {
			return nil, err
		}
	}
	if opts.XL675d > 0 {
		if xlCapture, xlModel, err = loadCapture(opts.XL675dMockupDir); err != nil {
			return nil, err
		}
	}
	i := 0
	for _, m := range []struct {
		model   similo.Model
		typ     fwv1.TargetType
		n       int
		capture *similo.Capture
		server  string
		name    string
	}{{similo.ILO4, fwv1.TargetTypeILO4, opts.ILO4, capture, dlModel, "ilo4"}, {similo.ILO5, fwv1.TargetTypeILO5, opts.ILO5, capture, dlModel, "ilo5"},
		{similo.ILO6, fwv1.TargetTypeILO6, opts.ILO6, capture, dlModel, "ilo6"}, {similo.ILO5, fwv1.TargetTypeILO5, opts.XL675d, xlCapture, xlModel, "xl675d"}} {
		for k := range m.n {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			s, err := similo.New(similo.Config{Capture: m.capture, Model: m.model, Username: Username, Password: Password,
				Timings: opts.Timings, SimpleUpdateTask: m.model == similo.ILO6 || k%2 == 1, Counter: f.counter, Logf: opts.Logf})
			if err != nil {
				return nil, fmt.Errorf("fleet: iLO simulator: %w", err)
			}
			addr := net.JoinHostPort(iloAddress(i), strconv.Itoa(opts.ILOPort))
			if err := s.Start(addr); err != nil {
				return nil, fmt.Errorf("fleet: iLO simulator on %s: %w", addr, err)
			}
			i++
			f.add(&Target{Name: fmt.Sprintf("%s-%s-%02d", opts.Name, m.name, k+1), Type: m.typ, Address: s.Addr(), Model: m.server, ilo: s})
		}
	}
	for k := range opts.OA {
		s, err := simoa.Start(simoa.Config{Listen: "127.0.0.1:0", Username: Username, Password: Password,
			RestartDelay: opts.OARestartDelay})
		if err != nil {
			return nil, fmt.Errorf("fleet: OA simulator: %w", err)
		}
		host, port, _ := net.SplitHostPort(s.Addr())
		p, _ := strconv.Atoi(port)
		f.add(&Target{Name: fmt.Sprintf("%s-oa-%02d", opts.Name, k+1), Type: fwv1.TargetTypeOA, Address: host, SSHPort: p, oa: s})
	}
	if opts.Linux {
		sdir := filepath.Join(dir, "sshd")
		if err := os.MkdirAll(sdir, 0o700); err != nil {
			return nil, err
		}
		if f.linux, err = sshdhost.Start(sdir); err != nil {
			return nil, err
		}
		f.add(&Target{Name: opts.Name + "-linux-01", Type: fwv1.TargetTypeLinux, Address: "127.0.0.1", SSHPort: f.linux.Port, linux: f.linux})
	}
	return f, nil
}

// iloAddress is the loopback address of the i-th iLO (from 0): 127.0.1.1 up to 127.0.1.250,
// then 127.0.2.1 and so on, away from 127.0.0.x where the agents bind.
func iloAddress(i int) string {
	return fmt.Sprintf("127.0.%d.%d", 1+i/250, 1+i%250)
}

func (f *Fleet) add(t *Target) {
	f.targets = append(f.targets, t)
	f.byName[t.Name] = t
}

// loadCapture parses the Redfish capture in dir and reads the server model its
// ComputerSystem names.
func loadCapture(dir string) (*similo.Capture, string, error) {
	c, err := similo.LoadCapture(dir)
	if err != nil {
		return nil, "", fmt.Errorf("fleet: iLO simulator: %w", err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "Systems", "1", "index.json"))
	if err != nil {
		return nil, "", fmt.Errorf("fleet: the capture's server model: %w", err)
	}
	var system struct{ Model string }
	if err := json.Unmarshal(b, &system); err != nil {
		return nil, "", fmt.Errorf("fleet: the capture's server model: %s: %w", dir, err)
	}
	return c, system.Model, nil
}

// FindMockup finds DefaultMockup in the working directory or one of its parents.
func FindMockup() (string, error) { return findShared(DefaultMockup) }

// findShared finds the folder rel (DefaultMockup, XL675dMockup) in the working directory or
// one of its parents.
func findShared(rel string) (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		p := filepath.Join(d, rel)
		if st, err := os.Stat(p); err == nil && st.IsDir() {
			return p, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("fleet: %s not found above %s; set Options.MockupDir or XL675dMockupDir", rel, wd)
		}
	}
}

// startImages builds the images and serves them on 127.0.0.1.
func (f *Fleet) startImages() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	f.imgLn = ln
	// The Smart Component records each run on this machine, where sshd runs it.
	script := fmt.Sprintf("#!/bin/sh\n# fwops fleet smart component %s\necho %s >> '%s'\necho 'smart component: installed'\nexit 0\n",
		f.opts.LinuxVersion, f.opts.LinuxVersion, f.linuxRunsFile())
	for _, im := range []struct {
		c    fwv1.Component
		file string
		v    string
		data []byte
	}{
		{fwv1.ComponentILO, "ilo_" + f.opts.Version + ".bin", f.opts.Version,
			fwimage.Build("iLO", f.opts.Version, []byte(strings.Repeat("simulated iLO firmware payload\n", 2000)))},
		{fwv1.ComponentOA, "oa_" + f.opts.OAVersion + ".bin", f.opts.OAVersion,
			fwimage.Build("OA", f.opts.OAVersion, []byte("simulated OA firmware payload\n"))},
		{fwv1.ComponentSmartComponent, "cp" + strings.ReplaceAll(f.opts.LinuxVersion, ".", "") + ".scexe", f.opts.LinuxVersion, []byte(script)},
	} {
		img := f.Publish(im.file, im.v, im.data)
		img.Component = im.c
		f.images[im.c] = img
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{file}", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		data, ok := f.files[r.PathValue("file")]
		f.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		if !f.waitForImageGate(r.Context()) {
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write(data)
	})
	f.imgSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = f.imgSrv.Serve(ln) }()
	return nil
}

// Publish serves data as file (a name without slashes) on the fleet's image server, next to
// its own images: firmware of version for a baseline's other components (a stepping
// release, each model's system ROM).
func (f *Fleet) Publish(file, version string, data []byte) Image {
	sum := sha256.Sum256(data)
	f.mu.Lock()
	f.files[file] = data
	f.mu.Unlock()
	return Image{URL: "http://" + f.imgLn.Addr().String() + "/" + file, SHA256: hex.EncodeToString(sum[:]), Version: version, Data: data}
}

// HoldImages makes the image server hold every image request until release is called, so
// that a test can catch an agent while it downloads (ImageRequestsHeld).
func (f *Fleet) HoldImages() (release func()) {
	gate := make(chan struct{})
	f.mu.Lock()
	f.imgGate = gate
	f.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			f.mu.Lock()
			if f.imgGate == gate {
				f.imgGate = nil
			}
			f.mu.Unlock()
			close(gate)
		})
	}
}

// ImageRequestsHeld is how many image requests HoldImages holds right now.
func (f *Fleet) ImageRequestsHeld() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.imgWaiting
}

// waitForImageGate holds an image request while HoldImages says so; false when the client
// went away meanwhile.
func (f *Fleet) waitForImageGate(ctx context.Context) bool {
	f.mu.Lock()
	gate := f.imgGate
	if gate != nil {
		f.imgWaiting++
	}
	f.mu.Unlock()
	if gate == nil {
		return true
	}
	defer func() {
		f.mu.Lock()
		f.imgWaiting--
		f.mu.Unlock()
	}()
	select {
	case <-gate:
		return true
	case <-ctx.Done():
		return false
	}
}

func (f *Fleet) linuxRunsFile() string { return filepath.Join(f.dir, "linux-runs") }

// Image is the published image of component (iLO, OA or SmartComponent).
func (f *Fleet) Image(c fwv1.Component) Image { return f.images[c] }

// Targets lists the fleet's targets: iLO 4, iLO 5, iLO 6, OAs, then the Linux host.
func (f *Fleet) Targets() []Target {
	out := make([]Target, len(f.targets))
	for i, t := range f.targets {
		out[i] = *t
	}
	return out
}

// TargetNames lists the names of the targets of the given types (all when none given).
func (f *Fleet) TargetNames(types ...fwv1.TargetType) []string {
	var out []string
	for _, t := range f.targets {
		if len(types) == 0 || containsType(types, t.Type) {
			out = append(out, t.Name)
		}
	}
	return out
}

func containsType(ts []fwv1.TargetType, t fwv1.TargetType) bool {
	for _, x := range ts {
		if x == t {
			return true
		}
	}
	return false
}

// ComponentOf is the component a job installs on targets of type t.
func ComponentOf(t fwv1.TargetType) fwv1.Component {
	switch t {
	case fwv1.TargetTypeOA:
		return fwv1.ComponentOA
	case fwv1.TargetTypeLinux:
		return fwv1.ComponentSmartComponent
	default:
		return fwv1.ComponentILO
	}
}

// Selector is the label set that selects the fleet's targets of component c.
func (f *Fleet) Selector(c fwv1.Component) map[string]string {
	return map[string]string{LabelFleet: f.Name, LabelComponent: string(c)}
}

// Flashes is how many flashes the target itself saw start (for Linux: how many times the
// Smart Component ran). An unknown target has 0.
func (f *Fleet) Flashes(target string) int {
	t := f.byName[target]
	switch {
	case t == nil:
		return 0
	case t.ilo != nil:
		return t.ilo.Stats().FlashesStarted
	case t.oa != nil:
		return t.oa.Flashes()
	case t.linux != nil:
		b, _ := os.ReadFile(f.linuxRunsFile())
		return strings.Count(string(b), "\n")
	}
	return 0
}

// Version is the target's current firmware version as the simulator holds it (for Linux:
// the version the Smart Component last installed, "" before).
func (f *Fleet) Version(target string) string {
	t := f.byName[target]
	switch {
	case t == nil:
		return ""
	case t.ilo != nil:
		return t.ilo.Version("iLO")
	case t.oa != nil:
		return t.oa.Version()
	case t.linux != nil:
		b, _ := os.ReadFile(f.linuxRunsFile())
		lines := strings.Fields(string(b))
		if len(lines) == 0 {
			return ""
		}
		return lines[len(lines)-1]
	}
	return ""
}

// FlashedImages lists the image files an iLO target was asked to flash, in the order its
// simulator received the requests (nil for other targets): the judge of what was installed
// in which order, kept by the simulator rather than reported by the operator.
func (f *Fleet) FlashedImages(target string) []string {
	t := f.byName[target]
	if t == nil || t.ilo == nil {
		return nil
	}
	var out []string
	for _, r := range t.ilo.FlashRequestsReceived() {
		out = append(out, path.Base(r.ImageURI))
	}
	return out
}

// SourcePorts lists the source port of every connection the target accepted (rule P4: they
// should all be the session port the agent bound for it).
func (f *Fleet) SourcePorts(target string) []int {
	t := f.byName[target]
	switch {
	case t == nil:
		return nil
	case t.ilo != nil:
		return t.ilo.SourcePorts()
	case t.oa != nil:
		return t.oa.SourcePorts()
	case t.linux != nil:
		return t.linux.SourcePorts()
	}
	return nil
}

// MaxConcurrentILOFlashes is the largest number of flashes in progress at once across all
// the fleet's iLO simulators, as the simulators themselves counted them.
func (f *Fleet) MaxConcurrentILOFlashes() int { return f.counter.Max() }

// ILO returns the simulator of an iLO target (to inject faults, say), or nil.
func (f *Fleet) ILO(target string) *similo.Sim {
	if t := f.byName[target]; t != nil {
		return t.ilo
	}
	return nil
}

// OA returns the simulator of an OA target, or nil.
func (f *Fleet) OA(target string) *simoa.Simulator {
	if t := f.byName[target]; t != nil {
		return t.oa
	}
	return nil
}

// SSHDLogs is what the Linux host's sshd logged so far ("" without a Linux host).
func (f *Fleet) SSHDLogs() string {
	if f.linux == nil {
		return ""
	}
	return f.linux.Logs()
}

// Dir is the fleet's scratch directory (agent mount roots, node caches, sshd files).
func (f *Fleet) Dir() string { return f.dir }

// Close stops every simulator, sshd and the image server, and removes the scratch directory.
func (f *Fleet) Close() error {
	var errs []error
	for _, t := range f.targets {
		switch {
		case t.ilo != nil:
			errs = append(errs, t.ilo.Close())
		case t.oa != nil:
			errs = append(errs, t.oa.Close())
		}
	}
	f.linux.Stop()
	if f.imgSrv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		errs = append(errs, f.imgSrv.Shutdown(ctx))
		cancel()
	}
	if f.dir != "" {
		errs = append(errs, os.RemoveAll(f.dir))
	}
	return errors.Join(errs...)
}

// FirstFlashRequest is when the first flash request reached one of the fleet's iLO
// simulators (zero when none did).
func (f *Fleet) FirstFlashRequest() time.Time {
	var first time.Time
	for _, t := range f.targets {
		if t.ilo == nil {
			continue
		}
		if at := t.ilo.Stats().FirstFlashRequest; !at.IsZero() && (first.IsZero() || at.Before(first)) {
			first = at
		}
	}
	return first
}
