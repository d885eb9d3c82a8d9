// Package config is the contract between the controller, which builds an agent pod, and the
// agent, which runs in it: the agent's command-line flags and the layout of the files mounted
// into the pod. The controller renders a Config into arguments with Args; the agent reads them
// back with Parse. Nothing here is secret: credentials are only ever mounted files.
package config

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
)

// Mount points inside the agent pod.
const (
	// SecretsDir holds one folder per Secret the pod mounts, by the Secret's name:
	// SecretsDir/<secret>/<key>. Targets name their Secrets (Target.CredentialsSecret, ...), so
	// that a long-lived agent serves the targets assigned to it later from Secrets it mounted at
	// the start, and two targets sharing a Secret share its one mount.
	SecretsDir = "/var/run/fwops/secrets"
	// CacheDir is the node's content-addressed firmware cache (a hostPath shared by agents).
	CacheDir = "/var/cache/fwops"
	// PVCDir holds the one file of a job's PersistentVolumeClaim source, read-only.
	PVCDir = "/var/run/fwops/pvc"
	// StagedDir holds the one file of a node path source, read-only.
	StagedDir = "/var/run/fwops/staged"
)

// Target is one target the agent serves, as the controller resolved it.
type Target struct {
	// Name is the UpdateTarget's name.
	Name string `json:"name"`
	// TargetUpdate is the name of the job's TargetUpdate for this target, where the agent
	// writes progress.
	TargetUpdate string `json:"targetUpdate"`
	// Type is the UpdateTarget's spec.type.
	Type string `json:"type"`
	// Address is the UpdateTarget's spec.address.
	Address string `json:"address"`
	// Bay selects a blade iLO behind an OA.
	Bay int `json:"bay,omitempty"`
	// Attempt numbers this start of the target, from 1: a retry is a new assignment.
	Attempt int32 `json:"attempt,omitempty"`
	// Slot is the agent's slot the target runs in, from 0: it uses that slot's session port
	// (Ports.Sessions, rule P4) and receive port (Ports.Reverse, rule P5).
	Slot int `json:"slot"`
	// SSHPort is the target's SSH port (rule P3); 0 for Redfish targets.
	SSHPort int `json:"sshPort,omitempty"`
	// CertificateSHA256 pins the iLO's certificate.
	CertificateSHA256 string `json:"certificateSHA256,omitempty"`
	// CredentialsSecret names the Secret with the target's credentials, mounted at
	// SecretDir(CredentialsSecret).
	CredentialsSecret string `json:"credentialsSecret"`
	// CABundleSecret names the Secret with the target's CA bundle; empty when it has none.
	CABundleSecret string `json:"caBundleSecret,omitempty"`
	// InsecureSkipVerify waives TLS verification, only when the user set it.
	InsecureSkipVerify bool `json:"insecureSkipVerify,omitempty"`
	// KnownHostsSecret names the Secret with the target's known_hosts; empty when it has none.
	KnownHostsSecret string `json:"knownHostsSecret,omitempty"`
	// InsecureIgnoreHostKey waives the SSH host key check, only when the user set it.
	InsecureIgnoreHostKey bool `json:"insecureIgnoreHostKey,omitempty"`
	// Sudo runs a Linux target's Smart Components through sudo -n (spec.linux.sudo).
	Sudo bool `json:"sudo,omitempty"`
	// StagingDirectory is where a Linux target's Smart Components are copied and run
	// (spec.linux.stagingDirectory); empty means the driver's default.
	StagingDirectory string `json:"stagingDirectory,omitempty"`
}

// Key identifies one attempt of one target, "targetupdate:attempt": an agent starts each key
// once.
func (t Target) Key() string { return t.TargetUpdate + ":" + strconv.Itoa(int(max(t.Attempt, 1))) }

// Ports are the ports the controller assigned to the agent. The agent binds them, moving to
// the next free port as the rules say when something outside Kubernetes holds one, and
// reports what it really bound.
type Ports struct {
	Control            int    // rule P1
	FirmwareServer     int    // rule P2, the port assigned first
	FirmwareFallback   [2]int // rule P2, the fallback range
	FirmwareSelection  string // rule P2: Random or Lowest
	IPC                int    // rule P5, 0 when the single-NIC rule is off
	Reverse            []int  // rule P5, one per slot
	Sessions           []int  // rule P4, one per slot: the range grows with the slots, not the targets
	ControlSearchLimit int    // how far above Control the agent may look (0: to 65535)
}

