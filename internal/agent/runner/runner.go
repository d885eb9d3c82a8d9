// Package runner is the agent's main loop: it binds the agent's ports by the rules of
// ports.md, fetches and verifies the firmware image, serves it to the targets, drives every
// target concurrently through its driver and reports progress in each target's TargetUpdate
// status, in /status and in its logs.
//
// The controller's tests and the demo run an agent in-process with Main, passing the very
// arguments the agent pod would get (config.Config.Args) plus Options for what a pod gets from
// its surroundings (an API client, fast driver timings).
package runner

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
	"github.com/fwops/firmware-operator/internal/agent/agentcert"
	"github.com/fwops/firmware-operator/internal/agent/config"
	"github.com/fwops/firmware-operator/internal/agent/control"
	"github.com/fwops/firmware-operator/internal/agent/driver"
	"github.com/fwops/firmware-operator/internal/agent/firmware"
	"github.com/fwops/firmware-operator/internal/agent/fwserver"
	"github.com/fwops/firmware-operator/internal/agent/ilo"
	"github.com/fwops/firmware-operator/internal/agent/linux"
)

// Deps are what an agent gets from its surroundings rather than from its flags.
type Deps struct {
	// Client writes TargetUpdate status (required).
	Client client.Client
	// Drivers opens a driver per target type (required).
	Drivers driver.Registry
	// HTTPClient downloads URL sources; nil means a client with the default transport.
	HTTPClient *http.Client
	// Log receives JSON logs; nil discards. Run redacts the targets' secrets from it.
	Log *slog.Logger
	// MinWriteInterval spaces status writes within a phase (default DefaultMinWriteInterval).
	MinWriteInterval time.Duration
	// OnBound, when set, is called once the ports are bound, before any target is touched.
	OnBound func(Bound)
	// Rand picks rule P2's random fallback port; nil means math/rand/v2.
	Rand func(n int) int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// FinalWriteTimeout bounds the retries of a target's final status write (default
	// DefaultFinalWriteTimeout).
	FinalWriteTimeout time.Duration

	// OnCertificate, when set, is called with the agent's certificate once it is made (the
	// secret scan looks for its private key everywhere).
	OnCertificate func(tls.Certificate)

	redactor *redactor // shared with the drivers' loggers when Main built them
	// iloEvents counts the iLO drivers' Redfish events, for /metrics, when Main built them.
	iloEvents *ilo.EventCounters
	// linuxCallbacks counts the Linux drivers' call-backs, for /metrics, when Main built them.
	linuxCallbacks *linux.CallbackCounters
}

// agent is one run.
type agent struct {
	cfg   config.Config
	deps  Deps
	log   *slog.Logger
	red   *redactor
	bound Bound
	held  *held
	reps  []*reporter
	// targets are the driver targets, with credentials; errs the problems reading them.
	targets []driver.Target
	terrs   []error
	metrics *control.Metrics
	fw      *fwserver.Server
	imgOK   atomic.Bool
	// certificate is the agent's (agentcert), made on first use: for HTTPS on the firmware
	// port (rule P2) and the Redfish event listeners (rule P5).
	certificate func() (*tls.Certificate, error)
}

// Status implements control.StatusSource for /status and /metrics.
func (a *agent) Status() control.Snapshot {
	s := control.Snapshot{
		Agent: control.AgentInfo{Node: a.cfg.Node, Job: a.cfg.Job, Ports: a.bound.List()},
		Time:  a.deps.Now().UTC(),
	}
	for _, r := range a.reps {
		s.Targets = append(s.Targets, r.snapshot())
	}
	return s
}

