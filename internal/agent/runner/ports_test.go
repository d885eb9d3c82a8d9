package runner

import (
	"context"
	"fmt"
	"net"
	"testing"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
	"github.com/fwops/firmware-operator/internal/agent/config"
)

// Two simulated nodes on one machine (127.0.0.2 and 127.0.0.3) each bind their assigned
// inter-process port (rule P5), as two real nodes would on their own 127.0.0.1.
func TestIPCOnTheAgentsLoopbackAddress(t *testing.T) {
	ps := freePorts(t, 3)
	// Another node's agent holds the IPC port on 127.0.0.1.
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", ps[2]))
	if err != nil {
		t.Skipf("port %d taken meanwhile: %v", ps[2], err)
	}
	defer l.Close()
	for _, addr := range []string{"127.0.0.2", "127.0.0.3"} {
		cfg := config.Config{Address: addr, Ports: config.Ports{Control: ps[0], FirmwareServer: ps[1],
			FirmwareFallback: [2]int{ps[1], ps[1]}, IPC: ps[2]}}
		b, h, err := bindPorts(context.Background(), cfg, nil)
		if err != nil {
			t.Fatalf("%s: %v", addr, err)
		}
		defer h.close()
		if b.IPC != ps[2] || b.Control != ps[0] || b.Firmware != ps[1] {
			t.Errorf("%s: bound %+v, want the assigned %v", addr, b, ps)
		}
	}
	for in, want := range map[string]string{"": "127.0.0.1", "10.0.0.7": "127.0.0.1", "127.0.0.2": "127.0.0.2", "::1": "::1", "node-a": "127.0.0.1"} {
		if got := ipcAddress(in); got != want {
			t.Errorf("ipcAddress(%q) = %q, want %q", in, got, want)
		}
	}
}

// rule P5: each target's status names (by its slot) the receive port it sends to and how, so a firewall
// request can name it; targets that send nothing (iLO 4, OA) name none.
func TestP5_ReceivePortPerTargetInTheStatus(t *testing.T) {
	b := Bound{Control: 62286, Firmware: 80, IPC: 61000, Reverse: []int{61001, 61002, 61003, 61004},
		Sessions: []int{60000, 60001, 60002, 60003}}
	for i, tc := range []struct {
		name string
		typ  fwv1.TargetType
		port int32
		via  fwv1.ReceiveVia
	}{
		{"ilo", fwv1.TargetTypeILO5, 61001, fwv1.ReceiveViaRedfishEvents},
		{"linux", fwv1.TargetTypeLinux, 61002, fwv1.ReceiveViaSSHCallback},
		{"old", fwv1.TargetTypeILO4, 0, ""},
		{"oa", fwv1.TargetTypeOA, 0, ""},
	} {
		s := fwv1.TargetUpdateStatus{ReceivePort: 9, ReceiveVia: "stale"}
		b.reportTo(&s, i, tc.typ)
		if s.ReceivePort != tc.port || s.ReceiveVia != tc.via || len(s.ReceivePorts) != 4 || s.SessionPort != int32(b.Sessions[i]) {
			t.Errorf("%s (%s): receivePort %d via %q, receivePorts %v, sessionPort %d; want %d via %q",
				tc.name, tc.typ, s.ReceivePort, s.ReceiveVia, s.ReceivePorts, s.SessionPort, tc.port, tc.via)
		}
	}
	// An agent without receive ports (no P5 ports assigned) names none.
	s := fwv1.TargetUpdateStatus{}
	Bound{}.reportTo(&s, 0, fwv1.TargetTypeILO6)
	if s.ReceivePort != 0 || s.ReceiveVia != "" {
		t.Errorf("no receive ports: receivePort %d via %q, want none", s.ReceivePort, s.ReceiveVia)
	}
}
