// Package chaos runs rollouts through faults against a real API server and etcd, the
// simulated fleet and real agents, and judges them by the simulators' own counters: every
// target ends in a final phase, none is flashed twice, maxConcurrent and maxFailures hold.
package chaos

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/fwops/firmware-operator/internal/kubeletsim"
	"github.com/fwops/firmware-operator/internal/testutil/apiserver"
)

var (
	testEnv    *envtest.Environment
	cfg        *rest.Config
	k8sClient  client.Client
	suiteCtx   context.Context
	cancel     context.CancelFunc
	kubelet    *kubeletsim.Kubelet
	workDir    string
	binary     string // the operator, built once: the manager runs as its own process
	kubeconfig string
	// keepWorkDir keeps the manager logs and etcd data of a run in which a spec failed.
	keepWorkDir bool
	nodes       = []string{"node-a", "node-b"}
)

// reportGrace is the manager's --agent-report-grace: short, so that a silent agent's targets
// fail within a test's patience.
const reportGrace = 2 * time.Second

func TestChaos(t *testing.T) {
	gomega.RegisterFailHandler(ginkgo.Fail)
	gomega.SetDefaultEventuallyTimeout(2 * time.Minute)
	gomega.SetDefaultEventuallyPollingInterval(100 * time.Millisecond)
	ginkgo.RunSpecs(t, "Rollouts under faults")
}

var _ = ginkgo.BeforeSuite(func() {
	suiteCtx, cancel = context.WithCancel(context.Background())
	ctrl.SetLogger(logr.FromSlogHandler(slog.NewTextHandler(ginkgo.GinkgoWriter, &slog.HandlerOptions{Level: slog.LevelWarn})))
	var err error
	workDir, err = os.MkdirTemp("", "fwops-chaos-")
	gomega.Expect(err).NotTo(gomega.HaveOccurred())

	binary = filepath.Join(workDir, "firmware-operator")
	build := exec.Command("go", "build", "-o", binary, ".")
	build.Dir = apiserver.RepoRoot()
	out, err := build.CombinedOutput()
	gomega.Expect(err).NotTo(gomega.HaveOccurred(), "building the operator: %s", out)

	// Fixed folders for etcd's data and the API server's certificates, so that either can be
	// stopped and started again mid-rollout.
	certDir := filepath.Join(workDir, "apiserver")
	gomega.Expect(os.MkdirAll(certDir, 0o700)).To(gomega.Succeed())
	testEnv, cfg, err = apiserver.Start(apiserver.EtcdDataDir(filepath.Join(workDir, "etcd")), apiserver.CertDir(certDir),
		func(env *envtest.Environment) {
			// kube-apiserver drains long-running requests (watches) for 60 s on SIGTERM; the
			// restart spec wants it gone at once, so it is SIGKILLed after this (see
			// expectStopped). etcd keeps its data through a SIGKILL.
			env.ControlPlaneStopTimeout = 2 * time.Second
		})
	if errors.Is(err, apiserver.ErrNoAssets) && !apiserver.InCI() {
		ginkgo.Skip(err.Error())
	}
	gomega.Expect(err).NotTo(gomega.HaveOccurred())
	k8sClient, err = client.NewWithWatch(cfg, client.Options{Scheme: apiserver.Scheme()})
	gomega.Expect(err).NotTo(gomega.HaveOccurred())
	kubeconfig, err = apiserver.WriteKubeconfig(testEnv, workDir, "default")
	gomega.Expect(err).NotTo(gomega.HaveOccurred())
	// Agent processes authenticate with their pod's token: the policy that limits their
	// writes is part of what they run under.
	gomega.Expect(apiserver.InstallAgentWritePolicy(suiteCtx, k8sClient)).To(gomega.Succeed())
	for _, n := range nodes {
		gomega.Expect(apiserver.CreateReadyNode(suiteCtx, k8sClient, n)).To(gomega.Succeed())
	}
	kubelet = kubeletsim.New(k8sClient)
	go kubelet.Run(suiteCtx)
})

var _ = ginkgo.AfterSuite(func() {
	if cancel != nil {
		cancel()
	}
	if testEnv != nil {
		expectStopped(testEnv.Stop())
	}
	if workDir != "" && !keepWorkDir {
		_ = os.RemoveAll(workDir)
	}
})

// managerProcess is the manager run as the Deployment runs it: its own process, its own
// flags, its logs in a file kept with a failed run.
type managerProcess struct {
	cmd  *exec.Cmd
	done chan error
	log  string
	runs int
}

// start runs a new manager process (the previous one must have ended).
func (m *managerProcess) start() {
	m.runs++
	m.log = filepath.Join(workDir, fmt.Sprintf("manager-%02d.log", m.runs))
	f, err := os.Create(m.log)
	gomega.Expect(err).NotTo(gomega.HaveOccurred())
	// Leader election is off: a SIGKILLed leader's lease would hold the next manager for its
	// whole duration, and what this suite tests is state kept only in the API objects.
	m.cmd = exec.Command(binary, "manager", "--kubeconfig", kubeconfig, "--leader-elect=false",
		"--metrics-bind-address=0", "--health-probe-bind-address=127.0.0.1:0", "--agent-image=fwops:chaos",
		"--agent-report-grace="+reportGrace.String())
	m.cmd.Stdout, m.cmd.Stderr = f, f
	gomega.Expect(m.cmd.Start()).To(gomega.Succeed())
	m.done = make(chan error, 1)
	go func() { m.done <- m.cmd.Wait(); f.Close() }()
}

// kill ends the manager with SIGKILL, as the OOM killer or a node failure would: no
// deferred write, no graceful shutdown.
func (m *managerProcess) kill() {
	_ = m.cmd.Process.Kill()
	<-m.done
}

// stop ends the manager if it still runs.
func (m *managerProcess) stop() {
	if m.cmd != nil && m.cmd.ProcessState == nil {
		m.kill()
	}
}

func newNamespace(prefix string) string {
	ns := fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano()%1000000)
	gomega.Expect(k8sClient.Create(suiteCtx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(gomega.Succeed())
	return ns
}

// expectStopped accepts a control-plane component's stop that ended in SIGKILL after the
// suite's ControlPlaneStopTimeout (envtest reports it as an error), and no other error.
func expectStopped(err error) {
	if err == nil {
		return
	}
	for _, line := range strings.Split(err.Error(), "\n") {
		gomega.Expect(line).To(gomega.MatchRegexp(`^timeout waiting for process \S+ to stop$`), "stopping the control plane")
	}
}
