//go:build unix

package ports

import "syscall"

// noReuseAddr clears the SO_REUSEADDR that Go sets on listeners before bind,
// so that "free" means nothing is bound to the port at all.
func noReuseAddr(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 0)
	})
	if err != nil {
		return err
	}
	return serr
}

// ReuseAddr sets SO_REUSEADDR before bind, for dialers from rule P4's fixed source port: the
// bind must not be refused while an earlier socket on the port lingers.
func ReuseAddr(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
	})
	if err != nil {
		return err
	}
	return serr
}
