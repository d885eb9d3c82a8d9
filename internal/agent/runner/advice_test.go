package runner

import (
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/fwops/firmware-operator/internal/agent/sshconn"
)

// The faults of the chaos suite's matrix, wrapped as the drivers wrap them: before, the
// status said "…: EOF" or "x509: certificate signed by unknown authority" and nothing about
// where to look.
func TestAdviceNamesWhatToCheck(t *testing.T) {
	dial := func(errno syscall.Errno) error {
		return &url.Error{Op: "Post", URL: "https://127.0.1.1/redfish/v1/SessionService/Sessions",
			Err: &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", errno)}}
	}
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"unknown CA", fmt.Errorf("redfish: login: %w", &url.Error{Op: "Post", Err: x509.UnknownAuthorityError{}}), "spec.tls"},
		{"host key", fmt.Errorf("oa: %w: target oa-1 presented …", sshconn.ErrHostKeyMismatch), "known_hosts Secret"},
		{"EOF", fmt.Errorf("redfish: login: %w", &url.Error{Op: "Post", Err: io.EOF}), "closed the connection"},
		{"refused", fmt.Errorf("redfish: login: %w", dial(syscall.ECONNREFUSED)), "nothing listens"},
		{"reset", fmt.Errorf("redfish: login: %w", dial(syscall.ECONNRESET)), "closed the connection"},
		{"other", fmt.Errorf("redfish: login: HTTP 401"), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := advice(tc.err)
			if tc.want == "" && got != "" || !strings.Contains(got, tc.want) {
				t.Errorf("advice(%v) = %q, want it to contain %q", tc.err, got, tc.want)
			}
		})
	}
}
