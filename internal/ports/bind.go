package ports

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
)

// BindProbe is the real Probe on a node: a port is free when a TCP listener
// can be bound to Address:port. Address "" means every address of the node,
// which is what a hostNetwork agent listening on all interfaces needs.
type BindProbe struct {
	Address string
}

// Free binds Address:port and closes the listener at once. A listener that
// never accepted leaves no TIME_WAIT behind, so the port stays usable.
func (b BindProbe) Free(port int) bool {
	l, err := Hold(context.Background(), b.Address, port)
	if err != nil {
		return false
	}
	_ = l.Close()
	return true
}

// Hold binds a TCP listener on address:port and returns it open, so that no
// other process can take the port between the decision and its use.
//
// SO_REUSEADDR, which Go sets on every listener, is cleared: a port is free
// only if nothing at all is bound to it, including a socket lingering in
// TIME_WAIT. SO_REUSEPORT is never set, so a listener that set it is also
// seen busy. Any bind error (in use, or permission denied for port 80 without
// NET_BIND_SERVICE) means the port is not ours.
func Hold(ctx context.Context, address string, port int) (net.Listener, error) {
	if port < 1 || port > MaxPort {
		return nil, fmt.Errorf("port %d is outside 1-%d", port, MaxPort)
	}
	lc := net.ListenConfig{Control: noReuseAddr}
	return lc.Listen(ctx, "tcp", net.JoinHostPort(address, strconv.Itoa(port)))
}

// HoldListener binds a TCP listener for a server port (rules P1, P2, P5) and returns it
// open. Unlike Hold it keeps the SO_REUSEADDR that Go sets: an earlier server's connection
// lingering in TIME_WAIT does not make the port busy, or an agent that restarts (or follows
// another on the node) within a minute of serving would find the whole P2 fallback range
// busy. A port that another socket listens on is still busy (Linux refuses the bind). Source
// ports (P4) keep Hold: a new connection from a port in TIME_WAIT to the same target fails.
func HoldListener(ctx context.Context, address string, port int) (net.Listener, error) {
	if port < 1 || port > MaxPort {
		return nil, fmt.Errorf("port %d is outside 1-%d", port, MaxPort)
	}
	var lc net.ListenConfig
	return lc.Listen(ctx, "tcp", net.JoinHostPort(address, strconv.Itoa(port)))
}

// HeldAssignment is an Assignment whose ports are held by open listeners
// until the agent takes them over (Take), lets them go one by one (Release),
// or closes them all (Close). It is safe for concurrent use.
type HeldAssignment struct {
	Assignment

	mu        sync.Mutex
	listeners map[int]net.Listener
}

// Take hands over the listener of port (nil if the port is not held): the
// caller now owns it, e.g. to serve the control or firmware server on it.
func (h *HeldAssignment) Take(port int) net.Listener {
	h.mu.Lock()
	defer h.mu.Unlock()
	l := h.listeners[port]
	delete(h.listeners, port)
	return l
}

// Release closes the listener of port. A rule P4 session port is a source
// port, not a listening one: the agent releases it just before it dials from
// it (net.Dialer.LocalAddr).
func (h *HeldAssignment) Release(port int) error {
	if l := h.Take(port); l != nil {
		return l.Close()
	}
	return nil
}

// Held returns the ports still held, ascending.
func (h *HeldAssignment) Held() []int {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]int, 0, len(h.listeners))
	for p := range h.listeners {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// Close closes every listener still held.
func (h *HeldAssignment) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	var errs []error
	for p, l := range h.listeners {
		errs = append(errs, l.Close())
		delete(h.listeners, p)
	}
	return errors.Join(errs...)
}

// holdProbe is a Probe that keeps the listener of every port it finds free.
type holdProbe struct {
	ctx     context.Context
	address string
	held    map[int]net.Listener
}

func (h *holdProbe) Free(port int) bool {
	l, err := Hold(h.ctx, h.address, port)
	if err != nil {
		return false
	}
	h.held[port] = l
	return true
}

// AssignHeld assigns ports like Assign, finding free ports by binding them on
// address (as BindProbe does) after a.Probe, if set, agrees (e.g. the ports
// the controller assigned, or Taken). Every port of the result is held by an
// open listener; ports bound while looking (rule P2's random draw probes the
// whole fallback range) are closed again. On error nothing stays held.
func (a Allocator) AssignHeld(ctx context.Context, address string, req Request) (*HeldAssignment, error) {
	hp := &holdProbe{ctx: ctx, address: address, held: map[int]net.Listener{}}
	closeAll := func(keep map[int]bool) {
		for p, l := range hp.held {
			if !keep[p] {
				_ = l.Close()
				delete(hp.held, p)
			}
		}
	}
	b := a
	b.Probe = hp
	if a.Probe != nil {
		b.Probe = AllFree(a.Probe, hp) // the cheap check first: no bind for a taken port
	}
	asg, err := b.Assign(req)
	if err == nil {
		err = ctx.Err() // a cancelled context makes every bind fail: say so
	}
	if err != nil {
		closeAll(nil)
		return nil, err
	}
	keep := make(map[int]bool, len(asg.Entries))
	for _, p := range asg.Ports() {
		keep[p] = true
	}
	closeAll(keep)
	return &HeldAssignment{Assignment: asg, listeners: hp.held}, nil
}
