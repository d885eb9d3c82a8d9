package ports

import (
	"errors"
	"fmt"
	"math/rand/v2"
)

// ErrExhausted is wrapped by every Assign error where a rule ran out of ports.
var ErrExhausted = errors.New("no free port")

// Probe says whether a port is free. Allocators only call it for ports they
// have not already assigned, in ascending order within each rule.
type Probe interface {
	Free(port int) bool
}

// ProbeFunc adapts a function to Probe.
type ProbeFunc func(port int) bool

// Free calls f.
func (f ProbeFunc) Free(port int) bool { return f(port) }

// Taken is a Probe for which a port is free unless the set holds it: the
// node-level view of "declared by another agent pod".
type Taken map[int]bool

// Free reports whether port is not in the set.
func (t Taken) Free(port int) bool { return !t[port] }

// AllFree is a Probe that sees a port free only when every probe does. It asks
// them in order and stops at the first that says busy, so a cheap probe (Taken)
// placed first spares a costly one (a bind).
func AllFree(probes ...Probe) Probe {
	return ProbeFunc(func(port int) bool {
		for _, p := range probes {
			if !p.Free(port) {
				return false
			}
		}
		return true
	})
}

// Rand is the randomness rule P2 needs; *rand.Rand of math/rand/v2 has it.
// Tests pass rand.New(rand.NewPCG(seed, seed)) for a repeatable choice.
type Rand interface {
	IntN(n int) int
}

// Purpose says what an assigned port is for.
type Purpose string

// Purposes of assigned ports.
const (
	PurposeControl        Purpose = "control"         // rule P1
	PurposeFirmwareServer Purpose = "firmware-server" // rule P2
	PurposeSession        Purpose = "session"         // rule P4
	PurposeIPC            Purpose = "ipc"             // rule P5, single-NIC IPv4
	PurposeReceive        Purpose = "receive"         // rule P5
)

// Direction is the way traffic flows on a port, seen from the node, for the
// firewall plan.
type Direction string

// Directions of assigned ports.
const (
	// Inbound: others connect to this port on the node.
	Inbound Direction = "inbound"
	// Outbound: the node connects from this (source) port to a target.
	Outbound Direction = "outbound"
	// Local: the port only carries traffic inside the node.
	Local Direction = "local"
)

// Entry is one assigned port.
type Entry struct {
	Port    int
	Rule    Rule
	Purpose Purpose
	// Index numbers the ports of one purpose from 0 (the target slot of a
	// session or receive port); 0 for single ports.
	Index int
}

// Direction returns the way traffic flows on the entry's port.
func (e Entry) Direction() Direction {
	switch e.Purpose {
	case PurposeSession:
		return Outbound
	case PurposeIPC:
		return Local
	default:
		return Inbound
	}
}

// Assignment is the set of ports given to one agent, in allocation order (P1,
// P2, P4, P5). It feeds the agent pod's container ports, the job's status and
// the dry-run firewall plan.
type Assignment struct {
	Entries []Entry
}

// Ports returns the assigned ports in allocation order.
func (a Assignment) Ports() []int {
	out := make([]int, len(a.Entries))
	for i, e := range a.Entries {
		out[i] = e.Port
	}
	return out
}

// Check reports an error if a port is given twice or lies outside 1-65535.
func (a Assignment) Check() error {
	seen := make(map[int]Entry, len(a.Entries))
	for _, e := range a.Entries {
		if e.Port < 1 || e.Port > MaxPort {
			return fmt.Errorf("rule %s %s port %d is outside 1-%d", e.Rule, e.Purpose, e.Port, MaxPort)
		}
		if prev, dup := seen[e.Port]; dup {
			return fmt.Errorf("port %d given twice: rule %s %s and rule %s %s", e.Port, prev.Rule, prev.Purpose, e.Rule, e.Purpose)
		}
		seen[e.Port] = e
	}
	return nil
}

// Control returns the rule P1 port (0 if none).
func (a Assignment) Control() int { return a.first(PurposeControl) }

// FirmwareServer returns the rule P2 port (0 if none).
func (a Assignment) FirmwareServer() int { return a.first(PurposeFirmwareServer) }

// IPC returns the rule P5 inter-process port (0 if the single-NIC IPv4 clause
// is off).
func (a Assignment) IPC() int { return a.first(PurposeIPC) }

// Sessions returns the rule P4 ports, one per target slot.
func (a Assignment) Sessions() []int { return a.all(PurposeSession) }

// Receive returns the rule P5 receive ports.
func (a Assignment) Receive() []int { return a.all(PurposeReceive) }

func (a Assignment) first(p Purpose) int {
	for _, e := range a.Entries {
		if e.Purpose == p {
			return e.Port
		}
	}
	return 0
}

func (a Assignment) all(p Purpose) []int {
	var out []int
	for _, e := range a.Entries {
		if e.Purpose == p {
			out = append(out, e.Port)
		}
	}
	return out
}

// Request says how many per-target ports an agent needs.
type Request struct {
	// Sessions is the number of rule P4 outbound session ports: one per target
	// the agent works on at once.
	Sessions int
	// Receive is the number of rule P5 receive ports.
	Receive int
}

// ForTargets is the usual Request: one session and one receive port per target.
func ForTargets(n int) Request { return Request{Sessions: n, Receive: n} }

// Allocator assigns ports by the rules of a Policy, asking Probe which ports
// are free and Rand for rule P2's random choice.
type Allocator struct {
	Policy Policy
	// Probe says which ports are free; nil means every port is.
	Probe Probe
	// Rand is used only by rule P2 with SelectionRandom; nil means the
	// process-wide source of math/rand/v2 (not repeatable).
	Rand Rand
}

