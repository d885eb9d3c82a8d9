package fleet

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/fwops/firmware-operator/internal/agent/config"
	"github.com/fwops/firmware-operator/internal/agent/ilo"
	"github.com/fwops/firmware-operator/internal/agent/linux"
	"github.com/fwops/firmware-operator/internal/agent/oa"
	"github.com/fwops/firmware-operator/internal/agent/runner"
	"github.com/fwops/firmware-operator/internal/agentpod"
	"github.com/fwops/firmware-operator/internal/kubeletsim"
)

// AgentOptions tune the agents AgentFunc runs. The zero value gives fast timings.
type AgentOptions struct {
	// NodeAddresses maps a node name to the loopback address its agents bind and advertise
	// (the agent's --address). Every simulated node runs on this one machine, so each needs
	// an address of its own for two agents of different nodes to both bind 62286, 80, 60000…
	// as on real nodes. Nodes not listed get 127.0.0.2, 127.0.0.3, … in the order their
	// first agent starts.
	NodeAddresses map[string]string
	// Log receives the agents' JSON logs (stderr and stdout); nil discards them.
	Log io.Writer
	// MinWriteInterval spaces each agent's status writes within a phase; default 100ms.
	MinWriteInterval time.Duration
	// ILO, OA and Linux tune the drivers; zero fields take fast defaults (polls in ms).
	ILO   ilo.Options
	OA    oa.Options
	Linux linux.Options
	// KeepMountRoots keeps each pod's mount root after its agent ends (for debugging).
	KeepMountRoots bool
	// OnCertificate, when set, receives each agent's certificate (with its private key).
	OnCertificate func(tls.Certificate)
	// RESTConfig, when set, is what each agent builds its own API client from, as an agent
	// pod does from its in-cluster configuration (runner.WithRESTConfig: the agent's own
	// client-side rate limits), rather than sharing AgentFunc's client, which then reads only
	// the Secrets the kubelet mounts. The bench's agents make production's requests so.
	RESTConfig *rest.Config
}

