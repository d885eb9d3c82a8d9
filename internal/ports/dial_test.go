package ports

import (
	"context"
	"errors"
	"net"
	"syscall"
	"testing"
	"time"
)

// holdTuple connects from 127.0.0.1:port to the listener and keeps the connection open, so
// that a second connection with the same 4-tuple is refused with EADDRNOTAVAIL (rule P4: one
// source port per target).
func holdTuple(t *testing.T, port int, to net.Addr) *net.TCPConn {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}, Control: ReuseAddr}
	c, err := d.Dial("tcp", to.String())
	if err != nil {
		t.Fatal(err)
	}
	return c.(*net.TCPConn)
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// rule P4: every connection to a target leaves from one source port, so a redial meets its
// own earlier 4-tuple.
func TestP4_DialWaitsForABusyTuple(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	port := freePort(t)
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}, Control: ReuseAddr}

	held := holdTuple(t, port, l.Addr())
	if _, err := d.Dial("tcp", l.Addr().String()); !errors.Is(err, syscall.EADDRNOTAVAIL) {
		t.Fatalf("a plain dial of a taken 4-tuple: err = %v, want EADDRNOTAVAIL (the case this guards)", err)
	}

	// Freed while the dial waits: it connects.
	released := make(chan struct{})
	go func() {
		defer close(released)
		time.Sleep(300 * time.Millisecond)
		_ = held.SetLinger(0)
		held.Close()
	}()
	c, err := DialWhileTupleBusy(context.Background(), d, "tcp", l.Addr().String(), time.Minute)
	<-released
	if err != nil {
		t.Fatalf("dial after the 4-tuple came free: %v", err)
	}
	_ = c.(*net.TCPConn).SetLinger(0) // no TIME_WAIT: the tuple is held again below
	c.Close()

	// Never freed: it gives up at the bound, saying why.
	held = holdTuple(t, port, l.Addr())
	defer held.Close()
	_, err = DialWhileTupleBusy(context.Background(), d, "tcp", l.Addr().String(), 500*time.Millisecond)
	if !errors.Is(err, syscall.EADDRNOTAVAIL) {
		t.Fatalf("dial of a tuple that stays taken: err = %v, want EADDRNOTAVAIL", err)
	}
	t.Log(err)

	// A local address that is not this machine's fails at once: waiting would not mend it.
	bad := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: port}, Control: ReuseAddr}
	start := time.Now()
	if _, err := DialWhileTupleBusy(context.Background(), bad, "tcp", l.Addr().String(), time.Minute); !errors.Is(err, syscall.EADDRNOTAVAIL) {
		t.Fatalf("dial from a foreign address: err = %v, want EADDRNOTAVAIL from bind", err)
	} else if time.Since(start) > 10*time.Second {
		t.Fatalf("dial from a foreign address waited %s", time.Since(start))
	}

	// The context ends the wait.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := DialWhileTupleBusy(ctx, d, "tcp", l.Addr().String(), time.Minute); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("dial under an ended context: err = %v, want the deadline", err)
	}
}
