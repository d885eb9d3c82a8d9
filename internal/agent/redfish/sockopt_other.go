//go:build !unix

package redfish

import "syscall"

// reuseAddr is a no-op where SO_REUSEADDR semantics differ.
func reuseAddr(_, _ string, _ syscall.RawConn) error { return nil }
