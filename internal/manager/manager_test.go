package manager

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fwops/firmware-operator/internal/testutil/syncbuf"
)

// The Deployment runs `firmware-operator manager` with flags only: its log must reach
// stderr, where the kubelet collects it, not io.Discard.
func TestRunLogsToStderr(t *testing.T) {
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	// An API server nobody serves: the manager starts, logs, and waits for it until ctx ends.
	if err := os.WriteFile(kc, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var stderr syncbuf.Buffer
	err := Run(ctx, []string{"--kubeconfig=" + kc, "--leader-elect=false", "--metrics-bind-address=0", "--health-probe-bind-address=0"}, nil, &stderr)
	if out := stderr.String(); !strings.Contains(out, "starting manager") {
		t.Logf("Run: %v", err)
		t.Fatalf("the manager's stderr does not say it started:\n%s", out)
	}
}
