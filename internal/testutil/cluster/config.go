package cluster

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// PauseImage is the pod sandbox image, built locally from ./pause and never pulled.
const PauseImage = "registry.k8s.io/pause:3.10"

// containerdConfig is containerd's configuration: its own root, state, socket and CNI folder
// under dir, nothing on the host's defaults.
func containerdConfig(dir string) string {
	return fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = %[3]q

[ttrpc]
  address = %[4]q

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = %[5]q

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[6]q
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  # Processes here lack CAP_SYS_RESOURCE: without this every sandbox dies with "can't get
  # final child's PID from pipe: EOF" when runc raises its oom_score_adj.
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %[7]q
    conf_dir = %[8]q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), filepath.Join(dir, "containerd.sock"),
		filepath.Join(dir, "containerd.sock.ttrpc"), filepath.Join(dir, "opt"), PauseImage, cniBinDir(), filepath.Join(dir, "cni"))
}

// cniBinDir is where Debian's containernetworking-plugins puts the plugins.
func cniBinDir() string {
	for _, d := range []string{"/usr/lib/cni", "/opt/cni/bin"} {
		if _, err := os.Stat(filepath.Join(d, "loopback")); err == nil {
			return d
		}
	}
	return "/usr/lib/cni"
}

// loopbackCNI is the one network: every pod of the tests is hostNetwork, and the runtime is
// ready only once a CNI configuration exists.
const loopbackCNI = `{"cniVersion": "0.4.0", "name": "fwops-loopback", "plugins": [{"type": "loopback"}]}`

// kubeletConfig is the KubeletConfiguration that works on this kind of machine: cgroup v1
// (Kubernetes 1.35+ refuses it unless told), cgroupfs without per-QoS cgroups, no node
// allocatable enforcement, swap allowed, loopback only.
func kubeletConfig(c *Cluster, port, healthzPort int) string {
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: %d
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: %d
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
containerRuntimeEndpoint: unix://%s
podLogsDir: %s
volumePluginDir: %s
staticPodPath: ""
resolvConf: ""
clusterDNS: []
rotateCertificates: false
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: "100Mi"
  nodefs.available: "1%%"
  imagefs.available: "1%%"
  nodefs.inodesFree: "1%%"
nodeStatusUpdateFrequency: 2s
syncFrequency: 5s
fileCheckFrequency: 5s
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: false
  x509:
    clientCAFile: %s
authorization:
  mode: AlwaysAllow
tlsCertFile: %s
tlsPrivateKeyFile: %s
`, port, healthzPort, c.ContainerdSocket, c.PodLogsDir, filepath.Join(c.Dir, "volume-plugins"), c.pki.CAFile,
		filepath.Join(c.Dir, "pki", "kubelet-serving.crt"), filepath.Join(c.Dir, "pki", "kubelet-serving.key"))
}

// kubeconfig is a kubeconfig for a client certificate.
func kubeconfig(server, ca, cert, key string) string {
	return strings.TrimLeft(fmt.Sprintf(`
apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: test
  user:
    client-certificate: %s
    client-key: %s
contexts:
- name: test
  context:
    cluster: test
    user: test
current-context: test
`, server, ca, cert, key), "\n")
}