// Firmware is the image the job installs.
type Firmware struct {
	URL       string // an HTTP(S) source
	Path      string // a file inside the pod (PVC or staged node path)
	SHA256    string
	Version   string
	Component string
	// KeepInRepository keeps what the agent added to the iLO Repository (spec.firmware.keepInRepository).
	KeepInRepository bool
}

// Config is everything an agent needs besides its mounted files.
type Config struct {
	Namespace string
	Job       string
	// JobUID identifies the job instance, so that an agent of a deleted and re-created job
	// writes nothing to the new one.
	JobUID   string
	Node     string
	Pod      string
	Firmware Firmware
	// Baseline names, for a job with spec.baselineRef, the FirmwareBaseline of Namespace the
	// agent reads (its Role may get that one object) instead of Firmware; BaselineGeneration
	// is the generation the controller checked, so that an agent never installs components
	// whose sources the controller did not allow.
	Baseline           string
	BaselineGeneration int64
	// InventoryOnly, with Baseline, reads each target's inventory and installs nothing
	// (UpdateJob spec.inventoryOnly).
	InventoryOnly bool
	Ports         Ports
	// Targets are the targets the agent starts with; in Follow mode more come as the
	// controller assigns them (AnnotationAssignments on the agent's pod).
	Targets []Target
	// Follow keeps the agent up after its targets finish: it watches its own pod (Pod) and
	// starts each target the controller assigns to it there, until it is stopped.
	Follow bool
	// Timeout bounds each target's update.
	Timeout time.Duration
	// Lifetime is how long the agent's pod may run (its activeDeadlineSeconds): a pod that
	// lives for the job runs many targets' Timeouts one after the other, and what the agent
	// makes for its whole life (its certificate) must last that long. 0: one Timeout.
	Lifetime time.Duration
	// Force flashes targets already at the wanted version.
	Force bool
	// RebootIfRequired lets the agent reboot a server whose new firmware activates at the next
	// reboot (UpdateJob rollout.reboot: IfRequired).
	RebootIfRequired bool
	// Window is the job's maintenance window (spec.rollout.window), nil when it has none: a
	// reboot that RebootIfRequired allows is done only when it can end inside it.
	Window *fwv1.MaintenanceWindow
	// FirmwareTLS is the PortPolicy's spec.firmwareServer.tls: whether the firmware server
	// offers HTTPS (rule P2). Empty means Disabled.
	FirmwareTLS fwv1.FirmwareServerTLS
	// Address is the node address the agent binds and advertises to targets in image URLs.
	// Empty: the agent picks the address it uses to reach each target.
	Address string

	// Fields below are not set by the controller: they serve tests and the demo.

	// Kubeconfig is a kubeconfig path; empty means in-cluster configuration.
	Kubeconfig string
	// MountRoot prefixes every mount point, so that a process outside a pod can play one.
	MountRoot string
	// CacheDirOverride replaces CacheDir (still under MountRoot).
	CacheDirOverride string
}

// SecretDir is where the Secret of that name is mounted.
func (c Config) SecretDir(name string) string {
	return path.Join(c.MountRoot, SecretsDir, name)
}

// Slots is how many targets the agent runs at once: one per session port (rule P4), at
// least one.
func (c Config) Slots() int { return max(len(c.Ports.Sessions), 1) }

// CachePath is the firmware cache directory.
func (c Config) CachePath() string {
	if c.CacheDirOverride != "" {
		return path.Join(c.MountRoot, c.CacheDirOverride)
	}
	return path.Join(c.MountRoot, CacheDir)
}

// ComponentSourceMount is where a baseline component's nodePath or claim source is mounted in
// the pod: the file alone, under the component's name (two components may share a file
// name); "" for a url source.
func ComponentSourceMount(component string, fw fwv1.FirmwareSource) string {
	switch {
	case fw.PersistentVolumeClaim != nil:
		return path.Join(PVCDir, component, path.Base(fw.PersistentVolumeClaim.Path))
	case fw.NodePath != "":
		return path.Join(StagedDir, component, path.Base(fw.NodePath))
	}
	return ""
}

