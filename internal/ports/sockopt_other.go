//go:build !unix

package ports

import "syscall"

// noReuseAddr does nothing where Go does not set SO_REUSEADDR (Windows).
func noReuseAddr(_, _ string, _ syscall.RawConn) error { return nil }
