// Package fwserver is the agent's firmware server (rule P2): the HTTP and HTTPS server from
// which iLOs and Onboard Administrators pull the image (Redfish SimpleUpdate ImageURI, OA
// UPDATE IMAGE). With a certificate it serves both on the one port (tls.go).
//
// It serves verified images only, each under one unguessable path per job
// (/fw/<64 hex digits>/<file name>), with GET, HEAD and Range. Anything else is 404 (405 for
// other methods): there is no listing and no file system behind the paths. The body is sent
// from the cached file with http.ServeContent, so the kernel's sendfile does the copying and
// the image is never held in memory.
package fwserver

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fwops/firmware-operator/internal/agent/firmware"
)

// Prefix starts every firmware path.
const Prefix = "/fw/"

// Server serves registered images. Set the exported fields before Serve; the zero value
// serves nothing and logs nowhere.
type Server struct {
	// Log receives one access-log line per request; nil discards.
	Log *slog.Logger
	// TargetFor names the target that a remote IP belongs to, for the access log and
	// OnServed; nil or "" means the request is logged with target "-".
	TargetFor func(remoteIP string) string
	// OnServed, when set, is called after each request with the target name and the body
	// bytes written (the agent counts them in its metrics).
	OnServed func(target string, bytes int64)
	// Certificate, when set, makes the server answer TLS handshakes on its port with it
	// (HTTPS, TLS 1.2 at least) besides plain HTTP; nil serves plain HTTP only.
	Certificate *tls.Certificate

	mu      sync.RWMutex
	byToken map[string]entry
	byJob   map[string]string // job -> token

	serving atomic.Bool
	srvMu   sync.Mutex
	srv     *http.Server
}

type entry struct {
	job string
	img firmware.Image
}

// Register makes img downloadable for job and returns its URL path,
// /fw/<random 32-byte hex token>/<img.FileName>. The job string is only a key (the job's UID,
// say): it never appears in the URL. Registering the same image again for a job returns the
// same path; a different image replaces the old one under a fresh token, and the old path
// stops working. Images that did not come out of firmware.Cache.Get are refused.
func (s *Server) Register(job string, img firmware.Image) (string, error) {
	if !img.Verified() {
		return "", errors.New("fwserver: refusing to serve an unverified image")
	}
	if img.FileName == "" || strings.ContainsAny(img.FileName, "/\\\x00") || img.FileName == "." || img.FileName == ".." {
		return "", errors.New("fwserver: image FileName must be a single path element")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.byToken == nil {
		s.byToken, s.byJob = map[string]entry{}, map[string]string{}
	}
	if tok, ok := s.byJob[job]; ok {
		if s.byToken[tok].img == img {
			return Prefix + tok + "/" + img.FileName, nil
		}
		delete(s.byToken, tok)
	}
	var b [32]byte
	rand.Read(b[:]) // never fails (crypto/rand, Go 1.24+)
	tok := hex.EncodeToString(b[:])
	s.byToken[tok] = entry{job: job, img: img}
	s.byJob[job] = tok
	return Prefix + tok + "/" + img.FileName, nil
}

// Unregister stops serving the job's image.
func (s *Server) Unregister(job string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if tok, ok := s.byJob[job]; ok {
		delete(s.byToken, tok)
		delete(s.byJob, job)
	}
}

// Serve serves on l, a listener the port allocator already bound (rule P2: 80, else a port
// in 63000-63007; the choice is not made here). It returns http.ErrServerClosed after
// Shutdown.
func (s *Server) Serve(l net.Listener) error {
	s.srvMu.Lock()
	if s.srv != nil {
		s.srvMu.Unlock()
		return errors.New("fwserver: Serve called twice")
	}
	s.srv = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: readHeaderTimeout,
		// No WriteTimeout: an iLO on a slow management network may take many minutes to
		// pull a large image; idle connections are still reaped.
		IdleTimeout: 2 * time.Minute,
		ErrorLog:    slog.NewLogLogger(s.log().Handler(), slog.LevelWarn),
	}
	srv := s.srv
	s.srvMu.Unlock()
	s.serving.Store(true)
	defer s.serving.Store(false)
	if s.Certificate == nil {
		return srv.Serve(l)
	}
	sl := split(l, readHeaderTimeout)
	plain := make(chan error, 1)
	go func() { plain <- srv.Serve(sl.plain) }()
	err := srv.Serve(tls.NewListener(sl.tls, tlsConfig(s.Certificate)))
	if perr := <-plain; err == nil || errors.Is(err, http.ErrServerClosed) {
		err = perr
	}
	return err
}

// readHeaderTimeout bounds how long a client may take to send its request's headers (and,
// with TLS on, its first byte).
const readHeaderTimeout = 10 * time.Second

// Serving reports whether Serve is accepting connections; readiness depends on it.
func (s *Server) Serving() bool { return s.serving.Load() }

