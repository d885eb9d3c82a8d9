// Package cluster starts a real single-node Kubernetes on loopback for tests and the cluster
// demo: etcd, kube-apiserver, kube-scheduler, kube-controller-manager, containerd and a
// kubelet whose node becomes Ready, all built from their Go modules (hack/envtest-assets.sh,
// hack/cluster-assets.sh) or installed from Debian (containerd, runc, CNI plugins). Images
// are built locally and imported into containerd: no registry is reachable.
//
// Everything listens on 127.0.0.0/8. The kubernetes Service's cluster IP is a loopback
// address, the API server's own, so that pods' in-cluster configuration reaches the API
// server with no kube-proxy. Stop stops everything and removes what it made (containers,
// shims, mounts), keeping the logs when asked to.
package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/fwops/firmware-operator/internal/testutil/shared"
)

// ErrMissing means a binary of the node is not installed or built; outside CI tests skip on
// it, in CI it is a failure.
var ErrMissing = errors.New("cluster component missing")

// Options configure Start.
type Options struct {
	// EnvtestAssets holds kube-apiserver and etcd (default: KUBEBUILDER_ASSETS or bin/envtest).
	EnvtestAssets string
	// Assets holds kube-scheduler, kube-controller-manager and kubelet (default:
	// CLUSTER_ASSETS or bin/cluster).
	Assets string
	// Node is the node's name (default fwops-node).
	Node string
	// Dir is where everything goes (default: a new temp folder).
	Dir string
	// Timeout bounds each component's start (default 2 minutes).
	Timeout time.Duration
}

// Cluster is a running single-node cluster.
type Cluster struct {
	// Dir holds everything; LogDir the components' logs (Stop can keep it).
	Dir, LogDir string
	// Kubeconfig is an admin kubeconfig (system:masters).
	Kubeconfig string
	// Config is the admin client configuration.
	Config *rest.Config
	// Server is the API server's URL, on the kubernetes Service's cluster IP.
	Server string
	// Node is the node's name.
	Node string
	// ContainerdSocket is containerd's address; PodLogsDir the kubelet's pod log folder.
	ContainerdSocket, PodLogsDir string

	pki        *pki
	procs      []*process
	containerd *process
	kubelet    *process
}

// Binaries the node needs, by where they come from.
var (
	envtestBinaries = []string{"kube-apiserver", "etcd"}
	clusterBinaries = []string{"kube-scheduler", "kube-controller-manager", "kubelet"}
	systemBinaries  = []string{"containerd", "containerd-shim-runc-v2", "runc", "ctr"}
)

func (o *Options) defaults() error {
	root := shared.RepoRoot()
	if o.EnvtestAssets == "" {
		o.EnvtestAssets = os.Getenv("KUBEBUILDER_ASSETS")
		if o.EnvtestAssets == "" {
			o.EnvtestAssets = filepath.Join(root, "bin", "envtest")
		}
	}
	if o.Assets == "" {
		o.Assets = os.Getenv("CLUSTER_ASSETS")
		if o.Assets == "" {
			o.Assets = filepath.Join(root, "bin", "cluster")
		}
	}
	if o.Node == "" {
		o.Node = "fwops-node"
	}
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Minute
	}
	var missing []string
	for _, b := range envtestBinaries {
		if _, err := os.Stat(filepath.Join(o.EnvtestAssets, b)); err != nil {
			missing = append(missing, filepath.Join(o.EnvtestAssets, b)+" (make envtest-assets)")
		}
	}
	for _, b := range clusterBinaries {
		if _, err := os.Stat(filepath.Join(o.Assets, b)); err != nil {
			missing = append(missing, filepath.Join(o.Assets, b)+" (make cluster-assets)")
		}
	}
	for _, b := range systemBinaries {
		if _, err := exec.LookPath(b); err != nil {
			missing = append(missing, b+" (apt-get install containerd runc containernetworking-plugins)")
		}
	}
	if _, err := os.Stat(filepath.Join(cniBinDir(), "loopback")); err != nil {
		missing = append(missing, "CNI loopback plugin (apt-get install containernetworking-plugins)")
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s", ErrMissing, strings.Join(missing, ", "))
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w: the kubelet and containerd need root", ErrMissing)
	}
	return nil
}

