//go:build !unix

package ports

import "syscall"

// noReuseAddr does nothing where Go does not set SO_REUSEADDR (Windows).
func noReuseAddr(_, _ string, _ syscall.RawConn) error { return nil }

// ReuseAddr does nothing where SO_REUSEADDR means something else (Windows).
func ReuseAddr(_, _ string, _ syscall.RawConn) error { return nil }
