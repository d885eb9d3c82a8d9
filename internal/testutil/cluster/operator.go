package cluster

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/fwops/firmware-operator/internal/testutil/shared"
)

// The operator as InstallOperator installs it.
const (
	OperatorNamespace = "firmware-operator-system"
	OperatorRelease   = "firmware-operator"
	OperatorImageRepo = "ghcr.io/fwops/firmware-operator"
	OperatorImageTag  = "local"
)

// InstallOperator builds the operator's static binary from the repository, imports it as
// the image OperatorImageRepo:OperatorImageTag (laid out as the Dockerfile's, USER 65532),
// and installs charts/firmware-operator with helm, as a user does, waiting for the manager's
// Deployment. The node has no pod network, so the manager uses the host's, on ports free
// just now.
func (c *Cluster) InstallOperator(ctx context.Context) error {
	root := shared.RepoRoot()
	bin := filepath.Join(c.Dir, "images", "firmware-operator")
	if err := BuildStatic(root, ".", bin); err != nil {
		return err
	}
	ref := OperatorImageRepo + ":" + OperatorImageTag
	if err := c.ImportImage(ctx, Image{Ref: ref, Binary: bin, User: "65532:65532"}); err != nil {
		return fmt.Errorf("importing the operator image: %w", err)
	}
	cmd := exec.CommandContext(ctx, "go", "tool", "helm", "install", OperatorRelease, "charts/firmware-operator",
		"--kubeconfig", c.Kubeconfig, "--namespace", OperatorNamespace, "--create-namespace",
		"--set", "image.repository="+OperatorImageRepo, "--set", "image.tag="+OperatorImageTag,
		"--set", "manager.hostNetwork=true",
		"--set", "manager.healthProbePort="+strconv.Itoa(freeHostPort()),
		"--set", "manager.metricsPort="+strconv.Itoa(freeHostPort()),
		"--wait", "--timeout", "5m")
	cmd.Dir = root
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("helm install: %w\n%s\nmanager log:\n%s", err, out.String(), c.ManagerLog(ctx))
	}
	return nil
}

// ManagerLog is the manager container's log, read from the kubelet's pod log folder.
func (c *Cluster) ManagerLog(ctx context.Context) string {
	cs, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		return err.Error()
	}
	pods, err := cs.CoreV1().Pods(OperatorNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=manager"})
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for _, p := range pods.Items {
		b.WriteString(c.PodLogs(OperatorNamespace, p.Name)["manager"])
	}
	return b.String()
}

// freeHostPort picks a port free on every address, below the ephemeral range: the manager
// binds ":port" on the host's network, and a port of the ephemeral range may be taken by any
// outgoing connection on this machine meanwhile.
func freeHostPort() int {
	for range 100 {
		p := 20000 + rand.IntN(10000)
		ln, err := net.Listen("tcp", ":"+strconv.Itoa(p))
		if err == nil {
			_ = ln.Close()
			return p
		}
	}
	return FreePort()
}