// Start starts the node and waits until it is Ready. On error everything started is
// stopped, and the error names the component that did not start, with its log's end; the
// logs stay in the returned error's folder.
func Start(ctx context.Context, o Options) (c *Cluster, err error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	dir := o.Dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "fwops-cluster-"); err != nil {
			return nil, err
		}
	}
	c = &Cluster{Dir: dir, LogDir: filepath.Join(dir, "logs"), Node: o.Node,
		ContainerdSocket: filepath.Join(dir, "containerd", "containerd.sock"), PodLogsDir: filepath.Join(dir, "pod-logs")}
	defer func() {
		if err != nil {
			c.Stop(true)
			err = fmt.Errorf("%w\n(logs kept in %s)", err, c.LogDir)
		}
	}()
	for _, d := range []string{c.LogDir, c.PodLogsDir, filepath.Join(dir, "containerd", "cni"), filepath.Join(dir, "volume-plugins")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return c, err
		}
	}
	ip, err := pickServiceIP()
	if err != nil {
		return c, err
	}
	c.Server = "https://" + net.JoinHostPort(ip.String(), "443")
	if c.pki, err = newPKI(filepath.Join(dir, "pki"), []net.IP{ip, net.IPv4(127, 0, 0, 1)}); err != nil {
		return c, err
	}
	if _, _, err := c.pki.issue("kubelet-serving", o.Node, nil, []net.IP{net.IPv4(127, 0, 0, 1)}, true); err != nil {
		return c, err
	}
	admin, err := c.writeKubeconfig("admin", "fwops-test-admin", "system:masters")
	if err != nil {
		return c, err
	}
	c.Kubeconfig = admin
	if c.Config, err = clientcmd.BuildConfigFromFlags("", admin); err != nil {
		return c, err
	}
	cs, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		return c, err
	}

	// etcd
	etcdPort, peerPort := FreePort(), FreePort()
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(etcdPort)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(peerPort)
	etcd, err := c.start("etcd", filepath.Join(o.EnvtestAssets, "etcd"),
		"--data-dir="+filepath.Join(dir, "etcd"), "--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL, "--initial-cluster=default="+peerURL,
		"--unsafe-no-fsync", "--log-level=warn")
	if err != nil {
		return c, err
	}
	if err := etcd.waitFor(ctx, "healthy", o.Timeout, httpOK(etcdURL+"/health", nil)); err != nil {
		return c, err
	}

	// kube-apiserver on the kubernetes Service's cluster IP (the first of its range), port 443.
	api, err := c.start("kube-apiserver", filepath.Join(o.EnvtestAssets, "kube-apiserver"),
		"--etcd-servers="+etcdURL, "--bind-address="+ip.String(), "--secure-port=443", "--advertise-address="+ip.String(),
		"--service-cluster-ip-range="+ip.Mask(net.CIDRMask(28, 32)).String()+"/28", "--endpoint-reconciler-type=none",
		"--tls-cert-file="+c.pki.ServingCert, "--tls-private-key-file="+c.pki.ServingKey, "--client-ca-file="+c.pki.CAFile,
		"--service-account-issuer="+c.Server, "--service-account-key-file="+c.pki.SAPub,
		"--service-account-signing-key-file="+c.pki.SAKey, "--authorization-mode=Node,RBAC",
		"--enable-admission-plugins=NodeRestriction", "--cert-dir="+filepath.Join(dir, "apiserver-certs"),
		"--allow-privileged=true", "--enable-priority-and-fairness=false", "--profiling=false")
	if err != nil {
		return c, err
	}
	if err := api.waitFor(ctx, "ready", o.Timeout, func(ctx context.Context) error {
		_, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err
	}); err != nil {
		return c, err
	}

	// kube-controller-manager (ServiceAccounts, kube-root-ca.crt, the garbage collector) and
	// kube-scheduler, with the admin's credentials.
	insecure := &tls.Config{InsecureSkipVerify: true} //nolint:gosec // their self-signed serving certificates, on loopback
	cmPort := FreePort()
	cm, err := c.start("kube-controller-manager", filepath.Join(o.Assets, "kube-controller-manager"),
		"--kubeconfig="+admin, "--authentication-kubeconfig="+admin, "--authorization-kubeconfig="+admin,
		"--bind-address=127.0.0.1", "--secure-port="+strconv.Itoa(cmPort), "--leader-elect=false",
		"--service-account-private-key-file="+c.pki.SAKey, "--root-ca-file="+c.pki.CAFile,
		"--use-service-account-credentials=false", "--cert-dir="+filepath.Join(dir, "cm-certs"))
	if err != nil {
		return c, err
	}
	schedPort := FreePort()
	sched, err := c.start("kube-scheduler", filepath.Join(o.Assets, "kube-scheduler"),
		"--kubeconfig="+admin, "--authentication-kubeconfig="+admin, "--authorization-kubeconfig="+admin,
		"--bind-address=127.0.0.1", "--secure-port="+strconv.Itoa(schedPort), "--leader-elect=false",
		"--cert-dir="+filepath.Join(dir, "scheduler-certs"))
	if err != nil {
		return c, err
	}
	if err := cm.waitFor(ctx, "healthy", o.Timeout, httpOK("https://127.0.0.1:"+strconv.Itoa(cmPort)+"/healthz", insecure)); err != nil {
		return c, err
	}
	if err := sched.waitFor(ctx, "healthy", o.Timeout, httpOK("https://127.0.0.1:"+strconv.Itoa(schedPort)+"/healthz", insecure)); err != nil {
		return c, err
	}

	// containerd, then the sandbox image, then the kubelet.
	cdir := filepath.Join(dir, "containerd")
	if err := os.WriteFile(filepath.Join(cdir, "config.toml"), []byte(containerdConfig(cdir)), 0o644); err != nil {
		return c, err
	}
	if err := os.WriteFile(filepath.Join(cdir, "cni", "10-loopback.conflist"), []byte(loopbackCNI), 0o644); err != nil {
		return c, err
	}
	if c.containerd, err = c.start("containerd", "containerd", "--config="+filepath.Join(cdir, "config.toml"), "--log-level=info"); err != nil {
		return c, err
	}
	if err := c.containerd.waitFor(ctx, "serving", o.Timeout, func(ctx context.Context) error {
		_, err := c.ctr(ctx, "version")
		return err
	}); err != nil {
		return c, err
	}
	if err := c.importPause(ctx); err != nil {
		return c, fmt.Errorf("pause image: %w", err)
	}
	kubeletKC, err := c.writeKubeconfig("kubelet", "system:node:"+o.Node, "system:nodes")
	if err != nil {
		return c, err
	}
	kcfg := filepath.Join(dir, "kubelet-config.yaml")
	if err := os.WriteFile(kcfg, []byte(kubeletConfig(c, FreePort(), FreePort())), 0o644); err != nil {
		return c, err
	}
	if c.kubelet, err = c.start("kubelet", filepath.Join(o.Assets, "kubelet"),
		"--config="+kcfg, "--kubeconfig="+kubeletKC, "--root-dir="+filepath.Join(dir, "kubelet"),
		"--cert-dir="+filepath.Join(dir, "kubelet-certs"), "--hostname-override="+o.Node, "--v=2"); err != nil {
		return c, err
	}
	if err := c.kubelet.waitFor(ctx, "a Ready node "+o.Node, o.Timeout, func(ctx context.Context) error {
		n, err := cs.CoreV1().Nodes().Get(ctx, o.Node, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				if cond.Status == corev1.ConditionTrue {
					return nil
				}
				return fmt.Errorf("node Ready=%s: %s", cond.Status, cond.Message)
			}
		}
		return errNotYet
	}); err != nil {
		return c, err
	}
	// Pods wait on the default ServiceAccount, which the controller manager creates.
	if err := cm.waitFor(ctx, "creating the default ServiceAccount", o.Timeout, func(ctx context.Context) error {
		_, err := cs.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		return err
	}); err != nil {
		return c, err
	}
	return c, nil
}

