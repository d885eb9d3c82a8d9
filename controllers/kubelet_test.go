package controllers_test

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/onsi/ginkgo/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/fwops/firmware-operator/internal/agent/config"
	"github.com/fwops/firmware-operator/internal/agentpod"
)

// agentFunc plays the agent container of a pod: it gets the pod's arguments (after the
// "agent" verb) and returns the container's result.
type agentFunc func(ctx context.Context, pod *corev1.Pod, args []string) error

// testKubelet plays the kubelet, which envtest does not have: it runs the agent of each agent
// pod the controller creates, sets the pod's phase, and stops the agent of a deleted pod.
type testKubelet struct {
	c client.Client

	mu      sync.Mutex
	agent   agentFunc
	running map[types.UID]context.CancelFunc
	seen    map[types.UID]bool
	started []string // pod names, in start order
}

func newTestKubelet(c client.Client) *testKubelet {
	return &testKubelet{c: c, running: map[types.UID]context.CancelFunc{}, seen: map[types.UID]bool{}}
}

// use sets the agent that runs in the pods started from now on.
func (k *testKubelet) use(a agentFunc) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.agent = a
}

func (k *testKubelet) podsStarted() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]string(nil), k.started...)
}

func (k *testKubelet) run(ctx context.Context) {
	defer ginkgo.GinkgoRecover()
	t := time.NewTicker(50 * time.Millisecond)
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
				continue
			}
			k.mu.Lock()
			fresh := !k.seen[p.UID] && k.agent != nil
			if fresh {
				k.seen[p.UID] = true
				k.started = append(k.started, p.Name)
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

func (k *testKubelet) stop(uid types.UID) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if stop := k.running[uid]; stop != nil {
		stop()
		delete(k.running, uid)
	}
}

func (k *testKubelet) runPod(ctx context.Context, pod *corev1.Pod, agent agentFunc) {
	defer ginkgo.GinkgoRecover()
	ctx, stop := context.WithCancel(ctx)
	k.mu.Lock()
	k.running[pod.UID] = stop
	k.mu.Unlock()
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

func (k *testKubelet) setPhase(ctx context.Context, pod *corev1.Pod, phase corev1.PodPhase, err error) {
	for attempt := 0; attempt < 20; attempt++ {
		cur := &corev1.Pod{}
		if k.c.Get(ctx, client.ObjectKeyFromObject(pod), cur) != nil {
			return
		}
		cur.Status.Phase = phase
		if phase == corev1.PodSucceeded || phase == corev1.PodFailed {
			code, msg := int32(0), ""
			if err != nil {
				code, msg = 1, err.Error()
			}
			cur.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: agentpod.ContainerName,
				State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code, Message: msg}}}}
		}
		if k.c.Status().Update(ctx, cur) == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// parseAgentArgs reads a pod's agent configuration, as the agent does.
func parseAgentArgs(args []string) config.Config {
	cfg, err := config.Parse(args)
	if err != nil {
		panic(fmt.Sprintf("the pod's agent arguments do not parse: %v", err))
	}
	return cfg
}