// Run runs one agent to the end: every target Succeeded, Skipped or Failed. It returns nil
// when no target failed, else an error naming the failed targets.
func Run(ctx context.Context, cfg config.Config, deps Deps) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	if deps.Client == nil || deps.Drivers == nil {
		return errors.New("runner: Deps.Client and Deps.Drivers are required")
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	if deps.MinWriteInterval <= 0 {
		deps.MinWriteInterval = DefaultMinWriteInterval
	}
	if deps.HTTPClient == nil {
		deps.HTTPClient = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	red := deps.redactor
	if red == nil {
		red = &redactor{}
	}
	log := deps.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if _, ok := log.Handler().(redactHandler); !ok {
		log = slog.New(redactHandler{inner: log.Handler(), r: red})
	}
	log = log.With("job", cfg.Job, "node", cfg.Node, "pod", cfg.Pod)
	a := &agent{cfg: cfg, deps: deps, log: log, red: red}
	a.certificate = sync.OnceValues(a.makeCertificate)

	// Secrets first, so that nothing logged afterwards can carry them.
	a.readTargets()
	a.reps = make([]*reporter, len(cfg.Targets))
	for i, t := range cfg.Targets {
		a.reps[i] = &reporter{c: deps.Client, log: log, redact: red.redact, now: deps.Now,
			interval: deps.MinWriteInterval, target: t, pod: cfg.Pod, finalTimeout: deps.FinalWriteTimeout}
	}

	// Ports before anything else: what the agent really bound is what it reports.
	bound, h, err := bindPorts(ctx, cfg, deps.Rand)
	if err != nil {
		log.Error("binding ports failed", "err", err)
		a.loadAll(ctx)
		for _, r := range a.reps {
			if !r.phase().Finished() {
				r.finish(ctx, fwv1.TargetPhaseFailed, "the agent on node "+cfg.Node+" could not bind its ports: "+err.Error()+"; free the ports or change the PortPolicy", nil)
			}
		}
		return fmt.Errorf("binding ports: %w", err)
	}
	a.bound, a.held = bound, h
	defer h.close()
	log.Info("ports bound", "control", bound.Control, "firmwareServer", bound.Firmware, "ipc", bound.IPC,
		"reverse", fmt.Sprint(bound.Reverse), "sessions", fmt.Sprint(bound.Sessions),
		"assignedControl", cfg.Ports.Control, "assignedFirmwareServer", cfg.Ports.FirmwareServer, "assignedIPC", cfg.Ports.IPC)
	if deps.OnBound != nil {
		deps.OnBound(bound)
	}

	stop := a.serveControl()
	defer stop()

	a.loadAll(ctx)
	a.run(ctx)
	return a.summary()
}

// readTargets reads each target's mounted Secrets and registers them with the redactor.
func (a *agent) readTargets() {
	a.targets = make([]driver.Target, len(a.cfg.Targets))
	a.terrs = make([]error, len(a.cfg.Targets))
	for i, t := range a.cfg.Targets {
		dt, err := targetFromMounts(a.cfg, t)
		a.red.add(dt.Credentials.Password, string(dt.Credentials.PrivateKey))
		a.targets[i], a.terrs[i] = dt, err
	}
}

// serveControl starts the control listener (rule P1) and the inter-process channel (rule P5).
func (a *agent) serveControl() (stop func()) {
	a.metrics = control.NewMetrics(a)
	if ev := a.deps.iloEvents; ev != nil {
		a.metrics.CountRedfishEvents(ev.Accepted.Load, ev.Dropped.Load) // rule P5
	}
	if cb := a.deps.linuxCallbacks; cb != nil {
		a.metrics.CountLinuxCallbacks(cb.Accepted.Load, cb.Refused.Load) // rule P5
	}
	ctl := &control.Server{Status: a, Metrics: a.metrics, Log: a.log}
	ctl.SetReady(func() error {
		switch {
		case !a.imgOK.Load():
			return errors.New("firmware image not verified yet")
		case a.fw == nil || !a.fw.Serving():
			return errors.New("firmware server not listening yet")
		}
		return nil
	})
	var wg sync.WaitGroup
	serve := func(name string, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
				a.log.Error(name+" listener stopped", "err", err)
			}
		}()
	}
	cl := a.held.take(a.bound.Control)
	serve("control", func() error { return ctl.Serve(cl) })
	// The kubelet's probes come through the probe socket, wherever the control port went
	// (rule P1); without a pod name (in-process tests) there is no kubelet to serve.
	var pl net.Listener
	if a.cfg.Pod != "" {
		var err error
		if pl, err = control.ListenProbe(a.cfg.Namespace, a.cfg.Pod); err != nil {
			a.log.Error("probe socket: the kubelet's probes will fail", "err", err)
		} else {
			serve("probe", func() error { return ctl.ServeProbes(pl) })
		}
	}
	var ipc *http.Server
	var il net.Listener
	if a.bound.IPC != 0 {
		il = a.held.take(a.bound.IPC)
		mux := http.NewServeMux()
		mux.Handle("GET /status", control.StatusHandler(a))
		ipc = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		serve("inter-process", func() error { return ipc.Serve(il) })
	}
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = ctl.Shutdown(sctx)
		if ipc != nil {
			_ = ipc.Shutdown(sctx)
		}
		// Shutdown before Serve got going is a no-op: closing the listeners ends Serve then.
		_ = cl.Close()
		if pl != nil {
			_ = pl.Close()
		}
		if il != nil {
			_ = il.Close()
		}
		wg.Wait()
	}
}

