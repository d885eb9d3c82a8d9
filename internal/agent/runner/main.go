package runner

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
	"github.com/fwops/firmware-operator/internal/agent/config"
	"github.com/fwops/firmware-operator/internal/agent/control"
	"github.com/fwops/firmware-operator/internal/agent/driver"
	"github.com/fwops/firmware-operator/internal/agent/ilo"
	"github.com/fwops/firmware-operator/internal/agent/linux"
	"github.com/fwops/firmware-operator/internal/agent/oa"
	"k8s.io/apimachinery/pkg/runtime"
)

// Option adjusts what Main gives the agent besides its arguments: tests and the demo use them
// to pass an API client and fast driver timings.
type Option func(*options)

type options struct {
	client     client.Client
	restConfig *rest.Config
	drivers    driver.Registry
	ilo        ilo.Options
	oa         oa.Options
	linux      linux.Options
	httpClient *http.Client
	minWrite   time.Duration
	onBound    func(Bound)
	onCert     func(tls.Certificate)
	level      slog.Level
}

// WithClient uses c instead of a client built from --kubeconfig or the in-cluster config.
func WithClient(c client.Client) Option { return func(o *options) { o.client = c } }

// WithRESTConfig builds the agent's API client from rc, as from --kubeconfig or in-cluster
// (with the agent's own rate limits), rather than from those: the bench runs in-process agents
// whose clients are production's.
func WithRESTConfig(rc *rest.Config) Option { return func(o *options) { o.restConfig = rc } }

// WithDrivers replaces the real drivers (iLO, OA, Linux) by r, e.g. driver.Fake's Registry.
func WithDrivers(r driver.Registry) Option { return func(o *options) { o.drivers = r } }

// WithILOOptions tunes the iLO driver (poll interval, timeouts).
func WithILOOptions(opts ilo.Options) Option { return func(o *options) { o.ilo = opts } }

// WithOAOptions tunes the Onboard Administrator driver; its Logger is set by Main.
func WithOAOptions(opts oa.Options) Option { return func(o *options) { o.oa = opts } }

// WithLinuxOptions tunes the Linux driver (its StateDir, say); its Logger is set by Main.
func WithLinuxOptions(opts linux.Options) Option { return func(o *options) { o.linux = opts } }

// WithHTTPClient downloads URL firmware sources with c.
func WithHTTPClient(c *http.Client) Option { return func(o *options) { o.httpClient = c } }

// WithMinWriteInterval spaces status writes within a phase (default 5s).
func WithMinWriteInterval(d time.Duration) Option { return func(o *options) { o.minWrite = d } }

// WithOnBound calls f with the ports bound, before any target is touched.
func WithOnBound(f func(Bound)) Option { return func(o *options) { o.onBound = f } }

// WithOnCertificate calls f with the agent's certificate once it is made (tests that look for
// its private key).
func WithOnCertificate(f func(tls.Certificate)) Option { return func(o *options) { o.onCert = f } }

// WithLogLevel sets the lowest level logged (default Info).
func WithLogLevel(l slog.Level) Option { return func(o *options) { o.level = l } }

// Main is the `agent` subcommand: `agent [flags]` runs an agent with the flags of
// config.Parse and logs JSON to stderr; `agent status --addr HOST:PORT` prints an agent's
// progress read from its inter-process channel (rule P5) or control listener (rule P1).
func Main(ctx context.Context, args []string, stdout, stderr io.Writer, opts ...Option) error {
	if len(args) > 0 && args[0] == "status" {
		return statusMain(ctx, args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "probe" {
		return probeMain(ctx, args[1:], stdout, stderr)
	}
	var o options
	for _, f := range opts {
		f(&o)
	}
	cfg, err := config.Parse(args)
	if err != nil {
		return err
	}
	red := &redactor{}
	log := slog.New(redactHandler{inner: slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: o.level}), r: red})

	c := o.client
	if c == nil {
		rc := o.restConfig
		if rc == nil {
			if rc, err = loadRESTConfig(cfg.Kubeconfig); err != nil {
				return err
			}
		}
		if c, err = newClient(rc, slotsOf(cfg)); err != nil {
			return err
		}
	}
	reg := o.drivers
	var events *ilo.EventCounters
	var callbacks *linux.CallbackCounters
	if reg == nil {
		reg = driver.Registry{}
		iloOpts := o.ilo
		if iloOpts.Log == nil {
			iloOpts.Log = log.With("driver", "ilo")
		}
		if iloOpts.Events == nil {
			iloOpts.Events = &ilo.EventCounters{}
		}
		events = iloOpts.Events
		ilo.Register(reg, iloOpts)
		oaOpts, linuxOpts := o.oa, o.linux
		oaOpts.Logger = log.With("driver", "oa")
		linuxOpts.Logger = log.With("driver", "linux")
		if linuxOpts.Callbacks == nil {
			linuxOpts.Callbacks = &linux.CallbackCounters{}
		}
		callbacks = linuxOpts.Callbacks
		reg[driver.TypeOA] = oa.NewFactory(oaOpts)
		reg[driver.TypeLinux] = linux.NewFactory(linuxOpts)
	}
	return Run(ctx, cfg, Deps{
		Client: c, Drivers: reg, HTTPClient: o.httpClient, Log: log,
		MinWriteInterval: o.minWrite, OnBound: o.onBound, OnCertificate: o.onCert, redactor: red, iloEvents: events, linuxCallbacks: callbacks,
	})
}

