package linux

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
)

// The call-back (rule P5): when the detached run ends, the host tells the agent at once
// instead of waiting for the next read of the run's state. The agent asks the host's sshd
// for a remote port forward on the host's loopback (127.0.0.1:<port sshd picks>) and relays
// each connection made to it, inside the SSH session, to the target's P5 receive port. The
// run directory's callback file holds "<port> <token>"; report.sh, run after the run ends,
// writes "fwops-result <token> <the run's state>" there with bash's /dev/tcp. The receive
// port takes a report only from the agent's own relay and with the target's token; anything
// else is refused and counted. The state files stay the record: without a forward (sshd's
// AllowTcpForwarding no), without bash, after the session dropped, or when nothing arrives,
// the agent reads them as before.

// reportScript is report.sh, run by the detached launcher as the SSH user once the run's
// finished file exists. It never fails the run: a report that cannot be sent is read from the
// files instead.
const reportScript = `#!/bin/sh
# Written by firmware-operator's agent: tells the agent, through its SSH session's remote port
# forward, that the run in $1 ended (see internal/agent/linux/callback.go). Best effort.
d=$1
read -r port token < "$d/callback" 2>/dev/null || exit 0
case $port in ''|*[!0-9]*) exit 0 ;; esac
command -v bash >/dev/null 2>&1 || exit 0
r=none; [ -e "$d/result" ] && r=$(cat "$d/result")
b=notbegun; [ -e "$d/began" ] && b=began
# printf is a shell builtin: the token never appears in a command line.
printf 'fwops-result %s finished %s %s %s\n' "$token" "$(cat "$d/finished")" "$r" "$b" |
	bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1; IFS= read -r line; printf "%s\n" "$line" >&3; read -r -t 10 ack <&3' fwops-report "$port"
`

// callbackTimeout bounds one report connection on the receive port.
const callbackTimeout = 10 * time.Second

// CallbackCounters count a driver's call-backs and state reads; share one among the drivers
// of an agent. Safe for concurrent use.
type CallbackCounters struct {
	// Accepted reports came through the target's SSH session with its token; Refused ones
	// came another way, with a wrong token, or malformed.
	Accepted, Refused atomic.Int64
	// Forwards counts the remote port forwards the hosts granted; ForwardsRefused those they
	// refused (sshd's AllowTcpForwarding no).
	Forwards, ForwardsRefused atomic.Int64
	// StateReads counts the reads of a run's state on the host (statusScript): the fallback
	// polls, and the reads before a launch and after a reconnect.
	StateReads atomic.Int64
}

// receiver serves one target's rule P5 receive port for call-backs.
type receiver struct {
	l        net.Listener
	token    string
	log      *slog.Logger
	counters *CallbackCounters
	reports  chan runState

	mu      sync.Mutex
	relayed map[string]bool // local addresses of the relay's connections to l
}

func newReceiver(l net.Listener, log *slog.Logger, counters *CallbackCounters) (*receiver, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	r := &receiver{l: l, token: hex.EncodeToString(b), log: log, counters: counters,
		reports: make(chan runState, 1), relayed: map[string]bool{}}
	go r.serve()
	return r, nil
}

func (r *receiver) serve() {
	for {
		c, err := r.l.Accept()
		if err != nil {
			return // closed with the driver
		}
		go r.handle(c)
	}
}