// loadAll reads every TargetUpdate; a refused one is logged and never written.
func (a *agent) loadAll(ctx context.Context) {
	for _, r := range a.reps {
		if r.obj != nil || r.refused != nil {
			continue
		}
		if err := r.load(ctx, a.cfg); err != nil {
			a.log.Error("not working on target: its TargetUpdate cannot be used", "target", r.target.Name, "err", err)
		}
	}
}

// run fetches the image, serves it and drives every target.
func (a *agent) run(ctx context.Context) {
	// Targets already finished are left alone (resume safety); the others start.
	var active []int
	for i, r := range a.reps {
		if r.refused != nil {
			continue
		}
		if ph := r.phase(); ph.Finished() {
			a.log.Info("target already finished, leaving it alone", "target", r.target.Name, "phase", ph)
			continue
		}
		active = append(active, i)
		r.update(ctx, true, func(s *fwv1.TargetUpdateStatus) {
			now := metav1.NewTime(a.deps.Now())
			s.Node, s.AgentPod = a.cfg.Node, a.cfg.Pod
			a.bound.reportTo(s, r.target.Name, i, fwv1.TargetType(a.targets[i].Type))
			s.StartTime, s.CompletionTime = &now, nil
			s.Message = "downloading and verifying the firmware image"
			// A target the agent was flashing keeps its phase until its version is read.
			if !s.Phase.InProgress() || s.Phase == fwv1.TargetPhaseDownloading || s.Phase == fwv1.TargetPhaseStaging {
				s.Phase, s.Percent = fwv1.TargetPhaseDownloading, 0
			}
		})
	}
	if len(active) == 0 {
		return
	}

	if a.cfg.Baseline != "" {
		a.runBaseline(ctx, active)
		return
	}
	img, err := a.fetch(ctx, firmware.Source{URL: a.cfg.Firmware.URL, Path: a.cfg.FirmwarePath(), SHA256: a.cfg.Firmware.SHA256}, "the job's sha256")
	if err != nil {
		for _, i := range active {
			a.reps[i].finish(ctx, fwv1.TargetPhaseFailed, err.Error(), nil)
		}
		return
	}
	paths, stop, err := a.serveImages(map[string]firmware.Image{a.cfg.JobUID + "/" + a.cfg.Job: img})
	if err != nil {
		for _, i := range active {
			a.reps[i].finish(ctx, fwv1.TargetPhaseFailed, "cannot serve the firmware image"+err.Error(), nil)
		}
		return
	}
	defer stop()

	var wg sync.WaitGroup
	for _, i := range active {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.drive(ctx, i, img, paths[a.cfg.JobUID+"/"+a.cfg.Job])
		}()
	}
	wg.Wait()
}

// serveImages registers the verified images, by key, and serves them on the bound firmware
// port (rule P2), over HTTPS too unless the PortPolicy disables it, until stop; paths are the
// images' URL paths by key. Its error reads after "cannot serve the firmware image".
func (a *agent) serveImages(imgs map[string]firmware.Image) (paths map[string]string, stop func(), err error) {
	a.fw = &fwserver.Server{Log: a.log, OnServed: func(_ string, n int64) { a.metrics.AddBytesServed(n) }}
	if a.cfg.ServesHTTPS() {
		if a.fw.Certificate, err = a.certificate(); err != nil {
			return nil, nil, fmt.Errorf(" over HTTPS, nothing was flashed: %w", err)
		}
	}
	paths = map[string]string{}
	for key, img := range imgs {
		if paths[key], err = a.fw.Register(key, img); err != nil {
			return nil, nil, fmt.Errorf(": %w", err)
		}
	}
	fl := a.held.take(a.bound.Firmware)
	served := make(chan struct{})
	go func() {
		defer close(served)
		if err := a.fw.Serve(fl); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			a.log.Error("firmware server stopped", "err", err)
		}
	}()
	a.imgOK.Store(true)
	return paths, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = a.fw.Shutdown(sctx)
		_ = fl.Close() // in case Shutdown came before Serve started
		<-served
	}, nil
}

