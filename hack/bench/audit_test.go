package main

import (
	"strings"
	"testing"
	"time"
)

func TestCountAudit(t *testing.T) {
	log := strings.Join([]string{
		// In the window: a patch and a get by the manager, a watch (started and completed) by the agents.
		`{"stage":"ResponseComplete","verb":"patch","user":{"username":"m"},"objectRef":{"resource":"targetupdates","subresource":"status"},"requestReceivedTimestamp":"2026-12-08T01:00:01.000000Z"}`,
		`{"stage":"ResponseComplete","verb":"get","user":{"username":"m"},"objectRef":{"resource":"pods"},"requestReceivedTimestamp":"2026-12-08T01:00:02.000000Z"}`,
		`{"stage":"ResponseStarted","verb":"watch","user":{"username":"a"},"objectRef":{"resource":"targetupdates"},"requestReceivedTimestamp":"2026-12-08T01:00:03.000000Z"}`,
		`{"stage":"ResponseComplete","verb":"watch","user":{"username":"a"},"objectRef":{"resource":"targetupdates"},"requestReceivedTimestamp":"2026-12-08T01:00:03.000000Z"}`,
		// Outside the window.
		`{"stage":"ResponseComplete","verb":"create","user":{"username":"m"},"objectRef":{"resource":"targetupdates"},"requestReceivedTimestamp":"2026-12-08T00:59:59.000000Z"}`,
		`{"stage":"ResponseComplete","verb":"create","user":{"username":"m"},"objectRef":{"resource":"targetupdates"},"requestReceivedTimestamp":"2026-12-08T01:00:11.000000Z"}`,
	}, "\n")
	from := time.Date(2026, 12, 8, 1, 0, 0, 0, time.UTC)
	got, err := countAudit(strings.NewReader(log), from, from.Add(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	m, a := got["m"], got["a"]
	if m.writes() != 1 || m.reads() != 1 || m.byResource["patch targetupdates/status"] != 1 {
		t.Errorf("manager: %+v", m)
	}
	if a.reads() != 1 || a.byVerb["watch"] != 1 || a.writes() != 0 {
		t.Errorf("agents: a watch counts once: %+v", a)
	}
	if at := m.first["patch targetupdates/status"]; !at.Equal(from.Add(time.Second)) {
		t.Errorf("first patch at %s", at)
	}
	if s := perTarget(m.byResource, 2, isWriteVerb); s != "patch targetupdates/status 0.50" {
		t.Errorf("perTarget = %q", s)
	}
}

func TestParseReconcileTotals(t *testing.T) {
	metrics := `# HELP controller_runtime_reconcile_total Total number of reconciliations per controller
controller_runtime_reconcile_total{controller="updatejob",result="error"} 2
controller_runtime_reconcile_total{controller="updatejob",result="success"} 40
controller_runtime_reconcile_total{controller="updatetarget",result="success"} 7
controller_runtime_reconcile_errors_total{controller="updatejob"} 2
`
	got, err := parseReconcileTotals(strings.NewReader(metrics))
	if err != nil {
		t.Fatal(err)
	}
	if got != "updatejob 42, updatetarget 7" {
		t.Errorf("got %q", got)
	}
	if _, err := parseReconcileTotals(strings.NewReader("up 1\n")); err == nil {
		t.Error("no reconcile totals: no error")
	}
}
