package controllers_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
	"github.com/fwops/firmware-operator/controllers"
	"github.com/fwops/firmware-operator/internal/fleet"
	"github.com/fwops/firmware-operator/internal/simulator/ilo"
)

// The secret scan runs a rollout of every kind of target with every kind of secret
// (passwords for iLOs and the OA, Redfish session tokens, an SSH private key for the Linux
// host, the agents' firmware URL tokens) and then looks for each secret, by its value as the
// simulators saw it, in everything a namespace reader or a log reader can see.
var _ = ginkgo.Describe("Secrets after a rollout", ginkgo.Label("e2e"), func() {
	var (
		ns     string
		f      *fleet.Fleet
		agents *syncLog
	)
	ginkgo.BeforeEach(func() {
		ns = newNamespace()
		agents = &syncLog{}
		ginkgo.DeferCleanup(managerLog.start())
	})
	ginkgo.AfterEach(func() {
		if ginkgo.CurrentSpecReport().Failed() {
			dumpNamespace(ns)
		}
		cleanNamespace(ns)
		if f != nil {
			gomega.Expect(f.Close()).To(gomega.Succeed())
			f = nil
		}
	})

	ginkgo.It("appear in no log, event, status, pod or annotation", func() {
		if err := fleet.Available(); err != nil {
			ginkgo.Fail("the scan needs the Linux host (its SSH key): " + err.Error())
		}
		policy := "policy-" + ns
		createPolicy(policy, nil)
		var err error
		f, err = fleet.Start(suiteCtx, fleet.Options{Name: "scan", ILO4: 1, ILO5: 1, ILO6: 1, OA: 1, Linux: true,
			Timings: ilo.Timings{Upload: 10 * time.Millisecond, Verify: 10 * time.Millisecond, Write: 10 * time.Millisecond,
				Update: 100 * time.Millisecond, Steps: 2, ResetDelay: 10 * time.Millisecond, ILOReset: 300 * time.Millisecond,
				HalfUp: 100 * time.Millisecond, POST: 100 * time.Millisecond}})
		gomega.Expect(err).NotTo(gomega.HaveOccurred())
		gomega.Expect(f.Apply(suiteCtx, k8sClient, ns)).To(gomega.Succeed())
		// Every version of every TargetUpdate, not only the last: a progress message holding a
		// secret is overwritten by the verdict, but whoever watched saw it.
		history := watchTargetUpdates(ns)
		// And of every agent pod: the controller deletes them once they are done, and their
		// annotations carry the assignments.
		podHistory := watchObjects(ns, &corev1.PodList{})
		// Every agent's certificate, private key included: it lives in the agent's memory only.
		var certMu sync.Mutex
		var certs []tls.Certificate
		kubelet.Use(f.AgentFunc(k8sClient, fleet.AgentOptions{Log: agents, OnCertificate: func(c tls.Certificate) {
			certMu.Lock()
			defer certMu.Unlock()
			certs = append(certs, c)
		}}))
		var jobs []*fwv1.UpdateJob
		for _, c := range []fwv1.Component{fwv1.ComponentILO, fwv1.ComponentOA, fwv1.ComponentSmartComponent} {
			j := f.Job(ns, "scan-"+strings.ToLower(string(c)), c, policy, 3)
			j.Spec.Rollout.Timeout = &metav1.Duration{Duration: scanTargetTimeout}
			gomega.Expect(k8sClient.Create(suiteCtx, j)).To(gomega.Succeed())
			jobs = append(jobs, j)
		}
		for _, j := range jobs {
			waitFinished(j)
			gomega.Expect(getJob(j).Status.Phase).To(gomega.Equal(fwv1.JobPhaseSucceeded), "job %s: %s", j.Name, targetMessages(ns, j.Name))
		}

		secrets := map[string]string{"the fleet's password": fleet.Password}
		certMu.Lock()
		gomega.Expect(certs).NotTo(gomega.BeEmpty(), "no agent made a certificate: the scan would prove nothing about its key")
		for i, c := range certs {
			der, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
			gomega.Expect(err).NotTo(gomega.HaveOccurred())
			// As PEM (what a leak would most likely look like), line by line, and as hex.
			for j, line := range strings.Split(string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), "\n") {
				if len(line) >= 16 && !strings.HasPrefix(line, "-----") {
					secrets[fmt.Sprintf("line %d of agent %d's TLS private key", j, i)] = line
				}
			}
			secrets[fmt.Sprintf("agent %d's TLS private key (hex)", i)] = hex.EncodeToString(der)[:64]
		}
		certMu.Unlock()
		var tokens, imageURLs []string
		for _, t := range f.Targets() {
			switch t.Type {
			case fwv1.TargetTypeILO4, fwv1.TargetTypeILO5, fwv1.TargetTypeILO6:
				tokens = append(tokens, f.ILO(t.Name).IssuedTokens()...)
				imageURLs = append(imageURLs, f.ILO(t.Name).FetchedImageURIs()...)
			case fwv1.TargetTypeOA:
				imageURLs = append(imageURLs, f.OA(t.Name).FetchedURLs()...)
			case fwv1.TargetTypeLinux:
				s := &corev1.Secret{}
				gomega.Expect(k8sClient.Get(suiteCtx, client.ObjectKey{Namespace: ns, Name: t.Name + "-credentials"}, s)).To(gomega.Succeed())
				for i, line := range strings.Split(string(s.Data[fwv1.SecretKeySSHPrivateKey]), "\n") {
					if len(line) >= 16 && !strings.HasPrefix(line, "-----") {
						secrets[fmt.Sprintf("line %d of the SSH private key", i)] = line
					}
				}
			}
		}
		gomega.Expect(tokens).NotTo(gomega.BeEmpty(), "the iLOs issued no session token: the scan would prove nothing")
		for i, tok := range tokens {
			secrets[fmt.Sprintf("Redfish session token %d", i)] = tok
		}
		gomega.Expect(imageURLs).NotTo(gomega.BeEmpty(), "no target fetched an image from an agent")
		for _, raw := range imageURLs {
			u, err := url.Parse(raw)
			gomega.Expect(err).NotTo(gomega.HaveOccurred())
			// /fw/<token>/<name>: the token is what lets anyone on the network fetch the image.
			parts := strings.Split(strings.TrimPrefix(u.Path, "/"), "/")
			gomega.Expect(parts).To(gomega.HaveLen(3), "image URL %s is not /fw/<token>/<name>", raw)
			gomega.Expect(len(parts[1])).To(gomega.BeNumerically(">=", 32), "image URL %s has a short token", raw)
			secrets["firmware URL token "+parts[1][:6]+"… of "+u.Host] = parts[1]
		}

		places := map[string]string{
			"the manager's log":                            managerLog.String(),
			"the agents' logs":                             agents.String(),
			"every version of the TargetUpdates (watched)": history.String(),
			"every version of the agent pods (watched)":    podHistory.String(),
		}
		gomega.Expect(places["the manager's log"]).To(gomega.ContainSubstring(jobs[0].Name), "the manager's log was not captured")
		gomega.Expect(places["the agents' logs"]).To(gomega.ContainSubstring(`"msg":"ports bound"`), "the agents' logs were not captured")
		asJSON := func(what string, list client.ObjectList) {
			gomega.Expect(k8sClient.List(suiteCtx, list, client.InNamespace(ns))).To(gomega.Succeed())
			b, err := json.Marshal(list)
			gomega.Expect(err).NotTo(gomega.HaveOccurred())
			places[what] = string(b)
		}
		asJSON("events", &corev1.EventList{})
		asJSON("pods (spec, status, annotations)", &corev1.PodList{})
		asJSON("config maps", &corev1.ConfigMapList{})
		asJSON("UpdateJobs", &fwv1.UpdateJobList{})
		asJSON("TargetUpdates", &fwv1.TargetUpdateList{})
		asJSON("UpdateTargets", &fwv1.UpdateTargetList{})
		gomega.Expect(places["every version of the agent pods (watched)"]).To(gomega.ContainSubstring(jobs[2].Name), "no agent pod was seen")
		var leaks []string
		for where, text := range places {
			for what, secret := range secrets {
				if strings.Contains(text, secret) {
					leaks = append(leaks, fmt.Sprintf("%s in %s: …%s…", what, where, around(text, secret)))
				}
			}
		}
		// No Secret holds the agents' TLS keys either: they are made in memory and die with
		// the agent (the Secrets hold the targets' credentials, so they are not scanned above).
		var secretList corev1.SecretList
		gomega.Expect(k8sClient.List(suiteCtx, &secretList, client.InNamespace(ns))).To(gomega.Succeed())
		for _, sec := range secretList.Items {
			for k, v := range sec.Data {
				for what, secret := range secrets {
					if strings.Contains(what, "TLS private key") && (strings.Contains(string(v), secret) || strings.Contains(hex.EncodeToString(v), secret)) {
						leaks = append(leaks, fmt.Sprintf("%s in Secret %s key %s", what, sec.Name, k))
					}
				}
			}
		}
		gomega.Expect(leaks).To(gomega.BeEmpty())
	})
})

