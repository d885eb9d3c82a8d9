package ports

import (
	"context"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"testing"
)

const loopback = "127.0.0.1"

// freeBlock finds n consecutive free ports on loopback at a random base of at
// least 40000, so tests need no root and do not collide with each other.
func freeBlock(t *testing.T, n int) int {
	t.Helper()
	probe := BindProbe{Address: loopback}
	for range 100 {
		base := 40000 + rand.IntN(20000-n)
		ok := true
		for p := base; p < base+n && ok; p++ {
			ok = probe.Free(p)
		}
		if ok {
			return base
		}
	}
	t.Fatalf("no block of %d free ports above 40000", n)
	return 0
}

// listen holds port on loopback the way any other program would: a plain Go
// listener, which has SO_REUSEADDR set.
func listen(t *testing.T, port int) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(loopback, strconv.Itoa(port)))
	if err != nil {
		t.Fatalf("listen %d: %v", port, err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// highPolicy lays the rules out in a block of 60 ports from base, so real
// sockets can play every conflict without touching port 80 or the defaults.
func highPolicy(base int) Policy {
	p := DefaultPolicy()
	p.ControlPort = base                                                     // P1
	p.FirmwareServer.PreferredPort = base + 20                               // P2
	p.FirmwareServer.FallbackRange = Range{Start: base + 21, End: base + 28} // P2
	p.SessionBasePort = base + 30                                            // P4
	p.ReverseBasePort = base + 40                                            // P5
	return p
}

func TestBindProbe_ListenedPortIsBusy(t *testing.T) {
	port := freeBlock(t, 1)
	l := listen(t, port)
	for _, addr := range []string{loopback, ""} {
		if (BindProbe{Address: addr}).Free(port) {
			t.Fatalf("BindProbe{%q} sees port %d free while a listener (SO_REUSEADDR) holds it", addr, port)
		}
	}
	_ = l.Close()
	if !(BindProbe{Address: loopback}).Free(port) {
		t.Fatalf("port %d still busy after close", port)
	}
}

func TestHold_PreventsASecondBind(t *testing.T) {
	port := freeBlock(t, 1)
	l, err := Hold(context.Background(), loopback, port)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Hold(context.Background(), loopback, port); err == nil {
		t.Fatalf("second Hold of %d succeeded", port)
	}
	if l2, err := net.Listen("tcp", net.JoinHostPort(loopback, strconv.Itoa(port))); err == nil {
		l2.Close()
		t.Fatalf("a plain listener bound held port %d", port)
	}
	if (BindProbe{Address: loopback}).Free(port) {
		t.Fatalf("BindProbe sees held port %d free", port)
	}
	_ = l.Close()
	l, err = Hold(context.Background(), loopback, port)
	if err != nil {
		t.Fatalf("Hold after close: %v", err)
	}
	_ = l.Close()
	if _, err := Hold(context.Background(), loopback, 0); err == nil {
		t.Fatalf("Hold accepted port 0")
	}
}

func TestRealSockets_AllocatorStepsPastHeldPorts(t *testing.T) {
	base := freeBlock(t, 60)
	pol := highPolicy(base)
	alloc := func(t *testing.T, pol Policy, req Request) Assignment {
		t.Helper()
		a, err := Allocator{Policy: pol, Probe: BindProbe{Address: loopback}, Rand: seeded(1)}.Assign(req)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	t.Run("P1/control port and the next held, steps to the third", func(t *testing.T) {
		listen(t, base)
		listen(t, base+1)
		if got := alloc(t, pol, Request{}).Control(); got != base+2 {
			t.Fatalf("control = %d, want %d", got, base+2)
		}
	})
	t.Run("P2/preferred held, lands in the fallback range", func(t *testing.T) {
		listen(t, base+20)
		got := alloc(t, pol, Request{}).FirmwareServer()
		if !pol.FirmwareServer.FallbackRange.Contains(got) {
			t.Fatalf("firmware server = %d, want in %s", got, pol.FirmwareServer.FallbackRange)
		}
		for p := base + 21; p <= base+27; p++ {
			listen(t, p)
		}
		if got := alloc(t, pol, Request{}).FirmwareServer(); got != base+28 {
			t.Fatalf("firmware server = %d, want the only free %d", got, base+28)
		}
		listen(t, base+28)
		if _, err := (Allocator{Policy: pol, Probe: BindProbe{Address: loopback}, Rand: seeded(1)}).Assign(Request{}); err == nil {
			t.Fatalf("whole range held, no error")
		}
	})
	t.Run("P4/a held session port is skipped", func(t *testing.T) {
		listen(t, base+31)
		if got := alloc(t, pol, ForTargets(3)).Sessions(); !slices.Equal(got, []int{base + 30, base + 32, base + 33}) {
			t.Fatalf("sessions = %v", got)
		}
	})
	t.Run("P5/lowest held, IPC and receive move up", func(t *testing.T) {
		listen(t, base+40)
		a := alloc(t, pol, ForTargets(2))
		if a.IPC() != base+41 || !slices.Equal(a.Receive(), []int{base + 42, base + 43}) {
			t.Fatalf("IPC %d receive %v", a.IPC(), a.Receive())
		}
	})
}

func TestAssignHeld_HoldsItsPortsAndOnlyThem(t *testing.T) {
	base := freeBlock(t, 60)
	pol := highPolicy(base)
	listen(t, base+20) // rule P2: the preferred port is busy, so the whole range is probed
	h, err := Allocator{Policy: pol, Rand: seeded(7)}.AssignHeld(context.Background(), loopback, ForTargets(2))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if err := h.Check(); err != nil {
		t.Fatal(err)
	}
	ports := h.Ports()
	held := slices.Clone(ports)
	slices.Sort(held)
	if !slices.Equal(h.Held(), held) {
		t.Fatalf("held %v, assigned %v", h.Held(), ports)
	}
	probe := BindProbe{Address: loopback}
	for _, p := range ports {
		if probe.Free(p) {
			t.Fatalf("assigned port %d not held", p)
		}
	}
	fs := h.FirmwareServer()
	for p := base + 21; p <= base+28; p++ {
		if p != fs && !probe.Free(p) {
			t.Fatalf("fallback port %d probed but not released", p)
		}
	}
	// The agent takes a listener over and serves on it.
	l := h.Take(h.Control())
	if l == nil {
		t.Fatal("Take(control) = nil")
	}
	go func() {
		if c, err := l.Accept(); err == nil {
			c.Close()
		}
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatalf("dial taken listener: %v", err)
	}
	c.Close()
	l.Close()
	// rule P4: release a session port, then dial from it.
	sp := h.Sessions()[0]
	if err := h.Release(sp); err != nil {
		t.Fatal(err)
	}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(loopback), Port: sp}}
	srv := listen(t, base+59)
	c, err = d.Dial("tcp", srv.Addr().String())
	if err != nil {
		t.Fatalf("dial from released session port %d: %v", sp, err)
	}
	if got := c.LocalAddr().(*net.TCPAddr).Port; got != sp {
		t.Fatalf("source port %d, want %d", got, sp)
	}
	c.Close()
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if len(h.Held()) != 0 {
		t.Fatalf("still held after Close: %v", h.Held())
	}
	for _, p := range []int{h.FirmwareServer(), h.IPC()} {
		if !probe.Free(p) {
			t.Fatalf("port %d busy after Close", p)
		}
	}
}

func TestAssignHeld_RespectsProbeAndReleasesOnError(t *testing.T) {
	base := freeBlock(t, 60)
	pol := highPolicy(base)
	// rule P1 at node level: the controller says base is another pod's.
	h, err := Allocator{Policy: pol, Probe: Taken{base: true}, Rand: seeded(1)}.AssignHeld(context.Background(), loopback, Request{})
	if err != nil {
		t.Fatal(err)
	}
	if h.Control() != base+1 {
		t.Fatalf("control %d, want %d", h.Control(), base+1)
	}
	h.Close()

	// rule P2 exhausted: nothing stays held.
	for p := base + 20; p <= base+28; p++ {
		listen(t, p)
	}
	if _, err := (Allocator{Policy: pol, Rand: seeded(1)}).AssignHeld(context.Background(), loopback, Request{}); err == nil {
		t.Fatal("no error with the whole P2 range held")
	}
	if !(BindProbe{Address: loopback}).Free(base) {
		t.Fatalf("control port %d still held after a failed AssignHeld", base)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := (Allocator{Policy: pol, Rand: seeded(1)}).AssignHeld(ctx, loopback, Request{}); err == nil {
		t.Fatal("no error with a cancelled context")
	}
}
