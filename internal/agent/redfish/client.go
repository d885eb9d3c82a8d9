// Package redfish is a small typed Redfish client for HPE iLO 4, 5 and 6: sessions (with Basic
// auth as fallback), firmware updates (SimpleUpdate, iLO 4's InstallFromURI, the HPE component
// repository's AddFromUri), update progress, and firmware inventory. It only types the fields
// it uses; unknown fields are ignored. Credentials never appear in errors or logs.
package redfish

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fwops/firmware-operator/internal/ports"
)

// Options configure a Client.
type Options struct {
	// Endpoint is host, host:port, or a URL (https://host:port); https is assumed.
	Endpoint string
	Username string
	Password string
	TLS      TLSOptions
	// LocalAddress and LocalPort bind the source of the connection to the target (rule P4);
	// zero values let the kernel choose.
	LocalAddress string
	LocalPort    int
	// MaxRetries bounds the retries of a 503 answered with Retry-After (default 3).
	MaxRetries int
	// MaxRetryWait caps one Retry-After wait (default 30s).
	MaxRetryWait time.Duration
	// RequestTimeout bounds each request on top of the caller's context (default 60s).
	RequestTimeout time.Duration
	// ReloginBackoff is the wait before a second consecutive attempt to log in again after a
	// 401; it doubles with each failed attempt up to MaxReloginBackoff (defaults 1s and 30s).
	// An iLO that flashed itself resets and forgets every session it issued.
	ReloginBackoff    time.Duration
	MaxReloginBackoff time.Duration
	// NoRelogin turns logging in again off; it serves the tests that show what an iLO reset
	// does to a client that never logs in again.
	NoRelogin bool
}

// Client talks to one Redfish service. It is safe for concurrent use, although the agent uses
// one client per target from one goroutine.
type Client struct {
	base *url.URL
	hc   *http.Client
	tr   *http.Transport
	user string
	pass string
	opts Options

	mu         sync.Mutex
	token      string
	sessionURI string
	basic      bool

	// loginMu serialises logging in again; reloginFails counts the attempts that failed in a
	// row, relogins the sessions opened again.
	loginMu      sync.Mutex
	reloginFails int
	relogins     int
}

// authMode says how a request authenticates.
type authMode int

const (
	noAuth authMode = iota
	// withAuth sends the session token (or Basic credentials) and logs in again on a 401.
	withAuth
	// withAuthOnce sends them and takes a 401 as the answer (logging out).
	withAuthOnce
)

// New makes a client; it does not connect. Call Login before other calls.
func New(opts Options) (*Client, error) {
	ep := opts.Endpoint
	if ep == "" {
		return nil, errors.New("redfish: empty endpoint")
	}
	if !strings.Contains(ep, "://") {
		ep = "https://" + ep
	}
	u, err := url.Parse(ep)
	if err != nil {
		return nil, fmt.Errorf("redfish: endpoint %q: %w", opts.Endpoint, err)
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return nil, fmt.Errorf("redfish: endpoint %q: scheme must be https", opts.Endpoint)
	}
	if u.User != nil {
		return nil, errors.New("redfish: credentials in the endpoint URL are refused; use Options.Username/Password")
	}
	u.Path, u.RawQuery, u.Fragment = "", "", ""
	if opts.MaxRetries == 0 {
		opts.MaxRetries = 3
	}
	if opts.MaxRetryWait == 0 {
		opts.MaxRetryWait = 30 * time.Second
	}
	if opts.RequestTimeout == 0 {
		opts.RequestTimeout = 60 * time.Second
	}
	if opts.ReloginBackoff <= 0 {
		opts.ReloginBackoff = time.Second
	}
	if opts.MaxReloginBackoff <= 0 {
		opts.MaxReloginBackoff = 30 * time.Second
	}
	tlsConf, err := opts.TLS.config(u.Hostname())
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{
		Proxy:               nil, // BMCs sit on management networks; a proxy would also move the source port.
		DialContext:         dialFunc(opts.LocalAddress, opts.LocalPort),
		TLSClientConfig:     tlsConf,
		TLSHandshakeTimeout: 15 * time.Second,
		ForceAttemptHTTP2:   false,
		TLSNextProto:        map[string]func(string, *tls.Conn) http.RoundTripper{},
		MaxIdleConns:        1,
		MaxIdleConnsPerHost: 1,
		IdleConnTimeout:     30 * time.Second,
	}
	if opts.LocalPort != 0 {
		// One bound source port allows one connection at a time (rule P4).
		tr.MaxConnsPerHost = 1
	}
	return &Client{
		base: u, tr: tr, hc: &http.Client{Transport: tr, CheckRedirect: noRedirect},
		user: opts.Username, pass: opts.Password, opts: opts,
	}, nil
}