// bitset marks the ports of one Assignment, so that rules never hand out the
// same port twice and the per-port check stays O(1) for thousands of targets.
type bitset [(MaxPort + 1 + 63) / 64]uint64

func (b *bitset) has(p int) bool { return b[p>>6]&(1<<(p&63)) != 0 }
func (b *bitset) set(p int)      { b[p>>6] |= 1 << (p & 63) }

type assigner struct {
	probe Probe
	rand  Rand
	used  bitset
	out   Assignment
}

func (s *assigner) free(p int) bool { return !s.used.has(p) && s.probe.Free(p) }

func (s *assigner) add(p int, r Rule, purpose Purpose, index int) {
	s.used.set(p)
	s.out.Entries = append(s.out.Entries, Entry{Port: p, Rule: r, Purpose: purpose, Index: index})
}

// upward returns the first free port at or after from, or 0 if none is left
// below 65536. Ports already in the assignment are skipped: this is what keeps
// rules whose ranges grow into each other (P4 past 61000 with many targets)
// from handing out one port twice.
func (s *assigner) upward(from int) int {
	for p := max(from, 1); p <= MaxPort; p++ {
		if s.free(p) {
			return p
		}
	}
	return 0
}

// Assign assigns an agent's ports in the order P1, P2, P4, P5. Each rule skips
// the ports earlier rules took, so an Assignment never holds a port twice. The
// error names the rule that ran out (and wraps ErrExhausted), or the policy's
// invalid fields.
func (a Allocator) Assign(req Request) (Assignment, error) {
	if err := a.Policy.Validate(); err != nil {
		return Assignment{}, fmt.Errorf("invalid port policy: %w", err)
	}
	if req.Sessions < 0 || req.Receive < 0 {
		return Assignment{}, fmt.Errorf("negative port count: %d sessions, %d receive", req.Sessions, req.Receive)
	}
	r := a.Rand
	if r == nil {
		r = globalRand{}
	}
	probe := a.Probe
	if probe == nil {
		probe = Taken(nil)
	}
	s := &assigner{probe: probe, rand: r}
	s.out.Entries = make([]Entry, 0, 3+req.Sessions+req.Receive) // P1, P2, IPC + per target
	pol := a.Policy

	// rule P1: the control port, else the next free port upward.
	p := s.upward(pol.ControlPort)
	if p == 0 {
		return Assignment{}, fmt.Errorf("rule P1: control port: every port from %d to %d is busy: %w", pol.ControlPort, MaxPort, ErrExhausted)
	}
	s.add(p, RuleP1, PurposeControl, 0)

	// rule P2: the preferred port, else one of the fallback range.
	p, err := s.firmwareServer(pol.FirmwareServer)
	if err != nil {
		return Assignment{}, err
	}
	s.add(p, RuleP2, PurposeFirmwareServer, 0)

	// rule P4: one session port per target, from the base upward; the range
	// grows with the number of targets (no cap at base+7).
	next := pol.SessionBasePort
	for i := range req.Sessions {
		p := s.upward(next)
		if p == 0 {
			return Assignment{}, fmt.Errorf("rule P4: session port %d of %d: every port from %d to %d is busy or assigned: %w", i+1, req.Sessions, next, MaxPort, ErrExhausted)
		}
		s.add(p, RuleP4, PurposeSession, i)
		next = p + 1
	}

	// rule P5: from the reverse base upward. With the single-NIC IPv4 clause
	// the lowest free port is the local inter-process channel and the
	// following free ones receive from targets; without it the guide names
	// no IPC port, so every port receives.
	next = pol.ReverseBasePort
	if pol.SingleNICIPv4 {
		p := s.upward(next)
		if p == 0 {
			return Assignment{}, fmt.Errorf("rule P5: inter-process port: every port from %d to %d is busy or assigned: %w", next, MaxPort, ErrExhausted)
		}
		s.add(p, RuleP5, PurposeIPC, 0)
		next = p + 1
	}
	for i := range req.Receive {
		p := s.upward(next)
		if p == 0 {
			return Assignment{}, fmt.Errorf("rule P5: receive port %d of %d: every port from %d to %d is busy or assigned: %w", i+1, req.Receive, next, MaxPort, ErrExhausted)
		}
		s.add(p, RuleP5, PurposeReceive, i)
		next = p + 1
	}
	return s.out, nil
}

// firmwareServer applies rule P2.
func (s *assigner) firmwareServer(fs FirmwareServer) (int, error) {
	if s.free(fs.PreferredPort) {
		return fs.PreferredPort, nil
	}
	r := fs.FallbackRange
	if fs.Selection == SelectionLowest {
		for p := r.Start; p <= r.End; p++ {
			if s.free(p) {
				return p, nil
			}
		}
	} else {
		// Probe the whole range, then draw once: the choice depends only on
		// which ports are free and on the random source.
		var cand []int
		for p := r.Start; p <= r.End; p++ {
			if s.free(p) {
				cand = append(cand, p)
			}
		}
		if len(cand) > 0 {
			return cand[s.rand.IntN(len(cand))], nil
		}
	}
	return 0, fmt.Errorf("rule P2: firmware server: preferred port %d is busy and so is every port of firmwareServer.fallbackRange %s: %w", fs.PreferredPort, r, ErrExhausted)
}

// AssignForNode assigns the ports of a new agent pod serving targets targets
// on a node where the ports in taken are already declared by other agent pods
// (see TakenFromPods). It is pure: at node level a port is free when no pod
// declares it; the agent still probes when it binds.
func AssignForNode(policy Policy, taken map[int]bool, targets int, r Rand) (Assignment, error) {
	return Allocator{Policy: policy, Probe: Taken(taken), Rand: r}.Assign(ForTargets(targets))
}

type globalRand struct{}

func (globalRand) IntN(n int) int { return rand.IntN(n) }
