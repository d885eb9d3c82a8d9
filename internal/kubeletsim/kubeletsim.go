// Package kubeletsim plays the kubelet where there is none (envtest, the demo): it runs the
// agent of each agent pod the controller creates, in-process, sets the pod's phase, and stops
// the agent of a deleted pod, then finalizes the pod (a deletion with no grace period, as a
// kubelet does once the containers have stopped).
package kubeletsim

import (
	"context"
	"errors"
	"os/exec"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/fwops/firmware-operator/internal/agentpod"
)

// AgentFunc plays the agent container of a pod: it gets the pod's arguments (after the
// "agent" verb) and returns the container's result.
type AgentFunc func(ctx context.Context, pod *corev1.Pod, args []string) error

// Kubelet runs agent pods in-process.
type Kubelet struct {
	c client.Client
	// Poll is how often pods are listed (default 50ms).
	Poll time.Duration

	mu      sync.Mutex
	agent   AgentFunc
	running map[types.UID]context.CancelFunc
	ended   map[types.UID]chan struct{} // closed when the pod's agent has returned
	seen    map[types.UID]bool
	started []string // pod names, in start order
}

// New returns a Kubelet that reads and writes pods through c.
func New(c client.Client) *Kubelet {
	return &Kubelet{c: c, running: map[types.UID]context.CancelFunc{}, ended: map[types.UID]chan struct{}{}, seen: map[types.UID]bool{}}
}

// Use sets the agent that runs in the pods started from now on.
func (k *Kubelet) Use(a AgentFunc) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.agent = a
}

// PodsStarted lists the pods whose agent ran, in start order.
func (k *Kubelet) PodsStarted() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]string(nil), k.started...)
}

// Run plays the kubelet until ctx ends.
func (k *Kubelet) Run(ctx context.Context) {
	poll := k.Poll
	if poll <= 0 {
		poll = 50 * time.Millisecond
	}
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		var pods corev1.PodList
		if err := k.c.List(ctx, &pods, client.MatchingLabels{agentpod.LabelApp: agentpod.AppName}); err != nil {
			continue
		}
		present := map[types.UID]bool{}
		for i := range pods.Items {
			p := pods.Items[i]
			present[p.UID] = true
			if p.DeletionTimestamp != nil {
				k.stop(p.UID)
				k.finalize(ctx, &p)
				continue
			}
			k.mu.Lock()
			fresh := !k.seen[p.UID] && k.agent != nil
			if fresh {
				k.seen[p.UID] = true
				k.started = append(k.started, p.Name)
				k.ended[p.UID] = make(chan struct{})
			}
			agent := k.agent
			k.mu.Unlock()
			if fresh {
				go k.runPod(ctx, &p, agent)
			}
		}
		k.mu.Lock()
		for uid, stop := range k.running {
			if !present[uid] {
				stop()
				delete(k.running, uid)
			}
		}
		k.mu.Unlock()
	}
}

func (k *Kubelet) stop(uid types.UID) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if stop := k.running[uid]; stop != nil {
		stop()
		delete(k.running, uid)
	}
}

// finalize removes a deleted pod once its agent has returned, as the kubelet does; a pod
// whose agent is still stopping is finalized on a later poll.
func (k *Kubelet) finalize(ctx context.Context, pod *corev1.Pod) {
	k.mu.Lock()
	ended := k.ended[pod.UID]
	k.mu.Unlock()
	if ended != nil {
		select {
		case <-ended:
		default:
			return
		}
	}
	uid := pod.UID
	_ = k.c.Delete(ctx, pod, client.GracePeriodSeconds(0), client.Preconditions{UID: &uid})
}

func (k *Kubelet) runPod(ctx context.Context, pod *corev1.Pod, agent AgentFunc) {
	ctx, stop := context.WithCancel(ctx)
	k.mu.Lock()
	k.running[pod.UID] = stop
	ended := k.ended[pod.UID]
	k.mu.Unlock()
	defer close(ended)
	defer k.stop(pod.UID)

	k.setPhase(ctx, pod, corev1.PodRunning, nil)
	args := pod.Spec.Containers[0].Args
	err := agent(ctx, pod, args[1:])
	if ctx.Err() != nil {
		return // the pod was deleted
	}
	if err != nil {
		k.setPhase(context.Background(), pod, corev1.PodFailed, err)
		return
	}
	k.setPhase(context.Background(), pod, corev1.PodSucceeded, nil)
}

// setPhase records the pod's phase, trying for up to a minute: a result lost while the API
// server restarts would leave the pod Running for ever.
func (k *Kubelet) setPhase(ctx context.Context, pod *corev1.Pod, phase corev1.PodPhase, err error) {
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline) && ctx.Err() == nil; time.Sleep(100 * time.Millisecond) {
		cur := &corev1.Pod{}
		if gerr := k.c.Get(ctx, client.ObjectKeyFromObject(pod), cur); gerr != nil {
			if apierrors.IsNotFound(gerr) {
				return
			}
			continue
		}
		cur.Status.Phase = phase
		if phase == corev1.PodSucceeded || phase == corev1.PodFailed {
			code, reason, msg := ExitCode(err), "Completed", ""
			if err != nil {
				reason, msg = "Error", err.Error()
			}
			cur.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: agentpod.ContainerName,
				State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code, Reason: reason, Message: msg}}}}
		}
		if k.c.Status().Update(ctx, cur) == nil {
			return
		}
	}
}

// ExitCode is the container exit code a kubelet reports for an agent that ended with err: a
// process's own exit status, 128 plus the signal for one killed by a signal (137 for SIGKILL,
// as container runtimes report it), 1 for any other error, 0 for none.
func ExitCode(err error) int32 {
	if err == nil {
		return 0
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		return 1
	}
	if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int32(ws.Signal())
	}
	return int32(exit.ExitCode())
}