// fetch gets the verified image from the cache; its error is the message for every target.
// digestOwner names where the wanted digest came from ("the job's sha256").
func (a *agent) fetch(ctx context.Context, src firmware.Source, digestOwner string) (firmware.Image, error) {
	cache := &firmware.Cache{Dir: a.cfg.CachePath(), Client: a.deps.HTTPClient, Log: a.log}
	img, err := cache.Get(ctx, src)
	if err == nil {
		a.log.Info("firmware image verified", "sha256", img.SHA256, "bytes", img.Size, "file", img.FileName)
		return img, nil
	}
	var mm *firmware.DigestMismatchError
	if errors.As(err, &mm) {
		a.log.Error("firmware image rejected: SHA-256 mismatch", "expected", mm.Expected, "source", mm.Source)
		return img, fmt.Errorf("firmware image rejected, nothing was flashed: %s does not hash to %s %s; fix %s or the file at its source",
			mm.Source, digestOwner, mm.Expected, digestOwner)
	}
	a.log.Error("firmware image fetch failed", "err", err)
	return img, fmt.Errorf("could not fetch the firmware image, nothing was flashed: %w", err)
}

// summary is Run's result: nil when every target succeeded or was skipped.
func (a *agent) summary() error {
	var failed []string
	counts := map[string]int{}
	for _, r := range a.reps {
		s := r.snapshot()
		counts[s.Phase]++
		if s.Phase != string(fwv1.TargetPhaseSucceeded) && s.Phase != string(fwv1.TargetPhaseSkipped) {
			failed = append(failed, s.Name)
		}
	}
	a.log.Info("agent finished", "targets", len(a.reps), "succeeded", counts[string(fwv1.TargetPhaseSucceeded)],
		"skipped", counts[string(fwv1.TargetPhaseSkipped)], "failed", len(failed))
	if len(failed) == 0 {
		return nil
	}
	sort.Strings(failed)
	return fmt.Errorf("%d of %d targets did not succeed: %s (see their TargetUpdate status)", len(failed), len(a.reps), strings.Join(failed, ", "))
}

// targetFromMounts builds a driver target from the config and the target's mounted Secrets.
func targetFromMounts(cfg config.Config, t config.Target) (driver.Target, error) {
	dt := driver.Target{
		Name: t.Name, Type: driver.Type(t.Type), Address: t.Address, Bay: t.Bay,
		TLS:   driver.TLS{FingerprintSHA256: t.CertificateSHA256, InsecureSkipVerify: t.InsecureSkipVerify},
		SSH:   driver.SSH{Port: t.SSHPort, InsecureIgnoreHostKey: t.InsecureIgnoreHostKey},
		Linux: driver.Linux{Sudo: t.Sudo, StagingDirectory: t.StagingDirectory},
		// rule P4: LocalPort is set once bound.
		LocalAddress: cfg.Address,
	}
	dir := cfg.TargetDir(t.Name)
	read := func(sub, key string) ([]byte, bool, error) {
		b, err := os.ReadFile(path.Join(dir, sub, key))
		if errors.Is(err, os.ErrNotExist) {
			return nil, false, nil
		}
		if err != nil {
			return nil, false, fmt.Errorf("target %s: reading mounted %s/%s: %w", t.Name, sub, key, err)
		}
		return b, true, nil
	}
	user, ok, err := read(config.CredentialsDir, fwv1.SecretKeyUsername)
	if err != nil {
		return dt, err
	}
	if !ok {
		return dt, fmt.Errorf("target %s: no %q in the credentials Secret (mounted at %s): add it to the Secret named by the UpdateTarget's credentialsSecretRef",
			t.Name, fwv1.SecretKeyUsername, path.Join(dir, config.CredentialsDir))
	}
	dt.Credentials.Username = strings.TrimRight(string(user), "\r\n")
	pw, _, err := read(config.CredentialsDir, fwv1.SecretKeyPassword)
	if err != nil {
		return dt, err
	}
	dt.Credentials.Password = strings.TrimRight(string(pw), "\r\n")
	if dt.Credentials.PrivateKey, _, err = read(config.CredentialsDir, fwv1.SecretKeySSHPrivateKey); err != nil {
		return dt, err
	}
	if dt.Credentials.Password == "" && len(dt.Credentials.PrivateKey) == 0 {
		return dt, fmt.Errorf("target %s: the credentials Secret has neither %q nor %q", t.Name, fwv1.SecretKeyPassword, fwv1.SecretKeySSHPrivateKey)
	}
	if t.HasCABundle {
		b, ok, err := read(config.CADir, fwv1.SecretKeyCABundle)
		if err != nil {
			return dt, err
		}
		if !ok {
			return dt, fmt.Errorf("target %s: the CA bundle Secret has no %q", t.Name, fwv1.SecretKeyCABundle)
		}
		dt.TLS.CABundle = b
	}
	if t.HasKnownHosts {
		b, ok, err := read(config.KnownHostsDir, fwv1.SecretKeyKnownHosts)
		if err != nil {
			return dt, err
		}
		if !ok {
			return dt, fmt.Errorf("target %s: the known-hosts Secret has no %q", t.Name, fwv1.SecretKeyKnownHosts)
		}
		dt.SSH.KnownHosts = b
	}
	return dt, nil
}

