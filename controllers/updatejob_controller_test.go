package controllers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
	"github.com/fwops/firmware-operator/internal/agentpod"
)

var _ = ginkgo.Describe("UpdateJob rollout", func() {
	var (
		ns     string
		policy string
		agent  *scriptedAgent
	)
	ginkgo.BeforeEach(func() {
		ns = newNamespace()
		policy = "policy-" + ns
		createPolicy(policy, nil)
		agent = newScriptedAgent(300 * time.Millisecond)
		kubelet.Use(agent.run)
	})
	ginkgo.AfterEach(func() {
		if ginkgo.CurrentSpecReport().Failed() {
			dumpNamespace(ns)
		}
		cleanNamespace(ns)
	})

	ginkgo.It("rolls out at most maxConcurrent at a time, flashes each target once and reports Ready", func() {
		targets := createILOTargets(ns, "rack1", 9)
		job := newJob(ns, "ilo5-278", "rack1", policy, func(j *fwv1.UpdateJob) { j.Spec.Rollout.MaxConcurrent = 3 })

		var sawProgress bool
		gomega.Eventually(func() fwv1.JobPhase {
			if t := getTable(ns, "updatejobs"); strings.Contains(t, "Running") {
				sawProgress = true
			}
			return getJob(job).Status.Phase
		}).Should(gomega.Equal(fwv1.JobPhaseSucceeded))
		gomega.Expect(sawProgress).To(gomega.BeTrue(), "the print columns showed the job Running")

		cur := getJob(job)
		gomega.Expect(cur.Status.Counts).To(gomega.Equal(fwv1.TargetCounts{Total: 9, Succeeded: 9}))
		gomega.Expect(cur.Status.ObservedGeneration).To(gomega.Equal(cur.Generation))
		gomega.Expect(condition(job, fwv1.ConditionReady)()).To(gomega.HaveField("Status", metav1.ConditionTrue))
		gomega.Expect(condition(job, fwv1.ConditionProgressing)()).To(gomega.HaveField("Status", metav1.ConditionFalse))
		gomega.Expect(cur.Status.StartTime).NotTo(gomega.BeNil())
		gomega.Expect(cur.Status.CompletionTime).NotTo(gomega.BeNil())
		gomega.Expect(agent.peak()).To(gomega.BeNumerically("<=", 3), "maxConcurrent was exceeded")
		gomega.Expect(agent.peak()).To(gomega.BeNumerically(">=", 2), "the rollout never ran targets side by side")
		for _, t := range targets {
			gomega.Expect(agent.flashCount(t)).To(gomega.Equal(1), "target %s", t)
		}
		for _, tu := range targetUpdates(ns, job.Name) {
			gomega.Expect(tu.Status.Phase).To(gomega.Equal(fwv1.TargetPhaseSucceeded))
			gomega.Expect(metav1.IsControlledBy(&tu, cur)).To(gomega.BeTrue(), "TargetUpdate %s is owned by the job", tu.Name)
			gomega.Expect(tu.Status.Attempts).To(gomega.Equal(int32(1)))
		}
		gomega.Eventually(func() []string { return eventReasons(ns) }).Should(gomega.ContainElements("Started", "Succeeded"))
		// Issue 13: a success is on its TargetUpdate and in the job's counts, not in an event per target.
		gomega.Expect(eventReasons(ns)).NotTo(gomega.ContainElement("TargetSucceeded"), "an event was written per succeeded target")
		gomega.Expect(gatheredMetric("fwops_job_targets", map[string]string{"namespace": ns, "job": job.Name, "phase": "Succeeded"})).To(gomega.Equal(9.0))
		gomega.Expect(gatheredMetric("fwops_job_progress_ratio", map[string]string{"namespace": ns, "job": job.Name})).To(gomega.Equal(1.0))
		gomega.Expect(gatheredMetric("fwops_target_update_duration_seconds", map[string]string{"type": "iLO5", "result": "Succeeded"})).To(gomega.BeNumerically(">=", 9), "one observation per target")

		// The targets remember what they run now.
		gomega.Eventually(func() []fwv1.ComponentVersion {
			t := &fwv1.UpdateTarget{}
			gomega.Expect(k8sClient.Get(suiteCtx, client.ObjectKey{Namespace: ns, Name: targets[0]}, t)).To(gomega.Succeed())
			return t.Status.FirmwareVersions
		}).Should(gomega.ContainElement(fwv1.ComponentVersion{Component: fwv1.ComponentILO, Version: "2.78"}))
	})

	ginkgo.It("declares the assigned ports on each agent pod and keeps two agents of a node apart", func() {
		createILOTargets(ns, "rack2", 4)
		agent.flashTime = 3 * time.Second
		job := newJob(ns, "ports", "rack2", policy, func(j *fwv1.UpdateJob) { j.Spec.Rollout.MaxConcurrent = 4 })
		gomega.Eventually(func() int { return len(agentPodsOf(ns, job.Name)) }).Should(gomega.BeNumerically(">=", 2))
		pods := agentPodsOf(ns, job.Name)
		byNode := map[string]map[int32]string{}
		for _, p := range pods {
			node := agentpod.Node(&p)
			if byNode[node] == nil {
				byNode[node] = map[int32]string{}
			}
			for _, cp := range p.Spec.Containers[0].Ports {
				gomega.Expect(byNode[node]).NotTo(gomega.HaveKey(cp.HostPort), "port %d given twice on node %s", cp.HostPort, node)
				byNode[node][cp.HostPort] = p.Name
			}
			gomega.Expect(p.Spec.HostNetwork).To(gomega.BeTrue())
		}
		gomega.Expect(byNode).To(gomega.HaveLen(2), "the batch was spread over both nodes")
		for node, ports := range byNode {
			gomega.Expect(ports).To(gomega.HaveKey(int32(62286)), "P1 on %s", node)
			gomega.Expect(ports).To(gomega.HaveKey(int32(80)), "P2 on %s", node)
			gomega.Expect(ports).To(gomega.HaveKey(int32(60000)), "P4 on %s", node)
			gomega.Expect(ports).To(gomega.HaveKey(int32(61000)), "P5 on %s", node)
		}
		// The status follows the pods at the end of a successful pass.
		gomega.Eventually(func() []fwv1.AgentStatus { return getJob(job).Status.Agents }).ShouldNot(gomega.BeEmpty(), "status lists the agents and their ports")
		cur := getJob(job)
		var controls []int32
		for _, a := range cur.Status.Agents {
			controls = append(controls, a.Ports.Control)
			gomega.Expect(a.Ports.Control).To(gomega.BeNumerically(">=", 62286), "P1 steps up from 62286")
		}
		gomega.Expect(controls).To(gomega.ContainElement(int32(62286)))
		gomega.Eventually(jobPhase(job)).Should(gomega.Equal(fwv1.JobPhaseSucceeded))
	})

	ginkgo.It("shows in status.agents the ports an agent reports bound, and the assigned ones until it reports (rules P1, P2, P4, P5)", func() {
		targets := createILOTargets(ns, "rack-bound", 1)
		report, finish := make(chan struct{}), make(chan struct{})
		var closeReport, closeFinish sync.Once
		ginkgo.DeferCleanup(func() { closeReport.Do(func() { close(report) }); closeFinish.Do(func() { close(finish) }) })
		// The agent of a node where a process outside Kubernetes holds every assigned port:
		// it binds the next ones and reports them on its TargetUpdate, as the agent does.
		kubelet.Use(func(ctx context.Context, pod *corev1.Pod, args []string) error {
			select {
			case <-report:
			case <-ctx.Done():
				return ctx.Err()
			}
			declared := declaredPorts(pod)
			if err := reportPorts(ctx, pod, func(s *fwv1.TargetUpdateStatus) {
				s.ControlPort, s.FirmwareServerPort = declared["control"]+1, fallbackPort(declared["firmware"])
				s.SessionPort, s.IPCPort, s.ReceivePorts = declared["s0"]+1, declared["ipc"]+1, []int32{declared["r0"] + 1}
			}); err != nil {
				return err
			}
			select {
			case <-finish:
			case <-ctx.Done():
				return ctx.Err()
			}
			return agent.run(ctx, pod, args)
		})
		job := newJob(ns, "bound", "rack-bound", policy, func(j *fwv1.UpdateJob) { j.Spec.Rollout.MaxConcurrent = 1 })
		gomega.Eventually(func() []fwv1.AgentStatus { return getJob(job).Status.Agents }).Should(gomega.HaveLen(1))
		pods := agentPodsOf(ns, job.Name)
		gomega.Expect(pods).To(gomega.HaveLen(1))
		declared := declaredPorts(&pods[0])
		assigned := fwv1.AgentPorts{Control: declared["control"], FirmwareServer: declared["firmware"],
			Sessions: []int32{declared["s0"]}, IPC: declared["ipc"], Reverse: []int32{declared["r0"]}}
		gomega.Expect(assigned.Control).NotTo(gomega.BeZero(), "the pod declares its control port: %v", declared)
		agents := getJob(job).Status.Agents
		gomega.Expect(agents[0].Pod).To(gomega.Equal(pods[0].Name))
		gomega.Expect(agents[0].Targets).To(gomega.Equal(targets))
		gomega.Expect(agents[0].Ports).To(gomega.Equal(assigned), "before the agent reports, the ports declared on its pod")

		closeReport.Do(func() { close(report) })
		bound := fwv1.AgentPorts{Control: assigned.Control + 1, FirmwareServer: fallbackPort(assigned.FirmwareServer),
			Sessions: []int32{assigned.Sessions[0] + 1}, IPC: assigned.IPC + 1, Reverse: []int32{assigned.Reverse[0] + 1}}
		gomega.Eventually(func() fwv1.AgentPorts {
			if a := getJob(job).Status.Agents; len(a) == 1 {
				return a[0].Ports
			}
			return fwv1.AgentPorts{}
		}).Should(gomega.Equal(bound), "once the agent reported, the ports it bound")

		closeFinish.Do(func() { close(finish) })
		gomega.Eventually(jobPhase(job)).Should(gomega.Equal(fwv1.JobPhaseSucceeded))
	})

	ginkgo.It("stops starting targets once maxFailures is exceeded", func() {
		targets := createILOTargets(ns, "rack3", 6)
		agent.fail[targets[1]] = true
		agent.fail[targets[2]] = true
		job := newJob(ns, "budget", "rack3", policy, func(j *fwv1.UpdateJob) {
			j.Spec.Rollout.MaxConcurrent = 1
			j.Spec.Rollout.MaxFailures = ptr.To(intstr.FromInt32(1))
		})
		gomega.Eventually(jobPhase(job)).Should(gomega.Equal(fwv1.JobPhaseFailed))
		cond := condition(job, fwv1.ConditionFailed)()
		gomega.Expect(cond.Status).To(gomega.Equal(metav1.ConditionTrue))
		gomega.Expect(cond.Reason).To(gomega.Equal("FailureBudgetExceeded"))
		cur := getJob(job)
		gomega.Expect(cur.Status.Counts.Failed).To(gomega.Equal(int32(2)))
		gomega.Expect(cur.Status.Counts.Succeeded).To(gomega.Equal(int32(1)))
		gomega.Expect(cur.Status.Counts.Pending).To(gomega.Equal(int32(3)), "the rest never started")
		for _, t := range targets[3:] {
			gomega.Consistently(func() int { return agent.flashCount(t) }, "1s").Should(gomega.BeZero())
		}
		gomega.Eventually(func() []string { return eventReasons(ns) }).Should(gomega.ContainElements("FailureBudgetExceeded", "TargetFailed"))
	})

	ginkgo.It("retries a failed target with backoff up to the limit", func() {
		targets := createILOTargets(ns, "rack4", 2)
		agent.failOnce[targets[0]] = true
		// Each agent reports the ports it bound, as the agent does.
		kubelet.Use(func(ctx context.Context, pod *corev1.Pod, args []string) error {
			declared := declaredPorts(pod)
			if err := reportPorts(ctx, pod, func(s *fwv1.TargetUpdateStatus) {
				s.ControlPort, s.FirmwareServerPort, s.SessionPort = declared["control"], declared["firmware"], declared["s0"]
			}); err != nil {
				return err
			}
			return agent.run(ctx, pod, args)
		})
		job := newJob(ns, "retry", "rack4", policy, func(j *fwv1.UpdateJob) {
			j.Spec.Rollout.Retries = fwv1.RetryPolicy{Limit: 1, Backoff: &metav1.Duration{Duration: time.Minute}}
		})
		var waiting fwv1.TargetUpdateStatus
		gomega.Eventually(func() string {
			for _, tu := range targetUpdates(ns, job.Name) {
				if tu.Spec.TargetName == targets[0] && tu.Status.RetryAfter != nil {
					waiting = tu.Status
					return string(tu.Status.Phase)
				}
			}
			return ""
		}).Should(gomega.Equal("Pending"))
		// The failed attempt's agent is gone: its ports must not pass for the next agent's.
		gomega.Expect([]int32{waiting.ControlPort, waiting.FirmwareServerPort, waiting.SessionPort}).To(gomega.Equal([]int32{0, 0, 0}),
			"a target waiting to retry keeps no reported ports")
		gomega.Consistently(func() int { return agent.flashCount(targets[0]) }, "1s").Should(gomega.Equal(1), "the backoff holds the retry")
		fakeClock.Step(2 * time.Minute)
		// Any change wakes the controller; the clock alone does not.
		touch(job)
		gomega.Eventually(jobPhase(job)).Should(gomega.Equal(fwv1.JobPhaseSucceeded))
		gomega.Expect(agent.flashCount(targets[0])).To(gomega.Equal(2))
		for _, tu := range targetUpdates(ns, job.Name) {
			if tu.Spec.TargetName == targets[0] {
				gomega.Expect(tu.Status.Attempts).To(gomega.Equal(int32(2)))
			}
		}
	})

	ginkgo.It("holds new starts outside the maintenance window, then releases them", func() {
		createILOTargets(ns, "rack5", 2)
		now := fakeClock.Now()
		open := now.Add(2 * time.Hour)
		job := newJob(ns, "window", "rack5", policy, func(j *fwv1.UpdateJob) {
			j.Spec.Rollout.Window = &fwv1.MaintenanceWindow{Start: open.Format("15:04"), End: open.Add(time.Hour).Format("15:04"), TimeZone: "UTC"}
		})
		gomega.Eventually(jobPhase(job)).Should(gomega.Equal(fwv1.JobPhaseWaiting))
		gomega.Expect(condition(job, fwv1.ConditionProgressing)().Reason).To(gomega.Equal("WaitingForWindow"))
		gomega.Consistently(func() int { return len(agentPodsOf(ns, job.Name)) }, "1s").Should(gomega.BeZero())
		fakeClock.SetTime(open.Add(time.Minute))
		touch(job)
		gomega.Eventually(jobPhase(job)).Should(gomega.Equal(fwv1.JobPhaseSucceeded))
		fakeClock.SetTime(now)
	})

	ginkgo.It("pauses and resumes", func() {
		createILOTargets(ns, "rack6", 3)
		job := newJob(ns, "pause", "rack6", policy, func(j *fwv1.UpdateJob) { j.Spec.Rollout.Paused = true })
		gomega.Eventually(jobPhase(job)).Should(gomega.Equal(fwv1.JobPhasePaused))
		gomega.Consistently(func() int { return len(agentPodsOf(ns, job.Name)) }, "1s").Should(gomega.BeZero())
		updateJob(job, func(cur *fwv1.UpdateJob) { cur.Spec.Rollout.Paused = false })
		gomega.Eventually(jobPhase(job)).Should(gomega.Equal(fwv1.JobPhaseSucceeded))
	})

	ginkgo.It("cleans up its agents and children when deleted mid-rollout", func() {
		createILOTargets(ns, "rack7", 3)
		agent.flashTime = time.Hour
		job := newJob(ns, "delete", "rack7", policy, nil)
		gomega.Eventually(func() int { return len(agentPodsOf(ns, job.Name)) }).Should(gomega.BeNumerically(">", 0))
		gomega.Expect(k8sClient.Delete(suiteCtx, job)).To(gomega.Succeed())
		gomega.Eventually(func() bool {
			return apierrors.IsNotFound(k8sClient.Get(suiteCtx, client.ObjectKeyFromObject(job), &fwv1.UpdateJob{}))
		}).Should(gomega.BeTrue())
		gomega.Eventually(func() int { return len(agentPodsOf(ns, job.Name)) }).Should(gomega.BeZero())
		gomega.Expect(targetUpdates(ns, job.Name)).To(gomega.BeEmpty())
		gomega.Expect(apierrors.IsNotFound(k8sClient.Get(suiteCtx, client.ObjectKey{Namespace: ns, Name: "delete-agent"}, &rbacv1.Role{}))).To(gomega.BeTrue())
	})

	ginkgo.It("fails the targets of an agent pod the scheduler refuses past the timeout, and frees the slot", func() {
		targets := createILOTargets(ns, "rack14", 2)
		kubelet.Use(nil) // no kubelet accepts the pods
		job := newJob(ns, "unschedulable", "rack14", policy, func(j *fwv1.UpdateJob) {
			j.Spec.Rollout.MaxConcurrent = 1
			j.Spec.Rollout.MaxFailures = ptr.To(intstr.FromInt32(5))
			j.Spec.Rollout.Timeout = &metav1.Duration{Duration: 10 * time.Minute}
		})
		var pod corev1.Pod
		gomega.Eventually(func() int {
			pods := agentPodsOf(ns, job.Name)
			if len(pods) > 0 {
				pod = pods[0]
			}
			return len(pods)
		}).Should(gomega.Equal(1))
		// What the scheduler writes when a host port is held on the node.
		pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse,
			Reason: corev1.PodReasonUnschedulable, Message: "0/2 nodes are available: 1 node(s) didn't have free ports for the requested pod ports.",
			LastTransitionTime: metav1.NewTime(fakeClock.Now())}}
		gomega.Expect(k8sClient.Status().Update(suiteCtx, &pod)).To(gomega.Succeed())
		fakeClock.Step(11 * time.Minute)
		touch(job)
		gomega.Eventually(func() string {
			for _, tu := range targetUpdates(ns, job.Name) {
				if tu.Status.Phase == fwv1.TargetPhaseFailed {
					return tu.Status.Message
				}
			}
			return ""
		}).Should(gomega.And(gomega.ContainSubstring("could not be scheduled"), gomega.ContainSubstring("free ports")))
		gomega.Eventually(func() []string {
			var names []string
			for _, p := range agentPodsOf(ns, job.Name) {
				names = append(names, p.Name)
			}
			return names
		}).ShouldNot(gomega.ContainElement(pod.Name), "the refused pod is deleted")
		gomega.Eventually(func() int { return len(agentPodsOf(ns, job.Name)) }).Should(gomega.Equal(1), "the next target takes the freed slot")
		gomega.Expect(agentPodsOf(ns, job.Name)[0].Annotations[agentpod.AnnotationAssignments]).To(gomega.ContainSubstring(targets[1]))
		// No kubelet runs these pods: delete the job so that no later spec's kubelet does.
		gomega.Expect(k8sClient.Delete(suiteCtx, job)).To(gomega.Succeed())
		gomega.Eventually(func() int { return len(agentPodsOf(ns, job.Name)) }).Should(gomega.BeZero())
	})

	ginkgo.It("plans a dry run with nodes and ports, and starts nothing", func() {
		createILOTargets(ns, "rack8", 5)
		job := newJob(ns, "plan", "rack8", policy, func(j *fwv1.UpdateJob) { j.Spec.DryRun = true; j.Spec.Rollout.MaxConcurrent = 4 })
		gomega.Eventually(jobPhase(job)).Should(gomega.Equal(fwv1.JobPhasePlanned))
		cur := getJob(job)
		gomega.Expect(cur.Status.Agents).To(gomega.HaveLen(2))
		seen := 0
		for _, a := range cur.Status.Agents {
			gomega.Expect([]string{"node-a", "node-b"}).To(gomega.ContainElement(a.Node))
			gomega.Expect(a.Ports.Control).To(gomega.Equal(int32(62286)))     // P1
			gomega.Expect(a.Ports.FirmwareServer).To(gomega.Equal(int32(80))) // P2
			gomega.Expect(a.Ports.Sessions[0]).To(gomega.Equal(int32(60000))) // P4
			gomega.Expect(a.Ports.IPC).To(gomega.Equal(int32(61000)))         // P5
			gomega.Expect(a.Slots).To(gomega.Equal(int32(2)))                 // ceil(maxConcurrent / nodes)
			gomega.Expect(a.Ports.Sessions).To(gomega.HaveLen(int(a.Slots)))  // P4: one per slot
			// P5: each iLO 5 posts its events to its own receive port, named for the firewall.
			gomega.Expect(a.Receive).To(gomega.HaveLen(len(a.Targets)))
			for j, r := range a.Receive {
				gomega.Expect(r).To(gomega.Equal(fwv1.TargetReceivePort{Target: a.Targets[j], Port: a.Ports.Reverse[j], Via: fwv1.ReceiveViaRedfishEvents}))
			}
			gomega.Expect(a.Ports.Reverse[0]).To(gomega.Equal(int32(61001))) // P5: after the IPC port
			seen += len(a.Targets)
		}
		gomega.Expect(seen).To(gomega.Equal(4), "the first wave is maxConcurrent targets")
		gomega.Expect(cur.Status.Counts.Total).To(gomega.Equal(int32(5)))
		gomega.Consistently(func() int { return len(agentPodsOf(ns, job.Name)) }, "1s").Should(gomega.BeZero())
		gomega.Expect(condition(job, fwv1.ConditionReady)()).To(gomega.HaveField("Reason", "DryRun"))
	})

	ginkgo.It("reports a missing target as a condition and an event, and starts nothing", func() {
		createILOTargets(ns, "rack9", 1)
		job := newJob(ns, "missing", "rack9", policy, func(j *fwv1.UpdateJob) {
			j.Spec.Targets = fwv1.TargetSelection{Names: []string{"rack9-ilo-00", "ilo-that-does-not-exist"}}
		})
		gomega.Eventually(condition(job, fwv1.ConditionReady)).Should(gomega.And(
			gomega.HaveField("Reason", "TargetsNotFound"),
			gomega.HaveField("Message", gomega.ContainSubstring("ilo-that-does-not-exist"))))
		gomega.Eventually(func() []string { return eventReasons(ns) }).Should(gomega.ContainElement("TargetsNotFound"))
		gomega.Expect(agentPodsOf(ns, job.Name)).To(gomega.BeEmpty())
	})

	ginkgo.It("reports a missing PortPolicy by the field that names it", func() {
		createILOTargets(ns, "rack10", 1)
		job := newJob(ns, "nopolicy", "rack10", "no-such-policy", nil)
		gomega.Eventually(condition(job, fwv1.ConditionReady)).Should(gomega.And(
			gomega.HaveField("Reason", "PortPolicyNotFound"),
			gomega.HaveField("Message", gomega.ContainSubstring("spec.portPolicyName"))))
	})

	ginkgo.It("fails a target whose credentials Secret is missing, naming the Secret, without an agent", func() {
		t := &fwv1.UpdateTarget{
			ObjectMeta: metav1.ObjectMeta{Name: "nocreds", Namespace: ns, Labels: map[string]string{"fleet": "rack11"}},
			Spec: fwv1.UpdateTargetSpec{Type: fwv1.TargetTypeILO6, Address: "127.0.1.9",
				CredentialsSecretRef: fwv1.SecretReference{Name: "absent"}},
		}
		gomega.Expect(k8sClient.Create(suiteCtx, t)).To(gomega.Succeed())
		job := newJob(ns, "nocreds", "rack11", policy, nil)
		gomega.Eventually(jobPhase(job)).Should(gomega.Equal(fwv1.JobPhaseFailed))
		tus := targetUpdates(ns, job.Name)
		gomega.Expect(tus).To(gomega.HaveLen(1))
		gomega.Expect(tus[0].Status.Message).To(gomega.ContainSubstring("Secret " + ns + "/absent not found"))
		gomega.Expect(agentPodsOf(ns, job.Name)).To(gomega.BeEmpty())
	})

	ginkgo.It("skips targets already at the wanted version unless forced", func() {
		targets := createILOTargets(ns, "rack12", 2)
		first := newJob(ns, "first", "rack12", policy, nil)
		gomega.Eventually(jobPhase(first)).Should(gomega.Equal(fwv1.JobPhaseSucceeded))
		gomega.Eventually(func() int {
			t := &fwv1.UpdateTarget{}
			_ = k8sClient.Get(suiteCtx, client.ObjectKey{Namespace: ns, Name: targets[1]}, t)
			return len(t.Status.FirmwareVersions)
		}).Should(gomega.Equal(1))
		again := newJob(ns, "again", "rack12", policy, nil)
		gomega.Eventually(jobPhase(again)).Should(gomega.Equal(fwv1.JobPhaseSucceeded))
		gomega.Expect(getJob(again).Status.Counts.Skipped).To(gomega.Equal(int32(2)))
		forced := newJob(ns, "forced", "rack12", policy, func(j *fwv1.UpdateJob) { j.Spec.Rollout.Force = true })
		gomega.Eventually(jobPhase(forced)).Should(gomega.Equal(fwv1.JobPhaseSucceeded))
		gomega.Expect(getJob(forced).Status.Counts.Succeeded).To(gomega.Equal(int32(2)))
		gomega.Expect(agent.flashCount(targets[0])).To(gomega.Equal(2))
	})

	// Which TargetUpdates an agent may write is the admission policy's, with the agent's own
	// pod-bound token: agent_writes_test.go. Here, what its Role alone allows.
	ginkgo.It("gives agents a Role that patches TargetUpdate status only, never reads, never Secrets", func() {
		createILOTargets(ns, "rack13", 2)
		job := newJob(ns, "rbac", "rack13", policy, nil)
		var pods []corev1.Pod
		gomega.Eventually(func() []corev1.Pod { pods = agentPodsOf(ns, job.Name); return pods }).ShouldNot(gomega.BeEmpty())
		gomega.Eventually(jobPhase(job)).Should(gomega.Equal(fwv1.JobPhaseSucceeded))
		role := &rbacv1.Role{}
		gomega.Expect(k8sClient.Get(suiteCtx, client.ObjectKey{Namespace: ns, Name: "rbac-agent"}, role)).To(gomega.Succeed())
		for _, rule := range role.Rules {
			gomega.Expect(rule.Resources).NotTo(gomega.ContainElement("secrets"))
			if slices.Equal(rule.Resources, []string{"pods"}) {
				// An agent follows its own pod's assignments: the job's pods by name, O(nodes).
				gomega.Expect(rule.Verbs).To(gomega.Equal([]string{"get", "list", "watch"}))
				gomega.Expect(len(rule.ResourceNames)).To(gomega.BeNumerically("<=", 2), "one pod per node: %v", rule.ResourceNames)
				continue
			}
			gomega.Expect(rule.ResourceNames).To(gomega.BeEmpty(), "a Role that lists the targets grows past etcd's object limit")
			gomega.Expect(rule.Verbs).To(gomega.Equal([]string{"patch"}), "admission sees no read: agents read by patching")
		}
		names := []string{}
		for _, tu := range targetUpdates(ns, job.Name) {
			names = append(names, tu.Name)
		}
		gomega.Expect(pods[0].Spec.ServiceAccountName).To(gomega.Equal("rbac-agent"))

		// The API server's own RBAC, as the agent's ServiceAccount.
		asAgent := rest.CopyConfig(cfg)
		asAgent.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + ns + ":rbac-agent"}
		agentClient, err := client.New(asAgent, client.Options{Scheme: k8sClient.Scheme()})
		gomega.Expect(err).NotTo(gomega.HaveOccurred())
		tu := &fwv1.TargetUpdate{}
		gomega.Expect(k8sClient.Get(suiteCtx, client.ObjectKey{Namespace: ns, Name: names[0]}, tu)).To(gomega.Succeed())
		gomega.Expect(apierrors.IsForbidden(agentClient.Get(suiteCtx, client.ObjectKey{Namespace: ns, Name: names[0]}, &fwv1.TargetUpdate{}))).
			To(gomega.BeTrue(), "the agent reads through the admission policy, never by get (Agent write scope)")
		gomega.Expect(apierrors.IsForbidden(agentClient.Get(suiteCtx, client.ObjectKey{Namespace: ns, Name: "creds-rack13"}, &corev1.Secret{}))).
			To(gomega.BeTrue(), "the agent must not read Secrets")
		gomega.Expect(apierrors.IsForbidden(agentClient.Delete(suiteCtx, tu))).To(gomega.BeTrue())
		gomega.Expect(apierrors.IsForbidden(agentClient.Update(suiteCtx, tu))).To(gomega.BeTrue(), "spec and metadata are the controller's")
	})
})

