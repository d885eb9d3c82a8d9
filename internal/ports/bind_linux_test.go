//go:build linux && (amd64 || arm64 || 386 || arm || riscv64 || ppc64le || s390x || loong64)

package ports

import (
	"context"
	"net"
	"strconv"
	"syscall"
	"testing"
)

func TestBindProbe_ReusePortListenerIsBusy(t *testing.T) {
	port := freeBlock(t, 1)
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, soReusePort, 1)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	l, err := lc.Listen(context.Background(), "tcp", net.JoinHostPort(loopback, strconv.Itoa(port)))
	if err != nil {
		t.Skipf("SO_REUSEPORT listener: %v", err)
	}
	defer l.Close()
	if (BindProbe{Address: loopback}).Free(port) {
		t.Fatalf("port %d seen free while an SO_REUSEPORT listener holds it", port)
	}
}

// soReusePort is SO_REUSEPORT on these Linux architectures; package syscall
// does not export it.
const soReusePort = 0xf

// A port in TIME_WAIT after its listener closed is bindable with Go's default
// SO_REUSEADDR, but Hold (which clears it) sees it busy: proof that the option
// really is cleared, and the documented meaning of "free".
func TestBindProbe_TimeWaitIsBusy(t *testing.T) {
	port := freeBlock(t, 1)
	addr := net.JoinHostPort(loopback, strconv.Itoa(port))
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if c, err := l.Accept(); err == nil {
			c.Close() // the server closes first: its side enters TIME_WAIT
		}
	}()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	<-done
	buf := make([]byte, 1)
	_, _ = c.Read(buf) // wait for the server's FIN
	c.Close()
	l.Close()

	if (BindProbe{Address: loopback}).Free(port) {
		t.Fatalf("port %d in TIME_WAIT seen free", port)
	}
	// A server port may serve again at once: TIME_WAIT holds no listener.
	server, err := HoldListener(context.Background(), loopback, port)
	if err != nil {
		t.Fatalf("HoldListener on port %d in TIME_WAIT: %v", port, err)
	}
	if _, err := HoldListener(context.Background(), loopback, port); err == nil {
		t.Fatalf("HoldListener took port %d while another listener holds it", port)
	}
	server.Close()
	l2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("no TIME_WAIT to compare against (plain listen failed too): %v", err)
	}
	l2.Close()
}