// noRedirect keeps credentials from following a redirect to another host.
func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// Login opens a session; when the service refuses sessions (404, 405, 501) the client falls
// back to Basic auth for every request.
func (c *Client) Login(ctx context.Context) error {
	body := map[string]string{"UserName": c.user, "Password": c.pass}
	resp, err := c.do(ctx, http.MethodPost, "/redfish/v1/SessionService/Sessions", body, nil, noAuth)
	if err != nil {
		var re *Error
		if errors.As(err, &re) {
			switch re.StatusCode {
			case http.StatusNotFound, http.StatusMethodNotAllowed, http.StatusNotImplemented:
				c.mu.Lock()
				c.basic = true
				c.mu.Unlock()
				// Check the credentials now rather than at the first real call.
				_, err := c.do(ctx, http.MethodGet, "/redfish/v1/SessionService", nil, nil, withAuthOnce)
				if err != nil {
					return fmt.Errorf("redfish: login with Basic auth (sessions refused): %w", err)
				}
				return nil
			}
		}
		return fmt.Errorf("redfish: login: %w", err)
	}
	tok := resp.Header.Get("X-Auth-Token")
	if tok == "" {
		return errors.New("redfish: login: the service sent no X-Auth-Token")
	}
	c.mu.Lock()
	c.token = tok
	c.sessionURI = locationPath("/redfish/v1/SessionService/Sessions", resp.Header.Get("Location"))
	c.mu.Unlock()
	return nil
}

// locationPath keeps only the path of a Location header: it may be absolute, carry a port, or
// be relative (resolved against the request path, as RFC 9110 says); requests always go to the
// configured endpoint, never to the host a Location names.
func locationPath(reqPath, loc string) string {
	if loc == "" {
		return ""
	}
	u, err := url.Parse(loc)
	if err != nil {
		return ""
	}
	return (&url.URL{Path: reqPath}).ResolveReference(&url.URL{Path: u.Path, RawPath: u.RawPath}).EscapedPath()
}

// UsesBasicAuth says whether the service refused sessions and Basic auth is in use.
func (c *Client) UsesBasicAuth() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.basic
}

// Close deletes the session, if any, and closes idle connections.
func (c *Client) Close() error {
	defer c.tr.CloseIdleConnections()
	c.mu.Lock()
	uri, tok := c.sessionURI, c.token
	c.mu.Unlock()
	if tok == "" || uri == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := c.do(ctx, http.MethodDelete, uri, nil, nil, withAuthOnce)
	c.mu.Lock()
	c.token, c.sessionURI = "", ""
	c.mu.Unlock()
	if err != nil {
		return fmt.Errorf("redfish: logout: %w", err)
	}
	return nil
}

// Get reads path into out.
func (c *Client) Get(ctx context.Context, path string, out any) error {
	_, err := c.do(ctx, http.MethodGet, path, nil, out, withAuth)
	return err
}

// Post sends body to path and decodes the answer into out (when non-nil and the body is JSON).
func (c *Client) Post(ctx context.Context, path string, body, out any) (*http.Response, error) {
	return c.do(ctx, http.MethodPost, path, body, out, withAuth)
}

// do runs one request with retries on 503 + Retry-After, and once more after logging in again
// when a session the service issued is refused (401). The returned response's body is already
// consumed and closed.
func (c *Client) do(ctx context.Context, method, path string, body, out any, auth authMode) (*http.Response, error) {
	var payload []byte
	if body != nil {
		var err error
		if payload, err = json.Marshal(body); err != nil {
			return nil, err
		}
	}
	u := *c.base
	p, q, _ := strings.Cut(path, "?")
	u.Path, u.RawQuery = p, q
	relogged := false
	for attempt := 0; ; attempt++ {
		tok := c.currentToken()
		resp, data, err := c.once(ctx, method, u.String(), payload, auth != noAuth)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", method, path, err)
		}
		if resp.StatusCode == http.StatusUnauthorized && auth == withAuth && tok != "" && !relogged && !c.opts.NoRelogin {
			// The session is gone: an iLO that reset (after flashing itself, say) forgets
			// every session it issued. Log in again and repeat the request once.
			relogged = true
			if lerr := c.relogin(ctx, tok); lerr != nil {
				return resp, fmt.Errorf("%s %s: the service ended the session (HTTP 401) and logging in again failed: %w", method, path, lerr)
			}
			continue
		}
		if resp.StatusCode == http.StatusServiceUnavailable && attempt < c.opts.MaxRetries {
			if wait, ok := parseRetryAfter(resp.Header.Get("Retry-After")); ok {
				wait = min(wait, c.opts.MaxRetryWait)
				t := time.NewTimer(wait)
				select {
				case <-t.C:
					continue
				case <-ctx.Done():
					t.Stop()
					return nil, fmt.Errorf("%s %s: waiting %s as Retry-After asked: %w", method, path, wait, ctx.Err())
				}
			}
		}
		if resp.StatusCode >= 300 {
			return resp, decodeError(method, path, resp, data)
		}
		if out != nil && len(bytes.TrimSpace(data)) > 0 {
			if err := json.Unmarshal(data, out); err != nil {
				return resp, fmt.Errorf("%s %s: decoding the answer: %w", method, path, err)
			}
		}
		return resp, nil
	}
}

