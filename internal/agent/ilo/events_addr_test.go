package ilo

import (
	"context"
	"net"
	"testing"

	"github.com/fwops/firmware-operator/internal/agent/driver"
)

// Events are taken from the machine the driver talks to: targetIPs reads spec.address with the
// one address parser (driver.SplitAddress), and an address that parser refuses, which no
// driver dials, is no source of events either.
func TestTargetIPsReadTheAddressAsTheDriversDo(t *testing.T) {
	for _, address := range []string{"127.0.1.5", "127.0.1.5:8443", "::1", "[::1]", "[::1]:443"} {
		host, _, err := driver.SplitAddress(address)
		if err != nil {
			t.Fatalf("SplitAddress(%q): %v", address, err)
		}
		got, err := targetIPs(context.Background(), address)
		if err != nil || len(got) != 1 || !got[0].Equal(net.ParseIP(host)) {
			t.Errorf("targetIPs(%q) = %v, %v; want [%s], the host the driver dials", address, got, err, host)
		}
	}
	for _, address := range []string{"[::1", "127.0.1.5:+443", "127.0.1.5:0"} {
		if _, _, err := driver.SplitAddress(address); err == nil {
			t.Fatalf("SplitAddress(%q) took it", address)
		}
		if got, err := targetIPs(context.Background(), address); err == nil {
			t.Errorf("targetIPs(%q) = %v, want the error SplitAddress gives: the drivers dial no such address", address, got)
		}
	}
}
