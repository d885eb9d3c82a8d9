package runner

import (
	"net"
	"testing"

	"github.com/fwops/firmware-operator/internal/agent/driver"
	"github.com/fwops/firmware-operator/internal/agent/sshconn"
)

// FuzzTargetHost checks the host the agent routes toward (targetHost, for the address it
// advertises in image URLs) against the host it dials over SSH (sshconn.Addr): for every
// address both accept, they must be the same machine, or the image URL would name an address
// the target cannot reach.
func FuzzTargetHost(f *testing.F) {
	for _, s := range []string{"127.0.1.12", "127.0.2.1:2222", "ilo-r12.example.net", "10.0.0.5:8443", "[fd00::5]:22",
		"fd00::5", "[fd00::5]", " 10.0.0.1 ", "fe80::1%eth0", "[fe80::1%eth0]:22", "h:x", "[]", ":22"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, address string) {
		got := targetHost(address)
		addr, err := sshconn.Addr(driver.Target{Name: "t", Address: address})
		if err != nil {
			return
		}
		want, _, err := net.SplitHostPort(addr)
		if err != nil {
			t.Fatalf("sshconn.Addr(%q) = %q: %v", address, addr, err)
		}
		if g, w := net.ParseIP(got), net.ParseIP(want); got != want && (g == nil || !g.Equal(w)) {
			t.Fatalf("targetHost(%q) = %q, but the agent dials %q", address, got, want)
		}
	})
}