// Shutdown stops accepting and waits for downloads in flight until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	s.srvMu.Lock()
	srv := s.srv
	s.srvMu.Unlock()
	if srv == nil {
		return nil
	}
	return srv.Shutdown(ctx)
}

func (s *Server) log() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.New(slog.DiscardHandler)
}

// ServeHTTP serves one request; it is the handler Serve installs.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &recorder{ResponseWriter: w}
	target := "-"
	ip := r.RemoteAddr
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		ip = host
	}
	if s.TargetFor != nil {
		if t := s.TargetFor(ip); t != "" {
			target = t
		}
	}
	defer func() {
		status := rec.status
		if status == 0 {
			status = http.StatusOK
		}
		s.log().LogAttrs(r.Context(), slog.LevelInfo, "firmware request",
			slog.String("remote", r.RemoteAddr),
			slog.String("target", target),
			slog.String("method", r.Method),
			slog.Bool("tls", r.TLS != nil),
			slog.String("path", Redact(r.URL.Path)),
			slog.Int("status", status),
			slog.Int64("bytes", rec.bytes),
			slog.Duration("duration", time.Since(start)))
		if s.OnServed != nil {
			s.OnServed(target, rec.bytes)
		}
	}()
	s.serve(rec, r)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	// Paths are matched exactly against registered ones, so traversal could only ever miss;
	// it is still refused outright so that it shows as such in the log.
	if hasDotDot(r.URL.Path) {
		http.Error(w, "bad path", http.StatusBadRequest)
		return
	}
	img, ok := s.lookup(r.URL.Path)
	if !ok {
		http.NotFound(w, r)
		return
	}
	f, err := os.Open(img.Path)
	if err != nil {
		s.log().Error("cannot open verified image", "path", img.Path, "err", err)
		http.Error(w, "image unavailable", http.StatusInternalServerError)
		return
	}
	defer f.Close()
	// A file that changed since it was verified is not served: the cache keeps images
	// read-only, so this only trips on tampering or disk trouble.
	if fi, err := f.Stat(); err != nil || fi.Size() != img.Size || !fi.ModTime().Equal(img.ModTime()) {
		s.log().Error("verified image changed on disk, refusing to serve it", "path", img.Path)
		http.Error(w, "image unavailable", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream") // also spares ServeContent's sniffing read
	h.Set("ETag", `"sha256-`+img.SHA256+`"`)
	h.Set("X-Content-Type-Options", "nosniff")
	http.ServeContent(w, r, img.FileName, img.ModTime(), f)
}

// lookup finds the image for a path of exactly /fw/<token>/<name>.
func (s *Server) lookup(p string) (firmware.Image, bool) {
	rest, ok := strings.CutPrefix(p, Prefix)
	if !ok {
		return firmware.Image{}, false
	}
	tok, name, ok := strings.Cut(rest, "/")
	if !ok || len(tok) != 64 || name == "" {
		return firmware.Image{}, false
	}
	s.mu.RLock()
	e, ok := s.byToken[tok]
	s.mu.RUnlock()
	if !ok || e.img.FileName != name {
		return firmware.Image{}, false
	}
	return e.img, true
}

func hasDotDot(p string) bool {
	for _, seg := range strings.FieldsFunc(p, func(r rune) bool { return r == '/' || r == '\\' }) {
		if seg == ".." {
			return true
		}
	}
	return false
}

// Redact keeps the token of a firmware path or URL (http://host:port/fw/<token>/<name>) out
// of logs and messages: whoever reads them should not be able to download the image with it.
// Eight hex digits still tell jobs apart. Everything that shows a firmware URL goes through it.
func Redact(p string) string {
	if before, tok, after, ok := splitToken(p); ok {
		return before + tok[:8] + "…" + after
	}
	if len(p) > 256 {
		return p[:256] + "…"
	}
	return p
}

// Token returns the token of the first firmware path in s, or "" when s holds none.
func Token(s string) string {
	_, tok, _, _ := splitToken(s)
	return tok
}

// splitToken cuts s around the token of its first firmware path (Prefix, 64 characters, "/").
func splitToken(s string) (before, tok, after string, ok bool) {
	i := strings.Index(s, Prefix)
	if i < 0 {
		return "", "", "", false
	}
	tok, name, ok := strings.Cut(s[i+len(Prefix):], "/")
	if !ok || len(tok) != 64 {
		return "", "", "", false
	}
	return s[:i+len(Prefix)], tok, "/" + name, true
}

// recorder notes the status and body bytes of a response for the access log. It forwards
// ReadFrom so that the *os.File body still goes out through sendfile.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 && code >= 200 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

func (r *recorder) ReadFrom(src io.Reader) (int64, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	var n int64
	var err error
	if rf, ok := r.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(src)
	} else {
		n, err = io.Copy(struct{ io.Writer }{r.ResponseWriter}, src)
	}
	r.bytes += n
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
