package control

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// agentState stands for the agent's StatusSource.
type agentState struct {
	mu   sync.Mutex
	snap Snapshot
}

func (a *agentState) Status() Snapshot {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.snap
	s.Targets = append([]TargetStatus(nil), a.snap.Targets...)
	return s
}

func sampleSnapshot() Snapshot {
	at := time.Date(2026, 11, 24, 5, 30, 0, 0, time.UTC)
	return Snapshot{
		Agent: AgentInfo{Node: "node-a", Job: "default/ilo5-cve", Ports: []BoundPort{
			{Rule: "P1", Name: "control", Port: 62287},
			{Rule: "P2", Name: "firmware", Port: 63004},
			{Rule: "P5", Name: "ipc", Port: 61000},
		}},
		Targets: []TargetStatus{
			{Name: "ilo-1", Phase: "Flashing", Percent: 42, Message: "Updating", VersionBefore: "2.72", SessionPort: 60000, UpdatedAt: at},
			{Name: "ilo-2", Phase: "Flashing", Percent: 7, VersionBefore: "2.72", SessionPort: 60001, UpdatedAt: at},
			{Name: "oa-1", Phase: "Succeeded", Percent: 100, VersionBefore: "4.95", VersionAfter: "4.97", SessionPort: 60002, UpdatedAt: at},
		},
		Time: at,
	}
}

func listen(t *testing.T, h http.Handler) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

func startControl(t *testing.T) (*Server, string, *agentState) {
	t.Helper()
	state := &agentState{snap: sampleSnapshot()}
	s := &Server{Status: state}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	t.Cleanup(func() {
		s.Shutdown(t.Context())
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return s, l.Addr().String(), state
}

func get(t *testing.T, method, url string) (int, string, http.Header) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), method, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func TestHealthz(t *testing.T) {
	_, addr, _ := startControl(t)
	if code, body, _ := get(t, "GET", "http://"+addr+"/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("healthz: %d %q", code, body)
	}
	if code, _, _ := get(t, "HEAD", "http://"+addr+"/healthz"); code != 200 {
		t.Errorf("HEAD healthz: %d", code)
	}
	if code, _, _ := get(t, "POST", "http://"+addr+"/healthz"); code != http.StatusMethodNotAllowed {
		t.Errorf("POST healthz: %d", code)
	}
	if code, _, _ := get(t, "GET", "http://"+addr+"/nope"); code != 404 {
		t.Errorf("unknown path: %d", code)
	}
}

func TestReadyzFlips(t *testing.T) {
	s, addr, _ := startControl(t)
	url := "http://" + addr + "/readyz"
	if code, body, _ := get(t, "GET", url); code != 503 || !strings.Contains(body, "readiness not set") {
		t.Errorf("before SetReady: %d %q", code, body)
	}
	var verified, listening bool
	var mu sync.Mutex
	s.SetReady(func() error {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case !verified:
			return errors.New("firmware image not verified yet")
		case !listening:
			return errors.New("firmware server not listening")
		}
		return nil
	})
	if code, body, _ := get(t, "GET", url); code != 503 || !strings.Contains(body, "not verified") {
		t.Errorf("unverified: %d %q", code, body)
	}
	mu.Lock()
	verified = true
	mu.Unlock()
	if code, body, _ := get(t, "GET", url); code != 503 || !strings.Contains(body, "not listening") {
		t.Errorf("not listening: %d %q", code, body)
	}
	mu.Lock()
	listening = true
	mu.Unlock()
	if code, body, _ := get(t, "GET", url); code != 200 || body != "ok\n" {
		t.Errorf("ready: %d %q", code, body)
	}
	s.SetReady(nil)
	if code, _, _ := get(t, "GET", url); code != 503 {
		t.Errorf("after SetReady(nil): %d", code)
	}
}