var _ = ginkgo.Describe("PortPolicy", func() {
	ginkgo.It("cannot be deleted while a running job uses it", func() {
		ns := newNamespace()
		agent := newScriptedAgent(time.Hour)
		kubelet.Use(agent.run)
		p := createPolicy("in-use-"+ns, nil)
		createILOTargets(ns, "r", 1)
		job := newJob(ns, "holder", "r", p.Name, nil)
		gomega.Eventually(func() []string {
			cur := &fwv1.PortPolicy{}
			_ = k8sClient.Get(suiteCtx, client.ObjectKeyFromObject(p), cur)
			return cur.Status.UsedBy
		}).Should(gomega.ConsistOf(ns + "/holder"))
		gomega.Expect(k8sClient.Delete(suiteCtx, p)).To(gomega.Succeed())
		gomega.Consistently(func() error { return k8sClient.Get(suiteCtx, client.ObjectKeyFromObject(p), &fwv1.PortPolicy{}) }, "1s").Should(gomega.Succeed())
		cur := &fwv1.PortPolicy{}
		gomega.Expect(k8sClient.Get(suiteCtx, client.ObjectKeyFromObject(p), cur)).To(gomega.Succeed())
		gomega.Eventually(func() string {
			_ = k8sClient.Get(suiteCtx, client.ObjectKeyFromObject(p), cur)
			for _, c := range cur.Status.Conditions {
				if c.Type == fwv1.ConditionReady {
					return c.Reason
				}
			}
			return ""
		}).Should(gomega.Equal("InUse"))
		gomega.Expect(k8sClient.Delete(suiteCtx, job)).To(gomega.Succeed())
		gomega.Eventually(func() bool {
			return apierrors.IsNotFound(k8sClient.Get(suiteCtx, client.ObjectKeyFromObject(p), &fwv1.PortPolicy{}))
		}).Should(gomega.BeTrue(), "the policy goes once no job uses it")
	})
})

