package cluster

import (
	"bufio"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/fwops/firmware-operator/internal/testutil/shared"
)

// ctr runs containerd's ctr against this node's containerd, in the CRI's namespace.
func (c *Cluster) ctr(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ctr", append([]string{"--address", c.ContainerdSocket, "--namespace", "k8s.io"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// Import imports an image archive (docker or OCI) into the node's containerd, where the
// kubelet finds it: pods use it with imagePullPolicy IfNotPresent and nothing is pulled.
func (c *Cluster) Import(ctx context.Context, archive string) error {
	_, err := c.ctr(ctx, "images", "import", "--no-unpack=false", archive)
	return err
}

// ImportImage writes im as an archive under the cluster's folder and imports it.
func (c *Cluster) ImportImage(ctx context.Context, im Image) error {
	archive := filepath.Join(c.Dir, "images", strings.NewReplacer("/", "_", ":", "_").Replace(im.Ref)+".tar")
	if err := os.MkdirAll(filepath.Dir(archive), 0o755); err != nil {
		return err
	}
	if err := im.WriteDockerArchive(archive); err != nil {
		return err
	}
	return c.Import(ctx, archive)
}

func (c *Cluster) importPause(ctx context.Context) error {
	bin := filepath.Join(c.Dir, "images", "pause")
	if err := BuildStatic(shared.RepoRoot(), "./internal/testutil/cluster/pause", bin); err != nil {
		return err
	}
	return c.ImportImage(ctx, Image{Ref: PauseImage, Binary: bin, User: "65535:65535"})
}

// Stop stops the kubelet, removes every container and sandbox (their shims included), stops
// containerd and the control plane, unmounts what the kubelet and containerd mounted, and
// removes the cluster's folder; keepLogs keeps LogDir, with the pods' logs copied into it.
func (c *Cluster) Stop(keepLogs bool) {
	ctx := context.Background()
	if c.kubelet != nil {
		c.kubelet.stop(20 * time.Second)
	}
	if keepLogs {
		_ = copyDir(c.PodLogsDir, filepath.Join(c.LogDir, "pods"))
	}
	if c.containerd != nil && c.containerd.exited() == nil {
		c.removeContainers(ctx)
	}
	// The rest in reverse order of start: containerd, scheduler, controller manager, API
	// server, etcd.
	for i := len(c.procs) - 1; i >= 0; i-- {
		c.procs[i].stop(15 * time.Second)
	}
	c.killShims()
	c.unmountAll()
	c.removeLogLinks()
	if !keepLogs {
		_ = os.RemoveAll(c.Dir)
		return
	}
	entries, _ := os.ReadDir(c.Dir)
	for _, e := range entries {
		if p := filepath.Join(c.Dir, e.Name()); p != c.LogDir {
			_ = os.RemoveAll(p)
		}
	}
}

// removeContainers kills and deletes every task and container containerd holds for the CRI.
func (c *Cluster) removeContainers(ctx context.Context) {
	out, _ := c.ctr(ctx, "tasks", "ls", "-q")
	for _, id := range strings.Fields(out) {
		_, _ = c.ctr(ctx, "tasks", "kill", "--signal", "SIGKILL", id)
	}
	for _, id := range strings.Fields(out) {
		_, _ = c.ctr(ctx, "tasks", "delete", "--force", id)
	}
	out, _ = c.ctr(ctx, "containers", "ls", "-q")
	for _, id := range strings.Fields(out) {
		_, _ = c.ctr(ctx, "containers", "delete", id)
	}
}

// killShims kills the runc shims started for this containerd (they outlive it by design),
// found by the socket address on their command line.
func (c *Cluster) killShims() {
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", p.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(cmdline), "\x00")
		if len(args) > 0 && strings.HasSuffix(args[0], "containerd-shim-runc-v2") && strings.Contains(string(cmdline), c.ContainerdSocket) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// unmountAll unmounts everything mounted under the cluster's folder, deepest first.
func (c *Cluster) unmountAll() {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return
	}
	defer func() { _ = f.Close() }()
	var mounts []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && strings.HasPrefix(fields[4], c.Dir+"/") {
			mounts = append(mounts, fields[4])
		}
	}
	sort.Slice(mounts, func(i, j int) bool { return len(mounts[i]) > len(mounts[j]) })
	for _, m := range mounts {
		_ = syscall.Unmount(m, syscall.MNT_DETACH)
	}
}

// removeLogLinks removes the kubelet's /var/log/containers links into this cluster's pod
// logs, which a stopped kubelet leaves behind.
func (c *Cluster) removeLogLinks() {
	entries, _ := os.ReadDir("/var/log/containers")
	for _, e := range entries {
		p := filepath.Join("/var/log/containers", e.Name())
		if t, err := os.Readlink(p); err == nil && strings.HasPrefix(t, c.PodLogsDir) {
			_ = os.Remove(p)
		}
	}
}

// PodLogs returns the logs the kubelet keeps of a pod's containers, by container name
// (the latest run of each), read from the kubelet's pod log folder: the node has no
// address the API server could reach, so `kubectl logs` does not work here.
func (c *Cluster) PodLogs(namespace, pod string) map[string]string {
	out := map[string]string{}
	dirs, _ := filepath.Glob(filepath.Join(c.PodLogsDir, namespace+"_"+pod+"_*"))
	for _, d := range dirs {
		containers, _ := os.ReadDir(d)
		for _, ct := range containers {
			files, _ := filepath.Glob(filepath.Join(d, ct.Name(), "*.log"))
			sort.Strings(files)
			if len(files) == 0 {
				continue
			}
			b, err := os.ReadFile(files[len(files)-1])
			if err == nil {
				out[ct.Name()] = string(b)
			}
		}
	}
	return out
}

// CollectLogs copies the pods' logs into LogDir/pods now (Stop does it too when it keeps
// the logs).
func (c *Cluster) CollectLogs() error { return copyDir(c.PodLogsDir, filepath.Join(c.LogDir, "pods")) }

func copyDir(from, to string) error {
	return filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil //nolint:nilerr // a pod's folder removed while walking
		}
		rel, _ := filepath.Rel(from, p)
		dst := filepath.Join(to, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil //nolint:nilerr // rotated away
		}
		return os.WriteFile(dst, b, 0o644)
	})
}