func TestMetrics(t *testing.T) {
	s, addr, _ := startControl(t)
	s.Handler() // builds s.Metrics
	s.Metrics.AddBytesServed(1 << 20)
	s.Metrics.AddBytesServed(1 << 20)
	s.Metrics.ObserveFlash(95*time.Second, "succeeded")
	s.Metrics.ObserveFlash(20*time.Second, "failed")
	s.Metrics.CountRedfishEvents(func() int64 { return 7 }, func() int64 { return 2 })
	s.Metrics.CountLinuxCallbacks(func() int64 { return 3 }, func() int64 { return 1 })

	code, body, hdr := get(t, "GET", "http://"+addr+"/metrics")
	if code != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), "text/plain") {
		t.Fatalf("metrics: %d %s", code, hdr.Get("Content-Type"))
	}
	for _, want := range []string{
		"# TYPE " + MetricTargets + " gauge",
		MetricTargets + `{phase="Flashing"} 2`,
		MetricTargets + `{phase="Succeeded"} 1`,
		MetricTargets + `{phase="Pending"} 0`,
		"# TYPE " + MetricBytesServed + " counter",
		MetricBytesServed + " 2.097152e+06",
		"# TYPE " + MetricFlashDuration + " histogram",
		MetricFlashDuration + `_count{result="succeeded"} 1`,
		MetricFlashDuration + `_count{result="failed"} 1`,
		"# TYPE " + MetricRedfishEvents + " counter",
		MetricRedfishEvents + `{result="accepted"} 7`,
		MetricRedfishEvents + `{result="dropped"} 2`,
		"# TYPE " + MetricLinuxCallbacks + " counter",
		MetricLinuxCallbacks + `{result="accepted"} 3`,
		MetricLinuxCallbacks + `{result="refused"} 1`,
		"go_goroutines",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func TestMetricsPrivateRegistry(t *testing.T) {
	// Two agents in one process (tests, the demo) must not collide on registration.
	a, b := NewMetrics(nil), NewMetrics(nil)
	if a.Registry() == b.Registry() {
		t.Fatal("registries are shared")
	}
}

func TestStatusEndpoint(t *testing.T) {
	_, addr, state := startControl(t)
	code, body, hdr := get(t, "GET", "http://"+addr+"/status")
	if code != 200 || hdr.Get("Content-Type") != "application/json" {
		t.Fatalf("status: %d %s", code, hdr.Get("Content-Type"))
	}
	var got Snapshot
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, state.Status()) {
		t.Errorf("status =\n%+v\nwant\n%+v", got, state.Status())
	}
	for _, field := range []string{`"versionBefore"`, `"sessionPort"`, `"updatedAt"`, `"rule": "P2"`, `"node": "node-a"`} {
		if !strings.Contains(body, field) {
			t.Errorf("status JSON lacks %s", field)
		}
	}
	if code, _, _ := get(t, "POST", "http://"+addr+"/status"); code != http.StatusMethodNotAllowed {
		t.Errorf("POST status: %d", code)
	}
}

func TestFetchStatusOverIPC(t *testing.T) {
	state := &agentState{snap: sampleSnapshot()}
	// The P5 inter-process channel: only /status, on its own listener.
	mux := http.NewServeMux()
	mux.Handle("/status", StatusHandler(state))
	addr := listen(t, mux)

	got, err := FetchStatus(t.Context(), addr)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, state.Status()) {
		t.Errorf("FetchStatus =\n%+v\nwant\n%+v", got, state.Status())
	}

	// Live: a change in the agent shows in the next fetch.
	state.mu.Lock()
	state.snap.Targets[0].Percent = 88
	state.mu.Unlock()
	got, err = FetchStatus(t.Context(), addr)
	if err != nil || got.Targets[0].Percent != 88 {
		t.Errorf("second fetch: %v, %+v", err, got.Targets)
	}
}

func TestFetchStatusErrors(t *testing.T) {
	addr := listen(t, http.NotFoundHandler())
	if _, err := FetchStatus(t.Context(), addr); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("404: %v", err)
	}
	bad := listen(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "{not json") }))
	if _, err := FetchStatus(t.Context(), bad); err == nil || !strings.Contains(err.Error(), "decode") {
		t.Errorf("bad JSON: %v", err)
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := l.Addr().String()
	l.Close()
	if _, err := FetchStatus(t.Context(), closed); err == nil {
		t.Error("no error from a closed port")
	}
}

func TestStatusHandlerNilSource(t *testing.T) {
	addr := listen(t, StatusHandler(nil))
	snap, err := FetchStatus(t.Context(), addr)
	if err != nil || snap.Targets == nil || snap.Time.IsZero() {
		t.Errorf("nil source: %v %+v", err, snap)
	}
}
