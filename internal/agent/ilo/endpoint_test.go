package ilo

import (
	"net/url"
	"strconv"
	"testing"

	"github.com/fwops/firmware-operator/internal/agent/driver"
)

// The Redfish client dials the machine spec.address names, as read by the one address parser:
// the host SplitAddress gives, and its port, or HTTPS's default when there is none.
func TestEndpointIsTheAddressTheOtherDriversMean(t *testing.T) {
	for _, address := range []string{"ilo-r12.example.net", "10.0.0.5:8443", "127.0.1.5", "fd00::5", "[fd00::5]", "[fd00::5]:8443", " 10.0.0.5 "} {
		host, port, err := driver.SplitAddress(address)
		if err != nil {
			t.Fatalf("SplitAddress(%q): %v", address, err)
		}
		wantPort := ""
		if port != 0 {
			wantPort = strconv.Itoa(port)
		}
		ep, err := endpoint(address)
		if err != nil {
			t.Errorf("endpoint(%q): %v", address, err)
			continue
		}
		// What the Redfish client makes of it: redfish.New puts the scheme in front.
		u, err := url.Parse("https://" + ep)
		if err != nil {
			t.Errorf("endpoint(%q) = %q, which the client cannot read: %v", address, ep, err)
			continue
		}
		if u.Hostname() != host || u.Port() != wantPort {
			t.Errorf("endpoint(%q) = %q: the client would dial host %q port %q, want host %q port %q", address, ep, u.Hostname(), u.Port(), host, wantPort)
		}
	}
	if ep, err := endpoint("[fd00::5"); err == nil {
		t.Errorf("endpoint(%q) = %q, want the error SplitAddress gives", "[fd00::5", ep)
	}
}
