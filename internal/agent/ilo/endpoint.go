package ilo

import (
	"net"
	"strconv"
	"strings"

	"github.com/fwops/firmware-operator/internal/agent/driver"
)

// endpoint is the Redfish endpoint (host, or host:port) of spec.address, read by the one
// address parser (driver.SplitAddress), so that the iLO driver talks to the machine the SSH
// drivers, the agent's routing and its event filter mean: a bare IPv6 address, which
// "https://"+address would read as a host and a port, is put in brackets.
func endpoint(address string) (string, error) {
	host, port, err := driver.SplitAddress(address)
	if err != nil {
		return "", err
	}
	if port == 0 {
		if strings.Contains(host, ":") {
			return "[" + host + "]", nil
		}
		return host, nil
	}
	return net.JoinHostPort(host, strconv.Itoa(port)), nil
}
