package control

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestProbeOverTheProbeSocket(t *testing.T) {
	s := &Server{}
	l, err := ListenProbe("ns", t.Name()+time.Now().Format("150405.000000000"))
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.ServeProbes(l) }()
	t.Cleanup(func() { _ = l.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sock := l.Addr().String()
	if !strings.HasPrefix(sock, "@fwops-agent/ns/") {
		t.Fatalf("socket %q is not the pod's abstract socket", sock)
	}
	if err := Probe(ctx, sock, "/healthz"); err != nil {
		t.Fatalf("liveness: %v", err)
	}
	err = Probe(ctx, sock, "/readyz")
	if err == nil || !strings.Contains(err.Error(), "not ready") {
		t.Fatalf("readiness before SetReady: %v, want a 'not ready' answer", err)
	}
	s.SetReady(func() error { return errors.New("firmware image not verified yet") })
	if err := Probe(ctx, sock, "/readyz"); err == nil || !strings.Contains(err.Error(), "firmware image not verified yet") {
		t.Fatalf("readiness: %v, want the agent's reason", err)
	}
	s.SetReady(func() error { return nil })
	if err := Probe(ctx, sock, "/readyz"); err != nil {
		t.Fatalf("readiness once ready: %v", err)
	}
	if err := Probe(ctx, "@fwops-agent/ns/nobody-here", "/healthz"); err == nil {
		t.Fatal("a probe of a pod with no agent succeeded")
	}
}
