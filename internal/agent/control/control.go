// Package control is the agent's control listener (rule P1, 62286 or the next free port):
// /healthz and /readyz for the kubelet's probes, /metrics for Prometheus and /status for live
// per-target progress. The /status handler is also mountable on the agent's local
// inter-process channel (rule P5), which `agent status` reads with FetchStatus.
package control

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Server is the control listener. Set Status, Metrics and Log before Handler or Serve.
type Server struct {
	// Status feeds /status; nil serves an empty snapshot.
	Status StatusSource
	// Metrics feeds /metrics; nil builds one from Status on first use.
	Metrics *Metrics
	// Log receives server errors; nil discards. Probes are not logged: the kubelet calls
	// them every few seconds.
	Log *slog.Logger

	ready atomic.Pointer[func() error]

	once    sync.Once
	handler http.Handler

	srvMu sync.Mutex
	srv   *http.Server
}

// SetReady sets the readiness check behind /readyz. The agent passes a function that returns
// nil once the image is verified and the firmware server is listening, and an error saying
// what is missing until then. Until SetReady is called, or after SetReady(nil), the agent is
// not ready.
func (s *Server) SetReady(f func() error) {
	if f == nil {
		s.ready.Store(nil)
		return
	}
	s.ready.Store(&f)
}

// Handler returns the mux with every endpoint of the control listener.
func (s *Server) Handler() http.Handler {
	s.once.Do(func() {
		if s.Metrics == nil {
			s.Metrics = NewMetrics(s.Status)
		}
		mux := http.NewServeMux()
		// "GET" patterns also answer HEAD; other methods get 405 from the mux.
		mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
			plain(w, http.StatusOK, "ok")
		})
		mux.HandleFunc("GET /readyz", s.readyz)
		mux.Handle("GET /metrics", s.Metrics.Handler())
		mux.Handle("GET /status", StatusHandler(s.Status))
		s.handler = mux
	})
	return s.handler
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	f := s.ready.Load()
	if f == nil {
		plain(w, http.StatusServiceUnavailable, "not ready: readiness not set")
		return
	}
	if err := (*f)(); err != nil {
		plain(w, http.StatusServiceUnavailable, "not ready: "+err.Error())
		return
	}
	plain(w, http.StatusOK, "ok")
}

func plain(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, msg+"\n")
}

// Serve serves the control endpoints on l, the P1 listener bound by the port allocator. It
// returns http.ErrServerClosed after Shutdown.
func (s *Server) Serve(l net.Listener) error {
	h := s.Handler()
	s.srvMu.Lock()
	if s.srv != nil {
		s.srvMu.Unlock()
		return errors.New("control: Serve called twice")
	}
	log := s.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s.srv = &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	srv := s.srv
	s.srvMu.Unlock()
	return srv.Serve(l)
}

// Shutdown stops the listener, waiting for requests in flight until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	s.srvMu.Lock()
	srv := s.srv
	s.srvMu.Unlock()
	if srv == nil {
		return nil
	}
	return srv.Shutdown(ctx)
}
