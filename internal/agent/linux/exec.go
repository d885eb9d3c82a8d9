package linux

import (
	"context"
	"io"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
)

// exec runs cmd in a new session, output to w. When ctx ends first exec closes the session
// and returns at once, without signalling the remote command: the commands that matter run
// detached (hostrun.go), and a flash is never interrupted.
func exec(ctx context.Context, c *ssh.Client, cmd string, w io.Writer) error {
	return execInput(ctx, c, cmd, nil, w)
}

// execInput is exec with stdin: how a secret reaches the host without showing in a command line.
func execInput(ctx context.Context, c *ssh.Client, cmd string, stdin io.Reader, w io.Writer) error {
	sess, err := c.NewSession()
	if err != nil {
		return err
	}
	defer sess.Close()
	sess.Stdin = stdin
	sess.Stdout = w
	sess.Stderr = w
	done := make(chan error, 1)
	go func() { done <- sess.Run(cmd) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// quote makes s one word for a POSIX shell.
func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// tail is the end of a component's output, for error messages.
func tail(s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return ""
	}
	lines := strings.Split(s, "\n")
	if len(lines) > 3 {
		lines = lines[len(lines)-3:]
	}
	t := strings.Join(lines, " | ")
	if len(t) > 400 {
		t = "…" + t[len(t)-400:]
	}
	return ": " + t
}

// limitedBuffer keeps the last 64 KiB written, so a chatty component cannot fill memory.
// It is safe for the session's stdout and stderr copiers, which write concurrently.
type limitedBuffer struct {
	mu sync.Mutex
	b  []byte
}

const keep = 64 << 10

func (l *limitedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b = append(l.b, p...)
	if len(l.b) > keep {
		l.b = append(l.b[:0], l.b[len(l.b)-keep:]...)
	}
	return len(p), nil
}

func (l *limitedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.b)
}

func (l *limitedBuffer) Reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b = l.b[:0]
}
