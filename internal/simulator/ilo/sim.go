// Package ilo simulates an HPE iLO 4, 5 or 6 Redfish service for tests and demos. It serves a
// real Redfish-Mockup-Creator capture, logs users in, really downloads the firmware images it is
// told to flash, walks the update state machine with timings the caller sets, and injects faults
// on demand.
//
// It deliberately shares no code or types with the agent's Redfish client
// (internal/agent/...): a mistake shared by both sides would pass unseen.
package ilo

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Model is the iLO generation simulated.
type Model string

// The simulated generations.
const (
	ILO4 Model = "ilo4"
	ILO5 Model = "ilo5"
	ILO6 Model = "ilo6"
)

// Timings are the durations of a flash's steps. Zero values take the defaults.
type Timings struct {
	// Upload is the minimum time spent in Uploading (the download itself may take longer).
	Upload time.Duration
	// Verify is the time spent in Verifying.
	Verify time.Duration
	// Write is the time spent in Writing.
	Write time.Duration
	// Update is the time spent in Updating, split evenly over Steps percent increments.
	Update time.Duration
	// Steps is how many FlashProgressPercent increments Updating has (default 4).
	Steps int
	// POST is how long the host's power-on self-test lasts after a ComputerSystem.Reset
	// (default 60s; real ProLiants take minutes).
	POST time.Duration
	// ResetDelay is how long an iLO that flashed itself stays in Complete before it resets
	// (default 3s).
	ResetDelay time.Duration
	// ILOReset is how long the resetting iLO drops every connection (default 90s: real ones
	// are gone for one to three minutes).
	ILOReset time.Duration
	// HalfUp is how long, after that, the service root answers while UpdateService still
	// answers 503 (default 20s).
	HalfUp time.Duration
	// EventRetry is the wait between attempts to deliver an event (default 30s, the captures'
	// DeliveryRetryIntervalSeconds).
	EventRetry time.Duration
}

// Default durations of the parts real hardware makes slow; tests shorten them.
const (
	defaultPOST       = 60 * time.Second
	defaultResetDelay = 3 * time.Second
	defaultILOReset   = 90 * time.Second
	defaultHalfUp     = 20 * time.Second
)

func (t Timings) withDefaults() Timings {
	if t.Steps <= 0 {
		t.Steps = 4
	}
	if t.POST <= 0 {
		t.POST = defaultPOST
	}
	if t.ResetDelay <= 0 {
		t.ResetDelay = defaultResetDelay
	}
	if t.ILOReset <= 0 {
		t.ILOReset = defaultILOReset
	}
	if t.HalfUp <= 0 {
		t.HalfUp = defaultHalfUp
	}
	return t
}

// Config describes one simulated iLO.
type Config struct {
	// MockupDir is a Redfish-Mockup-Creator tree (the folder that is /redfish/v1).
	MockupDir string
	// Capture, when set, is the parsed capture to serve instead of MockupDir's: simulators
	// made from one Capture share its documents (LoadCapture).
	Capture *Capture
	// Model defaults to ILO5.
	Model Model
	// Username and Password are the only accepted credentials.
	Username, Password string
	Timings            Timings
	// PlainHTTP serves HTTP instead of HTTPS; for debugging only.
	PlainHTTP bool
	// SimpleUpdateTask makes SimpleUpdate answer 202 with a Task, as iLO 5 2.30 and later do;
	// otherwise it answers 200 with no task, as older iLO 5 do.
	SimpleUpdateTask bool
	// SimpleUpdateProtocols, when set, replaces the TransferProtocol values the UpdateService
	// advertises for SimpleUpdate (the captures list HTTP and HTTPS), as a firmware that lists
	// fewer would: the iLO then refuses a TransferProtocol it does not list.
	SimpleUpdateProtocols []string
	// NoSessions refuses session logins with 405, so that clients must use Basic auth.
	NoSessions bool
	// IgnoreExpand serves collections as bare links even when $expand is asked, as some
	// firmware versions do.
	IgnoreExpand bool
	// Counter, when set, is shared by several simulators to count concurrent flashes across them.
	Counter *Counter
	// Logf, when set, receives one line per notable event.
	Logf func(format string, args ...any)
}

// Faults are injected on demand; the zero value injects nothing. JSON field names are those of
// the admin endpoint (POST /_sim/faults).
type Faults struct {
	// FailNext answers the next FailNext Redfish requests with FailStatus (default 500).
	FailNext   int `json:"failNext,omitempty"`
	FailStatus int `json:"failStatus,omitempty"`
	// StallMS delays every Redfish response by this many milliseconds.
	StallMS int `json:"stallMs,omitempty"`
	// DropNext closes the connection of the next DropNext requests without answering.
	DropNext int `json:"dropNext,omitempty"`
	// FlashError makes the next flashes end in Error with this MessageId
	// (for example iLO.2.14.UpdateFailed).
	FlashError string `json:"flashError,omitempty"`
	// VersionUnchanged makes flashes complete without changing any version.
	VersionUnchanged bool `json:"versionUnchanged,omitempty"`
	// DownloadBytesPerSec throttles the image download.
	DownloadBytesPerSec int `json:"downloadBytesPerSec,omitempty"`
	// WrongCert serves a certificate for another key, so that a pinned client refuses it.
	WrongCert bool `json:"wrongCert,omitempty"`
	// RetryAfterNext answers the next RetryAfterNext requests 503 with Retry-After.
	RetryAfterNext int `json:"retryAfterNext,omitempty"`
	// RetryAfterSeconds is the Retry-After value (default 1).
	RetryAfterSeconds int `json:"retryAfterSeconds,omitempty"`
}

