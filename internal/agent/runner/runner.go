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
	"crypto/rsa"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path"
	"slices"
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

	// Assignments tells a Follow agent the targets assigned to it; nil means its own pod's
	// annotation, watched through Client, which must then be a client.WithWatch.
	Assignments AssignmentSource

	redactor *redactor // shared with the drivers' loggers when Main built them
	// iloEvents counts the iLO drivers' Redfish events, for /metrics, when Main built them.
	iloEvents *ilo.EventCounters
	// linuxCallbacks counts the Linux drivers' call-backs, for /metrics, when Main built them.
	linuxCallbacks *linux.CallbackCounters
}

// agent is one run: one process, serving every target assigned to it, at most one per slot.
type agent struct {
	cfg     config.Config
	deps    Deps
	log     *slog.Logger
	red     *redactor
	bound   Bound
	held    *held
	metrics *control.Metrics
	fw      *fwserver.Server
	imgOK   atomic.Bool
	// certificate is the agent's (agentcert), made on first use: for HTTPS on the firmware
	// port (rule P2) and the Redfish event listeners (rule P5).
	certificate func() (*tls.Certificate, error)
	certKey     func() (*rsa.PrivateKey, error)
	certOnce    sync.Once // starts making it with the first target

	// mu guards the targets: every one the agent took (for /status and the summary), the
	// assignments it has seen (by Target.Key), its slots and the assignments waiting for one.
	mu    sync.Mutex
	tasks []*task
	seen  map[string]bool
	busy  []bool
	queue []config.Target
	// wg counts the targets being driven.
	wg sync.WaitGroup

	// The firmware server starts once and serves every target; the image is fetched and
	// registered once, by the first target that needs it (image).
	serverOnce sync.Once
	serverErr  error
	stopServer func()
	imgMu      sync.Mutex
	imgCall    *imageCall
	img        *imageCall // the one that succeeded
	prefetched *imageCall // the fetch started with the agent (prefetch), until a target takes it
	serveMu    sync.Mutex
	urlPath    string // where the job's image is served, once registered (served)
	baseOnce   sync.Once
	base       *fwv1.FirmwareBaseline
	comps      map[string]*componentImage
	baseErr    string
}

// task is one target the agent took: its status, its driver target with the credentials
// read from the mounted Secrets (or why they could not be), and its slot.
type task struct {
	rep    *reporter
	target driver.Target
	err    error
	slot   int
}

// imageCall is one fetch of the job's image, shared by the targets that wait for it.
type imageCall struct {
	done chan struct{}
	img  firmware.Image
	err  error
}

// Status implements control.StatusSource for /status and /metrics.
func (a *agent) Status() control.Snapshot {
	s := control.Snapshot{
		Agent: control.AgentInfo{Node: a.cfg.Node, Job: a.cfg.Job, Ports: a.bound.List()},
		Time:  a.deps.Now().UTC(),
	}
	for _, tk := range a.allTasks() {
		s.Targets = append(s.Targets, tk.rep.snapshot())
	}
	return s
}

func (a *agent) allTasks() []*task {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]*task(nil), a.tasks...)
}