// ComponentPath is the local file of a baseline component's nodePath or claim source.
func (c Config) ComponentPath(component string, fw fwv1.FirmwareSource) string {
	if at := ComponentSourceMount(component, fw); at != "" {
		return path.Join(c.MountRoot, at)
	}
	return ""
}

// FirmwarePath is the local firmware file, for PVC and staged sources.
func (c Config) FirmwarePath() string {
	if c.Firmware.Path == "" {
		return ""
	}
	return path.Join(c.MountRoot, c.Firmware.Path)
}

// Args renders the configuration as the agent's arguments (after the "agent" verb). The
// order is fixed, so that the same Config always gives the same pod.
func (c Config) Args() []string {
	a := []string{
		"--namespace=" + c.Namespace,
		"--job=" + c.Job,
		"--job-uid=" + c.JobUID,
		"--node=" + c.Node,
		"--pod=" + c.Pod,
		"--component=" + c.Firmware.Component,
	}
	if c.Baseline != "" {
		a = append(a, "--baseline="+c.Baseline, "--baseline-generation="+strconv.FormatInt(c.BaselineGeneration, 10))
	} else {
		a = append(a, "--sha256="+c.Firmware.SHA256)
	}
	if c.InventoryOnly {
		a = append(a, "--inventory-only")
	}
	if c.Firmware.URL != "" {
		a = append(a, "--firmware-url="+c.Firmware.URL)
	}
	if c.Firmware.Path != "" {
		a = append(a, "--firmware-path="+c.Firmware.Path)
	}
	if c.Firmware.Version != "" {
		a = append(a, "--version="+c.Firmware.Version)
	}
	a = append(a,
		"--control-port="+strconv.Itoa(c.Ports.Control),
		"--firmware-port="+strconv.Itoa(c.Ports.FirmwareServer),
		fmt.Sprintf("--firmware-fallback=%d-%d", c.Ports.FirmwareFallback[0], c.Ports.FirmwareFallback[1]),
		"--firmware-selection="+c.Ports.FirmwareSelection,
	)
	if c.FirmwareTLS != "" {
		a = append(a, "--firmware-tls="+string(c.FirmwareTLS))
	}
	if c.Ports.IPC != 0 {
		a = append(a, "--ipc-port="+strconv.Itoa(c.Ports.IPC))
	}
	if len(c.Ports.Reverse) > 0 {
		a = append(a, "--reverse-ports="+joinInts(c.Ports.Reverse))
	}
	if len(c.Ports.Sessions) > 0 {
		a = append(a, "--session-ports="+joinInts(c.Ports.Sessions))
	}
	if c.Timeout > 0 {
		a = append(a, "--timeout="+c.Timeout.String())
	}
	if c.Lifetime > 0 {
		a = append(a, "--lifetime="+c.Lifetime.String())
	}
	if c.Force {
		a = append(a, "--force")
	}
	if c.Firmware.KeepInRepository {
		a = append(a, "--keep-in-repository")
	}
	if c.RebootIfRequired {
		a = append(a, "--reboot-if-required")
	}
	if c.Window != nil {
		b, _ := json.Marshal(c.Window) // plain struct: cannot fail
		a = append(a, "--window="+string(b))
	}
	if c.Address != "" {
		a = append(a, "--address="+c.Address)
	}
	if c.Follow {
		a = append(a, "--follow")
	}
	for _, t := range c.Targets {
		b, _ := json.Marshal(t) // plain struct: cannot fail
		a = append(a, "--target="+string(b))
	}
	return a
}

// ServesHTTPS says whether the firmware server offers HTTPS (Preferred or Required).
func (c Config) ServesHTTPS() bool {
	return c.FirmwareTLS == fwv1.FirmwareServerTLSPreferred || c.FirmwareTLS == fwv1.FirmwareServerTLSRequired
}

