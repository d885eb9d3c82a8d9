// Package demo is the "demo" subcommand behind `make demo`: with no cluster and no hardware,
// it starts a local control plane (envtest's kube-apiserver and etcd), a simulated fleet on
// loopback (iLO 4/5/6, an Onboard Administrator, a Linux host over a real sshd when one is
// installed), the real manager in-process and the agents (kubeletsim plays the kubelet),
// applies the sample PortPolicy, a FirmwareBaseline of the fleet's images and, after showing
// each target's plan from a dry run, one UpdateJob of it (or, with --baseline=false, one
// UpdateJob per component), shows the rollout live and ends with a summary table. It prints a kubeconfig so that kubectl can watch alongside.
package demo

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
	"github.com/fwops/firmware-operator/internal/fleet"
	"github.com/fwops/firmware-operator/internal/kubeletsim"
	"github.com/fwops/firmware-operator/internal/manager"
	similo "github.com/fwops/firmware-operator/internal/simulator/ilo"
	"github.com/fwops/firmware-operator/internal/testutil/apiserver"
)

// Namespace holds the demo's UpdateTargets, Secrets, UpdateJobs and agent pods.
const Namespace = "fwops-demo"

// Nodes are the simulated cluster nodes the agents run on. Each gets a loopback address of
// its own (127.0.0.2, 127.0.0.3) so that agents of both nodes can bind the same ports, as on
// real machines.
var Nodes = []string{"demo-node-a", "demo-node-b"}

// agentImage only names the image in the agent pods: kubeletsim runs the agent in-process.
const agentImage = "ghcr.io/fwops/firmware-operator:demo"

// errInterrupted is what a Ctrl-C during the rollout returns, after the clean-up.
var errInterrupted = errors.New("interrupted before the rollout finished")

// errManagerStopped is what the demo ends with when its in-process manager stops by itself.
var errManagerStopped = errors.New("the manager stopped")

// managerStoppedOr is the manager's error when it is why ctx ended, else err.
func managerStoppedOr(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); errors.Is(cause, errManagerStopped) {
		return cause
	}
	return err
}

// Options configure one demo run. Run sets them from flags; tests set them directly.
type Options struct {
	// ILO4, ILO5, ILO6 and OA are how many simulators of each kind to start; the iLOs serve
	// the DL325 Gen10 Plus capture.
	ILO4, ILO5, ILO6, OA int
	// XL675d is how many more iLO 5 to start from the XL675d Gen10 Plus capture: a second
	// server model, which takes its own system ROM.
	XL675d int
	// Linux adds a Linux host over a real sshd when one is installed (the demo says so when
	// it is not, and goes on without it).
	Linux bool
	// MaxConcurrent is the iLO job's spec.rollout.maxConcurrent; below the number of iLOs so
	// that the pacing shows.
	MaxConcurrent int32
	// FlashTime is how long each simulated iLO spends writing and activating an image.
	FlashTime time.Duration
	// Dir receives the kubeconfig and the manager's and agents' logs.
	Dir string
	// Keep leaves everything running after the summary until ctx ends (Ctrl-C).
	Keep bool
	// Timeout bounds the rollout; targets not finished by then count as not succeeded.
	Timeout time.Duration
	// Refresh is how often the progress view is redrawn (ANSI) or a progress line printed.
	Refresh time.Duration
	// ANSI redraws the progress view in place; otherwise plain lines are printed.
	ANSI bool
	// Out receives everything the demo prints.
	Out io.Writer
	// Baseline rolls out one FirmwareBaseline of every image the fleet serves, in one
	// UpdateJob, after showing each target's plan from a dry run; otherwise one UpdateJob per
	// component is applied.
	Baseline bool
	// Cluster runs the rollout on a real single-node Kubernetes (internal/testutil/cluster):
	// the manager installed with the Helm chart, agents as real pods of a kubelet and
	// containerd. It needs root, containerd and hack/cluster-assets.sh's binaries.
	Cluster bool
}

// DefaultOptions is what `make demo` runs: a dozen DL325 iLOs, two XL675d, an OA and a Linux host.
func DefaultOptions() Options {
	return Options{ILO4: 4, ILO5: 4, ILO6: 4, XL675d: 2, OA: 1, Linux: true, Baseline: true, MaxConcurrent: 4, FlashTime: 6 * time.Second,
		Dir: filepath.Join("bin", "demo"), Timeout: 5 * time.Minute, Refresh: 500 * time.Millisecond}
}