// loadRESTConfig reads the API client configuration from a kubeconfig path, or in-cluster
// when it is empty.
func loadRESTConfig(kubeconfig string) (*rest.Config, error) {
	var rc *rest.Config
	var err error
	if kubeconfig != "" {
		rc, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
	} else {
		rc, err = rest.InClusterConfig()
	}
	if err != nil {
		return nil, fmt.Errorf("API client configuration: %w", err)
	}
	return rc, nil
}

// withRateLimits is rc with the agent's client-side rate limits for its slots. client-go's
// defaults (5 requests a second, bursts of 10) would queue a pod's first requests for tens
// of seconds: each slot reads its TargetUpdate, then writes the version it read and the flash
// request within its first second or so, 3 requests a slot, 300 for a pod of 100 slots, all
// before the first flash (issue 13). Bursts of 3 a slot, and a slot's writes are spaced by
// seconds after that (shouldWrite): a request a second per slot leaves room.
func withRateLimits(rc *rest.Config, slots int) *rest.Config {
	rc = rest.CopyConfig(rc)
	rc.QPS, rc.Burst = float32(max(5, slots)), max(10, 3*slots)
	rc.RateLimiter = nil // one built from QPS and Burst
	return rc
}

// newClient builds an API client that can watch, rate-limited for the agent's slots.
func newClient(rc *rest.Config, slots int) (client.WithWatch, error) {
	rc = withRateLimits(rc, slots)
	s := runtime.NewScheme()
	if err := fwv1.AddToScheme(s); err != nil {
		return nil, err
	}
	// Pods: a Follow agent watches its own for its assignments.
	if err := corev1.AddToScheme(s); err != nil {
		return nil, err
	}
	return client.NewWithWatch(rc, client.Options{Scheme: s})
}

// statusMain is `agent status`.
func statusMain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("agent status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "", "HOST:PORT of the agent's inter-process channel (rule P5) or control listener (rule P1)")
	timeout := fs.Duration("timeout", 10*time.Second, "how long to wait for the agent")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *addr == "" {
		return errors.New("--addr is required (the agent logs its ports at start: see 'ports bound')")
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	snap, err := control.FetchStatus(ctx, *addr)
	if err != nil {
		return err
	}
	return PrintStatus(stdout, snap)
}

// probeMain is `agent probe --namespace NS --pod NAME --path /healthz`, the pods' exec probe:
// it asks the agent over its probe socket, wherever its control port went (rule P1).
func probeMain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("agent probe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	ns := fs.String("namespace", "", "the agent pod's namespace")
	pod := fs.String("pod", "", "the agent pod's name")
	path := fs.String("path", "/healthz", "/healthz or /readyz")
	timeout := fs.Duration("timeout", 5*time.Second, "how long to wait for the agent")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *ns == "" || *pod == "" {
		return errors.New("--namespace and --pod are required")
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	if err := control.Probe(ctx, control.ProbeSocket(*ns, *pod), *path); err != nil {
		return err
	}
	_, err := fmt.Fprintln(stdout, "ok")
	return err
}

// PrintStatus writes a snapshot as a table: the agent, its ports, then one line per target.
func PrintStatus(w io.Writer, snap control.Snapshot) error {
	ports := make([]string, 0, len(snap.Agent.Ports))
	for _, p := range snap.Agent.Ports {
		ports = append(ports, fmt.Sprintf("%s %s=%d", p.Rule, p.Name, p.Port))
	}
	fmt.Fprintf(w, "job %s on node %s\nports: %s\n\n", snap.Agent.Job, snap.Agent.Node, strings.Join(ports, ", "))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TARGET\tPHASE\tPERCENT\tBEFORE\tAFTER\tSESSION PORT\tMESSAGE")
	for _, t := range snap.Targets {
		sp := "-"
		if t.SessionPort != 0 {
			sp = fmt.Sprint(t.SessionPort)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d%%\t%s\t%s\t%s\t%s\n", t.Name, t.Phase, t.Percent,
			dash(t.VersionBefore), dash(t.VersionAfter), sp, t.Message)
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