// scanTargetTimeout is each scan job's spec.rollout.timeout: the controller fails a target
// whose agent has not reported within it (and its grace), so a job always finishes.
const scanTargetTimeout = 3 * time.Minute

// waitFinished waits until the job has finished, Succeeded or Failed. How long that takes
// depends on the machine's load; that it ends does not: the controller itself fails a
// target past spec.rollout.timeout and its grace, so the wait's bound is the job's own.
func waitFinished(j *fwv1.UpdateJob) {
	ginkgo.GinkgoHelper()
	bound := scanTargetTimeout + controllers.DefaultTimeoutGrace + time.Minute
	gomega.Eventually(jobPhase(j), bound).Should(gomega.BeElementOf(fwv1.JobPhaseSucceeded, fwv1.JobPhaseFailed), "job %s", j.Name)
}

// targetMessages lists the job's TargetUpdates' phases and messages, for a failure.
func targetMessages(ns, job string) string {
	var b strings.Builder
	for _, tu := range targetUpdates(ns, job) {
		fmt.Fprintf(&b, "\n  %s: %s: %s", tu.Name, tu.Status.Phase, tu.Status.Message)
	}
	return b.String()
}

// watchTargetUpdates records, as JSON, every version of the namespace's TargetUpdates until
// the spec ends.
func watchTargetUpdates(ns string) *syncLog { return watchObjects(ns, &fwv1.TargetUpdateList{}) }

// watchObjects records every version of the namespace's objects of list's kind.
func watchObjects(ns string, list client.ObjectList) *syncLog {
	wc, err := client.NewWithWatch(cfg, client.Options{Scheme: k8sClient.Scheme()})
	gomega.Expect(err).NotTo(gomega.HaveOccurred())
	w, err := wc.Watch(suiteCtx, list, client.InNamespace(ns))
	gomega.Expect(err).NotTo(gomega.HaveOccurred())
	ginkgo.DeferCleanup(w.Stop)
	out := &syncLog{}
	go func() {
		for ev := range w.ResultChan() {
			b, _ := json.Marshal(ev.Object)
			_, _ = out.Write(append(b, '\n'))
		}
	}()
	return out
}

// around shows where secret sits in text, for a person to find the leak.
func around(text, secret string) string {
	i := strings.Index(text, secret)
	return text[max(0, i-120):min(len(text), i+len(secret)+40)]
}