// Counter counts flashes in progress across simulators and remembers the peak.
type Counter struct {
	mu          sync.Mutex
	active, max int
}

func (c *Counter) inc() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.active++
	if c.active > c.max {
		c.max = c.active
	}
}

func (c *Counter) dec() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.active--
}

// Max is the largest number of flashes that were in progress at once.
func (c *Counter) Max() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.max
}

// Stats are the simulator's counters.
type Stats struct {
	FlashesStarted   int   `json:"flashesStarted"`
	FlashesCompleted int   `json:"flashesCompleted"`
	FlashesFailed    int   `json:"flashesFailed"`
	MaxConcurrent    int   `json:"maxConcurrentFlashes"`
	SourcePorts      []int `json:"sourcePorts"`
	// Requests counts the Redfish requests served, faults included; ResetRefused those the
	// reset refused (dropped while the iLO is down, 503 while it is half up).
	Requests     int `json:"requests"`
	ResetRefused int `json:"resetRefused"`
	// FlashRequests counts the flash requests, refused ones included (a second flash asked
	// while one runs is refused with UpdateInProgress).
	FlashRequests int `json:"flashRequests"`
	// FirstFlashRequest is when the first flash request arrived (zero before one did), so
	// that the time from a job's creation to its first flash can be measured.
	FirstFlashRequest time.Time `json:"firstFlashRequest,omitzero"`
	// ILOResets counts the resets of the iLO after flashing itself; HostBoots the host's POSTs.
	ILOResets int `json:"iloResets"`
	HostBoots int `json:"hostBoots"`
	// Subscriptions counts the live event subscriptions clients made (events.go);
	// EventsDelivered the events posted and acknowledged, EventsFailed those given up after
	// every retry, EventRetries the failed attempts that were retried.
	Subscriptions   int `json:"subscriptions"`
	EventsDelivered int `json:"eventsDelivered"`
	EventsFailed    int `json:"eventsFailed"`
	EventRetries    int `json:"eventRetries"`
	// LastComplete is when the update state last became Complete, so that a client's time
	// from Complete to its verdict can be measured.
	LastComplete time.Time `json:"lastComplete,omitzero"`
}

// Sim is one simulated iLO.
type Sim struct {
	cfg Config

	mu       sync.Mutex
	tree     *tree
	sessions map[string]string // token -> session path
	secrets  secretsSeen       // secrets.go
	nextID   int
	faults   Faults
	stats    Stats
	flashing bool
	local    Counter // this instance's concurrency
	repo     repoState
	host     hostState
	reset    resetState
	events   eventState

	cert, wrongCert tls.Certificate
	certPEM         []byte

	ln   net.Listener
	srv  *http.Server
	done chan struct{}
	// flashCtx ends running flashes on Close.
	flashCtx    context.Context
	flashCancel context.CancelFunc
	flashWG     sync.WaitGroup
}

// New loads the mockup and prepares a simulator; Start serves it.
func New(cfg Config) (*Sim, error) {
	if cfg.Model == "" {
		cfg.Model = ILO5
	}
	switch cfg.Model {
	case ILO4, ILO5, ILO6:
	default:
		return nil, fmt.Errorf("unknown model %q (want ilo4, ilo5 or ilo6)", cfg.Model)
	}
	if cfg.Username == "" {
		return nil, errors.New("a username is required")
	}
	cfg.Timings = cfg.Timings.withDefaults()
	if cfg.Capture == nil {
		c, err := LoadCapture(cfg.MockupDir)
		if err != nil {
			return nil, err
		}
		cfg.Capture = c
	}
	s := &Sim{cfg: cfg, tree: cfg.Capture.newTree(cfg.Model), sessions: map[string]string{}, done: make(chan struct{})}
	s.flashCtx, s.flashCancel = context.WithCancel(context.Background())
	s.initRepository()
	if cfg.SimpleUpdateProtocols != nil && cfg.Model != ILO4 {
		protocols := make([]any, len(cfg.SimpleUpdateProtocols))
		for i, p := range cfg.SimpleUpdateProtocols {
			protocols[i] = p
		}
		obj(s.tree.edit("/redfish/v1/UpdateService"), "Actions", "#UpdateService.SimpleUpdate")["TransferProtocol@Redfish.AllowableValues"] = protocols
	}
	return s, nil
}