// Run is the demo subcommand: it parses the flags and runs the demo. It fails when a target
// did not succeed.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o := DefaultOptions()
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&o.ILO4, "ilo4", o.ILO4, "number of simulated iLO 4")
	fs.IntVar(&o.ILO5, "ilo5", o.ILO5, "number of simulated iLO 5")
	fs.IntVar(&o.ILO6, "ilo6", o.ILO6, "number of simulated iLO 6")
	fs.IntVar(&o.XL675d, "xl675d", o.XL675d, "number of simulated iLO 5 of the second server model, the XL675d Gen10 Plus (the others are DL325 Gen10 Plus)")
	fs.IntVar(&o.OA, "oa", o.OA, "number of simulated Onboard Administrators")
	fs.BoolVar(&o.Linux, "linux", o.Linux, "add a Linux host over a real sshd (skipped, with a note, when sshd is not installed)")
	fs.BoolVar(&o.Baseline, "baseline", o.Baseline, "roll out one FirmwareBaseline of every image in one UpdateJob, each target's plan shown first from a dry run; --baseline=false applies one UpdateJob per component")
	maxConc := fs.Int("max-concurrent", int(o.MaxConcurrent), "spec.rollout.maxConcurrent of the iLO job (of the baseline job with --baseline)")
	fs.DurationVar(&o.FlashTime, "flash-time", o.FlashTime, "how long each simulated iLO takes to write an image")
	fs.StringVar(&o.Dir, "dir", o.Dir, "folder for the kubeconfig and the logs")
	fs.BoolVar(&o.Keep, "keep", false, "leave the control plane, fleet and manager running after the summary, until Ctrl-C")
	fs.DurationVar(&o.Timeout, "timeout", o.Timeout, "give up on the rollout after this long")
	fs.BoolVar(&o.Cluster, "cluster", false, "run on a real single-node Kubernetes (kubelet, containerd; needs root and make cluster-assets) instead of in-process agents")
	plain := fs.Bool("plain", false, "print progress lines instead of redrawing a table, even on a terminal")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *maxConc < 1 {
		return errors.New("--max-concurrent must be at least 1")
	}
	o.MaxConcurrent = int32(*maxConc)
	o.Out = stdout
	o.ANSI = !*plain && isTerminal(stdout)
	sum, err := Demo(ctx, o)
	if err != nil {
		return err
	}
	if !sum.AllSucceeded() {
		return fmt.Errorf("%d of %d targets did not succeed", len(sum.Rows)-sum.Succeeded(), len(sum.Rows))
	}
	if twice := sum.NotFlashedOnce(); len(twice) > 0 {
		return fmt.Errorf("not flashed exactly once: %s", strings.Join(twice, ", "))
	}
	return nil
}

