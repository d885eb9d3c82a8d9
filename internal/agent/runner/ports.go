package runner

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"

	"github.com/fwops/firmware-operator/internal/agent/config"
	"github.com/fwops/firmware-operator/internal/agent/control"
	"github.com/fwops/firmware-operator/internal/ports"
)

// Bound are the ports the agent really bound. They may differ from the assigned ones when a
// process outside Kubernetes held one (ports.md, "Across the cluster").
type Bound struct {
	Control  int // rule P1
	Firmware int // rule P2
	IPC      int // rule P5, 0 when the single-NIC clause is off
	Reverse  []int
	// Sessions are the rule P4 source ports, one per slot.
	Sessions []int
}

// session is the source port of a slot's targets; 0 lets the kernel pick.
func (b Bound) session(slot int) int {
	if slot < 0 || slot >= len(b.Sessions) {
		return 0
	}
	return b.Sessions[slot]
}

// List returns the bound ports in the order of the rules, for /status.
func (b Bound) List() []control.BoundPort {
	out := []control.BoundPort{
		{Rule: string(ports.RuleP1), Name: "control", Port: b.Control},
		{Rule: string(ports.RuleP2), Name: "firmware", Port: b.Firmware},
	}
	for slot, p := range b.Sessions {
		out = append(out, control.BoundPort{Rule: string(ports.RuleP4), Name: "session/" + strconv.Itoa(slot), Port: p})
	}
	if b.IPC != 0 {
		out = append(out, control.BoundPort{Rule: string(ports.RuleP5), Name: "ipc", Port: b.IPC})
	}
	for _, p := range b.Reverse {
		out = append(out, control.BoundPort{Rule: string(ports.RuleP5), Name: "reverse", Port: p})
	}
	return out
}

// held is the set of listeners the agent holds, so that nothing can take a port between the
// decision and its use. Safe for concurrent use.
type held struct {
	mu sync.Mutex
	ls map[int]net.Listener
}

// take hands over the listener of port; the caller owns it.
func (h *held) take(port int) net.Listener {
	h.mu.Lock()
	defer h.mu.Unlock()
	l := h.ls[port]
	delete(h.ls, port)
	return l
}

// release closes the listener of port. A rule P4 port is a source port: it is released just
// before the driver dials from it.
func (h *held) release(port int) {
	if l := h.take(port); l != nil {
		_ = l.Close()
	}
}

func (h *held) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for p, l := range h.ls {
		_ = l.Close()
		delete(h.ls, p)
	}
}

// binder binds the assigned ports of a Config, stepping as the rules say on conflict. Ports
// assigned to another purpose are never taken while stepping: the agent binds them next.
//
// It does not use ports.Allocator: the controller already chose the ports (the P2 port may lie
// inside the fallback range, P4 ports are per target and need not be contiguous), and the
// agent only has to honour each choice or step from it.
type binder struct {
	ctx      context.Context
	address  string
	reserved map[int]bool
	h        *held
	rand     func(n int) int
	// source is set while binding P4 session ports, which are source ports of outbound
	// connections: a port in TIME_WAIT is busy for them, not for listeners.
	source bool
}

func (b *binder) hold(addr string, port int) bool {
	if port < 1 || port > ports.MaxPort || b.reserved[port] {
		return false
	}
	if _, ok := b.h.ls[port]; ok {
		return false
	}
	hold := ports.HoldListener
	if b.source {
		hold = ports.Hold
	}
	l, err := hold(b.ctx, addr, port)
	if err != nil {
		return false
	}
	b.h.ls[port] = l
	return true
}

// upward binds the first free port from `from` to `limit` (inclusive).
func (b *binder) upward(addr string, from, limit int) int {
	for p := max(from, 1); p <= limit; p++ {
		if b.hold(addr, p) {
			return p
		}
	}
	return 0
}

