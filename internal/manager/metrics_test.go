package manager

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/onsi/gomega"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/fwops/firmware-operator/internal/testutil/apiserver"
)

// TestMetricsNeedAuthorization: the manager's /metrics is HTTPS, refuses a scrape without a
// token (401) and one whose ServiceAccount may not GET /metrics (403), and serves one bound
// to config/rbac/metrics_reader_role.yaml, as checked by the real API server's TokenReview
// and SubjectAccessReview (docs/security.md).
func TestMetricsNeedAuthorization(t *testing.T) {
	env, cfg, err := apiserver.Start()
	if errors.Is(err, apiserver.ErrNoAssets) && !apiserver.InCI() {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	kc := kubernetes.NewForConfigOrDie(cfg)

	// The reader role exactly as kustomize ships it (the chart's copy is checked equal in test/deploy).
	b, err := os.ReadFile(filepath.Join(apiserver.RepoRoot(), "config/rbac/metrics_reader_role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	reader := &rbacv1.ClusterRole{}
	if err := yaml.UnmarshalStrict(b, reader); err != nil {
		t.Fatal(err)
	}
	must(t, create(ctx, kc, reader))
	tokenOf := func(sa string) string {
		must(t, createSA(ctx, kc, sa))
		tr, err := kc.CoreV1().ServiceAccounts("default").CreateToken(ctx, sa, &authenticationv1.TokenRequest{
			Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](600)}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return tr.Status.Token
	}
	scraper, stranger := tokenOf("scraper"), tokenOf("stranger")
	_, err = kc.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "scraper"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: reader.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "scraper", Namespace: "default"}},
	}, metav1.CreateOptions{})
	must(t, err)

	addr := freeAddr(t)
	done := make(chan error, 1)
	go func() {
		done <- Start(ctx, Options{Config: cfg, MetricsAddr: addr, ProbeAddr: "0", AgentImage: "fwops:test"})
	}()
	t.Cleanup(func() { cancel(); <-done })

	// A scraper trusts a self-signed serving certificate only by configuration; the point
	// here is who may read, not the certificate.
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	scrape := func(token string) (int, string, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+"/metrics", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := hc.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body), nil
	}
	var body string
	gomega.NewWithT(t).Eventually(func() error {
		select {
		case err := <-done:
			return gomega.StopTrying("the manager stopped").Wrap(err)
		default:
		}
		code, b, err := scrape(scraper)
		body = b
		if err == nil && code != http.StatusOK {
			err = fmt.Errorf("%d %.200s", code, b)
		}
		return err
	}).WithTimeout(time.Minute).WithPolling(200*time.Millisecond).Should(gomega.Succeed(), "an authorized scrape over HTTPS")
	if !strings.Contains(body, "rest_client_requests_total") {
		t.Errorf("authorized scrape holds no controller metrics:\n%.500s", body)
	}
	for _, tc := range []struct {
		name, token string
		want        int
	}{
		{"no token", "", http.StatusUnauthorized},
		// The TokenReview answers with an error for a token it cannot parse, which
		// controller-runtime's filter turns into 500 rather than 401: refused all the same.
		{"a forged token", "not-a-token", http.StatusInternalServerError},
		{"a ServiceAccount without the metrics-reader role", stranger, http.StatusForbidden},
	} {
		if code, body, err := scrape(tc.token); err != nil || code != tc.want {
			t.Errorf("%s: %d %v, want %d (%.200s)", tc.name, code, err, tc.want, body)
		} else if strings.Contains(body, "controller_runtime") {
			t.Errorf("%s: refused, but the body holds metrics", tc.name)
		}
	}
	plain := &http.Client{Timeout: 10 * time.Second}
	if resp, err := plain.Get("http://" + addr + "/metrics"); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(b), "controller_runtime") {
			t.Error("plain HTTP serves the metrics")
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func create(ctx context.Context, kc kubernetes.Interface, r *rbacv1.ClusterRole) error {
	_, err := kc.RbacV1().ClusterRoles().Create(ctx, r, metav1.CreateOptions{})
	return err
}

func createSA(ctx context.Context, kc kubernetes.Interface, name string) error {
	_, err := kc.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	return err
}

// freeAddr is a loopback address with a port nobody listens on now; the metrics server has no
// way to report the port it bound for ":0".
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
