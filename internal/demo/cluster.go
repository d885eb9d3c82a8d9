package demo

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
	"github.com/fwops/firmware-operator/internal/testutil/apiserver"
	"github.com/fwops/firmware-operator/internal/testutil/cluster"
)

// samplePortPolicy is the sample the demo applies, relative to the repository root, so that
// the demo shows the very policy a newcomer would apply to a real cluster.
const samplePortPolicy = "config/samples/firmware_v1alpha1_portpolicy.yaml"

// loadPortPolicy reads the sample PortPolicy from the repository.
func loadPortPolicy() (*fwv1.PortPolicy, string, error) {
	path := filepath.Join(apiserver.RepoRoot(), samplePortPolicy)
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, path, err
	}
	p := &fwv1.PortPolicy{}
	if err := yaml.UnmarshalStrict(b, p); err != nil {
		return nil, path, fmt.Errorf("%s: %w", path, err)
	}
	return p, path, nil
}

// startControlPlane starts envtest's kube-apiserver and etcd and writes a kubeconfig.
func startControlPlane(p *printer, dir string, cleanups *[]func()) (*rest.Config, string, error) {
	assets, err := apiserver.AssetsDir()
	if err != nil {
		return nil, "", fmt.Errorf("%w\n(make demo runs hack/envtest-assets.sh first; it builds kube-apiserver and etcd once)", err)
	}
	p.step("Starting a local control plane: kube-apiserver and etcd from %s, CRDs from config/crd/bases", assets)
	env, cfg, err := apiserver.Start()
	if err != nil {
		return nil, "", err
	}
	*cleanups = append(*cleanups, func() {
		p.step("Stopping the control plane")
		if err := env.Stop(); err != nil {
			p.say("  control plane stop: %v", err)
		}
	})
	kubeconfig, err := apiserver.WriteKubeconfig(env, dir, Namespace)
	return cfg, kubeconfig, err
}

// startRealNode starts a single-node Kubernetes (etcd, kube-apiserver, scheduler,
// controller-manager, containerd, kubelet) and installs the operator with its Helm chart.
func startRealNode(ctx context.Context, p *printer, dir string, cleanups *[]func()) (*rest.Config, string, error) {
	logDir := filepath.Join(dir, "cluster-logs")
	p.step("Starting a single-node Kubernetes on loopback: etcd, kube-apiserver, kube-scheduler, kube-controller-manager, containerd, kubelet")
	// The agent pods write the node's firmware cache and, through the Linux host's SSH, its
	// version record on this machine: a record left by an earlier demo would skip the host.
	restoreHost := cluster.PrepareHost()
	node, err := cluster.Start(ctx, cluster.Options{})
	if err != nil {
		restoreHost()
		return nil, "", err
	}
	*cleanups = append(*cleanups, func() {
		p.step("Stopping the node (pods, containerd, kubelet, control plane); logs in %s", logDir)
		// Logs are moved once everything has stopped, so that they hold the last lines.
		if err := node.StopAndMoveLogs(logDir); err != nil {
			p.say("  keeping the logs: %v", err)
		}
		restoreHost()
	})
	p.say("  node %s is Ready; API server %s", node.Node, node.Server)
	p.step("Building the operator image from this checkout, importing it into containerd, installing charts/firmware-operator with helm")
	if err := node.InstallOperator(ctx); err != nil {
		return nil, "", err
	}
	kubeconfig := filepath.Join(dir, "kubeconfig")
	b, err := os.ReadFile(node.Kubeconfig)
	if err != nil {
		return nil, "", err
	}
	// The demo's kubeconfig names client certificate files inside the node's folder, which
	// lives as long as the node does.
	if err := os.WriteFile(kubeconfig, b, 0o600); err != nil {
		return nil, "", err
	}
	return node.Config, kubeconfig, nil
}
