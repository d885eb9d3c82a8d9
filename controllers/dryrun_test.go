package controllers_test

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
	"github.com/fwops/firmware-operator/internal/agentpod"
)

var _ = ginkgo.Describe("UpdateJob dry run", func() {
	s := newRolloutSpec(300 * time.Millisecond)

	ginkgo.It("plans the pods the real run creates: per node, the slots and the ports they declare (rule P4: one session and one receive port per slot)", func() {
		createILOTargets(s.ns, "rack-slots", 3)
		// The pods stay up until the plan is compared with them.
		finish := make(chan struct{})
		var closeFinish sync.Once
		ginkgo.DeferCleanup(func() { closeFinish.Do(func() { close(finish) }) })
		kubelet.Use(func(ctx context.Context, pod *corev1.Pod, args []string) error {
			select {
			case <-finish:
			case <-ctx.Done():
				return ctx.Err()
			}
			return s.agent.run(ctx, pod, args)
		})
		// Three targets at maxConcurrent 4 on two nodes: two pods of ceil(4/2) = 2 slots each,
		// one of them with a single first target.
		job := newJob(s.ns, "plan-slots", "rack-slots", s.policy, func(j *fwv1.UpdateJob) { j.Spec.DryRun = true; j.Spec.Rollout.MaxConcurrent = 4 })
		gomega.Eventually(jobPhase(job)).Should(gomega.Equal(fwv1.JobPhasePlanned))
		plan := getJob(job).Status.Agents
		gomega.Expect(plan).To(gomega.HaveLen(2))
		byNode := map[string]fwv1.AgentStatus{}
		var planned []int
		for _, a := range plan {
			gomega.Expect(a.Slots).To(gomega.Equal(int32(2)), "ceil(maxConcurrent 4 / 2 nodes) slots on %s", a.Node)
			gomega.Expect(a.Ports.Sessions).To(gomega.HaveLen(2), "P4: one session port per slot on %s, not per planned target (%v)", a.Node, a.Targets)
			gomega.Expect(a.Ports.Reverse).To(gomega.HaveLen(2), "P5: one receive port per slot on %s", a.Node)
			gomega.Expect(a.Receive).To(gomega.HaveLen(len(a.Targets)), "each planned iLO 5's receive port on %s", a.Node)
			byNode[a.Node] = a
			planned = append(planned, len(a.Targets))
		}
		gomega.Expect(planned).To(gomega.ConsistOf(2, 1))

		updateJob(job, func(j *fwv1.UpdateJob) { j.Spec.DryRun = false })
		gomega.Eventually(func() int { return len(agentPodsOf(s.ns, job.Name)) }).Should(gomega.Equal(2))
		for _, p := range agentPodsOf(s.ns, job.Name) {
			want, ok := byNode[agentpod.Node(&p)]
			gomega.Expect(ok).To(gomega.BeTrue(), "pod %s runs on a planned node", p.Name)
			declared := declaredPorts(&p)
			got := fwv1.AgentPorts{Control: declared["control"], FirmwareServer: declared["firmware"], IPC: declared["ipc"]}
			for i := 0; declared["s"+strconv.Itoa(i)] != 0; i++ {
				got.Sessions = append(got.Sessions, declared["s"+strconv.Itoa(i)])
			}
			for i := 0; declared["r"+strconv.Itoa(i)] != 0; i++ {
				got.Reverse = append(got.Reverse, declared["r"+strconv.Itoa(i)])
			}
			gomega.Expect(got).To(gomega.Equal(want.Ports), "pod %s on %s declares the planned ports", p.Name, want.Node)
			assigned, err := agentpod.Assignments(&p)
			gomega.Expect(err).NotTo(gomega.HaveOccurred())
			var names []string
			for _, a := range assigned {
				names = append(names, a.Name)
			}
			gomega.Expect(names).To(gomega.Equal(want.Targets), "pod %s starts with the planned targets", p.Name)
		}
		closeFinish.Do(func() { close(finish) })
		gomega.Eventually(jobPhase(job)).Should(gomega.Equal(fwv1.JobPhaseSucceeded))
	})
})