// Start listens on addr (host:port; port 0 picks one) and serves until Close.
func (s *Sim) Start(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	host, _, _ := net.SplitHostPort(ln.Addr().String())
	s.ln = ln
	s.srv = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		ConnState: func(c net.Conn, st http.ConnState) {
			if st != http.StateNew {
				return
			}
			if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
				s.mu.Lock()
				s.stats.SourcePorts = append(s.stats.SourcePorts, ta.Port)
				s.mu.Unlock()
			}
		},
	}
	// TLS handshake failures (a pinned client refusing the wrong certificate) are expected;
	// they go to Logf rather than to the process's standard logger.
	s.srv.ErrorLog = log.New(logWriter{s}, "", 0)
	if !s.cfg.PlainHTTP {
		if s.cert, s.certPEM, err = selfSigned(host); err != nil {
			ln.Close()
			return err
		}
		if s.wrongCert, _, err = selfSigned(host); err != nil {
			ln.Close()
			return err
		}
		s.srv.TLSConfig = &tls.Config{
			MinVersion: tls.VersionTLS12,
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
				s.mu.Lock()
				wrong := s.faults.WrongCert
				s.mu.Unlock()
				if wrong {
					return &s.wrongCert, nil
				}
				return &s.cert, nil
			},
		}
		ln = tls.NewListener(ln, s.srv.TLSConfig)
	}
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(ln)
	}()
	s.logf("iLO simulator (%s) serving %s", s.cfg.Model, s.URL())
	return nil
}

// URL is the base URL of the service (https://host:port).
func (s *Sim) URL() string {
	scheme := "https"
	if s.cfg.PlainHTTP {
		scheme = "http"
	}
	return scheme + "://" + s.Addr()
}

// Addr is the listening host:port.
func (s *Sim) Addr() string { return s.ln.Addr().String() }

// Port is the listening port.
func (s *Sim) Port() int { return s.ln.Addr().(*net.TCPAddr).Port }

// CertPEM is the PEM of the served certificate (nil with PlainHTTP).
func (s *Sim) CertPEM() []byte { return s.certPEM }

// WriteCertPEM writes the served certificate so that clients can trust or pin it.
func (s *Sim) WriteCertPEM(path string) error {
	if s.certPEM == nil {
		return errors.New("no certificate: the simulator serves plain HTTP")
	}
	return os.WriteFile(path, s.certPEM, 0o644)
}

// CertFingerprint is the SHA-256 of the served certificate, lowercase hex.
func (s *Sim) CertFingerprint() string {
	if len(s.cert.Certificate) == 0 {
		return ""
	}
	return fingerprint(s.cert.Certificate[0])
}

// Close stops serving and ends running flashes.
func (s *Sim) Close() error {
	s.flashCancel()
	err := s.srv.Close()
	<-s.done
	s.flashWG.Wait()
	s.events.wg.Wait()
	return err
}

// SetFaults replaces the injected faults.
func (s *Sim) SetFaults(f Faults) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = f
}

// UpdateFaults changes the injected faults in place.
func (s *Sim) UpdateFaults(fn func(*Faults)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fn(&s.faults)
}

// Faults returns the faults currently injected (counters decrease as they fire).
func (s *Sim) Faults() Faults {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.faults
}

// Stats returns a copy of the counters.
func (s *Sim) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.SourcePorts = append([]int(nil), s.stats.SourcePorts...)
	st.MaxConcurrent = s.local.Max()
	st.ILOResets, st.HostBoots, st.ResetRefused = s.reset.count, s.host.boots, s.reset.refused
	st.Subscriptions, st.EventsDelivered, st.EventsFailed, st.EventRetries = len(s.events.subs), s.events.delivered, s.events.failed, s.events.retries
	st.LastComplete = s.events.completedAt
	return st
}

// SourcePorts lists the client source port of every connection accepted, in order.
func (s *Sim) SourcePorts() []int { return s.Stats().SourcePorts }

// Version reports the version currently installed for component (iLO, SystemROM), as the
// inventory shows it.
func (s *Sim) Version(component string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d := s.tree.get(s.tree.inventoryEntry(component, "")); d != nil {
		v, _ := d["Version"].(string)
		return v
	}
	return ""
}

// State is the update state as the model reports it (Oem.Hpe.State, or State on iLO 4).
func (s *Sim) State() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cfg.Model == ILO4 {
		v, _ := s.tree.get(ilo4UpdatePath)["State"].(string)
		return v
	}
	v, _ := field(s.tree.get("/redfish/v1/UpdateService"), "Oem", "Hpe")["State"].(string)
	return v
}

func (s *Sim) logf(format string, args ...any) {
	if s.cfg.Logf != nil {
		s.cfg.Logf(format, args...)
	}
}

// retryAfter formats the Retry-After header value.
func retryAfter(sec int) string {
	if sec <= 0 {
		sec = 1
	}
	return strconv.Itoa(sec)
}

// certPEMBlock encodes DER as PEM.
func certPEMBlock(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// logWriter sends the http.Server's error log to Logf.
type logWriter struct{ s *Sim }

func (w logWriter) Write(p []byte) (int, error) {
	w.s.logf("%s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