// bindPorts binds every port of cfg and returns what was bound. On error nothing stays held.
func bindPorts(ctx context.Context, cfg config.Config, rnd func(int) int) (Bound, *held, error) {
	def := ports.DefaultPolicy()
	p := cfg.Ports
	if p.Control == 0 {
		p.Control = def.ControlPort
	}
	if p.FirmwareServer == 0 {
		p.FirmwareServer = def.FirmwareServer.PreferredPort
	}
	if p.FirmwareFallback == [2]int{} {
		p.FirmwareFallback = [2]int{def.FirmwareServer.FallbackRange.Start, def.FirmwareServer.FallbackRange.End}
	}
	if rnd == nil {
		rnd = rand.IntN
	}
	b := &binder{ctx: ctx, address: cfg.Address, reserved: map[int]bool{}, h: &held{ls: map[int]net.Listener{}}, rand: rnd}
	// Every assigned port is reserved for its own purpose.
	reserve := func(ps ...int) {
		for _, x := range ps {
			if x > 0 {
				b.reserved[x] = true
			}
		}
	}
	reserve(p.Control, p.FirmwareServer, p.IPC)
	reserve(p.Reverse...)
	reserve(p.Sessions...)
	own := func(port int) func() { // lets a purpose bind its own assigned port
		return func() { delete(b.reserved, port) }
	}
	fail := func(err error) (Bound, *held, error) {
		b.h.close()
		return Bound{}, nil, err
	}
	var out Bound

	// rule P1: the assigned control port, else the next free one upward.
	limit := ports.MaxPort
	if p.ControlSearchLimit > 0 {
		limit = min(p.Control+p.ControlSearchLimit, ports.MaxPort)
	}
	own(p.Control)()
	if out.Control = b.upward(b.address, p.Control, limit); out.Control == 0 {
		return fail(fmt.Errorf("rule P1: control port: every port from %d to %d is busy", p.Control, limit))
	}

	// rule P2: the assigned port, else one of the fallback range (random or lowest).
	own(p.FirmwareServer)()
	if b.hold(b.address, p.FirmwareServer) {
		out.Firmware = p.FirmwareServer
	} else {
		var cand []int
		for q := p.FirmwareFallback[0]; q <= p.FirmwareFallback[1]; q++ {
			if b.hold(b.address, q) {
				cand = append(cand, q)
				if p.FirmwareSelection == string(ports.SelectionLowest) {
					break
				}
			}
		}
		if len(cand) == 0 {
			return fail(fmt.Errorf("rule P2: firmware server: port %d is busy and so is every port of the fallback range %d-%d",
				p.FirmwareServer, p.FirmwareFallback[0], p.FirmwareFallback[1]))
		}
		out.Firmware = cand[b.rand(len(cand))]
		for _, q := range cand { // the draw probed the whole range: let the others go
			if q != out.Firmware {
				b.h.release(q)
			}
		}
	}

	// rule P4: each slot's session port, else the next free one upward (no cap).
	b.source = true
	for slot, sp := range p.Sessions {
		own(sp)()
		q := b.upward(b.address, sp, ports.MaxPort)
		if q == 0 {
			return fail(fmt.Errorf("rule P4: session port of slot %d: every port from %d is busy", slot, sp))
		}
		out.Sessions = append(out.Sessions, q)
	}

	b.source = false
	// rule P5: the inter-process channel, local to the node, then the receive ports.
	if p.IPC != 0 {
		own(p.IPC)()
		if out.IPC = b.upward(ipcAddress(cfg.Address), p.IPC, ports.MaxPort); out.IPC == 0 {
			return fail(fmt.Errorf("rule P5: inter-process port: every port from %d is busy", p.IPC))
		}
	}
	for _, r := range p.Reverse {
		own(r)()
		q := b.upward(b.address, r, ports.MaxPort)
		if q == 0 {
			return fail(fmt.Errorf("rule P5: receive port: every port from %d is busy", r))
		}
		out.Reverse = append(out.Reverse, q)
	}
	if err := ctx.Err(); err != nil {
		return fail(errors.Join(errors.New("binding ports"), err))
	}
	return out, b.h, nil
}

// ipcAddress is where the inter-process channel (rule P5) listens: the node's loopback,
// 127.0.0.1, unless the agent's own address is itself a loopback address. That happens when
// simulated nodes share one machine (tests, the demo), each on its own 127.0.0.x: there
// 127.0.0.x is that node's local address, and agents of two nodes must not contend for
// 127.0.0.1 where real nodes never would.
func ipcAddress(address string) string {
	if ip := net.ParseIP(address); ip != nil && ip.IsLoopback() {
		return ip.String()
	}
	return "127.0.0.1"
}
