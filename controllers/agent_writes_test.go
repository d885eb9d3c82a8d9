package controllers_test

import (
	"context"
	"slices"
	"sort"

	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
	"github.com/fwops/firmware-operator/internal/agent/runner"
	"github.com/fwops/firmware-operator/internal/testutil/apiserver"
)

func installAgentWritePolicy() {
	gomega.Expect(apiserver.InstallAgentWritePolicy(suiteCtx, k8sClient)).To(gomega.Succeed())
}

// agentClient is a client that authenticates as the agent pod does: with a token of the
// job's ServiceAccount that the API server bound to the pod (TokenRequest), not an
// impersonation, so the token carries the pod's name for the admission policy. With bound
// false the token is the same ServiceAccount's, bound to no pod.
func agentClient(pod *corev1.Pod, bound bool) client.Client {
	token, err := apiserver.PodToken(suiteCtx, cfg, pod, bound)
	gomega.Expect(err).NotTo(gomega.HaveOccurred())
	cl, err := client.New(apiserver.PodConfig(cfg, token), client.Options{Scheme: k8sClient.Scheme()})
	gomega.Expect(err).NotTo(gomega.HaveOccurred())
	return cl
}

// writeMessage patches a TargetUpdate's status.message as an agent does.
func writeMessage(c client.Client, ns, name, msg string) error {
	tu := &fwv1.TargetUpdate{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	return c.Status().Patch(suiteCtx, tu, client.RawPatch(types.MergePatchType, []byte(`{"status":{"message":"`+msg+`"}}`)))
}

var _ = ginkgo.Describe("Agent write scope", func() {
	var ns string
	ginkgo.BeforeEach(func() {
		ns = newNamespace()
		installAgentWritePolicy()
		// Agents that start and wait: their TargetUpdates stay assigned for the spec.
		kubelet.Use(func(ctx context.Context, _ *corev1.Pod, _ []string) error { <-ctx.Done(); return nil })
	})
	ginkgo.AfterEach(func() {
		if ginkgo.CurrentSpecReport().Failed() {
			dumpNamespace(ns)
		}
		cleanNamespace(ns)
	})

	ginkgo.It("lets an agent pod read and write its own TargetUpdates only, enforced by the API server with a Role that names none", func() {
		policy := "policy-" + ns
		createPolicy(policy, nil)
		createILOTargets(ns, "a", 3)
		createILOTargets(ns, "b", 1)
		jobA := newJob(ns, "job-a", "a", policy, nil) // maxConcurrent 2: two pods, one TargetUpdate pending
		jobB := newJob(ns, "job-b", "b", policy, nil)
		assigned := func(job string, n int) []fwv1.TargetUpdate {
			var tus []fwv1.TargetUpdate
			gomega.Eventually(func() []fwv1.TargetUpdate {
				tus = nil
				for _, tu := range targetUpdates(ns, job) {
					if tu.Status.AgentPod != "" {
						tus = append(tus, tu)
					}
				}
				sort.Slice(tus, func(i, j int) bool { return tus[i].Name < tus[j].Name })
				return tus
			}).Should(gomega.HaveLen(n))
			return tus
		}
		a := assigned(jobA.Name, 2)
		b := assigned(jobB.Name, 1)
		gomega.Expect(a[0].Status.AgentPod).NotTo(gomega.Equal(a[1].Status.AgentPod), "the two targets of job-a run in two pods")
		var pending string
		for _, tu := range targetUpdates(ns, jobA.Name) {
			if tu.Status.AgentPod == "" {
				pending = tu.Name
			}
		}
		gomega.Expect(pending).NotTo(gomega.BeEmpty())

		role := &rbacv1.Role{}
		gomega.Expect(k8sClient.Get(suiteCtx, client.ObjectKey{Namespace: ns, Name: "job-a-agent"}, role)).To(gomega.Succeed())
		for _, rule := range role.Rules {
			gomega.Expect(rule.Resources).NotTo(gomega.ContainElement("secrets"))
			if slices.Equal(rule.Resources, []string{"pods"}) {
				// Each agent follows its own pod's assignments: the job's live pods by name, one
				// per node, not one per target.
				gomega.Expect(rule.Verbs).To(gomega.Equal([]string{"get", "list", "watch"}))
				gomega.Expect(rule.ResourceNames).To(gomega.ConsistOf(a[0].Status.AgentPod, a[1].Status.AgentPod))
				continue
			}
			gomega.Expect(rule.ResourceNames).To(gomega.BeEmpty(), "the Role's size must not grow with the targets")
			// Admission never sees a read: a get, list or watch would show every TargetUpdate.
			gomega.Expect(rule.Verbs).NotTo(gomega.ContainElement(gomega.BeElementOf("get", "list", "watch", "delete", "create")))
		}

		pod := &corev1.Pod{}
		gomega.Expect(k8sClient.Get(suiteCtx, client.ObjectKey{Namespace: ns, Name: a[0].Status.AgentPod}, pod)).To(gomega.Succeed())
		agent := agentClient(pod, true)
		// The policy is live once the API server has compiled it: until then a write to
		// another's TargetUpdate would pass, which is what this spec is about.
		gomega.Eventually(func() error { return writeMessage(agent, ns, b[0].Name, "job-a's agent was here") }).
			Should(gomega.Satisfy(apierrors.IsForbidden))

		gomega.Expect(writeMessage(agent, ns, a[0].Name, "written by its own agent")).To(gomega.Succeed())

		// The agent reads its own TargetUpdate the way it always does, by an empty status
		// patch the policy sees; the API server writes nothing for it.
		before := &fwv1.TargetUpdate{}
		gomega.Expect(k8sClient.Get(suiteCtx, client.ObjectKeyFromObject(&a[0]), before)).To(gomega.Succeed())
		own, err := runner.ReadTargetUpdate(suiteCtx, agent, client.ObjectKeyFromObject(&a[0]))
		gomega.Expect(err).NotTo(gomega.HaveOccurred(), "the agent's read path of its own TargetUpdate")
		gomega.Expect(own.Spec).To(gomega.Equal(before.Spec))
		gomega.Expect(own.Status.AgentPod).To(gomega.Equal(pod.Name))
		gomega.Expect(own.Status.Message).To(gomega.Equal("written by its own agent"))
		gomega.Expect(own.ResourceVersion).To(gomega.Equal(before.ResourceVersion), "a read must not write")

		for what, name := range map[string]string{
			"a TargetUpdate of the same job assigned to another pod": a[1].Name,
			"a TargetUpdate of the same job assigned to no pod yet":  pending,
			"a TargetUpdate of another job":                          b[0].Name,
		} {
			err := writeMessage(agent, ns, name, "not mine")
			gomega.Expect(apierrors.IsForbidden(err)).To(gomega.BeTrue(), "writing %s: %v", what, err)
			gomega.Expect(err.Error()).To(gomega.ContainSubstring("may read and write only the TargetUpdates assigned to it"), what)
			gomega.Expect(runner.PolicyRefused(err)).To(gomega.BeTrue(), "the agent must take the policy's refusal for a hand-over: %v", err)

			key := client.ObjectKey{Namespace: ns, Name: name}
			tu, err := runner.ReadTargetUpdate(suiteCtx, agent, key)
			gomega.Expect(apierrors.IsForbidden(err)).To(gomega.BeTrue(), "reading %s by the agent's read path: %v %v", what, err, tu)
			gomega.Expect(err.Error()).To(gomega.ContainSubstring("may read and write only the TargetUpdates assigned to it"), what)
			err = agent.Get(suiteCtx, key, &fwv1.TargetUpdate{})
			gomega.Expect(apierrors.IsForbidden(err)).To(gomega.BeTrue(), "reading %s by get: %v", what, err)
			gomega.Expect(err.Error()).To(gomega.ContainSubstring(`cannot get resource "targetupdates"`), "RBAC's answer")
			gomega.Expect(runner.PolicyRefused(err)).To(gomega.BeFalse(), "an RBAC refusal is no hand-over: %v", err)
			status := &fwv1.TargetUpdate{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
			err = agent.SubResource("status").Get(suiteCtx, status, status)
			gomega.Expect(apierrors.IsForbidden(err)).To(gomega.BeTrue(), "reading %s by get of its status: %v", what, err)
			gomega.Expect(err.Error()).To(gomega.ContainSubstring(`cannot get resource "targetupdates/status"`), "RBAC's answer")
		}
		gomega.Expect(apierrors.IsForbidden(agent.Get(suiteCtx, client.ObjectKeyFromObject(&a[0]), &fwv1.TargetUpdate{}))).
			To(gomega.BeTrue(), "get is refused even for the agent's own TargetUpdate: it reads by patching")
		unbound := agentClient(pod, false)
		err = writeMessage(unbound, ns, a[0].Name, "not mine")
		gomega.Expect(apierrors.IsForbidden(err)).To(gomega.BeTrue(), "the job's ServiceAccount with a token bound to no pod: %v", err)
		gomega.Expect(err.Error()).To(gomega.ContainSubstring("a token bound to no pod may read and write only"))
		_, err = runner.ReadTargetUpdate(suiteCtx, unbound, client.ObjectKeyFromObject(&a[0]))
		gomega.Expect(apierrors.IsForbidden(err)).To(gomega.BeTrue(), "reading with a token bound to no pod: %v", err)
		gomega.Expect(err.Error()).To(gomega.ContainSubstring("a token bound to no pod may read and write only"))
		handOver := &fwv1.TargetUpdate{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: a[0].Name}}
		err = agent.Status().Patch(suiteCtx, handOver, client.RawPatch(types.MergePatchType, []byte(`{"status":{"agentPod":"`+a[1].Status.AgentPod+`"}}`)))
		gomega.Expect(apierrors.IsForbidden(err)).To(gomega.BeTrue(), "handing its TargetUpdate to another pod: %v", err)

		gomega.Expect(apierrors.IsForbidden(agent.Get(suiteCtx, client.ObjectKey{Namespace: ns, Name: "creds-a"}, &corev1.Secret{}))).
			To(gomega.BeTrue(), "the agent must not read Secrets")
		gomega.Expect(apierrors.IsForbidden(agent.List(suiteCtx, &fwv1.TargetUpdateList{}, client.InNamespace(ns)))).To(gomega.BeTrue())
		gomega.Expect(apierrors.IsForbidden(agent.Delete(suiteCtx, &fwv1.TargetUpdate{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: a[0].Name}}))).To(gomega.BeTrue())
		gomega.Expect(apierrors.IsForbidden(agent.List(suiteCtx, &corev1.NodeList{}))).To(gomega.BeTrue(), "nothing cluster-wide")
		// Its own pod, which it follows, by name; the Role is the job's, so its other agents'
		// pods too (names, addresses and Secret names, no secret), and no other job's.
		gomega.Expect(agent.Get(suiteCtx, client.ObjectKeyFromObject(pod), &corev1.Pod{})).To(gomega.Succeed())
		gomega.Expect(agent.List(suiteCtx, &corev1.PodList{}, client.InNamespace(ns),
			client.MatchingFields{"metadata.name": pod.Name})).To(gomega.Succeed(), "listing its own pod by name, as it follows it")
		gomega.Expect(apierrors.IsForbidden(agent.Get(suiteCtx, client.ObjectKey{Namespace: ns, Name: b[0].Status.AgentPod}, &corev1.Pod{}))).
			To(gomega.BeTrue(), "another job's agent pod")
		gomega.Expect(apierrors.IsForbidden(agent.List(suiteCtx, &corev1.PodList{}, client.InNamespace(ns)))).To(gomega.BeTrue(), "every pod")

		got := &fwv1.TargetUpdate{}
		gomega.Expect(k8sClient.Get(suiteCtx, client.ObjectKeyFromObject(&a[0]), got)).To(gomega.Succeed())
		gomega.Expect(got.Status.Message).To(gomega.Equal("written by its own agent"))
		for _, tu := range append(a[1:], b...) {
			gomega.Expect(k8sClient.Get(suiteCtx, client.ObjectKeyFromObject(&tu), got)).To(gomega.Succeed())
			gomega.Expect(got.Status.Message).NotTo(gomega.Equal("not mine"))
		}
	})
})
