package control

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// ProbeSocket is the abstract Unix socket (Linux; no file, so a read-only root file system
// is no obstacle) on which an agent serves /healthz and /readyz for the kubelet's probes,
// named after its pod. The control port may step above its assignment when a process outside
// Kubernetes holds it (rule P1), and the pod's probes are fixed when the pod is created: a
// probe on the assigned port would ask that other process and the kubelet would kill the
// agent mid-flash. The exec probe (`agent probe`) reaches the agent here wherever it bound.
func ProbeSocket(namespace, pod string) string {
	return "@fwops-agent/" + namespace + "/" + pod
}

// ListenProbe listens on the probe socket.
func ListenProbe(namespace, pod string) (net.Listener, error) {
	var lc net.ListenConfig
	return lc.Listen(context.Background(), "unix", ProbeSocket(namespace, pod))
}

// ServeProbes serves /healthz and /readyz on l until it is closed.
func (s *Server) ServeProbes(l net.Listener) error {
	h := s.Handler()
	mux := http.NewServeMux()
	mux.Handle("GET /healthz", h)
	mux.Handle("GET /readyz", h)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	return srv.Serve(l)
}

// Probe asks the agent of a pod for path (/healthz or /readyz) over its probe socket; nil
// means 200 OK. The error carries the agent's answer, which the kubelet shows in the pod's
// events.
func Probe(ctx context.Context, socket, path string) error {
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socket)
	}}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://agent"+path, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("agent probe socket %s: %w", socket, err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s: %s", path, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}
