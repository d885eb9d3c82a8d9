//go:build !unix

package sshconn

import "syscall"

// reuseAddr is a no-op where SO_REUSEADDR has other semantics.
func reuseAddr(_, _ string, _ syscall.RawConn) error { return nil }
