package controllers_test

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
)

// podsStartedFor are the agent pods of job the kubelet ran, over the whole spec.
func podsStartedFor(job *fwv1.UpdateJob) []string {
	var out []string
	for _, name := range kubelet.PodsStarted() {
		if strings.HasPrefix(name, job.Name+"-agent-") {
			out = append(out, name)
		}
	}
	return out
}

var _ = ginkgo.Describe("Agents that live for the job", func() {
	spec := newRolloutSpec(200 * time.Millisecond)

	ginkgo.It("rolls 12 targets out at maxConcurrent 4 on 2 nodes with one pod per node, each target flashed once", func() {
		ns, agent := spec.ns, spec.agent
		targets := createILOTargets(ns, "rack-long", 12)
		job := newJob(ns, "long-lived", "rack-long", spec.policy, func(j *fwv1.UpdateJob) { j.Spec.Rollout.MaxConcurrent = 4 })
		gomega.Eventually(jobPhase(job)).Should(gomega.Equal(fwv1.JobPhaseSucceeded))
		for _, t := range targets {
			gomega.Expect(agent.flashCount(t)).To(gomega.Equal(1), "target %s", t)
		}
		gomega.Expect(agent.peak()).To(gomega.BeNumerically("<=", 4), "maxConcurrent held")
		pods := podsStartedFor(job)
		gomega.Expect(len(pods)).To(gomega.BeNumerically("<=", 2), "one pod per node, not one per slot: %v", pods)
		nodes := map[string]bool{}
		for _, tu := range targetUpdates(ns, job.Name) {
			nodes[tu.Status.Node] = true
		}
		gomega.Expect(nodes).To(gomega.HaveLen(2), "both nodes worked")
		gomega.Eventually(func() int { return len(agentPodsOf(ns, job.Name)) }).Should(gomega.BeZero(), "idle pods are deleted once nothing is pending")
	})

	ginkgo.It("deletes an agent pod that ended, after failing its targets with the reason", func() {
		ns := spec.ns
		createILOTargets(ns, "rack-ended", 1)
		kubelet.Use(func(context.Context, *corev1.Pod, []string) error { return errors.New("agent crashed") })
		job := newJob(ns, "ended", "rack-ended", spec.policy, func(j *fwv1.UpdateJob) {
			j.Spec.Rollout.MaxFailures = ptr.To(intstr.FromInt32(1))
		})
		gomega.Eventually(func() string {
			for _, tu := range targetUpdates(ns, job.Name) {
				return tu.Status.Message
			}
			return ""
		}).Should(gomega.ContainSubstring("ended (Failed)"))
		gomega.Expect(podsStartedFor(job)).To(gomega.HaveLen(1))
		gomega.Eventually(func() int { return len(agentPodsOf(ns, job.Name)) }).Should(gomega.BeZero(), "the finished pod is deleted")
	})
})