// imageURL is the URL a target pulls the image from (rule P2): scheme (http or https), the
// agent's address as the target sees it, the bound firmware port and the registered path.
func imageURL(scheme, advertise, targetAddress string, port int, urlPath string) (string, error) {
	host, err := agentHost(advertise, targetAddress)
	if err != nil {
		return "", err
	}
	return scheme + "://" + net.JoinHostPort(host, strconv.Itoa(port)) + urlPath, nil
}

// agentHost is the agent's address as a target sees it: the advertised one, else the one the
// kernel routes toward the target from.
func agentHost(advertise, targetAddress string) (string, error) {
	if advertise != "" {
		return advertise, nil
	}
	return localAddressToward(targetAddress)
}

// makeCertificate makes the agent's certificate for the addresses its targets reach it at,
// valid for the job's per-target timeout and a day more (an agent also waits for its claims
// and between targets; the targets do not check the validity anyway).
func (a *agent) makeCertificate() (*tls.Certificate, error) {
	var hosts []string
	for _, t := range a.targets {
		if h, err := agentHost(a.cfg.Address, t.Address); err == nil {
			hosts = append(hosts, h)
		}
	}
	now := a.deps.Now()
	cert, err := agentcert.New(hosts, now, now.Add(a.cfg.Timeout+24*time.Hour))
	if err != nil {
		return nil, err
	}
	a.log.Info("agent certificate made", "sha256", agentcert.FingerprintSHA256(cert), "addresses", fmt.Sprint(hosts))
	if a.deps.OnCertificate != nil {
		a.deps.OnCertificate(cert)
	}
	return &cert, nil
}

// localAddressToward is the local address the kernel would use to reach the target: a UDP
// "connect" sends no packet but picks the route. For a loopback target it is 127.0.0.1.
func localAddressToward(targetAddress string) (string, error) {
	host := targetHost(targetAddress)
	var d net.Dialer
	c, err := d.DialContext(context.Background(), "udp", net.JoinHostPort(host, "9"))
	if err != nil {
		return "", fmt.Errorf("no route from this node to %s: %w", host, err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).IP.String(), nil
}

// targetHost extracts the host from an UpdateTarget address: host, host:port, [v6]:port, a
// bare IPv6 address, or a URL.
func targetHost(a string) string {
	a = strings.TrimSpace(a)
	if i := strings.Index(a, "://"); i >= 0 {
		a = a[i+3:]
		if j := strings.IndexAny(a, "/?#"); j >= 0 {
			a = a[:j]
		}
	}
	if h, _, err := driver.SplitAddress(a); err == nil {
		if ip := net.ParseIP(h); ip != nil {
			return ip.String()
		}
		return h
	}
	return a
}