func (o AgentOptions) withDefaults(f *Fleet) AgentOptions {
	if o.MinWriteInterval <= 0 {
		o.MinWriteInterval = 100 * time.Millisecond
	}
	if o.ILO.PollInterval <= 0 {
		o.ILO.PollInterval = 20 * time.Millisecond
	}
	if o.ILO.FlashTimeout <= 0 {
		o.ILO.FlashTimeout = time.Minute
	}
	if o.ILO.VerifyTimeout <= 0 {
		o.ILO.VerifyTimeout = 10 * time.Second
	}
	if o.OA.ReconnectBackoff <= 0 {
		o.OA.ReconnectBackoff = 50 * time.Millisecond
	}
	if o.OA.MaxBackoff <= 0 {
		o.OA.MaxBackoff = 200 * time.Millisecond
	}
	if o.OA.DownWait <= 0 {
		o.OA.DownWait = 10 * time.Second
	}
	if o.OA.Timeouts.Connect <= 0 {
		o.OA.Timeouts.Connect = 5 * time.Second
	}
	if o.OA.Timeouts.Flash <= 0 {
		o.OA.Timeouts.Flash = time.Minute
	}
	if o.Linux.Timeouts.Connect <= 0 {
		o.Linux.Timeouts.Connect = 5 * time.Second
	}
	if o.Linux.Timeouts.Flash <= 0 {
		o.Linux.Timeouts.Flash = time.Minute
	}
	if o.Linux.StateDir == "" {
		// The Linux host is this machine: its state is the fleet's, shared by all agents.
		o.Linux.StateDir = filepath.Join(f.dir, "linux-state")
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	return o
}

// NodeAddress is the loopback address the agents of node bind (see AgentOptions).
func (f *Fleet) NodeAddress(node string, fixed map[string]string) string {
	if a := fixed[node]; a != "" {
		return a
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if a := f.nodeAddrs[node]; a != "" {
		return a
	}
	a := fmt.Sprintf("127.0.0.%d", 2+len(f.nodeAddrs))
	f.nodeAddrs[node] = a
	return a
}

// AgentFunc plays the agent container of agent pods, for kubeletsim.Kubelet.Use: it lays
// the pod's volumes out under a per-pod --mount-root as the kubelet would (each Secret
// volume's keys read from the API through c and written as files under its mount path; the
// node's firmware cache hostPath as a per-node folder shared by that node's agents), then
// runs runner.Main in-process with the pod's arguments, the node's --address, and c to write
// TargetUpdates.
func (f *Fleet) AgentFunc(c client.Client, opts AgentOptions) kubeletsim.AgentFunc {
	opts = opts.withDefaults(f)
	httpClient := &http.Client{Transport: &http.Transport{Proxy: nil, DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext}}
	return func(ctx context.Context, pod *corev1.Pod, args []string) error {
		extra, unmount, err := f.Mount(ctx, c, pod, opts.NodeAddresses)
		if err != nil {
			return err
		}
		if !opts.KeepMountRoots {
			defer unmount()
		}
		args = append(append([]string(nil), args...), extra...)
		api := runner.WithClient(c)
		if opts.RESTConfig != nil {
			api = runner.WithRESTConfig(opts.RESTConfig)
		}
		return runner.Main(ctx, args, opts.Log, opts.Log,
			api, runner.WithHTTPClient(httpClient), runner.WithMinWriteInterval(opts.MinWriteInterval),
			runner.WithILOOptions(opts.ILO), runner.WithOAOptions(opts.OA), runner.WithLinuxOptions(opts.Linux), runner.WithOnCertificate(opts.OnCertificate))
	}
}

// Mount prepares what the kubelet would give the agent container of pod on this machine: its
// volumes laid out under a per-pod mount root (see AgentFunc), and the agent arguments that
// point there and at the node's address (--mount-root, --address; addresses as in
// AgentOptions.NodeAddresses). unmount removes the mount root. Whoever runs the agent with
// them (in-process or as a process) counts as one agent run.
func (f *Fleet) Mount(ctx context.Context, c client.Client, pod *corev1.Pod, addresses map[string]string) (args []string, unmount func(), err error) {
	node := agentpod.Node(pod)
	root, err := os.MkdirTemp(f.dir, "pod-"+pod.Name+"-")
	if err != nil {
		return nil, nil, err
	}
	unmount = func() { _ = os.RemoveAll(root) }
	if err := f.layOut(ctx, c, pod, node, root); err != nil {
		unmount()
		return nil, nil, fmt.Errorf("fleet: mounting the volumes of pod %s: %w", pod.Name, err)
	}
	f.mu.Lock()
	f.agentRuns++
	f.mu.Unlock()
	return []string{"--mount-root=" + root, "--address=" + f.NodeAddress(node, addresses)}, unmount, nil
}

// AgentRuns is how many agents were started with Mount (AgentFunc's included).
func (f *Fleet) AgentRuns() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.agentRuns
}

// secretRead is one Secret a pod's volume mounts, as read.
type secretRead struct {
	secret *corev1.Secret
	err    error
}

// readSecrets reads the Secrets of the pod's Secret volumes, 16 at a time, as a kubelet's
// volume manager mounts a pod's volumes concurrently (one operation per volume), rather
// than one after the other: a pod of 100 slots mounts some 64 of them.
func readSecrets(ctx context.Context, c client.Client, pod *corev1.Pod) map[string]secretRead {
	out := map[string]secretRead{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for _, v := range pod.Spec.Volumes {
		if v.Secret == nil {
			continue
		}
		name := v.Secret.SecretName
		mu.Lock()
		_, seen := out[name]
		out[name] = secretRead{}
		mu.Unlock()
		if seen {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			s := &corev1.Secret{}
			err := c.Get(ctx, client.ObjectKey{Namespace: pod.Namespace, Name: name}, s)
			mu.Lock()
			out[name] = secretRead{secret: s, err: err}
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

// layOut writes the pod's volumes under root as its container would see them.
func (f *Fleet) layOut(ctx context.Context, c client.Client, pod *corev1.Pod, node, root string) error {
	vols := map[string]corev1.Volume{}
	for _, v := range pod.Spec.Volumes {
		vols[v.Name] = v
	}
	secrets := readSecrets(ctx, c, pod)
	for _, m := range pod.Spec.Containers[0].VolumeMounts {
		v, ok := vols[m.Name]
		if !ok {
			return fmt.Errorf("mount %s: no volume of that name", m.Name)
		}
		at := filepath.Join(root, m.MountPath)
		switch {
		case v.Secret != nil:
			read := secrets[v.Secret.SecretName]
			s := read.secret
			if err := read.err; err != nil {
				if v.Secret.Optional != nil && *v.Secret.Optional {
					continue
				}
				return fmt.Errorf("secret volume %s: %w", m.Name, err)
			}
			if err := os.MkdirAll(at, 0o700); err != nil {
				return err
			}
			files := map[string][]byte{}
			for k, b := range s.Data {
				files[k] = b
			}
			for k, str := range s.StringData { // never set on a read object, but harmless
				files[k] = []byte(str)
			}
			for k, b := range files {
				if strings.Contains(k, "/") {
					return fmt.Errorf("secret %s: key %q is not a file name", s.Name, k)
				}
				if err := os.WriteFile(filepath.Join(at, k), b, 0o400); err != nil {
					return err
				}
			}
		case v.HostPath != nil && m.MountPath == config.CacheDir:
			// The node's firmware cache: one folder per simulated node.
			dir := filepath.Join(f.dir, "nodes", node, "cache")
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			if err := symlink(dir, at); err != nil {
				return err
			}
		case v.HostPath != nil:
			// A staged firmware file: the node is this machine.
			if err := symlink(v.HostPath.Path, at); err != nil {
				return err
			}
		default:
			return fmt.Errorf("volume %s: only Secret and hostPath volumes are simulated", m.Name)
		}
	}
	return nil
}

func symlink(target, link string) error {
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		return err
	}
	return os.Symlink(target, link)
}
