package cluster_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"

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
	ns   string
	mu   sync.Mutex
	pods map[string]*seenAgent
}

// observeAgents watches the namespace's agent pods until stop is called. Each change the
// kubelet reports of a started pod (running, ready once the agent answers its probe,
// terminated) reads its log until the log says something; the pod's log folder is still there
// at each of them.
func observeAgents(ctx context.Context, t *testing.T, ns string) (o *agentObserver, stop func()) {
	t.Helper()
	o = &agentObserver{ns: ns, pods: map[string]*seenAgent{}}
	ctx, cancel := context.WithCancel(ctx)
	factory := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace(ns),
		informers.WithTweakListOptions(func(lo *metav1.ListOptions) {
			lo.LabelSelector = labels.SelectorFromSet(labels.Set{agentpod.LabelApp: agentpod.AppName}).String()
		}))
	if _, err := factory.Core().V1().Pods().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    o.see,
		UpdateFunc: func(_, pod any) { o.see(pod) },
		DeleteFunc: o.see,
	}); err != nil {
		t.Fatal(err)
	}
	factory.Start(ctx.Done())
	return o, func() { cancel(); factory.Shutdown() }
}

// see records what the watch tells of one pod, and reads its log when it may say something.
func (o *agentObserver) see(obj any) {
	if gone, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = gone.Obj
	}
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	s := o.pods[p.Name]
	if s == nil {
		s = &seenAgent{job: p.Labels[fwv1.LabelJob]}
		o.pods[p.Name] = s
	}
	if st := p.Status.ContainerStatuses; len(st) > 0 && st[0].ContainerID != "" {
		s.containerID = st[0].ContainerID
	}
	if !s.logged && s.containerID != "" {
		s.logged = strings.Contains(agentLog(o.ns, p.Name), "\"msg\"")
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