// currentToken is the session token in use ("" with Basic auth or before Login).
func (c *Client) currentToken() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.token
}

// Relogins is how many times the client opened a new session after a 401.
func (c *Client) Relogins() int {
	c.loginMu.Lock()
	defer c.loginMu.Unlock()
	return c.relogins
}

// relogin opens a new session in place of stale, unless another request already did; attempts
// that follow failed ones wait ReloginBackoff, doubling up to MaxReloginBackoff.
func (c *Client) relogin(ctx context.Context, stale string) error {
	c.loginMu.Lock()
	defer c.loginMu.Unlock()
	if cur := c.currentToken(); cur != "" && cur != stale {
		return nil
	}
	if c.reloginFails > 0 {
		wait := c.opts.ReloginBackoff << min(c.reloginFails-1, 16)
		wait = min(wait, c.opts.MaxReloginBackoff)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("waiting %s before logging in again: %w", wait, ctx.Err())
		}
	}
	// The stale token stays in use until Login replaces it: a request sent meanwhile with no
	// token would meet a 401 it cannot answer by logging in (it would look like Basic auth
	// refused), while one with the stale token waits here for the new session.
	if err := c.Login(ctx); err != nil {
		c.reloginFails++
		return err
	}
	c.reloginFails = 0
	c.relogins++
	return nil
}

func (c *Client) once(ctx context.Context, method, u string, payload []byte, auth bool) (*http.Response, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.RequestTimeout)
	defer cancel()
	var rd io.Reader
	if payload != nil {
		rd = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("OData-Version", "4.0")
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if auth {
		c.mu.Lock()
		tok, basic := c.token, c.basic
		c.mu.Unlock()
		switch {
		case tok != "":
			req.Header.Set("X-Auth-Token", tok)
		case basic:
			req.SetBasicAuth(c.user, c.pass)
		}
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, nil, scrub(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return nil, nil, scrub(err)
	}
	return resp, data, nil
}

// scrub drops the URL wrapper of transport errors: the URL carries no credentials, but the
// operation already names method and path once.
func scrub(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func parseRetryAfter(v string) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if n, err := strconv.Atoi(v); err == nil && n >= 0 {
		return time.Duration(n) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0), true
	}
	return 0, false
}

// SamePath says whether two Redfish paths name the same resource: iLO matches paths
// case-insensitively and @odata.id values come with and without a trailing slash.
func SamePath(a, b string) bool {
	return strings.EqualFold(strings.TrimRight(a, "/"), strings.TrimRight(b, "/"))
}

// dialFunc binds the local address and port when asked (rule P4), with SO_REUSEADDR so that
// the bind is not refused while an earlier socket on the port lingers.
//
// SO_REUSEADDR alone does not let connect() reuse a 4-tuple that our side holds in TIME_WAIT
// (Linux answers EADDRNOTAVAIL for up to a minute), and with a fixed source port every
// connection to a target has the same 4-tuple. So connections from a bound port close with
// SO_LINGER 0: a reset instead of TIME_WAIT. They are only ever closed idle, after their last
// response was read, so nothing is lost.
func dialFunc(addr string, port int) func(ctx context.Context, network, address string) (net.Conn, error) {
	d := &net.Dialer{Timeout: 15 * time.Second, KeepAlive: 30 * time.Second}
	if addr == "" && port == 0 {
		return d.DialContext
	}
	d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(addr), Port: port}
	d.Control = ports.ReuseAddr
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		c, err := ports.DialWhileTupleBusy(ctx, d, network, address, ports.TupleBusyWait)
		if err != nil {
			return nil, err
		}
		if tc, ok := c.(*net.TCPConn); ok && port != 0 {
			_ = tc.SetLinger(0)
		}
		return c, nil
	}
}
