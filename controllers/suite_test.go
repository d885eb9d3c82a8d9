package controllers_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/fwops/firmware-operator/internal/kubeletsim"
	"github.com/fwops/firmware-operator/internal/manager"
	"github.com/fwops/firmware-operator/internal/testutil/apiserver"
)

var (
	testEnv   *envtest.Environment
	cfg       *rest.Config
	k8sClient client.Client
	suiteCtx  context.Context
	cancel    context.CancelFunc
	fakeClock *clocktesting.FakeClock
	kubelet   *kubeletsim.Kubelet
	stopMgr   func()
	// mgrCache is the running manager's cache: what its controllers see.
	mgrCache cache.Cache
)

func TestControllers(t *testing.T) {
	gomega.RegisterFailHandler(ginkgo.Fail)
	gomega.SetDefaultEventuallyTimeout(60 * time.Second)
	gomega.SetDefaultEventuallyPollingInterval(100 * time.Millisecond)
	ginkgo.RunSpecs(t, "Controllers against a real API server")
}

var _ = ginkgo.BeforeSuite(func() {
	suiteCtx, cancel = context.WithCancel(context.Background())
	ctrl.SetLogger(logr.FromSlogHandler(slog.NewMultiHandler(
		slog.NewTextHandler(ginkgo.GinkgoWriter, &slog.HandlerOptions{Level: slog.LevelInfo}),
		managerLog.handler())))
	var err error
	testEnv, cfg, err = apiserver.Start()
	if errors.Is(err, apiserver.ErrNoAssets) && !apiserver.InCI() {
		ginkgo.Skip(err.Error())
	}
	gomega.Expect(err).NotTo(gomega.HaveOccurred())
	k8sClient, err = client.NewWithWatch(cfg, client.Options{Scheme: apiserver.Scheme()})
	gomega.Expect(err).NotTo(gomega.HaveOccurred())

	// Thursday 2026-11-26 12:00 UTC: tests move it to open and close windows.
	fakeClock = clocktesting.NewFakeClock(time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC))
	for _, n := range []string{"node-a", "node-b"} {
		createReadyNode(n, nil)
	}
	kubelet = kubeletsim.New(k8sClient)
	go kubelet.Run(suiteCtx)
	stopMgr = startManager()
})

var _ = ginkgo.AfterSuite(func() {
	if stopMgr != nil {
		stopMgr()
	}
	if cancel != nil {
		cancel()
	}
	if testEnv != nil {
		gomega.Expect(testEnv.Stop()).To(gomega.Succeed())
	}
})

// startManager runs the real manager, as main does, against the test API server, and
// returns a function that stops it and waits for it to end.
func startManager() func() {
	mgrCfg := rest.CopyConfig(cfg)
	mgrCfg.QPS, mgrCfg.Burst = 500, 1000 // as --kube-api-qps would, for the scale spec
	mgr, err := ctrl.NewManager(mgrCfg, ctrl.Options{
		Scheme:                 apiserver.Scheme(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		// Each test manager runs its controllers afresh.
		Controller: ctrlconfig.Controller{SkipNameValidation: ptr.To(true)},
	})
	gomega.Expect(err).NotTo(gomega.HaveOccurred())
	ctx, stop := context.WithCancel(suiteCtx)
	mgrCache = mgr.GetCache()
	gomega.Expect(manager.Setup(ctx, mgr, manager.Options{AgentImage: "fwops:test", Clock: fakeClock, MaxTargetsPerAgent: 10})).To(gomega.Succeed())
	done := make(chan struct{})
	go func() {
		defer ginkgo.GinkgoRecover()
		defer close(done)
		gomega.Expect(mgr.Start(ctx)).To(gomega.Succeed())
	}()
	return func() { stop(); <-done }
}

func createReadyNode(name string, taints []corev1.Taint) {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/os": "linux"}},
		Spec: corev1.NodeSpec{Taints: taints}}
	gomega.Expect(k8sClient.Create(suiteCtx, n)).To(gomega.Succeed())
	// The API server's TaintNodesByCondition admission taints a new node not-ready; with no
	// node lifecycle controller here, the test lifts it as that controller would.
	n.Spec.Taints = taints
	gomega.Expect(k8sClient.Update(suiteCtx, n)).To(gomega.Succeed())
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.Now()}}
	gomega.Expect(k8sClient.Status().Update(suiteCtx, n)).To(gomega.Succeed())
}
