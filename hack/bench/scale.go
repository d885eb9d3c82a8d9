package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/yaml"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
	"github.com/fwops/firmware-operator/internal/agent/runner"
	"github.com/fwops/firmware-operator/internal/fleet"
	"github.com/fwops/firmware-operator/internal/kubeletsim"
	similo "github.com/fwops/firmware-operator/internal/simulator/ilo"
	"github.com/fwops/firmware-operator/internal/testutil/apiserver"
)

// The clients of the scale section, as the audit log names them (each its own user).
const (
	scaleNamespace = "fwops-scale"
	userManager    = "fwops-manager"
	userAgents     = "fwops-agents"
	userKubelet    = "fwops-kubelet"
)

type scaleOptions struct {
	targets, maxConcurrent int
	flash                  time.Duration
	managerQPS             int
	timeout                time.Duration
	// managerBinary, when set, is the manager to run instead of this checkout's (to compare
	// with another build).
	managerBinary string
	// keep, when set, is a directory to leave the run's logs in (manager, agents, audit)
	// instead of a temporary one removed at the end: to see where the time went.
	keep string
}

// benchScale is issue 13's benchmark 2: a full rollout of n simulated iLO 5 in one job against
// a kube-apiserver (envtest's, with an audit log at level Metadata), the manager as a process
// of its own (this checkout's binary, `manager`), the agents in this process (kubeletsim runs
// each agent pod's agent in-process, through its own client), and the simulated fleet.
func benchScale(ctx context.Context, o scaleOptions) (rows []row, err error) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		return nil, errors.New("KUBEBUILDER_ASSETS is not set (make bench sets it to bin/envtest)")
	}
	// The in-process agents' API clients log through controller-runtime; their logs that
	// matter are the agents' own (agents.log). Without a logger, controller-runtime prints a
	// stack for each client made 30 s after the process started.
	ctrllog.SetLogger(logr.Discard())
	dir := o.keep
	if dir == "" {
		if dir, err = os.MkdirTemp("", "fwops-bench-scale-"); err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	logf := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "scale: "+format+"\n", args...)
	}

	binary := o.managerBinary
	if binary == "" {
		binary = filepath.Join(dir, "firmware-operator")
		logf("building the manager (%s)", binary)
		build := exec.CommandContext(ctx, "go", "build", "-o", binary, ".")
		build.Dir, build.Stdout, build.Stderr = apiserver.RepoRoot(), os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return nil, fmt.Errorf("building the manager: %w", err)
		}
	}

	policyFile, auditLog := filepath.Join(dir, "audit-policy.yaml"), filepath.Join(dir, "audit.log")
	if err := os.WriteFile(policyFile, []byte(auditPolicy), 0o600); err != nil {
		return nil, err
	}
	env, cfg, err := apiserver.Start(func(env *envtest.Environment) {
		env.ControlPlane.GetAPIServer().Configure().
			Set("audit-policy-file", policyFile).
			Set("audit-log-path", auditLog).
			Set("audit-log-format", "json").
			Set("audit-log-maxsize", "0")
	})
	if err != nil {
		return nil, err
	}
	defer func() { _ = env.Stop() }()
	// A client that can watch: a --follow agent watches its own pod for its assignments.
	clientFor := func(user string) (client.WithWatch, *rest.Config, error) {
		u, err := env.AddUser(envtest.User{Name: user, Groups: []string{"system:masters"}}, nil)
		if err != nil {
			return nil, nil, err
		}
		c := u.Config()
		c.QPS, c.Burst, c.UserAgent = 1000, 2000, user
		// With watch: an agent in --follow mode watches its own pod for its assignments.
		cl, err := client.NewWithWatch(c, client.Options{Scheme: apiserver.Scheme()})
		return cl, c, err
	}
	fast := rest.CopyConfig(cfg)
	fast.QPS, fast.Burst = 1000, 2000
	c, err := client.New(fast, client.Options{Scheme: apiserver.Scheme()})
	if err != nil {
		return nil, err
	}
	agents, agentsCfg, err := clientFor(userAgents)
	if err != nil {
		return nil, err
	}
	kubeletClient, _, err := clientFor(userKubelet)
	if err != nil {
		return nil, err
	}
	_, mgrCfg, err := clientFor(userManager)
	if err != nil {
		return nil, err
	}

	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: scaleNamespace}}); err != nil {
		return nil, err
	}
	for _, n := range []string{"scale-node-a", "scale-node-b"} {
		if err := apiserver.CreateReadyNode(ctx, c, n); err != nil {
			return nil, err
		}
	}
	logf("starting %d simulated iLO 5", o.targets)
	fl, err := fleet.Start(ctx, fleet.Options{Name: "scale", ILO5: o.targets, Timings: similo.Timings{
		Upload: o.flash / 6, Verify: o.flash / 6, Write: o.flash / 3, Update: o.flash / 2, Steps: 4,
		ResetDelay: max(o.flash/6, time.Millisecond), ILOReset: max(o.flash/2, time.Millisecond),
		HalfUp: max(o.flash/6, time.Millisecond), POST: max(o.flash/2, time.Millisecond)}})
	if err != nil {
		return nil, err
	}
	defer func() { _ = fl.Close() }()
	policy, err := scalePortPolicy()
	if err != nil {
		return nil, err
	}
	if err := c.Create(ctx, policy); err != nil {
		return nil, err
	}
	logf("creating %d UpdateTargets and their Secrets", o.targets)
	if err := createAll(ctx, c, fl.Objects(scaleNamespace)); err != nil {
		return nil, err
	}

	// The manager, as a process of its own.
	kubeconfig := filepath.Join(dir, "manager.kubeconfig")
	if err := writeKubeconfig(mgrCfg, kubeconfig); err != nil {
		return nil, err
	}
	metricsAddr, err := freeAddr(ctx)
	if err != nil {
		return nil, err
	}
	mgrLog, err := os.Create(filepath.Join(dir, "manager.log"))
	if err != nil {
		return nil, err
	}
	defer mgrLog.Close()
	mgrCtx, stopMgr := context.WithCancel(ctx)
	defer stopMgr()
	mgr := exec.CommandContext(mgrCtx, binary, "manager", "--kubeconfig="+kubeconfig, "--leader-elect=false",
		"--metrics-bind-address="+metricsAddr, "--metrics-secure=false", "--health-probe-bind-address=0",
		"--agent-image=ghcr.io/fwops/firmware-operator:bench",
		fmt.Sprintf("--kube-api-qps=%d", o.managerQPS), fmt.Sprintf("--kube-api-burst=%d", 2*o.managerQPS))
	mgr.Stdout, mgr.Stderr = mgrLog, mgrLog
	mgr.Cancel = func() error { return mgr.Process.Signal(syscall.SIGTERM) }
	mgr.WaitDelay = 40 * time.Second
	if err := mgr.Start(); err != nil {
		return nil, fmt.Errorf("starting the manager: %w", err)
	}
	mgrDone := make(chan error, 1)
	go func() { mgrDone <- mgr.Wait() }()
	stopManager := func() {
		stopMgr()
		if err := <-mgrDone; err != nil {
			logf("manager: %v (a manager stopped by SIGTERM may exit non-zero; its figures were read before)", err)
		}
	}
	defer func() {
		if mgrCtx.Err() == nil {
			stopManager()
		}
	}()

	agentLog, err := os.Create(filepath.Join(dir, "agents.log"))
	if err != nil {
		return nil, err
	}
	defer agentLog.Close()
	kubelet := kubeletsim.New(kubeletClient)
	// The agents space their progress writes as in production (runner's default), so that
	// their writes per target are production's.
	// Each agent builds its own client from the agents' user's configuration as a pod does
	// in-cluster (runner.WithRESTConfig), with production's client-side rate limits; the
	// shared client, unthrottled, reads only the Secrets the simulated kubelet mounts.
	kubelet.Use(fl.AgentFunc(agents, fleet.AgentOptions{Log: agentLog, MinWriteInterval: runner.DefaultMinWriteInterval,
		RESTConfig: agentsCfg}))
	kubeletCtx, stopKubelet := context.WithCancel(ctx)
	kubeletDone := make(chan struct{})
	go func() { kubelet.Run(kubeletCtx); close(kubeletDone) }()
	defer func() { stopKubelet(); <-kubeletDone }()

	logf("waiting for the manager to check every UpdateTarget")
	if err := waitFor(ctx, mgrDone, 10*time.Minute, func() (bool, error) {
		ready, err := readyTargets(ctx, c)
		return ready == o.targets, err
	}); err != nil {
		return nil, fmt.Errorf("UpdateTargets ready: %w (manager log: %s)", err, tail(mgrLog.Name()))
	}

	job := fl.Job(scaleNamespace, "scale", fwv1.ComponentILO, policy.Name, int32(o.maxConcurrent))
	job.Spec.Rollout.Timeout = &metav1.Duration{Duration: 10 * time.Minute}
	logf("applying UpdateJob %s: %d targets, maxConcurrent %d", job.Name, o.targets, o.maxConcurrent)
	applied := time.Now()
	if err := c.Create(ctx, job); err != nil {
		return nil, err
	}
	if err := waitFor(ctx, mgrDone, o.timeout, func() (bool, error) {
		cur := &fwv1.UpdateJob{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(job), cur); err != nil {
			return false, err
		}
		return cur.Status.Phase.Finished(), nil
	}); err != nil {
		return nil, fmt.Errorf("the rollout: %w (manager log: %s)", err, tail(mgrLog.Name()))
	}
	finished := time.Now()
	cur := &fwv1.UpdateJob{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(job), cur); err != nil {
		return nil, err
	}

	// The manager's own figures, before it stops.
	hwm, cpu, err := procFigures(mgr.Process.Pid)
	if err != nil {
		return nil, err
	}
	passes, err := reconcilePasses("http://" + metricsAddr + "/metrics")
	if err != nil {
		return nil, err
	}
	stopKubelet()
	<-kubeletDone
	stopManager()

	var tus fwv1.TargetUpdateList
	if err := c.List(ctx, &tus, client.InNamespace(scaleNamespace)); err != nil {
		return nil, err
	}
	succeeded, once := 0, 0
	failures := map[string]int{}
	for _, tu := range tus.Items {
		if tu.Status.Phase == fwv1.TargetPhaseSucceeded {
			succeeded++
		} else {
			failures[string(tu.Status.Phase)+": "+tu.Status.Message]++
		}
	}
	for msg, k := range failures {
		logf("%d targets did not succeed: %s", k, msg)
	}
	for _, name := range fl.TargetNames() {
		if fl.Flashes(name) == 1 {
			once++
		}
	}
	first := fl.FirstFlashRequest()

	if err := env.Stop(); err != nil { // flushes the audit log
		return nil, err
	}
	counts, err := countAuditFile(auditLog, applied, finished)
	if err != nil {
		return nil, err
	}
	mgrReq, agentReq, kubeletReq := counts[userManager], counts[userAgents], counts[userKubelet]
	n := o.targets
	waves := int(math.Ceil(float64(n) / float64(o.maxConcurrent)))
	wall := cur.Status.CompletionTime.Sub(applied)
	name := fmt.Sprintf("%d-target rollout (one job, maxConcurrent %d, flash time %s)", n, o.maxConcurrent, o.flash)
	perT := func(v int) string { return fmt.Sprintf("%.2f", float64(v)/float64(n)) }
	ratio := func(a, b float64) string { return fmt.Sprintf("%.2f×", a/b) }
	firstFlash := "no flash request"
	firstOK := false
	if !first.IsZero() {
		d := first.Sub(applied)
		firstFlash, firstOK = d.Round(10*time.Millisecond).String(), d <= 2*time.Second
	}
	rows = []row{
		{name: name + ": every target Succeeded, each flashed once (the simulators' count)",
			ours:      fmt.Sprintf("%d of %d Succeeded (job %s), %d flashed exactly once", succeeded, n, cur.Status.Phase, once),
			reference: fmt.Sprintf("%d", n), ratio: ratio(float64(min(succeeded, once)), float64(n)), goal: "all", verdict: yesNo(succeeded == n && once == n)},
		{name: name + ": kubectl apply → first flash request a simulator sees",
			ours: firstFlash, reference: "2 s (goal)", ratio: ratio(first.Sub(applied).Seconds(), 2), goal: "≤ 2 s", verdict: yesNo(firstOK)},
		{name: name + ": where the time to the first flash goes (audit log and simulators, from apply)",
			ours: fmt.Sprintf("first TargetUpdate made %s, first agent pod made %s, first agent write %s, first flash request %s",
				since(applied, mgrReq.first["create targetupdates"]), since(applied, mgrReq.first["create pods"]),
				since(applied, agentReq.first["patch targetupdates/status"]), since(applied, first)),
			reference: "-", ratio: "-", goal: "-", verdict: "-"},
		{name: name + ": manager peak RSS (VmHWM of its process; CPU time in brackets)",
			ours: fmt.Sprintf("%.1f MiB (%.1f s CPU)", float64(hwm)/(1<<20), cpu.Seconds()), reference: "300 MiB (goal)",
			ratio: ratio(float64(hwm), 300<<20), goal: "≤ 300 MiB", verdict: yesNo(hwm <= 300<<20)},
		{name: name + ": manager writes per target (audit log, apply → job finished): " + perTarget(mgrReq.byResource, n, isWriteVerb),
			ours: perT(mgrReq.writes()), reference: "3 (goal)", ratio: ratio(float64(mgrReq.writes())/float64(n), 3), goal: "≤ 3",
			verdict: yesNo(float64(mgrReq.writes()) <= 3*float64(n))},
		{name: name + ": agent writes per target: " + perTarget(agentReq.byResource, n, isWriteVerb),
			ours: perT(agentReq.writes()), reference: "8 (goal)", ratio: ratio(float64(agentReq.writes())/float64(n), 8), goal: "≤ 8",
			verdict: yesNo(float64(agentReq.writes()) <= 8*float64(n))},
		{name: name + ": manager reads per target: " + perTarget(mgrReq.byVerb, n, func(k string) bool { return !isWriteVerb(k) }),
			ours: perT(mgrReq.reads()), reference: "-", ratio: "-", goal: "-", verdict: "-"},
		{name: name + ": agent reads per target (Secret reads are the simulated kubelet's volume mounts): " +
			perTarget(agentReq.byResource, n, func(k string) bool { return !isWriteVerb(k) }),
			ours: perT(agentReq.reads()), reference: "-", ratio: "-", goal: "-", verdict: "-"},
		{name: name + ": the simulated kubelet's requests per target (not the operator's): " + perTarget(kubeletReq.byVerb, n, nil),
			ours: perT(kubeletReq.writes() + kubeletReq.reads()), reference: "-", ratio: "-", goal: "-", verdict: "-"},
		{name: name + ": reconcile passes (controller_runtime_reconcile_total, whole run)", ours: passes,
			reference: "-", ratio: "-", goal: "-", verdict: "-"},
		{name: name + ": wall time, apply → job completionTime",
			ours:      wall.Round(time.Second).String(),
			reference: fmt.Sprintf("%d waves × %s flash time = %s", waves, o.flash, (time.Duration(waves) * o.flash).Round(time.Second)),
			ratio:     ratio(wall.Seconds(), (time.Duration(waves) * o.flash).Seconds()), goal: "-", verdict: "-"},
	}
	return rows, nil
}