// Run runs one agent to the end. Without Follow the end is when every target is Succeeded,
// Skipped or Failed, and it returns nil when none failed, else an error naming the failed
// ones. With Follow the agent also takes the targets assigned to it later (Deps.Assignments)
// until ctx ends, and its error names only the targets it left unfinished: a target that
// failed was reported on its TargetUpdate, and the controller decides about a retry.
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
	if cfg.Follow && deps.Assignments == nil {
		wc, ok := deps.Client.(client.WithWatch)
		if !ok {
			return errors.New("runner: --follow needs an API client that can watch the agent's pod (client.WithWatch)")
		}
		deps.Assignments = PodAssignments{Client: wc, Namespace: cfg.Namespace, Pod: cfg.Pod, Log: deps.Log}
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
	a := &agent{cfg: cfg, deps: deps, log: log, red: red, seen: map[string]bool{}, busy: make([]bool, slotsOf(cfg)),
		fw: &fwserver.Server{Log: log}}
	a.certificate = sync.OnceValues(a.makeCertificate)
	// The certificate's RSA key is the slow part (a second and more on a busy node): it is
	// made from the start, before the targets come and log in, for an agent that may serve
	// HTTPS (rule P2) or listen on receive ports (P5). The certificate itself names the
	// addresses of the targets, made with the first one (launch).
	a.certKey = sync.OnceValues(agentcert.NewKey)
	if cfg.ServesHTTPS() || len(cfg.Ports.Reverse) > 0 {
		go func() { _, _ = a.certKey() }()
	}

	// Secrets first, so that nothing logged afterwards can carry them.
	first := a.take(cfg.Targets)

	// Ports before anything else: what the agent really bound is what it reports.
	bound, h, err := bindPorts(ctx, cfg, deps.Rand)
	if err != nil {
		log.Error("binding ports failed", "err", err)
		for _, tk := range first {
			if tk.rep.load(ctx, cfg) == nil && !tk.rep.phase().Finished() {
				tk.rep.finish(ctx, fwv1.TargetPhaseFailed, "the agent on node "+cfg.Node+" could not bind its ports: "+err.Error()+"; free the ports or change the PortPolicy", nil)
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
	defer a.prefetch(ctx)()

	for _, tk := range first {
		a.launch(ctx, tk)
	}
	if cfg.Follow {
		log.Info("following the targets assigned on the agent's pod", "slots", len(a.busy))
		err := deps.Assignments.Follow(ctx, func(ts []config.Target) {
			for _, tk := range a.take(ts) {
				a.launch(ctx, tk)
			}
		})
		if err != nil && ctx.Err() == nil {
			log.Error("no longer following the assignments", "err", err)
		}
	}
	a.wg.Wait()
	if a.stopServer != nil {
		a.stopServer()
	}
	return a.summary()
}

// slotsOf is how many targets the agent drives at once: one per session port (rule P4); a
// one-batch agent runs all its targets at once, those without a session port from a port
// the kernel picks. At least one.
func slotsOf(cfg config.Config) int {
	slots := len(cfg.Ports.Sessions)
	if !cfg.Follow {
		slots = max(slots, len(cfg.Targets))
	}
	return max(slots, 1)
}

// take registers the assignments not seen before and returns those that got a free slot;
// the others wait for one (release).
func (a *agent) take(ts []config.Target) []*task {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, t := range ts {
		if a.seen[t.Key()] {
			continue
		}
		a.seen[t.Key()] = true
		a.queue = append(a.queue, t)
	}
	return a.dequeueLocked()
}

// dequeueLocked gives waiting assignments the free slots: the slot the controller chose when
// it is free, else the first free one.
func (a *agent) dequeueLocked() []*task {
	var out []*task
	for len(a.queue) > 0 {
		t := a.queue[0]
		slot := -1
		if t.Slot >= 0 && t.Slot < len(a.busy) && !a.busy[t.Slot] {
			slot = t.Slot
		} else if i := slices.Index(a.busy, false); i >= 0 {
			slot = i
		}
		if slot < 0 {
			break
		}
		a.queue = a.queue[1:]
		a.busy[slot] = true
		dt, err := targetFromMounts(a.cfg, t)
		a.red.add(dt.Credentials.Password, string(dt.Credentials.PrivateKey))
		tk := &task{target: dt, err: err, slot: slot, rep: &reporter{c: a.deps.Client, log: a.log, redact: a.red.redact, now: a.deps.Now,
			interval: a.deps.MinWriteInterval, target: t, pod: a.cfg.Pod, finalTimeout: a.deps.FinalWriteTimeout}}
		a.tasks = append(a.tasks, tk)
		out = append(out, tk)
	}
	return out
}

// launch drives tk in its own goroutine; its slot goes to the next waiting assignment after.
// The first launch also starts making the agent's certificate, for the addresses its first
// targets reach it at, while they read their TargetUpdates: an RSA key takes a while on a
// busy node, and the firmware server needs it before the first flash request.
func (a *agent) launch(ctx context.Context, tk *task) {
	a.certOnce.Do(func() {
		if a.cfg.ServesHTTPS() {
			a.wg.Add(1)
			go func() {
				defer a.wg.Done()
				_, _ = a.certificate() // its error is the firmware server's (startServer)
			}()
		}
	})
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		defer a.release(ctx, tk.slot)
		a.runTask(ctx, tk)
	}()
}

func (a *agent) release(ctx context.Context, slot int) {
	a.mu.Lock()
	a.busy[slot] = false
	next := a.dequeueLocked()
	a.mu.Unlock()
	for _, tk := range next {
		a.launch(ctx, tk)
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

// runTask reads the target's TargetUpdate and drives it, unless it is finished already
// (resume safety) or not this job's.
func (a *agent) runTask(ctx context.Context, tk *task) {
	r := tk.rep
	if err := r.load(ctx, a.cfg); err != nil {
		a.log.Error("not working on target: its TargetUpdate cannot be used", "target", r.target.Name, "err", err)
		return
	}
	if a.cfg.Follow && !a.waitClaim(ctx, r) {
		return
	}
	if ph := r.phase(); ph.Finished() {
		a.log.Info("target already finished, leaving it alone", "target", r.target.Name, "phase", ph)
		return
	}
	start := func(s *fwv1.TargetUpdateStatus) {
		now := metav1.NewTime(a.deps.Now())
		s.Node, s.AgentPod = a.cfg.Node, a.cfg.Pod
		a.bound.reportTo(s, tk.slot, fwv1.TargetType(tk.target.Type))
		s.StartTime, s.CompletionTime = &now, nil
		s.Message = "downloading and verifying the firmware image"
		// A target the agent was flashing keeps its phase until its version is read.
		if !s.Phase.InProgress() || s.Phase == fwv1.TargetPhaseDownloading || s.Phase == fwv1.TargetPhaseStaging {
			s.Phase, s.Percent = fwv1.TargetPhaseDownloading, 0
		}
	}
	if a.cfg.Follow && r.phase() == fwv1.TargetPhaseDownloading {
		// The controller's claim already says Downloading, on this pod and node: the ports
		// the agent bound and its start go out with the target's next write (the version
		// read, a driver's progress or the result), one write fewer per target (issue 13).
		r.note(start)
	} else {
		r.update(ctx, true, start)
	}
	if a.cfg.Baseline != "" {
		b, comps, msg := a.baseline(ctx)
		if msg != "" {
			r.finish(ctx, fwv1.TargetPhaseFailed, msg, nil)
			return
		}
		a.driveBaseline(ctx, tk, b, comps)
		return
	}
	img, err := a.image(ctx)
	if err != nil {
		r.finish(ctx, fwv1.TargetPhaseFailed, err.Error(), nil)
		return
	}
	a.drive(ctx, tk, img)
}

// waitClaim waits until the controller has recorded this pod's claim of the assignment on its
// TargetUpdate (status.agentPod and the attempt): it annotates the pod first and claims
// second. A TargetUpdate that another pod claimed, or that is past this attempt, is left
// alone: that pod may be flashing it (an assignment made on a stale copy). So is one never
// claimed within the job's timeout.
func (a *agent) waitClaim(ctx context.Context, r *reporter) bool {
	want := max(r.target.Attempt, 1)
	deadline := a.deps.Now().Add(a.cfg.Timeout)
	wait := r.retryBase()
	for {
		r.mu.Lock()
		st := r.live
		r.mu.Unlock()
		switch {
		case st.Phase.Finished() && st.Attempts <= want:
			return true // left alone by the caller
		case st.AgentPod == a.cfg.Pod && st.Attempts == want:
			return true
		case st.Attempts >= want:
			a.log.Warn("target assigned to this pod but claimed by another, or past this attempt: leaving it to that pod",
				"target", r.target.Name, "attempt", want, "claimedBy", st.AgentPod, "attempts", st.Attempts)
			r.mu.Lock()
			r.refused = fmt.Errorf("TargetUpdate %s is claimed by pod %q (attempt %d), not this pod's attempt %d: left to it",
				r.target.TargetUpdate, st.AgentPod, st.Attempts, want)
			r.mu.Unlock()
			return false
		case !a.deps.Now().Before(deadline):
			a.log.Error("the controller never recorded this pod's claim of the target: not working on it",
				"target", r.target.Name, "attempt", want)
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
		if err := r.load(ctx, a.cfg); err != nil {
			a.log.Error("not working on target: its TargetUpdate cannot be used", "target", r.target.Name, "err", err)
			return false
		}
	}
}

// image is the job's verified image. The first target to ask fetches it (or takes the
// prefetch) and the others wait for that fetch; a failed fetch is tried again by the next
// target that asks (the source may be back), a good one never.
func (a *agent) image(ctx context.Context) (firmware.Image, error) {
	a.imgMu.Lock()
	if c := a.img; c != nil {
		a.imgMu.Unlock()
		return c.img, nil
	}
	if c := a.imgCall; c != nil {
		a.imgMu.Unlock()
		<-c.done
		return c.img, c.err
	}
	c := &imageCall{done: make(chan struct{})}
	a.imgCall = c
	pre := a.prefetched
	a.prefetched = nil
	a.imgMu.Unlock()

	if pre != nil {
		select {
		case <-pre.done:
			c.img, c.err = pre.img, pre.err
		case <-ctx.Done():
			c.err = fmt.Errorf("could not fetch the firmware image, nothing was flashed: %w", ctx.Err())
		}
	}
	if pre == nil || (c.err != nil && ctx.Err() == nil) {
		// A failed prefetch is tried again: the source may be back.
		c.img, c.err = a.fetchImage(ctx)
	}
	a.imgMu.Lock()
	a.imgCall = nil
	if c.err == nil {
		a.img = c
	}
	a.imgMu.Unlock()
	close(c.done)
	return c.img, c.err
}

// served is the URL path the job's verified image is served at: the first target to ask
// starts the firmware server (its certificate first, when it serves HTTPS) and registers
// the image, the others wait for it. A target asks once it has read its version and is to
// be flashed, so that its login and reads do not wait for the certificate's RSA key.
func (a *agent) served(img firmware.Image) (string, error) {
	a.serveMu.Lock()
	defer a.serveMu.Unlock()
	if a.urlPath != "" {
		return a.urlPath, nil
	}
	if err := a.startServer(); err != nil {
		return "", errors.New("cannot serve the firmware image" + err.Error())
	}
	p, err := a.fw.Register(a.cfg.JobUID+"/"+a.cfg.Job, img)
	if err != nil {
		return "", fmt.Errorf("cannot serve the firmware image: %w", err)
	}
	a.urlPath = p
	a.imgOK.Store(true)
	return p, nil
}

// prefetch starts fetching and verifying the job's image as the agent starts, before any
// target asks for it (image): the download and its SHA-256 are then off the way of the first
// target, which reads its TargetUpdate and waits for its claim meanwhile (issue 13: apply to
// first flash). A failed prefetch is tried again by the first target (image). A baseline job's
// images are the baseline's, fetched per component (baseline).
// stop ends a prefetch no target took, and waits for it.
func (a *agent) prefetch(ctx context.Context) (stop func()) {
	if a.cfg.Baseline != "" {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	c := &imageCall{done: make(chan struct{})}
	a.imgMu.Lock()
	a.prefetched = c
	a.imgMu.Unlock()
	go func() {
		defer close(c.done)
		c.img, c.err = a.fetchImage(ctx)
	}()
	return func() {
		cancel()
		<-c.done
	}
}

// fetchImage fetches and verifies the job's image.
func (a *agent) fetchImage(ctx context.Context) (firmware.Image, error) {
	return a.fetch(ctx, firmware.Source{URL: a.cfg.Firmware.URL, Path: a.cfg.FirmwarePath(), SHA256: a.cfg.Firmware.SHA256}, "the job's sha256")
}

// startServer serves the registered images on the bound firmware port (rule P2), over HTTPS
// too unless the PortPolicy disables it, until Run ends; once per agent. Its error reads
// after "cannot serve the firmware image".
func (a *agent) startServer() error {
	a.serverOnce.Do(func() {
		a.fw.OnServed = func(_ string, n int64) { a.metrics.AddBytesServed(n) }
		if a.cfg.ServesHTTPS() {
			cert, err := a.certificate()
			if err != nil {
				a.serverErr = fmt.Errorf(" over HTTPS, nothing was flashed: %w", err)
				return
			}
			a.fw.Certificate = cert
		}
		fl := a.held.take(a.bound.Firmware)
		served := make(chan struct{})
		go func() {
			defer close(served)
			if err := a.fw.Serve(fl); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
				a.log.Error("firmware server stopped", "err", err)
			}
		}()
		a.stopServer = func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = a.fw.Shutdown(sctx)
			_ = fl.Close() // in case Shutdown came before Serve started
			<-served
		}
	})
	return a.serverErr
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

// summary is Run's result: nil when every target succeeded or was skipped (in Follow mode:
// when every target it took finished).
func (a *agent) summary() error {
	tasks := a.allTasks()
	var failed []string
	counts := map[string]int{}
	for _, tk := range tasks {
		s := tk.rep.snapshot()
		counts[s.Phase]++
		if a.cfg.Follow {
			if ph := fwv1.TargetPhase(s.Phase); !ph.Finished() && !tk.rep.handedOver() {
				failed = append(failed, s.Name)
			}
			continue
		}
		if s.Phase != string(fwv1.TargetPhaseSucceeded) && s.Phase != string(fwv1.TargetPhaseSkipped) {
			failed = append(failed, s.Name)
		}
	}
	a.log.Info("agent finished", "targets", len(tasks), "succeeded", counts[string(fwv1.TargetPhaseSucceeded)],
		"skipped", counts[string(fwv1.TargetPhaseSkipped)], "failed", counts[string(fwv1.TargetPhaseFailed)])
	if len(failed) == 0 {
		return nil
	}
	sort.Strings(failed)
	what := "did not succeed"
	if a.cfg.Follow {
		what = "were left unfinished"
	}
	return fmt.Errorf("%d of %d targets %s: %s (see their TargetUpdate status)", len(failed), len(tasks), what, strings.Join(failed, ", "))
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
	// read reads key of the Secret mounted for what ("credentials"); a Secret that is not
	// mounted at all is a clear error: the pod was built without it, or the kubelet did not
	// mount it (an optional volume whose Secret did not exist).
	read := func(what, secret, key string) ([]byte, bool, error) {
		dir := cfg.SecretDir(secret)
		if _, err := os.Stat(dir); err != nil {
			return nil, false, fmt.Errorf("target %s: its %s Secret %q is not mounted at %s (%v): check that the Secret exists in namespace %s; "+
				"the target's next attempt gets a pod that mounts it", t.Name, what, secret, dir, err, cfg.Namespace)
		}
		b, err := os.ReadFile(path.Join(dir, key))
		if errors.Is(err, os.ErrNotExist) {
			return nil, false, nil
		}
		if err != nil {
			return nil, false, fmt.Errorf("target %s: reading %s from its mounted %s Secret %q: %w", t.Name, key, what, secret, err)
		}
		return b, true, nil
	}
	user, ok, err := read("credentials", t.CredentialsSecret, fwv1.SecretKeyUsername)
	if err != nil {
		return dt, err
	}
	if !ok {
		return dt, fmt.Errorf("target %s: no %q in the credentials Secret %q (mounted at %s): add it to the Secret named by the UpdateTarget's credentialsSecretRef",
			t.Name, fwv1.SecretKeyUsername, t.CredentialsSecret, cfg.SecretDir(t.CredentialsSecret))
	}
	dt.Credentials.Username = strings.TrimRight(string(user), "\r\n")
	pw, _, err := read("credentials", t.CredentialsSecret, fwv1.SecretKeyPassword)
	if err != nil {
		return dt, err
	}
	dt.Credentials.Password = strings.TrimRight(string(pw), "\r\n")
	if dt.Credentials.PrivateKey, _, err = read("credentials", t.CredentialsSecret, fwv1.SecretKeySSHPrivateKey); err != nil {
		return dt, err
	}
	if dt.Credentials.Password == "" && len(dt.Credentials.PrivateKey) == 0 {
		return dt, fmt.Errorf("target %s: the credentials Secret %q has neither %q nor %q", t.Name, t.CredentialsSecret, fwv1.SecretKeyPassword, fwv1.SecretKeySSHPrivateKey)
	}
	if t.CABundleSecret != "" {
		b, ok, err := read("CA bundle", t.CABundleSecret, fwv1.SecretKeyCABundle)
		if err != nil {
			return dt, err
		}
		if !ok {
			return dt, fmt.Errorf("target %s: the CA bundle Secret %q has no %q", t.Name, t.CABundleSecret, fwv1.SecretKeyCABundle)
		}
		dt.TLS.CABundle = b
	}
	if t.KnownHostsSecret != "" {
		b, ok, err := read("known-hosts", t.KnownHostsSecret, fwv1.SecretKeyKnownHosts)
		if err != nil {
			return dt, err
		}
		if !ok {
			return dt, fmt.Errorf("target %s: the known-hosts Secret %q has no %q", t.Name, t.KnownHostsSecret, fwv1.SecretKeyKnownHosts)
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
// valid as long as the agent's pod can run and a day more (certificateNotAfter).
func (a *agent) makeCertificate() (*tls.Certificate, error) {
	var hosts []string
	for _, tk := range a.allTasks() {
		if h, err := agentHost(a.cfg.Address, tk.target.Address); err == nil && !slices.Contains(hosts, h) {
			hosts = append(hosts, h)
		}
	}
	key, err := a.certKey()
	if err != nil {
		return nil, fmt.Errorf("agentcert: %w", err)
	}
	now := a.deps.Now()
	cert, err := agentcert.NewWithKey(key, hosts, now, certificateNotAfter(now, a.cfg))
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
