package cluster_test

import (
	"context"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
	"github.com/fwops/firmware-operator/internal/agentpod"
)

// seenAgent is what an agentObserver saw of one agent pod while it existed.
type seenAgent struct {
	job string
	// containerID is the first container's ID once the kubelet reported it.
	containerID string
	// logged is true once the agent's log (the kubelet's pod log folder) said something.
	logged bool
}

// agentObserver records the agent pods of a namespace while they run: the controller deletes
// an agent pod once its work is done, and the kubelet then removes its logs, so what a test
// wants to check of a pod it must see while the pod is there.
type agentObserver struct {
	mu   sync.Mutex
	pods map[string]*seenAgent
	done chan struct{}
}

// observeAgents reads the namespace's agent pods, and the logs of those not yet seen
// logging, every 200 ms until stop is called.
func observeAgents(ctx context.Context, ns string) (o *agentObserver, stop func()) {
	o = &agentObserver{pods: map[string]*seenAgent{}, done: make(chan struct{})}
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		defer close(o.done)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			o.look(ctx, ns)
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return o, func() { cancel(); <-o.done }
}

func (o *agentObserver) look(ctx context.Context, ns string) {
	var list corev1.PodList
	if err := k8s.List(ctx, &list, client.InNamespace(ns), client.MatchingLabels{agentpod.LabelApp: agentpod.AppName}); err != nil {
		return // the next look tries again
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, p := range list.Items {
		s := o.pods[p.Name]
		if s == nil {
			s = &seenAgent{job: p.Labels[fwv1.LabelJob]}
			o.pods[p.Name] = s
		}
		if cs := p.Status.ContainerStatuses; len(cs) > 0 && cs[0].ContainerID != "" {
			s.containerID = cs[0].ContainerID
		}
		if !s.logged && s.containerID != "" {
			s.logged = strings.Contains(agentLog(ns, p.Name), "\"msg\"")
		}
	}
}

// of returns what was seen of the job's agent pods, by pod name.
func (o *agentObserver) of(job string) map[string]seenAgent {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := map[string]seenAgent{}
	for name, s := range o.pods {
		if s.job == job {
			out[name] = *s
		}
	}
	return out
}
