//go:build unix

package redfish

import "syscall"

// reuseAddr sets SO_REUSEADDR before bind, so that a bound source port (rule P4) can be reused
// while an earlier connection from it sits in TIME_WAIT.
func reuseAddr(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
	})
	if err != nil {
		return err
	}
	return serr
}