func (c *Cluster) start(name, bin string, args ...string) (*process, error) {
	p, err := startProcess(name, c.LogDir, bin, args...)
	if err != nil {
		return nil, err
	}
	c.procs = append(c.procs, p)
	return p, nil
}

func (c *Cluster) writeKubeconfig(name, user, group string) (string, error) {
	cert, key, err := c.pki.issue(name, user, []string{group}, nil, false)
	if err != nil {
		return "", err
	}
	path := filepath.Join(c.Dir, name+".kubeconfig")
	return path, os.WriteFile(path, []byte(kubeconfig(c.Server, c.pki.CAFile, cert, key)), 0o600)
}

// pickServiceIP picks a loopback address of a /28 of its own, away from the fleet's
// 127.0.x.y, whose port 443 is free: the kubernetes Service's cluster IP.
func pickServiceIP() (net.IP, error) {
	for range 50 {
		ip := net.IPv4(127, byte(100+rand.IntN(100)), byte(rand.IntN(256)), byte(rand.IntN(16)*16+1))
		ln, err := net.Listen("tcp", net.JoinHostPort(ip.String(), "443"))
		if err != nil {
			continue
		}
		_ = ln.Close()
		return ip.To4(), nil
	}
	return nil, errors.New("no free loopback address for the API server")
}

// FreePort returns a TCP port free on 127.0.0.1 just now.
func FreePort() int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().(*net.TCPAddr).Port
}

func httpOK(url string, tc *tls.Config) func(context.Context) error {
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", url, resp.Status)
		}
		return nil
	}
}