// isTerminal reports whether w is a character device, where redrawing in place makes sense.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// Demo runs the demo and returns its summary. The error is about the demo itself (a control
// plane that did not start, an interrupt); failed targets are in the summary.
func Demo(ctx context.Context, o Options) (sum *Summary, err error) {
	// A manager that stops on its own ends the demo with its error, rather than leaving the
	// demo waiting for a rollout nobody drives.
	ctx, stopDemo := context.WithCancelCause(ctx)
	defer stopDemo(nil)
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Refresh <= 0 {
		o.Refresh = 500 * time.Millisecond
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Minute
	}
	if o.MaxConcurrent < 1 {
		o.MaxConcurrent = 1
	}
	p := &printer{w: o.Out, start: time.Now(), ansi: o.ANSI}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, err
	}
	logs, closeLogs, err := openLogs(o.Dir)
	if err != nil {
		return nil, err
	}
	defer closeLogs()

	// Everything below stops in reverse order on return, Ctrl-C included: the manager and the
	// agents first, then the fleet (simulators, sshd, image server), the control plane last.
	var cleanups []func()
	defer func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
		if ctx.Err() != nil {
			p.step("Cleaned up after %s", map[bool]string{true: "the manager stopped", false: "the interrupt"}[errors.Is(context.Cause(ctx), errManagerStopped)])
		}
	}()

	// 1. Control plane (and, with --cluster, the node and the operator).
	var cfg *rest.Config
	var kubeconfig string
	if o.Cluster {
		// The manager runs in its pod here (its log is kept with the node's logs), so its file
		// takes this process's own client lines, which controller-runtime would otherwise
		// replace with a warning and a stack trace on the terminal.
		ctrllog.SetLogger(logr.FromSlogHandler(slog.NewJSONHandler(logs.manager, nil)))
		if cfg, kubeconfig, err = startRealNode(ctx, p, o.Dir, &cleanups); err != nil {
			return nil, err
		}
	} else {
		if cfg, kubeconfig, err = startControlPlane(p, o.Dir, &cleanups); err != nil {
			return nil, err
		}
	}
	p.say("")
	p.say("  kubeconfig: %s", kubeconfig)
	p.say("  watch alongside:  kubectl --kubeconfig %s get updatejobs,updatetargets -w", kubeconfig)
	p.say("  (namespace %s is the default there; 'get tu' lists the per-target TargetUpdates)", Namespace)
	p.say("")

	// The agents share this client; the default client-side rate limit (5 requests a second)
	// would pace a dozen agents' status writes rather than the job's maxConcurrent.
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = 500, 1000
	c, err := client.NewWithWatch(cfg, client.Options{Scheme: apiserver.Scheme()})
	if err != nil {
		return nil, err
	}
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: Namespace}}); err != nil {
		return nil, fmt.Errorf("creating namespace %s: %w", Namespace, err)
	}

	// 2. Nodes.
	if !o.Cluster {
		p.step("Creating nodes %s (Ready; no kubelet runs here, the demo plays it)", strings.Join(Nodes, ", "))
		for _, n := range Nodes {
			if err := apiserver.CreateReadyNode(ctx, c, n); err != nil {
				return nil, err
			}
		}
	}

	// 3. Fleet.
	linux := o.Linux
	if linux {
		if why := fleet.Available(); why != nil {
			linux = false
			p.say("  note: no Linux host in this demo: %v", why)
		}
	}
	p.step("Starting the simulated fleet on loopback: %d iLO 4, %d iLO 5, %d iLO 6 (DL325 Gen10 Plus), %d iLO 5 (XL675d Gen10 Plus), %d OA%s, and a firmware image server",
		o.ILO4, o.ILO5, o.ILO6, o.XL675d, o.OA, map[bool]string{true: ", 1 Linux host over a real sshd", false: ""}[linux])
	flashTime := max(o.FlashTime, 0)
	fl, err := fleet.Start(ctx, fleet.Options{Name: "demo", ILO4: o.ILO4, ILO5: o.ILO5, ILO6: o.ILO6, XL675d: o.XL675d, OA: o.OA, Linux: linux,
		OARestartDelay: time.Second,
		// Upload and verify are short; the write and the activation take the flash time, in
		// ten progress steps so that the percentages move. The iLOs reset after flashing
		// themselves and hosts POST, in proportion.
		Timings: similo.Timings{Upload: flashTime / 6, Verify: flashTime / 6, Write: flashTime / 3, Update: flashTime / 2, Steps: 10,
			ResetDelay: max(flashTime/6, time.Millisecond), ILOReset: max(flashTime/2, time.Millisecond),
			HalfUp: max(flashTime/6, time.Millisecond), POST: max(flashTime/2, time.Millisecond)}})
	if err != nil {
		return nil, err
	}
	cleanups = append(cleanups, func() {
		p.step("Stopping the fleet (simulators, sshd, image server)")
		if err := fl.Close(); err != nil {
			p.say("  fleet stop: %v", err)
		}
	})
	for _, t := range fl.Targets() {
		where := t.Address
		if t.SSHPort != 0 {
			where = fmt.Sprintf("%s, SSH port %d", t.Address, t.SSHPort)
		}
		if t.Model != "" {
			where += ", " + t.Model
		}
		p.say("  %-16s %-5s %s", t.Name, t.Type, where)
	}
	for _, comp := range components(fl) {
		im := fl.Image(comp)
		p.say("  image %-15s %s  version %s  sha256 %s…", comp, im.URL, im.Version, im.SHA256[:16])
	}

	// 4. Manager and kubelet. They get their own context so that they stop before the fleet
	// and the control plane do. On the real node the chart's Deployment is the manager and
	// the kubelet runs the agent pods.
	if o.Cluster {
		p.step("The manager runs as the chart's Deployment; each agent pod runs in containerd under the kubelet (logs: %s)", filepath.Join(o.Dir, "cluster-logs"))
	} else {
		runCtx, stopRun := context.WithCancel(ctx)
		p.step("Starting the manager in-process (UpdateJob, UpdateTarget and PortPolicy controllers; log: %s)", logs.managerPath)
		mgrDone := make(chan error, 1)
		go func() {
			err := manager.Start(runCtx, manager.Options{Config: cfg, AgentImage: agentImage, LeaderElect: false,
				MetricsAddr: "0", ProbeAddr: "0", Logger: slog.New(slog.NewJSONHandler(logs.manager, nil)), SecondInProcess: true})
			if runCtx.Err() == nil {
				stopDemo(fmt.Errorf("%w: %w (its log: %s)", errManagerStopped, err, logs.managerPath))
			}
			mgrDone <- err
		}()
		p.step("Playing the kubelet: each agent pod the controller creates runs in-process (log: %s)", logs.agentsPath)
		kubelet := kubeletsim.New(c)
		kubelet.Use(fl.AgentFunc(c, fleet.AgentOptions{Log: logs.agents}))
		kubeletDone := make(chan struct{})
		go func() { kubelet.Run(runCtx); close(kubeletDone) }()
		cleanups = append(cleanups, func() {
			p.step("Stopping the manager and the agents")
			stopRun()
			<-kubeletDone
			select {
			case err := <-mgrDone:
				if err != nil && !errors.Is(err, context.Canceled) {
					p.say("  manager: %v", err)
				}
			case <-time.After(40 * time.Second):
				p.say("  manager: still stopping after 40s, going on")
			}
		})
	}

	// 5. Objects.
	policy, policyPath, err := loadPortPolicy()
	if err != nil {
		return nil, err
	}
	p.step("Applying PortPolicy %q from %s", policy.Name, policyPath)
	switch err := c.Create(ctx, policy); {
	case apierrors.IsAlreadyExists(err):
		// On the real node the chart installs a policy of that name: the agents follow it.
		p.say("  already there (the Helm chart installs it); the agents follow that one")
	case err != nil:
		return nil, fmt.Errorf("creating PortPolicy %s: %w", policy.Name, err)
	}
	live := &fwv1.PortPolicy{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(policy), live); err != nil {
		return nil, fmt.Errorf("reading PortPolicy %s: %w", policy.Name, err)
	}
	p.say("  %s", describePolicy(live))
	p.step("Applying %d UpdateTargets and their Secrets (credentials, CA bundles or pinned certificates, known_hosts)", len(fl.Targets()))
	if err := fl.Apply(ctx, c, Namespace); err != nil {
		return nil, err
	}
	var jobs []*fwv1.UpdateJob
	if o.Baseline {
		job, err := applyBaseline(ctx, c, p, fl, policy.Name, o.MaxConcurrent)
		if err != nil {
			return nil, managerStoppedOr(ctx, err)
		}
		jobs = append(jobs, job)
	}
	for _, comp := range components(fl) {
		if o.Baseline {
			break
		}
		n := int32(1)
		if comp == fwv1.ComponentILO {
			n = o.MaxConcurrent
		}
		j := fl.Job(Namespace, jobName(comp), comp, policy.Name, n)
		j.Spec.Rollout.Timeout = &metav1.Duration{Duration: 5 * time.Minute}
		jobs = append(jobs, j)
	}
	for _, j := range jobs {
		if j.Spec.Firmware == nil {
			continue // the baseline job, applied above
		}
		p.step("Applying UpdateJob %s: component %s, version %s, %d targets, maxConcurrent %d",
			j.Name, j.Spec.Component, j.Spec.Firmware.Version, len(fl.TargetNames(typesOf(j.Spec.Component)...)), j.Spec.Rollout.MaxConcurrent)
		if err := c.Create(ctx, j); err != nil {
			return nil, fmt.Errorf("creating UpdateJob %s: %w", j.Name, err)
		}
	}

	// 6. Watch.
	p.step("Rolling out (Ctrl-C stops and cleans up)")
	w := &watcher{c: c, fleet: fl, jobs: jobs, p: p}
	rolloutCtx, cancelRollout := context.WithTimeout(ctx, o.Timeout)
	defer cancelRollout()
	werr := w.run(rolloutCtx, o.Refresh)
	if ctx.Err() != nil {
		p.say("")
		if errors.Is(context.Cause(ctx), errManagerStopped) {
			return nil, context.Cause(ctx)
		}
		p.step("Interrupted")
		return nil, errInterrupted
	}
	if werr != nil && !errors.Is(werr, context.DeadlineExceeded) {
		return nil, werr
	}
	sum = w.summary()
	for i := range sum.Rows {
		sum.Rows[i].Flashes = fl.Flashes(sum.Rows[i].Target)
		sum.Rows[i].Flashed = fl.FlashedImages(sum.Rows[i].Target)
	}
	p.say("")
	if errors.Is(werr, context.DeadlineExceeded) {
		p.step("Timed out after %s", o.Timeout)
	} else {
		p.step("Rollout finished")
	}
	if o.Baseline {
		sum.Compliance = waitForCompliance(rolloutCtx, c, len(fl.Targets()), o.Refresh)
	}
	sum.Print(p)

	if o.Keep {
		p.say("")
		p.step("--keep: the control plane, the fleet and the manager keep running; Ctrl-C stops them.")
		p.say("  kubectl --kubeconfig %s get updatejobs,targetupdates,updatetargets", kubeconfig)
		<-ctx.Done()
		p.say("")
	}
	return sum, nil
}

