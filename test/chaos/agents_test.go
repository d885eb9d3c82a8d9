package chaos

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/fwops/firmware-operator/internal/fleet"
	"github.com/fwops/firmware-operator/internal/kubeletsim"
	"github.com/fwops/firmware-operator/internal/testutil/apiserver"
)

// agentProcesses plays the agent container of each agent pod as its own process: the built
// operator binary run as `agent` with the pod's arguments, its volumes laid out by the fleet
// (fleet.Mount), and a kubeconfig that holds a token of the pod's ServiceAccount bound to the
// pod (TokenRequest, as the kubelet's projected token volume gets it): the agent has exactly
// the access a real agent pod has, the agent write policy included. Unlike in-process agents
// they can be SIGKILLed. A deleted pod's agent gets SIGTERM, as from the kubelet.
type agentProcesses struct {
	f   *fleet.Fleet
	dir string // the agents' log files

	mu      sync.Mutex
	running map[string]*os.Process // by pod name
	runs    int
}

func newAgentProcesses(f *fleet.Fleet) *agentProcesses {
	dir := filepath.Join(workDir, "agents-"+f.Name)
	return &agentProcesses{f: f, dir: dir, running: map[string]*os.Process{}}
}

// run is the kubeletsim.AgentFunc.
func (a *agentProcesses) run(ctx context.Context, pod *corev1.Pod, args []string) error {
	// A kubelet keeps trying to set up a pod's volumes (the pod stays ContainerCreating), for
	// instance while the API server that holds its Secrets restarts.
	var extra []string
	var unmount func()
	var token string
	var err error
	for deadline := time.Now().Add(time.Minute); ; {
		if token, err = apiserver.PodToken(ctx, cfg, pod, true); err == nil {
			if extra, unmount, err = a.f.Mount(ctx, k8sClient, pod, nil); err == nil {
				break
			}
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	defer unmount()
	if err := os.MkdirAll(a.dir, 0o755); err != nil {
		return err
	}
	a.mu.Lock()
	a.runs++
	run := fmt.Sprintf("%03d-%s", a.runs, pod.Name)
	a.mu.Unlock()
	logPath := filepath.Join(a.dir, run+".log")
	podKubeconfig, err := apiserver.WritePodKubeconfig(cfg, token, pod.Namespace, a.dir, run+".kubeconfig")
	if err != nil {
		return err
	}
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logFile.Close()
	argv := append(append([]string{"agent"}, args...), extra...)
	argv = append(argv, "--kubeconfig="+podKubeconfig)
	cmd := exec.Command(binary, argv...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return err
	}
	a.mu.Lock()
	a.running[pod.Name] = cmd.Process
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		delete(a.running, pod.Name)
		a.mu.Unlock()
	}()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		// The pod was deleted: SIGTERM, then SIGKILL after a grace period, as a kubelet does.
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		return ctx.Err()
	}
}

// kill SIGKILLs the agent of pod; false when it does not run (any more).
func (a *agentProcesses) kill(pod string) bool {
	a.mu.Lock()
	p := a.running[pod]
	a.mu.Unlock()
	return p != nil && p.Kill() == nil
}

var _ kubeletsim.AgentFunc = (&agentProcesses{}).run
