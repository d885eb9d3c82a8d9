package apiserver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// podTokenLifetime outlives any test's agent; the API server's minimum is ten minutes.
const podTokenLifetime = 3600

// PodToken asks the API server for a token of pod's ServiceAccount, as the kubelet does for a
// projected ServiceAccount token volume. With bound the token is bound to the pod, so it
// carries the pod's name and UID (what the agent write policy checks) and dies with the pod;
// without, it is the same ServiceAccount's, bound to nothing.
func PodToken(ctx context.Context, cfg *rest.Config, pod *corev1.Pod, bound bool) (string, error) {
	kc, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return "", err
	}
	spec := authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](podTokenLifetime)}
	if bound {
		spec.BoundObjectRef = &authenticationv1.BoundObjectReference{APIVersion: "v1", Kind: "Pod", Name: pod.Name, UID: pod.UID}
	}
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	tr, err := kc.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, sa, &authenticationv1.TokenRequest{Spec: spec}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("requesting a token of ServiceAccount %s/%s for pod %s: %w", pod.Namespace, sa, pod.Name, err)
	}
	return tr.Status.Token, nil
}

// PodConfig is cfg (the API server's address and CA) authenticated by token alone.
func PodConfig(cfg *rest.Config, token string) *rest.Config {
	c := rest.AnonymousClientConfig(cfg)
	c.BearerToken = token
	return c
}

// WritePodKubeconfig writes, as dir/name, a kubeconfig that authenticates with token only
// (no client certificate): what an agent process run outside a kubelet uses in place of its
// pod's projected token. It returns the file's path.
func WritePodKubeconfig(cfg *rest.Config, token, namespace, dir, name string) (string, error) {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["test"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["pod"] = &clientcmdapi.AuthInfo{Token: token}
	kc.Contexts["pod"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "pod", Namespace: namespace}
	kc.CurrentContext = "pod"
	b, err := clientcmd.Write(*kc)
	if err != nil {
		return "", fmt.Errorf("writing the pod kubeconfig: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	path, err := filepath.Abs(filepath.Join(dir, name))
	if err != nil {
		return "", err
	}
	// The file holds a token: readable by its owner only.
	return path, os.WriteFile(path, b, 0o600)
}

// InstallAgentWritePolicy creates the ValidatingAdmissionPolicy and its binding exactly as
// config/rbac/agent_write_policy.yaml ships them (test/deploy checks the chart's are the same),
// so that agents authenticated by their pod's token may write only their own TargetUpdates.
// It is idempotent.
func InstallAgentWritePolicy(ctx context.Context, c client.Client) error {
	f, err := os.Open(filepath.Join(RepoRoot(), "config/rbac/agent_write_policy.yaml"))
	if err != nil {
		return err
	}
	defer f.Close()
	dec := utilyaml.NewYAMLOrJSONDecoder(f, 4096)
	policy := &admissionregistrationv1.ValidatingAdmissionPolicy{}
	binding := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{}
	if err := errors.Join(dec.Decode(policy), dec.Decode(binding)); err != nil {
		return fmt.Errorf("reading config/rbac/agent_write_policy.yaml: %w", err)
	}
	for _, o := range []client.Object{policy, binding} {
		if err := c.Create(ctx, o); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating %s: %w", o.GetName(), err)
		}
	}
	return nil
}
