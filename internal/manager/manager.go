// Package manager is the "manager" subcommand: the controller manager that runs the
// UpdateJob, UpdateTarget and PortPolicy reconcilers with leader election and metrics.
package manager

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/go-logr/logr"

	"github.com/fwops/firmware-operator/controllers"
	"github.com/fwops/firmware-operator/internal/agentpod"
	"github.com/fwops/firmware-operator/internal/scheme"
)

// Options configure the manager. Flags set them; tests and the demo set them directly.
type Options struct {
	Kubeconfig       string
	LeaderElect      bool
	LeaderElectionNS string
	MetricsAddr      string
	// InsecureMetrics serves /metrics over plain HTTP to anyone (local debugging only). By
	// default it is HTTPS, and each scrape's token is checked with a TokenReview and its right
	// to GET /metrics with a SubjectAccessReview (config/rbac/metrics_*.yaml).
	InsecureMetrics bool
	// MetricsCertDir holds tls.crt and tls.key for the metrics server (e.g. from
	// cert-manager); empty or missing files mean a self-signed certificate made at start.
	MetricsCertDir     string
	ProbeAddr          string
	AgentImage         string
	MaxTargetsPerAgent int
	// AgentReportGrace is how long past a job's spec.rollout.timeout the controller waits for
	// an agent's report before failing the target itself (0: controllers.DefaultTimeoutGrace).
	AgentReportGrace time.Duration
	// QPS and Burst bound the manager's requests to the API server; a rollout over thousands
	// of targets writes a TargetUpdate per target, so the defaults are above client-go's.
	QPS   float32
	Burst int
	// Clock replaces the real clock (tests).
	Clock clock.PassiveClock
	// Config replaces Kubeconfig (tests).
	Config *rest.Config
	// Logger defaults to JSON on the process's stderr.
	Logger *slog.Logger
	// SecondInProcess lets a process start a manager after an earlier one (the demo's tests
	// run it twice in one test binary): controller-runtime refuses a controller name that a
	// process already registered, for the sake of its metrics.
	SecondInProcess bool
}

// Run parses the flags and runs the manager until ctx ends.
func Run(ctx context.Context, args []string, _, stderr io.Writer) error {
	var o Options
	fs := flag.NewFlagSet("manager", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.Kubeconfig, "kubeconfig", "", "kubeconfig path (default: in-cluster configuration)")
	fs.BoolVar(&o.LeaderElect, "leader-elect", true, "elect a leader so that only one manager acts at a time")
	fs.StringVar(&o.LeaderElectionNS, "leader-election-namespace", "", "namespace of the leader election lease (default: the pod's)")
	fs.StringVar(&o.MetricsAddr, "metrics-bind-address", ":8443", "address of the Prometheus metrics endpoint; 0 turns it off")
	secure := fs.Bool("metrics-secure", true, "serve metrics over HTTPS, to authenticated and authorized scrapers only; false serves plain HTTP to anyone")
	fs.StringVar(&o.MetricsCertDir, "metrics-cert-dir", "", "directory of the metrics server's tls.crt and tls.key (default: a self-signed certificate)")
	fs.StringVar(&o.ProbeAddr, "health-probe-bind-address", ":8081", "address of /healthz and /readyz")
	fs.StringVar(&o.AgentImage, "agent-image", "ghcr.io/fwops/firmware-operator:latest", "image of the agent pods")
	fs.IntVar(&o.MaxTargetsPerAgent, "max-targets-per-agent", 100, "most targets one agent pod serves")
	fs.DurationVar(&o.AgentReportGrace, "agent-report-grace", controllers.DefaultTimeoutGrace,
		"how long past a job's spec.rollout.timeout to wait for a silent agent before failing its target")
	qps := fs.Float64("kube-api-qps", 50, "requests per second to the API server")
	fs.IntVar(&o.Burst, "kube-api-burst", 100, "burst of requests to the API server")
	if err := fs.Parse(args); err != nil {
		return err
	}
	o.QPS = float32(*qps)
	o.InsecureMetrics = !*secure
	// As the Deployment runs it: JSON on stderr, which the kubelet keeps as the pod's log.
	o.Logger = slog.New(slog.NewJSONHandler(stderr, nil))
	return Start(ctx, o)
}

