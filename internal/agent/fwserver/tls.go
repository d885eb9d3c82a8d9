package fwserver

// HTTPS and HTTP on the one rule P2 port. Every accepted connection's first byte decides: 0x16
// opens a TLS handshake record, so the connection goes to tls.Server; anything else is plain
// HTTP. One agent thus serves iLO 4 over HTTP and iLO 5 over HTTPS without a second port that
// the PortPolicy and firewall plans would have to name.

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// tlsRecordHandshake is the content type of a TLS handshake record (RFC 8446 §5.1): the first
// byte a TLS client sends.
const tlsRecordHandshake = 0x16

// splitListener accepts on one listener and hands each connection, once its first byte has
// arrived, to the plain or the TLS side.
type splitListener struct {
	inner       net.Listener
	peekTimeout time.Duration
	plain, tls  *sideListener
	closeOnce   sync.Once
	done        chan struct{}
	acceptErr   error // written once, before done is closed
}

// sideListener is one side of a splitListener, as http.Server sees it.
type sideListener struct {
	parent *splitListener
	conns  chan net.Conn
}

func split(inner net.Listener, peekTimeout time.Duration) *splitListener {
	s := &splitListener{inner: inner, peekTimeout: peekTimeout, done: make(chan struct{})}
	s.plain = &sideListener{parent: s, conns: make(chan net.Conn)}
	s.tls = &sideListener{parent: s, conns: make(chan net.Conn)}
	go s.acceptLoop()
	return s
}

func (s *splitListener) acceptLoop() {
	for {
		c, err := s.inner.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			s.closeWith(err)
			return
		}
		// The first byte is read off the accept loop: a client that connects and says
		// nothing holds up only itself, until peekTimeout.
		go s.route(c)
	}
}

func (s *splitListener) route(c net.Conn) {
	_ = c.SetReadDeadline(time.Now().Add(s.peekTimeout))
	br := bufio.NewReaderSize(c, 1)
	first, err := br.Peek(1)
	_ = c.SetReadDeadline(time.Time{})
	if err != nil {
		_ = c.Close()
		return
	}
	side := s.plain
	if first[0] == tlsRecordHandshake {
		side = s.tls
	}
	select {
	case side.conns <- &peekedConn{Conn: c, r: br}:
	case <-s.done:
		_ = c.Close()
	}
}

func (s *splitListener) close() { s.closeWith(nil) }

// closeWith closes both sides; acceptErr, when set, is what their Accept returns.
func (s *splitListener) closeWith(acceptErr error) {
	s.closeOnce.Do(func() {
		s.acceptErr = acceptErr
		close(s.done)
		_ = s.inner.Close()
	})
}

func (l *sideListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.parent.done:
		if err := l.parent.acceptErr; err != nil {
			return nil, err
		}
		return nil, net.ErrClosed
	}
}

func (l *sideListener) Close() error { l.parent.close(); return nil }

func (l *sideListener) Addr() net.Addr { return l.parent.inner.Addr() }

// peekedConn gives back the byte read to route the connection before the rest of it.
type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *peekedConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// ReadFrom keeps sendfile for plain HTTP: net/http copies the image body through the
// connection's ReadFrom, which the embedded *net.TCPConn implements with sendfile. Writes do
// not involve the peeked byte.
func (c *peekedConn) ReadFrom(src io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(src)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, src)
}

// CloseWrite lets net/http half-close a plain connection before closing it, as it does a
// *net.TCPConn, so that a client's last request is not cut short by a reset.
func (c *peekedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// tlsConfig is the firmware server's: TLS 1.2 at least, Go's default suites.
func tlsConfig(cert *tls.Certificate) *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{*cert}}
}
