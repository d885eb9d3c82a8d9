package apiserver

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// WriteKubeconfig adds a cluster-admin user to the control plane and writes a kubeconfig for
// it, for kubectl or a process run apart (the demo, the manager of the chaos suite). Its
// contexts default to namespace.
func WriteKubeconfig(env *envtest.Environment, dir, namespace string) (string, error) {
	u, err := env.AddUser(envtest.User{Name: "admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return "", fmt.Errorf("adding the kubectl user: %w", err)
	}
	b, err := u.KubeConfig()
	if err != nil {
		return "", fmt.Errorf("building the kubeconfig: %w", err)
	}
	// Default to the namespace, so that a plain 'kubectl get updatejobs' shows them.
	kc, err := clientcmd.Load(b)
	if err != nil {
		return "", fmt.Errorf("reading the kubeconfig: %w", err)
	}
	for _, ctx := range kc.Contexts {
		ctx.Namespace = namespace
	}
	if b, err = clientcmd.Write(*kc); err != nil {
		return "", fmt.Errorf("writing the kubeconfig: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	path, err := filepath.Abs(filepath.Join(dir, "kubeconfig"))
	if err != nil {
		return "", err
	}
	// The file holds a client key: readable by its owner only.
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return "", err
	}
	return path, nil
}

// CreateReadyNode creates a Node that the controller considers for agents, as the controller
// tests do: Ready, labelled kubernetes.io/os=linux (the sample PortPolicy's node selector),
// and without the node.kubernetes.io/not-ready taint that the API server's
// TaintNodesByCondition admission puts on every new node. No node lifecycle controller runs
// here to lift it, so this does.
func CreateReadyNode(ctx context.Context, c client.Client, name string) error {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
		"kubernetes.io/os": "linux", "kubernetes.io/hostname": name,
	}}}
	if err := c.Create(ctx, n); err != nil {
		return fmt.Errorf("creating node %s: %w", name, err)
	}
	n.Spec.Taints = nil
	if err := c.Update(ctx, n); err != nil {
		return fmt.Errorf("lifting the not-ready taint of node %s: %w", name, err)
	}
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue,
		Reason: "KubeletReady", Message: "played by the test harness", LastHeartbeatTime: metav1.Now()}}
	if err := c.Status().Update(ctx, n); err != nil {
		return fmt.Errorf("marking node %s Ready: %w", name, err)
	}
	return nil
}
