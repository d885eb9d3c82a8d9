package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/fwops/firmware-operator/internal/agent/config"
)

// AssignmentSource tells a Follow agent the targets assigned to it.
type AssignmentSource interface {
	// Follow calls f with every assignment so far, each time they may have changed, until
	// ctx ends (nil) or the assignments can no longer be followed (the pod is gone). f
	// starts the assignments it has not seen (Target.Key) and ignores the others.
	Follow(ctx context.Context, f func([]config.Target)) error
}

// PodAssignments follows the annotation config.AnnotationAssignments on the agent's own pod:
// it lists the pod (a field selector on its name, which the job's Role allows by
// resourceNames) and watches it from there, listing again, with a backoff, whenever the watch
// ends.
type PodAssignments struct {
	Client    client.WithWatch
	Namespace string
	Pod       string
	// Log receives problems reading the assignments; nil discards.
	Log *slog.Logger
}

// ErrPodGone says the agent's pod was deleted: nothing more will be assigned.
var ErrPodGone = errors.New("the agent's pod is gone")

// Follow implements AssignmentSource.
func (p PodAssignments) Follow(ctx context.Context, f func([]config.Target)) error {
	log := p.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	opts := []client.ListOption{client.InNamespace(p.Namespace), client.MatchingFieldsSelector{Selector: fields.OneTermEqualSelector("metadata.name", p.Pod)}}
	deliver := func(pod *corev1.Pod) {
		ts, err := config.DecodeAssignments(pod.Annotations[config.AnnotationAssignments])
		if err != nil {
			log.Error("cannot read the assignments on the agent's pod: waiting for a good one", "err", err)
			return
		}
		f(ts)
	}
	wait := 100 * time.Millisecond
	backoff := func() error {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait = min(2*wait, 10*time.Second)
		return nil
	}
	for ctx.Err() == nil {
		var list corev1.PodList
		if err := p.Client.List(ctx, &list, opts...); err != nil {
			log.Warn("cannot list the agent's pod to follow its assignments: retrying", "in", wait, "err", err)
			_ = backoff()
			continue
		}
		if len(list.Items) == 0 {
			return fmt.Errorf("%w: no pod %s/%s", ErrPodGone, p.Namespace, p.Pod)
		}
		deliver(&list.Items[0])
		w, err := p.Client.Watch(ctx, &corev1.PodList{}, append(opts, &client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: list.ResourceVersion}})...)
		if err != nil {
			log.Warn("cannot watch the agent's pod: listing again", "in", wait, "err", err)
			_ = backoff()
			continue
		}
		gone := p.drain(ctx, w, deliver, log)
		w.Stop()
		if gone {
			return fmt.Errorf("%w: pod %s/%s was deleted", ErrPodGone, p.Namespace, p.Pod)
		}
		if ctx.Err() == nil {
			_ = backoff()
		}
	}
	return nil
}

// drain hands each change of the pod to deliver until the watch ends; gone says the pod was
// deleted.
func (p PodAssignments) drain(ctx context.Context, w watch.Interface, deliver func(*corev1.Pod), log *slog.Logger) (gone bool) {
	for {
		select {
		case <-ctx.Done():
			return false
		case ev, ok := <-w.ResultChan():
			if !ok {
				return false
			}
			switch ev.Type {
			case watch.Added, watch.Modified:
				if pod, ok := ev.Object.(*corev1.Pod); ok && pod.Name == p.Pod {
					deliver(pod)
				}
			case watch.Deleted:
				return true
			case watch.Error:
				log.Warn("the watch of the agent's pod ended with an error: listing again", "err", strings.TrimSpace(fmt.Sprint(ev.Object)))
				return false
			}
		}
	}
}