// components lists the components the fleet's targets take, in a fixed order: one job each,
// since an UpdateJob installs one image.
func components(fl *fleet.Fleet) []fwv1.Component {
	var out []fwv1.Component
	for _, comp := range []fwv1.Component{fwv1.ComponentILO, fwv1.ComponentOA, fwv1.ComponentSmartComponent} {
		if len(fl.TargetNames(typesOf(comp)...)) > 0 {
			out = append(out, comp)
		}
	}
	return out
}

// jobName is the demo's UpdateJob for a component.
func jobName(c fwv1.Component) string {
	if c == fwv1.ComponentSmartComponent {
		return "demo-linux" // Smart Components go to the Linux hosts
	}
	return "demo-" + strings.ToLower(string(c))
}

// typesOf lists the target types a component installs on.
func typesOf(c fwv1.Component) []fwv1.TargetType {
	switch c {
	case fwv1.ComponentOA:
		return []fwv1.TargetType{fwv1.TargetTypeOA}
	case fwv1.ComponentSmartComponent:
		return []fwv1.TargetType{fwv1.TargetTypeLinux}
	default:
		return []fwv1.TargetType{fwv1.TargetTypeILO4, fwv1.TargetTypeILO5, fwv1.TargetTypeILO6}
	}
}

type logFiles struct {
	manager, agents         *os.File
	managerPath, agentsPath string
}

