package control

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Phases are the per-target phases of an UpdateJob, in order; the metrics report every one of
// them, zero or not, so that dashboards see stable series.
var Phases = []string{"Pending", "Downloading", "Staging", "Flashing", "Verifying", "Succeeded", "Failed", "Skipped"}

// TargetStatus is the live progress of one target.
type TargetStatus struct {
	Name          string    `json:"name"`
	Phase         string    `json:"phase"`
	Percent       int       `json:"percent"`
	Message       string    `json:"message,omitempty"`
	VersionBefore string    `json:"versionBefore,omitempty"`
	VersionAfter  string    `json:"versionAfter,omitempty"`
	SessionPort   int       `json:"sessionPort,omitempty"` // rule P4: local port towards the target
	UpdatedAt     time.Time `json:"updatedAt"`
}

// BoundPort is a port the agent really bound, which may differ from the one it was assigned
// when something else held that one (ports.md, "Across the cluster").
type BoundPort struct {
	Rule string `json:"rule"` // P1, P2, P4 or P5
	Name string `json:"name"` // control, firmware, ipc, reverse, ...
	Port int    `json:"port"`
}

// AgentInfo says which agent a snapshot comes from.
type AgentInfo struct {
	Node  string      `json:"node"`
	Job   string      `json:"job"`
	Ports []BoundPort `json:"ports"`
}

// Snapshot is what /status returns: the agent and every target it works on.
type Snapshot struct {
	Agent   AgentInfo      `json:"agent"`
	Targets []TargetStatus `json:"targets"`
	// Time is when the snapshot was taken.
	Time time.Time `json:"time"`
}

// StatusSource is implemented by the agent: a consistent copy of its current state. It is
// called on every /status request and /metrics scrape, from any goroutine.
type StatusSource interface {
	Status() Snapshot
}

// StatusFunc adapts a function to StatusSource.
type StatusFunc func() Snapshot

// Status calls f.
func (f StatusFunc) Status() Snapshot { return f() }

// StatusHandler serves src's snapshot as JSON on GET (and HEAD). It can be mounted on any
// listener: the control listener (rule P1) and the local inter-process channel (rule P5, the
// lowest P5 port), which `agent status` reads with FetchStatus.
func StatusHandler(src StatusSource) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		snap := Snapshot{}
		if src != nil {
			snap = src.Status()
		}
		if snap.Time.IsZero() {
			snap.Time = time.Now().UTC()
		}
		if snap.Targets == nil {
			snap.Targets = []TargetStatus{} // [] rather than null for readers in other languages
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(snap) // an error here is the client going away
	})
}

// maxSnapshot bounds what FetchStatus reads: an agent's snapshot is a few hundred bytes per
// target.
const maxSnapshot = 32 << 20

// statusClient never uses a proxy: the status channel is local to the node.
var statusClient = &http.Client{Transport: &http.Transport{Proxy: nil, DisableCompression: true}}

// FetchStatus reads an agent's snapshot from addr (host:port of its P5 inter-process channel
// or its P1 control listener). It is what `agent status` uses.
func FetchStatus(ctx context.Context, addr string) (Snapshot, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/status", nil)
	if err != nil {
		return Snapshot{}, fmt.Errorf("agent status: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := statusClient.Do(req)
	if err != nil {
		return Snapshot{}, fmt.Errorf("agent status: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return Snapshot{}, fmt.Errorf("agent status: %s from %s: %s", resp.Status, addr, b)
	}
	var snap Snapshot
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxSnapshot)).Decode(&snap); err != nil {
		return Snapshot{}, fmt.Errorf("agent status: decode from %s: %w", addr, err)
	}
	return snap, nil
}
