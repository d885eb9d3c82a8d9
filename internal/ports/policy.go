package ports

import (
	"errors"
	"fmt"
)

// MaxPort is the highest TCP port number.
const MaxPort = 65535

// Rule is the id of a rule of ports.md, cited in code, tests, status and docs.
type Rule string

// The rules of ports.md.
const (
	RuleP1 Rule = "P1" // control port
	RuleP2 Rule = "P2" // firmware server
	RuleP3 Rule = "P3" // SSH to Linux targets
	RuleP4 Rule = "P4" // outbound session ports
	RuleP5 Rule = "P5" // reverse ports (IPC and receive)
)

// Selection says how rule P2 picks a port in its fallback range.
type Selection string

const (
	// SelectionRandom picks a free port of the fallback range at random, as
	// the guide says HP SUM does.
	SelectionRandom Selection = "Random"
	// SelectionLowest picks the lowest free port of the fallback range, which
	// makes the port predictable.
	SelectionLowest Selection = "Lowest"
)

// Range is an inclusive range of ports.
type Range struct {
	Start int
	End   int
}

// Contains reports whether port lies in the range.
func (r Range) Contains(port int) bool { return port >= r.Start && port <= r.End }

// String formats the range as "63000-63007".
func (r Range) String() string { return fmt.Sprintf("%d-%d", r.Start, r.End) }

// FirmwareServer is rule P2's part of a Policy.
type FirmwareServer struct {
	// PreferredPort is tried first (default 80).
	PreferredPort int
	// FallbackRange is used when PreferredPort is busy (default 63000-63007).
	FallbackRange Range
	// Selection picks inside FallbackRange (default Random).
	Selection Selection
}

// Policy holds the values of a PortPolicy's spec, as plain ints. The API
// type's pointers and defaults are resolved by the converter before it gets
// here: a Policy is always complete.
type Policy struct {
	// ControlPort is rule P1's first port (default 62286).
	ControlPort int
	// FirmwareServer is rule P2.
	FirmwareServer FirmwareServer
	// SSHPort is rule P3's default SSH port of Linux targets (default 22).
	SSHPort int
	// SessionBasePort is rule P4's first port (default 60000).
	SessionBasePort int
	// ReverseBasePort is rule P5's first port (default 61000).
	ReverseBasePort int
	// SingleNICIPv4 applies rule P5's single-NIC IPv4 clause: the lowest
	// reverse port becomes the local inter-process channel (default true).
	SingleNICIPv4 bool
}

// DefaultPolicy returns the defaults of ports.md. It is the only place outside
// tests and docs where those numbers appear.
func DefaultPolicy() Policy {
	return Policy{
		ControlPort: 62286, // rule P1
		FirmwareServer: FirmwareServer{ // rule P2
			PreferredPort: 80,
			// The guide's heading (63000-63007), not its text (63000-63005):
			// see docs/ports.md. A policy may narrow it.
			FallbackRange: Range{Start: 63000, End: 63007},
			Selection:     SelectionRandom,
		},
		SSHPort:         22,    // rule P3
		SessionBasePort: 60000, // rule P4
		ReverseBasePort: 61000, // rule P5
		SingleNICIPv4:   true,  // rule P5
	}
}

// FieldError is a Validate error about one field of a Policy, named by its
// JSON path in the PortPolicy spec (e.g. "firmwareServer.fallbackRange").
type FieldError struct {
	Field  string
	Detail string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Detail }

// Validate checks that every port is in 1-65535, that the fallback range is
// ordered, that the preferred port is outside it, and that the selection is
// known. It returns every problem found, joined; each is a *FieldError.
func (p Policy) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Detail: fmt.Sprintf(format, args...)})
	}
	port := func(field string, v int) {
		if v < 1 || v > MaxPort {
			bad(field, "port %d is outside 1-%d", v, MaxPort)
		}
	}
	port("controlPort", p.ControlPort)
	port("firmwareServer.preferredPort", p.FirmwareServer.PreferredPort)
	r := p.FirmwareServer.FallbackRange
	port("firmwareServer.fallbackRange.start", r.Start)
	port("firmwareServer.fallbackRange.end", r.End)
	if r.Start > r.End {
		bad("firmwareServer.fallbackRange", "start %d is after end %d", r.Start, r.End)
	} else if r.Contains(p.FirmwareServer.PreferredPort) {
		// The fallback is for when the preferred port is busy: inside the
		// range it would be tried twice and the range would shrink by one.
		bad("firmwareServer.preferredPort", "port %d is inside fallbackRange %s", p.FirmwareServer.PreferredPort, r)
	}
	switch p.FirmwareServer.Selection {
	case SelectionRandom, SelectionLowest:
	default:
		bad("firmwareServer.selection", "%q is neither %q nor %q", p.FirmwareServer.Selection, SelectionRandom, SelectionLowest)
	}
	port("sshPort", p.SSHPort)
	port("sessionBasePort", p.SessionBasePort)
	port("reverseBasePort", p.ReverseBasePort)
	return errors.Join(errs...)
}

// SSHPortFor returns the SSH port of a Linux target (rule P3): the target's
// own port when it sets one (override > 0), else the policy's.
func (p Policy) SSHPortFor(override int) int {
	if override > 0 {
		return override
	}
	return p.SSHPort
}
