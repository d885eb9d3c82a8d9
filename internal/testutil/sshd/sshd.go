// Package sshd starts a real OpenSSH sshd on a loopback port for tests (internal/sshdhost):
// it stands in for a Linux host (the Smart Component runs on this very machine), with a
// generated host key and a generated user key.
package sshd

import (
	"errors"
	"os"
	"testing"

	"github.com/fwops/firmware-operator/internal/sshdhost"
)

// Binary is where Debian's openssh-server installs sshd.
const Binary = sshdhost.Binary

// Server is a running sshd.
type Server = sshdhost.Server

// Start runs sshd for the duration of the test. Without sshd the test is skipped, or fails
// when CI=true, so that CI cannot pass by skipping.
func Start(t testing.TB) *Server {
	t.Helper()
	return StartWith(t)
}

// StartWith is Start with more sshd_config lines (sshdhost.StartWith).
func StartWith(t testing.TB, options ...string) *Server {
	t.Helper()
	if err := sshdhost.Available(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	s, err := sshdhost.StartWith(t.TempDir(), options...)
	if err != nil {
		if errors.Is(err, sshdhost.ErrUnavailable) && os.Getenv("CI") != "true" {
			t.Skip(err)
		}
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}
