// Package cluster_test runs the operator on a real single-node Kubernetes
// (internal/testutil/cluster): the manager installed with the Helm chart as its Deployment,
// agents as real pods of the kubelet and containerd, the simulated fleet on loopback. What it
// checks is what the API server, the scheduler, the kubelet and the simulators saw.
package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/fwops/firmware-operator/internal/scheme"
	"github.com/fwops/firmware-operator/internal/testutil/cluster"
)

var (
	node     *cluster.Cluster
	k8s      client.Client
	cs       kubernetes.Interface
	setupErr error
	failed   atomic.Bool
)

func TestMain(m *testing.M) {
	// The agents' hostPath cache and the Linux host's version record are on this machine.
	restoreHost := cluster.PrepareHost()
	// From nothing, setup compiles the operator and helm (go tool helm): minutes on 2 cores.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	setupErr = setup(ctx)
	cancel()
	code := m.Run()
	if node != nil {
		keep := failed.Load() || code != 0
		if keep {
			fmt.Fprintf(os.Stderr, "cluster suite failed: logs of every component and pod kept in %s\n", node.LogDir)
		}
		node.Stop(keep)
	}
	restoreHost()
	os.Exit(code)
}

// need fails the test when the cluster did not start (skips outside CI when a component is
// not installed), and records a failure so that the logs are kept.
func need(t *testing.T) context.Context {
	t.Helper()
	t.Cleanup(func() {
		if t.Failed() {
			failed.Store(true)
		}
	})
	if setupErr != nil {
		if errors.Is(setupErr, cluster.ErrMissing) && os.Getenv("CI") != "true" {
			t.Skipf("no cluster here: %v", setupErr)
		}
		t.Fatalf("the test cluster did not start: %v", setupErr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func setup(ctx context.Context) error {
	var err error
	if node, err = cluster.Start(ctx, cluster.Options{}); err != nil {
		return err
	}
	if k8s, err = client.New(node.Config, client.Options{Scheme: scheme.New()}); err != nil {
		return err
	}
	if cs, err = kubernetes.NewForConfig(node.Config); err != nil {
		return err
	}
	return node.InstallOperator(ctx)
}

// managerLog is the manager's log, from the kubelet's pod log folder.
func managerLog() string { return node.ManagerLog(context.Background()) }

// newNamespace creates a namespace for one test.
func newNamespace(ctx context.Context, t *testing.T, name string) string {
	t.Helper()
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
		t.Fatal(err)
	}
	return name
}

// eventually polls cond until it returns nil, or fails the test with its last error.
func eventually(ctx context.Context, t *testing.T, timeout time.Duration, what string, cond func(context.Context) error) {
	t.Helper()
	if err := poll(ctx, timeout, cond); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// poll calls cond every half second until it returns nil, or an error made by
// gomega.StopTrying (waiting longer cannot help), or timeout passes; it returns why it
// stopped short of nil.
func poll(ctx context.Context, timeout time.Duration, cond func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout) // also cuts a call of cond short
	defer cancel()
	var failure error
	g := gomega.NewGomega(func(msg string, _ ...int) { failure = errors.New(msg) })
	g.Eventually(ctx, cond).WithTimeout(timeout).WithPolling(500 * time.Millisecond).Should(gomega.Succeed())
	return failure
}
