package ports

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"
)

// TupleBusyWait bounds how long a dial from a bound source port waits for its 4-tuple to come
// free: a minute of TIME_WAIT, or an idle connection of an earlier client to the same target
// (IdleConnTimeout), with room to spare.
const TupleBusyWait = 100 * time.Second

// DialWhileTupleBusy dials, and while the kernel answers EADDRNOTAVAIL, waits and dials again.
// With a fixed source port (rule P4) that answer means the 4-tuple is still taken: by a
// connection of ours that has not closed yet, or one whose TIME_WAIT the reset on close did not
// avoid (the peer closed first, or the close raced a request). It passes within a minute; the
// target is not at fault and failing it would count against the job's budget.
func DialWhileTupleBusy(ctx context.Context, d *net.Dialer, network, address string, bound time.Duration) (net.Conn, error) {
	deadline := time.Now().Add(bound)
	wait := 100 * time.Millisecond
	for {
		c, err := d.DialContext(ctx, network, address)
		if err == nil || !tupleTaken(err) {
			return c, err
		}
		if !time.Now().Add(wait).Before(deadline) {
			return nil, fmt.Errorf("%w (the connection from %s to %s stayed taken for %s: an earlier connection from that port to the target has not closed)",
				err, d.LocalAddr, address, bound)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, errors.Join(err, ctx.Err())
		case <-t.C:
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// tupleTaken says whether connect() refused the 4-tuple. The same errno from bind() means the
// local address is not the node's, which waiting does not mend.
func tupleTaken(err error) bool {
	var se *os.SyscallError
	return errors.As(err, &se) && se.Syscall == "connect" && errors.Is(se.Err, syscall.EADDRNOTAVAIL)
}
