package runner

import (
	"context"
	"fmt"
	"net"
	"testing"

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
