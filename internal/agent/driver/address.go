package driver

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// SplitAddress is the one parser of an UpdateTarget's spec.address: it accepts "host",
// "host:port", "ip", "[v6]" and "[v6]:port"; port is 0 when absent. The SSH drivers dial what
// it returns and the runner routes toward its host, so both always mean the same machine.
func SplitAddress(a string) (host string, port int, err error) {
	a = strings.TrimSpace(a)
	if a == "" {
		return "", 0, errors.New("empty address")
	}
	if ip := net.ParseIP(a); ip != nil { // bare IPv6 has colons but no port
		return a, 0, nil
	}
	if strings.HasPrefix(a, "[") && strings.HasSuffix(a, "]") {
		host = a[1 : len(a)-1]
	} else if !strings.Contains(a, ":") {
		host = a
	} else {
		h, p, err := net.SplitHostPort(a)
		if err != nil {
			return "", 0, fmt.Errorf("address %q: %w", a, err)
		}
		// Digits only: Atoi also takes "+22", and port 0 would silently mean "the default".
		n, err := strconv.Atoi(p)
		if err != nil || strings.Trim(p, "0123456789") != "" || n < 1 {
			return "", 0, fmt.Errorf("address %q: bad port %q", a, p)
		}
		host, port = h, n
	}
	// An empty host dials the node itself (":22"), not a target; a stray bracket ("[") makes
	// an address nothing can dial.
	switch {
	case strings.TrimSpace(host) == "":
		return "", 0, fmt.Errorf("address %q: no host", a)
	case strings.ContainsAny(host, "[] \t\r\n"):
		return "", 0, fmt.Errorf("address %q: bad host %q", a, host)
	}
	return host, port, nil
}
