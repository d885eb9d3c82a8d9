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
