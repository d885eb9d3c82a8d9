package controllers_test

import (
	"fmt"
	"sync"
	"time"

	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
)

var _ = ginkgo.Describe("UpdateJob at fleet scale", func() {
	ginkgo.It("plans 1,500 targets with one TargetUpdate each and a job status that stays small", func() {
		const n = 1500
		ns := newNamespace()
		policy := createPolicy("scale-"+ns, nil)
		fast := rest.CopyConfig(cfg)
		fast.QPS, fast.Burst = 2000, 4000
		c, err := client.New(fast, client.Options{Scheme: k8sClient.Scheme()})
		gomega.Expect(err).NotTo(gomega.HaveOccurred())
		createSecret(ns, "creds", map[string]string{"username": "admin", "password": "pw"})
		var wg sync.WaitGroup
		errs := make(chan error, n)
		sem := make(chan struct{}, 32)
		for i := 0; i < n; i++ {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				errs <- c.Create(suiteCtx, &fwv1.UpdateTarget{
					ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("ilo-%05d", i), Namespace: ns, Labels: map[string]string{"fleet": "big"}},
					Spec: fwv1.UpdateTargetSpec{Type: fwv1.TargetTypeILO5, Address: fmt.Sprintf("127.0.%d.%d", 1+i/250, 1+i%250),
						CredentialsSecretRef: fwv1.SecretReference{Name: "creds"}},
				})
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			gomega.Expect(err).NotTo(gomega.HaveOccurred())
		}
		start := time.Now()
		job := newJob(ns, "big", "big", policy.Name, func(j *fwv1.UpdateJob) {
			j.Spec.DryRun = true
			j.Spec.Rollout.MaxConcurrent = 50
		})
		gomega.Eventually(jobPhase(job), "3m").Should(gomega.Equal(fwv1.JobPhasePlanned))
		fmt.Fprintf(ginkgo.GinkgoWriter, "planned %d targets in %s\n", n, time.Since(start))
		cur := getJob(job)
		gomega.Expect(cur.Status.Counts.Total).To(gomega.Equal(int32(n)))
		gomega.Expect(targetUpdates(ns, job.Name)).To(gomega.HaveLen(n))
		planned := 0
		for _, a := range cur.Status.Agents {
			planned += len(a.Targets)
		}
		gomega.Expect(planned).To(gomega.Equal(50), "the plan covers the first wave")
		raw, err := yaml.Marshal(cur)
		gomega.Expect(err).NotTo(gomega.HaveOccurred())
		gomega.Expect(len(raw)).To(gomega.BeNumerically("<", 32<<10), "per-target state lives in TargetUpdates, not in the job")
	})
})