// Parse reads the agent's arguments back into a Config and checks it.
func Parse(args []string) (Config, error) {
	var c Config
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	fs.StringVar(&c.Namespace, "namespace", "", "namespace of the UpdateJob")
	fs.StringVar(&c.Job, "job", "", "name of the UpdateJob")
	fs.StringVar(&c.JobUID, "job-uid", "", "UID of the UpdateJob")
	fs.StringVar(&c.Node, "node", "", "node the agent runs on")
	fs.StringVar(&c.Pod, "pod", "", "the agent's pod name")
	fs.StringVar(&c.Baseline, "baseline", "", "FirmwareBaseline to roll out, in --namespace, instead of one image")
	fs.Int64Var(&c.BaselineGeneration, "baseline-generation", 0, "generation of --baseline the controller checked")
	fs.BoolVar(&c.InventoryOnly, "inventory-only", false, "with --baseline: read each target's inventory, install nothing")
	fs.StringVar(&c.Firmware.Component, "component", "iLO", "component to install: iLO, SystemROM, SmartComponent or OA")
	fs.StringVar(&c.Firmware.SHA256, "sha256", "", "SHA-256 of the image (required)")
	fs.StringVar(&c.Firmware.URL, "firmware-url", "", "HTTP(S) URL of the image")
	fs.StringVar(&c.Firmware.Path, "firmware-path", "", "path of the image inside the pod (PVC or staged)")
	fs.StringVar(&c.Firmware.Version, "version", "", "version the image installs")
	fs.IntVar(&c.Ports.Control, "control-port", 0, "control listener port (rule P1)")
	fs.IntVar(&c.Ports.FirmwareServer, "firmware-port", 0, "firmware server port (rule P2)")
	fallback := fs.String("firmware-fallback", "", "firmware server fallback range START-END (rule P2)")
	fs.StringVar(&c.Ports.FirmwareSelection, "firmware-selection", "Random", "Random or Lowest (rule P2)")
	fs.Func("firmware-tls", "Disabled, Preferred or Required: whether the firmware server offers HTTPS (rule P2)", func(v string) error {
		c.FirmwareTLS = fwv1.FirmwareServerTLS(v)
		return nil
	})
	fs.IntVar(&c.Ports.IPC, "ipc-port", 0, "local inter-process channel port (rule P5)")
	reverse := fs.String("reverse-ports", "", "comma-separated ports that receive from targets, one per slot (rule P5)")
	sessions := fs.String("session-ports", "", "comma-separated source ports towards targets, one per slot (rule P4)")
	fs.BoolVar(&c.Follow, "follow", false, "stay up and take the targets the controller assigns on the agent's pod (requires --pod)")
	fs.DurationVar(&c.Timeout, "timeout", 30*time.Minute, "bound on each target's update")
	fs.DurationVar(&c.Lifetime, "lifetime", 0, "how long the agent's pod may run (its activeDeadlineSeconds); 0: one --timeout")
	fs.BoolVar(&c.Force, "force", false, "flash targets already at the wanted version")
	fs.BoolVar(&c.Firmware.KeepInRepository, "keep-in-repository", false, "keep a Smart Component the agent added to the iLO Repository after it is applied")
	fs.BoolVar(&c.RebootIfRequired, "reboot-if-required", false, "reboot a server gracefully when its new firmware activates at reboot")
	fs.Func("window", "the job's maintenance window as JSON (spec.rollout.window)", func(s string) error {
		w := &fwv1.MaintenanceWindow{}
		dec := json.NewDecoder(strings.NewReader(s))
		dec.DisallowUnknownFields()
		if err := dec.Decode(w); err != nil {
			return fmt.Errorf("bad window %q: %w", s, err)
		}
		c.Window = w
		return nil
	})
	fs.StringVar(&c.Address, "address", "", "node address to bind and advertise")
	fs.StringVar(&c.Kubeconfig, "kubeconfig", "", "kubeconfig path (default: in-cluster)")
	fs.StringVar(&c.MountRoot, "mount-root", "", "prefix for every mount point (tests and demo)")
	fs.StringVar(&c.CacheDirOverride, "cache-dir", "", "firmware cache directory (default "+CacheDir+")")
	fs.Func("target", "a target as JSON (repeatable)", func(s string) error {
		var t Target
		dec := json.NewDecoder(strings.NewReader(s))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&t); err != nil {
			return fmt.Errorf("bad target %q: %w", s, err)
		}
		c.Targets = append(c.Targets, t)
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	var err error
	if *fallback != "" {
		if c.Ports.FirmwareFallback, err = parseRange(*fallback); err != nil {
			return Config{}, fmt.Errorf("--firmware-fallback: %w", err)
		}
	}
	if *reverse != "" {
		if c.Ports.Reverse, err = parseInts(*reverse); err != nil {
			return Config{}, fmt.Errorf("--reverse-ports: %w", err)
		}
	}
	if *sessions != "" {
		if c.Ports.Sessions, err = parseInts(*sessions); err != nil {
			return Config{}, fmt.Errorf("--session-ports: %w", err)
		}
	}
	return c, c.Validate()
}

// Validate checks the configuration and names the first bad flag.
func (c Config) Validate() error {
	var errs []error
	req := func(flag, v string) {
		if v == "" {
			errs = append(errs, fmt.Errorf("--%s is required", flag))
		}
	}
	req("namespace", c.Namespace)
	req("job", c.Job)
	switch {
	case c.Baseline != "":
		if c.Firmware.SHA256 != "" || c.Firmware.URL != "" || c.Firmware.Path != "" {
			errs = append(errs, errors.New("--baseline excludes --sha256, --firmware-url and --firmware-path: the baseline names each component's image"))
		}
		if c.BaselineGeneration <= 0 {
			errs = append(errs, errors.New("--baseline-generation is required with --baseline"))
		}
	case c.InventoryOnly:
		errs = append(errs, errors.New("--inventory-only needs --baseline: it reads the inventory a baseline's plan needs"))
	default:
		req("sha256", c.Firmware.SHA256)
		if (c.Firmware.URL == "") == (c.Firmware.Path == "") {
			errs = append(errs, errors.New("exactly one of --firmware-url and --firmware-path is required"))
		}
	}
	switch {
	case c.Follow && c.Pod == "":
		errs = append(errs, errors.New("--follow requires --pod: the agent follows the assignments on its own pod"))
	case len(c.Targets) == 0 && !c.Follow:
		errs = append(errs, errors.New("at least one --target is required (or --follow)"))
	}
	seen := map[string]bool{}
	for i, t := range c.Targets {
		if err := t.Validate(); err != nil && t.Name != "" {
			errs = append(errs, fmt.Errorf("--target %s: %w", t.Name, err))
		} else if err != nil {
			errs = append(errs, fmt.Errorf("--target #%d: %w", i+1, err))
		} else if seen[t.Name] {
			errs = append(errs, fmt.Errorf("--target %s: given twice", t.Name))
		}
		seen[t.Name] = true
	}
	for flag, p := range map[string]int{"control-port": c.Ports.Control, "firmware-port": c.Ports.FirmwareServer, "ipc-port": c.Ports.IPC} {
		if p < 0 || p > 65535 {
			errs = append(errs, fmt.Errorf("--%s: %d is not a TCP port", flag, p))
		}
	}
	if c.Lifetime < 0 {
		errs = append(errs, fmt.Errorf("--lifetime: %s is negative", c.Lifetime))
	}
	switch c.FirmwareTLS {
	case "", fwv1.FirmwareServerTLSDisabled, fwv1.FirmwareServerTLSPreferred, fwv1.FirmwareServerTLSRequired:
	default:
		errs = append(errs, fmt.Errorf("--firmware-tls: %q is not Disabled, Preferred or Required", c.FirmwareTLS))
	}
	sort.Slice(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
	return errors.Join(errs...)
}

// Validate checks one target, as the controller resolved it.
func (t Target) Validate() error {
	switch {
	case t.Name == "" || t.TargetUpdate == "":
		return errors.New("name and targetUpdate are required")
	case t.Address == "":
		return errors.New("address is required")
	case t.CredentialsSecret == "":
		return errors.New("credentialsSecret is required")
	case t.Slot < 0:
		return fmt.Errorf("slot %d is negative", t.Slot)
	}
	return nil
}

func parseRange(s string) ([2]int, error) {
	lo, hi, ok := strings.Cut(s, "-")
	if !ok {
		return [2]int{}, fmt.Errorf("%q is not START-END", s)
	}
	a, err1 := strconv.Atoi(lo)
	b, err2 := strconv.Atoi(hi)
	if err1 != nil || err2 != nil || a < 1 || b > 65535 || a > b {
		return [2]int{}, fmt.Errorf("%q is not a port range START-END within 1-65535", s)
	}
	return [2]int{a, b}, nil
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("%q is not a TCP port", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}