// Start runs the manager until ctx ends. What stops it is logged as well as returned: the
// log is what a person reads of a manager pod.
func Start(ctx context.Context, o Options) (err error) {
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.NewJSONHandler(os.Stderr, nil))
	}
	lr := logr.FromSlogHandler(logger.Handler())
	ctrl.SetLogger(lr)
	ctx = log.IntoContext(ctx, lr)
	logger.Info("starting manager", "agentImage", o.AgentImage, "leaderElection", o.LeaderElect)
	defer func() {
		if err != nil {
			logger.Error("manager stopped", "error", err.Error())
		}
	}()

	cfg := o.Config
	if cfg == nil {
		var err error
		if o.Kubeconfig != "" {
			cfg, err = clientcmd.BuildConfigFromFlags("", o.Kubeconfig)
		} else {
			cfg, err = rest.InClusterConfig()
		}
		if err != nil {
			return fmt.Errorf("kubernetes client configuration: %w", err)
		}
	}
	if o.QPS > 0 {
		cfg = rest.CopyConfig(cfg)
		cfg.QPS, cfg.Burst = o.QPS, max(o.Burst, 1)
	}
	if o.AgentImage == "" {
		return errors.New("--agent-image is required")
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                  scheme.New(),
		LeaderElection:          o.LeaderElect,
		LeaderElectionID:        "firmware-operator.fwops.io",
		LeaderElectionNamespace: o.LeaderElectionNS,
		// Releasing on cancel lets a new leader take over at once on a rolling upgrade.
		LeaderElectionReleaseOnCancel: true,
		Metrics:                       metricsOptions(o),
		HealthProbeBindAddress:        o.ProbeAddr,
		GracefulShutdownTimeout:       ptrDuration(30 * time.Second),
		Controller:                    ctrlconfig.Controller{SkipNameValidation: &o.SecondInProcess},
		Cache: cache.Options{
			// managedFields are never read here and are most of a small object's size: at
			// 10,000 TargetUpdates they would double the cache.
			DefaultTransform: cache.TransformStripManagedFields(),
			ByObject: map[client.Object]cache.ByObject{
				// Only the operator's own pods and RBAC objects are cached, never the cluster's.
				&corev1.Pod{}:            {Label: labels.SelectorFromSet(labels.Set{agentpod.LabelApp: agentpod.AppName})},
				&corev1.ServiceAccount{}: {Label: labels.SelectorFromSet(labels.Set{controllers.LabelManagedBy: controllers.ManagedBy})},
				&rbacv1.Role{}:           {Label: labels.SelectorFromSet(labels.Set{controllers.LabelManagedBy: controllers.ManagedBy})},
				&rbacv1.RoleBinding{}:    {Label: labels.SelectorFromSet(labels.Set{controllers.LabelManagedBy: controllers.ManagedBy})},
			}},
	})
	if err != nil {
		return fmt.Errorf("creating the manager: %w", err)
	}
	if err := Setup(ctx, mgr, o); err != nil {
		return err
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return err
	}
	return mgr.Start(ctx)
}

// Setup registers the reconcilers with a manager.
func Setup(ctx context.Context, mgr ctrl.Manager, o Options) error {
	clk := o.Clock
	if clk == nil {
		clk = clock.RealClock{}
	}
	rec := mgr.GetEventRecorder("firmware-operator")
	jobs := &controllers.UpdateJobReconciler{
		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Scheme: mgr.GetScheme(), Recorder: rec, Clock: clk,
		AgentImage: o.AgentImage, MaxTargetsPerAgent: o.MaxTargetsPerAgent, TimeoutGrace: o.AgentReportGrace,
	}
	if err := jobs.SetupWithManager(ctx, mgr); err != nil {
		return fmt.Errorf("UpdateJob controller: %w", err)
	}
	targets := &controllers.UpdateTargetReconciler{Client: mgr.GetClient(), SecretReader: mgr.GetAPIReader()}
	if err := targets.SetupWithManager(ctx, mgr); err != nil {
		return fmt.Errorf("UpdateTarget controller: %w", err)
	}
	policies := &controllers.PortPolicyReconciler{Client: mgr.GetClient(), Recorder: rec}
	if err := policies.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("PortPolicy controller: %w", err)
	}
	baselines := &controllers.FirmwareBaselineReconciler{Client: mgr.GetClient(), Scheme: mgr.GetScheme(), Clock: clk}
	if err := baselines.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("FirmwareBaseline controller: %w", err)
	}
	return nil
}

// metricsOptions serves /metrics as kubebuilder scaffolds it: HTTPS, behind the API server's
// authentication and authorization, HTTP/1.1 only (HTTP/2 rapid reset, CVE-2023-44487).
func metricsOptions(o Options) metricsserver.Options {
	m := metricsserver.Options{BindAddress: o.MetricsAddr}
	if o.InsecureMetrics {
		return m
	}
	m.SecureServing = true
	m.FilterProvider = filters.WithAuthenticationAndAuthorization
	m.CertDir = o.MetricsCertDir
	m.TLSOpts = []func(*tls.Config){func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} }}
	return m
}

func ptrDuration(d time.Duration) *time.Duration { return &d }
