// Package apiserver starts a real kube-apiserver and etcd (controller-runtime's envtest) with
// this project's CRDs installed, for tests. The binaries come from hack/envtest-assets.sh.
package apiserver

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fwops/firmware-operator/internal/testutil/shared"

	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/fwops/firmware-operator/internal/scheme"
)

// ErrNoAssets means the envtest binaries are not there; tests skip on it outside CI and
// fail on it in CI, where a missing dependency is a failure.
var ErrNoAssets = errors.New("envtest assets not found: run 'make envtest-assets' or set KUBEBUILDER_ASSETS")

// RepoRoot is the module root.
func RepoRoot() string { return shared.RepoRoot() }

// AssetsDir is KUBEBUILDER_ASSETS when set, else bin/envtest when it holds the binaries.
func AssetsDir() (string, error) {
	dir := os.Getenv("KUBEBUILDER_ASSETS")
	if dir == "" {
		dir = filepath.Join(RepoRoot(), "bin", "envtest")
	}
	for _, b := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			return "", fmt.Errorf("%w (looked in %s)", ErrNoAssets, dir)
		}
	}
	return dir, nil
}

// InCI reports whether the tests run in CI, where nothing may be skipped.
func InCI() bool { return os.Getenv("CI") == "true" }

// Scheme holds the built-in types and this project's API.
func Scheme() *k8sruntime.Scheme { return scheme.New() }

// Start starts an API server with the CRDs of config/crd/bases installed. Stop it with
// env.Stop(). Options adjust the environment before it starts.
func Start(opts ...func(*envtest.Environment)) (*envtest.Environment, *rest.Config, error) {
	assets, err := AssetsDir()
	if err != nil {
		return nil, nil, err
	}
	deadline := time.Now().Add(portLockWait)
	for {
		env := &envtest.Environment{
			BinaryAssetsDirectory: assets,
			CRDDirectoryPaths:     []string{filepath.Join(RepoRoot(), "config", "crd", "bases")},
			ErrorIfCRDPathMissing: true,
			Scheme:                Scheme(),
		}
		for _, o := range opts {
			o(env)
		}
		// An explicit advertise address and no endpoint reconciler let the API server start
		// where loopback is the only interface (a test network namespace): it otherwise looks
		// for a default route to choose the address the kubernetes Service advertises.
		env.ControlPlane.GetAPIServer().Configure().
			Set("advertise-address", "127.0.0.1").
			Set("endpoint-reconciler-type", "none")
		cfg, err := env.Start()
		if err == nil {
			return env, cfg, nil
		}
		if !strings.Contains(err.Error(), "no free ports found") || time.Now().After(deadline) {
			return nil, nil, fmt.Errorf("starting envtest: %w", err)
		}
		// envtest hands out ports through lock files that other test processes of the run hold
		// for two minutes; on a busy machine every port the kernel offers can be one of them.
		// They expire: wait rather than fail the package. (A failed start stops what it began.)
		time.Sleep(5 * time.Second)
	}
}

// portLockWait is how long Start waits out envtest's port locks: their two-minute reservation,
// with room to spare.
const portLockWait = 3 * time.Minute

// EtcdDataDir keeps etcd's data in dir, so that etcd can be stopped and started again with
// everything it held (envtest removes a data folder it made itself on stop).
func EtcdDataDir(dir string) func(*envtest.Environment) {
	return func(env *envtest.Environment) {
		if env.ControlPlane.Etcd == nil {
			env.ControlPlane.Etcd = &envtest.Etcd{}
		}
		env.ControlPlane.Etcd.DataDir = dir
	}
}

// CertDir keeps kube-apiserver's certificates and keys in dir, so that the API server can be
// stopped and started again (env.ControlPlane.APIServer.Stop, Start) on the same port with the
// same serving certificate and service-account keys: clients built before the restart keep
// working. envtest makes new ones in a fresh folder on every start when it picked the folder.
func CertDir(dir string) func(*envtest.Environment) {
	return func(env *envtest.Environment) {
		if env.ControlPlane.APIServer == nil {
			env.ControlPlane.APIServer = &envtest.APIServer{}
		}
		env.ControlPlane.APIServer.CertDir = dir
	}
}