var _ = ginkgo.Describe("UpdateTarget", func() {
	ginkgo.It("says which Secret key is missing", func() {
		ns := newNamespace()
		createSecret(ns, "partial", map[string]string{"username": "admin"})
		t := &fwv1.UpdateTarget{
			ObjectMeta: metav1.ObjectMeta{Name: "half", Namespace: ns},
			Spec: fwv1.UpdateTargetSpec{Type: fwv1.TargetTypeILO4, Address: "127.0.1.4",
				CredentialsSecretRef: fwv1.SecretReference{Name: "partial"}},
		}
		gomega.Expect(k8sClient.Create(suiteCtx, t)).To(gomega.Succeed())
		gomega.Eventually(func() string {
			cur := &fwv1.UpdateTarget{}
			_ = k8sClient.Get(suiteCtx, client.ObjectKeyFromObject(t), cur)
			for _, c := range cur.Status.Conditions {
				if c.Type == fwv1.ConditionReady && c.Status == metav1.ConditionFalse {
					return c.Reason + ": " + c.Message
				}
			}
			return ""
		}).Should(gomega.Equal(`SecretKeyMissing: spec.credentialsSecretRef: Secret ` + ns + `/partial has no key "password"`))
	})
})

// touch changes an annotation to wake the controller, as any edit would.
func touch(job *fwv1.UpdateJob) {
	updateJob(job, func(cur *fwv1.UpdateJob) {
		if cur.Annotations == nil {
			cur.Annotations = map[string]string{}
		}
		cur.Annotations["test/touch"] = fmt.Sprint(time.Now().UnixNano())
	})
}