func since(from, at time.Time) string {
	if at.IsZero() {
		return "never"
	}
	return at.Sub(from).Round(10 * time.Millisecond).String()
}

// scalePortPolicy is the sample PortPolicy with rule P2's fallback range widened to 1,000
// ports: today's agents are a pod per batch of freed slots, each serving firmware on a port of
// its own, and the sample's eight would cap the live pods of a node well below the 200 slots.
func scalePortPolicy() (*fwv1.PortPolicy, error) {
	b, err := os.ReadFile(filepath.Join(apiserver.RepoRoot(), "config", "samples", "firmware_v1alpha1_portpolicy.yaml"))
	if err != nil {
		return nil, err
	}
	p := &fwv1.PortPolicy{}
	if err := yaml.UnmarshalStrict(b, p); err != nil {
		return nil, err
	}
	p.Spec.FirmwareServer.FallbackRange = &fwv1.PortRange{Start: 63000, End: 63999}
	return p, nil
}

// createAll creates the objects through 32 parallel requests.
func createAll(ctx context.Context, c client.Client, objs []client.Object) error {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	sem := make(chan struct{}, 32)
	for _, o := range objs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := c.Create(ctx, o); err != nil {
				mu.Lock()
				first = cmpErr(first, fmt.Errorf("creating %T %s: %w", o, o.GetName(), err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return first
}

func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

func readyTargets(ctx context.Context, c client.Client) (int, error) {
	var list fwv1.UpdateTargetList
	if err := c.List(ctx, &list, client.InNamespace(scaleNamespace)); err != nil {
		return 0, err
	}
	n := 0
	for _, t := range list.Items {
		if r := meta.FindStatusCondition(t.Status.Conditions, fwv1.ConditionReady); r != nil && r.Status == metav1.ConditionTrue && r.ObservedGeneration == t.Generation {
			n++
		}
	}
	return n, nil
}

// waitFor polls done every 200ms until it holds, the manager exits, or timeout passes.
func waitFor(ctx context.Context, mgrDone <-chan error, timeout time.Duration, done func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := done()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not done after %s", timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-mgrDone:
			return fmt.Errorf("the manager exited: %w", err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func writeKubeconfig(cfg *rest.Config, path string) error {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["bench"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["bench"] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken}
	kc.Contexts["bench"] = &clientcmdapi.Context{Cluster: "bench", AuthInfo: "bench"}
	kc.CurrentContext = "bench"
	return clientcmd.WriteToFile(*kc, path)
}

func freeAddr(ctx context.Context) (string, error) {
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// procFigures reads a process's peak resident set (VmHWM) and CPU time (user + system).
func procFigures(pid int) (hwm int64, cpu time.Duration, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if kb, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			v, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(kb), "kB")), 10, 64)
			if err != nil {
				return 0, 0, fmt.Errorf("VmHWM %q: %w", l, err)
			}
			hwm = v << 10
		}
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// Fields after the command's closing parenthesis; utime and stime are the 14th and 15th.
	f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: %q", pid, stat)
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	const clockTicks = 100 // USER_HZ on Linux
	return hwm, time.Duration(ut+st) * time.Second / clockTicks, nil
}

// reconcilePasses reads controller_runtime_reconcile_total from the manager's metrics, summed
// over results, per controller: "updatejob 1234, updatetarget 2345".
func reconcilePasses(url string) (string, error) {
	resp, err := http.Get(url) //nolint:gosec,noctx // the manager's loopback metrics endpoint, built above
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return parseReconcileTotals(resp.Body)
}

func parseReconcileTotals(r io.Reader) (string, error) {
	totals := map[string]float64{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		l := sc.Text()
		rest, ok := strings.CutPrefix(l, "controller_runtime_reconcile_total{")
		if !ok {
			continue
		}
		labels, value, ok := strings.Cut(rest, "} ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			return "", fmt.Errorf("metrics line %q: %w", l, err)
		}
		for _, kv := range strings.Split(labels, ",") {
			if name, ok := strings.CutPrefix(kv, `controller="`); ok {
				totals[strings.TrimSuffix(name, `"`)] += v
			}
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	if len(totals) == 0 {
		return "", errors.New("no controller_runtime_reconcile_total in the manager's metrics")
	}
	var names []string
	for k := range totals {
		names = append(names, k)
	}
	sort.Strings(names)
	var parts []string
	for _, k := range names {
		parts = append(parts, fmt.Sprintf("%s %.0f", k, totals[k]))
	}
	return strings.Join(parts, ", "), nil
}

// tail is the end of a log file, for an error message.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}