func (r *receiver) handle(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(callbackTimeout))
	line, err := bufio.NewReader(io.LimitReader(c, 512)).ReadString('\n')
	from := c.RemoteAddr().String()
	refuse := func(why string) {
		r.counters.Refused.Add(1)
		r.log.Warn("Linux call-back refused", "reason", why, "from", from)
	}
	r.mu.Lock()
	relayed := r.relayed[from]
	delete(r.relayed, from)
	r.mu.Unlock()
	if err != nil {
		refuse("no complete report line")
		return
	}
	f := strings.Fields(line)
	switch {
	case !relayed:
		refuse("not through the target's SSH session")
		return
	case len(f) < 2 || f[0] != "fwops-result" || subtle.ConstantTimeCompare([]byte(f[1]), []byte(r.token)) != 1:
		refuse("wrong token")
		return
	}
	st, err := parseState(strings.Join(f[2:], " "))
	if err != nil || st.kind != "finished" {
		refuse("malformed report")
		return
	}
	r.counters.Accepted.Add(1)
	_, _ = io.WriteString(c, "ok\n")
	select {
	case r.reports <- st:
	default: // one report is enough
	}
}

// relay accepts the connections sshd forwards from the host and pipes each to the receive
// port, until fwd closes (with the SSH connection, or when the run is followed no more).
func (r *receiver) relay(fwd net.Listener) {
	for {
		in, err := fwd.Accept()
		if err != nil {
			return
		}
		go func() {
			defer in.Close()
			// The receive port is on this very node: the dial is local and short.
			out, err := (&net.Dialer{Timeout: callbackTimeout}).DialContext(context.Background(), "tcp", r.l.Addr().String())
			if err != nil {
				r.log.Warn("could not relay a call-back to the receive port", "err", err.Error())
				return
			}
			defer out.Close()
			r.mu.Lock()
			r.relayed[out.LocalAddr().String()] = true
			r.mu.Unlock()
			go func() { _, _ = io.Copy(out, in); _ = out.(*net.TCPConn).CloseWrite() }()
			_, _ = io.Copy(in, out)
		}()
	}
}

// drain drops a report left from an earlier run.
func (r *receiver) drain() {
	select {
	case <-r.reports:
	default:
	}
}

// arm asks the host for a remote port forward and tells the run in dir where to report.
// It returns false, having logged why, when there is no call-back: the run's state is then
// read every PollInterval.
func (d *Driver) arm(ctx context.Context, dir string) bool {
	d.disarm()
	if d.recv == nil {
		return false
	}
	d.recv.drain()
	fwd, err := d.client.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		d.opts.Callbacks.ForwardsRefused.Add(1)
		d.log.Warn("the host refused a remote port forward for the call-back (sshd AllowTcpForwarding no?); following the run by reading its state",
			"err", err.Error(), "every", d.opts.PollInterval)
		return false
	}
	d.opts.Callbacks.Forwards.Add(1)
	port := fwd.Addr().(*net.TCPAddr).Port
	go d.recv.relay(fwd)
	var out limitedBuffer
	f := quote(path.Join(dir, "callback"))
	cmd := fmt.Sprintf("umask 077 && cat > %[1]s.tmp && mv -f %[1]s.tmp %[1]s", f)
	if err := execInput(ctx, d.client, cmd, strings.NewReader(fmt.Sprintf("%d %s\n", port, d.recv.token)), &out); err != nil {
		_ = fwd.Close()
		d.log.Warn("could not write the call-back file; following the run by reading its state", "err", err.Error(), "output", tail(out.String()))
		return false
	}
	d.fwd = fwd
	d.log.Info("the host reports the run's end through the SSH session (rule P5)", "forwardedPort", port,
		"receivePort", d.recv.l.Addr().String(), "fallbackEvery", d.opts.FallbackPollInterval)
	return true
}

// disarm gives the remote port forward back.
func (d *Driver) disarm() {
	if d.fwd != nil {
		_ = d.fwd.Close()
		d.fwd = nil
	}
}

// reports is where accepted call-backs arrive; nil (never ready) without a receive port.
func (d *Driver) reports() <-chan runState {
	if d.recv == nil {
		return nil
	}
	return d.recv.reports
}

// watch returns a channel closed when c's connection ends.
func watch(c *ssh.Client) <-chan struct{} {
	done := make(chan struct{})
	go func() { _ = c.Wait(); close(done) }()
	return done
}