// openLogs opens the manager's and the agents' log files: their JSON logs would drown the
// progress view, and are there to read when something goes wrong.
func openLogs(dir string) (*logFiles, func(), error) {
	l := &logFiles{managerPath: filepath.Join(dir, "manager.log"), agentsPath: filepath.Join(dir, "agents.log")}
	var err error
	if l.manager, err = os.Create(l.managerPath); err != nil {
		return nil, nil, err
	}
	if l.agents, err = os.Create(l.agentsPath); err != nil {
		_ = l.manager.Close()
		return nil, nil, err
	}
	return l, func() { _ = l.manager.Close(); _ = l.agents.Close() }, nil
}

// describePolicy says in one line which ports the policy gives the agents, by rule id.
func describePolicy(pp *fwv1.PortPolicy) string {
	s := pp.Spec
	fallback := "no fallback"
	if r := s.FirmwareServer.FallbackRange; r != nil {
		fallback = fmt.Sprintf("else %d-%d (%s)", r.Start, r.End, s.FirmwareServer.Selection)
	}
	return fmt.Sprintf("P1 control %d; P2 firmware server %d, %s; P3 SSH %d; P4 sessions from %d; P5 from %d",
		s.ControlPort, s.FirmwareServer.PreferredPort, fallback, s.SSHPort, s.SessionBasePort, s.ReverseBasePort)
}
