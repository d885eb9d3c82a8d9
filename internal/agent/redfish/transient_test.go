package redfish

import (
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
)

func TestUnavailable(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{fmt.Errorf("GET /x: %w", io.EOF), true},
		{&net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, true},
		{fmt.Errorf("read: %w", syscall.ECONNRESET), true},
		{&Error{StatusCode: 503}, true},
		{&Error{StatusCode: 401, MessageID: "Base.1.4.NoValidSession"}, false},
		{&Error{StatusCode: 404}, false},
		{fmt.Errorf("tls: %w", ErrFingerprintMismatch), false},
		{errors.New("something else"), false},
	} {
		if got := Unavailable(tc.err); got != tc.want {
			t.Errorf("Unavailable(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