// getTable asks the API server for the table kubectl get prints, from the CRD's print columns.
func getTable(ns, resource string) string {
	table := fetchTable(ns, resource)
	var b strings.Builder
	for _, c := range table.ColumnDefinitions {
		b.WriteString(c.Name + "\t")
	}
	for _, r := range table.Rows {
		b.WriteString("\n")
		for _, cell := range r.Cells {
			fmt.Fprintf(&b, "%v\t", cell)
		}
	}
	return b.String()
}

// gatheredMetric reads a metric from controller-runtime's registry, where the manager under
// test records them: a gauge's value, or a histogram's sample count.
func gatheredMetric(name string, labels map[string]string) float64 {
	families, err := metrics.Registry.Gather()
	gomega.Expect(err).NotTo(gomega.HaveOccurred())
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue next
				}
			}
			switch {
			case m.Gauge != nil:
				return m.GetGauge().GetValue()
			case m.Histogram != nil:
				return float64(m.GetHistogram().GetSampleCount())
			case m.Counter != nil:
				return m.GetCounter().GetValue()
			}
		}
	}
	return -1
}

// fetchTable asks the API server for resource as kubectl get does (as=Table).
func fetchTable(ns, resource string) metav1.Table {
	rc, err := rest.HTTPClientFor(cfg)
	gomega.Expect(err).NotTo(gomega.HaveOccurred())
	req, err := http.NewRequestWithContext(suiteCtx, http.MethodGet,
		strings.TrimRight(cfg.Host, "/")+"/apis/firmware.fwops.io/v1alpha1/namespaces/"+ns+"/"+resource, nil)
	gomega.Expect(err).NotTo(gomega.HaveOccurred())
	req.Header.Set("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
	resp, err := rc.Do(req)
	gomega.Expect(err).NotTo(gomega.HaveOccurred())
	defer resp.Body.Close()
	var table metav1.Table
	gomega.Expect(json.NewDecoder(resp.Body).Decode(&table)).To(gomega.Succeed())
	return table
}

// declaredPorts are the agent container's declared ports by name ("control", "firmware",
// "ipc", "s0", "r0", ...), as the pod builder names them.
func declaredPorts(pod *corev1.Pod) map[string]int32 {
	out := map[string]int32{}
	for _, cp := range pod.Spec.Containers[0].Ports {
		out[cp.Name] = cp.ContainerPort
	}
	return out
}

// fallbackPort is a rule P2 fallback port other than the assigned one.
func fallbackPort(assigned int32) int32 {
	if assigned == 63003 {
		return 63004
	}
	return 63003
}

// reportPorts writes, as an agent does on its first status write, the ports it bound on each
// TargetUpdate the pod claims.
func reportPorts(ctx context.Context, pod *corev1.Pod, set func(*fwv1.TargetUpdateStatus)) error {
	assigned, err := agentpod.Assignments(pod)
	if err != nil {
		return err
	}
	for _, a := range assigned {
		tu := &fwv1.TargetUpdate{}
		if err := k8sClient.Get(ctx, client.ObjectKey{Namespace: pod.Namespace, Name: a.TargetUpdate}, tu); err != nil {
			return err
		}
		before := tu.DeepCopy()
		set(&tu.Status)
		if err := k8sClient.Status().Patch(ctx, tu, client.MergeFrom(before)); err != nil {
			return err
		}
	}
	return nil
}
