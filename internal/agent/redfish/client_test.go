package redfish

import (
	"context"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/onsi/gomega"

	"github.com/fwops/firmware-operator/internal/simulator/fwimage"
	similo "github.com/fwops/firmware-operator/internal/simulator/ilo"
	"github.com/fwops/firmware-operator/internal/testutil/shared"
)

const (
	user = "admin"
	pass = "s3cret-Passw0rd"
)

func sharedDir(*testing.T) string { return shared.Dir() }

func mockup(t *testing.T, name string) string {
	return filepath.Join(sharedDir(t), "testdata", "redfish-mockups", name)
}

const dl325 = "ilo5-dl325-gen10plus-v2.46"

// fast keeps the iLO reset and the host POST on, short.
var fast = similo.Timings{Upload: 10 * time.Millisecond, Verify: 10 * time.Millisecond, Write: 10 * time.Millisecond, Update: 40 * time.Millisecond, Steps: 4,
	ResetDelay: 30 * time.Millisecond, ILOReset: 300 * time.Millisecond, HalfUp: 200 * time.Millisecond, POST: 100 * time.Millisecond}

func startSim(t *testing.T, cfg similo.Config) *similo.Sim {
	t.Helper()
	if cfg.MockupDir == "" {
		cfg.MockupDir = mockup(t, dl325)
	}
	cfg.Username, cfg.Password = user, pass
	if cfg.Timings == (similo.Timings{}) {
		cfg.Timings = fast
	}
	s, err := similo.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// newClient logs in to s with its certificate pinned unless opts says otherwise.
func newClient(t *testing.T, s *similo.Sim, opts Options) *Client {
	t.Helper()
	opts.Endpoint = s.Addr()
	if opts.Username == "" {
		opts.Username, opts.Password = user, pass
	}
	if opts.TLS.CABundle == nil && opts.TLS.FingerprintSHA256 == "" && !opts.TLS.InsecureSkipVerify {
		opts.TLS.FingerprintSHA256 = s.CertFingerprint()
	}
	c, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func login(t *testing.T, c *Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Login(ctx); err != nil {
		t.Fatal(err)
	}
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// imageServer serves images at /<name> over HTTP on 127.0.0.1.
func imageServer(t *testing.T, images map[string][]byte) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, ok := images[strings.TrimPrefix(r.URL.Path, "/")]
		if !ok {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(b)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

func sessionCount(t *testing.T, c *Client) int {
	t.Helper()
	var coll struct{ Members []struct{} }
	if err := c.Get(ctxT(t, 5*time.Second), "/redfish/v1/SessionService/Sessions", &coll); err != nil {
		t.Fatal(err)
	}
	return len(coll.Members)
}

func TestSessionLoginAndLogout(t *testing.T) {
	s := startSim(t, similo.Config{})
	c := newClient(t, s, Options{})
	login(t, c)
	if c.UsesBasicAuth() {
		t.Fatal("Basic auth used although sessions work")
	}
	if n := sessionCount(t, c); n != 1 {
		t.Fatalf("sessions = %d, want 1", n)
	}
	// Another client sees the first session go away once it is closed.
	other := newClient(t, s, Options{})
	login(t, other)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if n := sessionCount(t, other); n != 1 {
		t.Fatalf("sessions after one logout = %d, want 1 (the other client's)", n)
	}
}

func TestBasicAuthFallback(t *testing.T) {
	s := startSim(t, similo.Config{NoSessions: true})
	c := newClient(t, s, Options{})
	login(t, c)
	if !c.UsesBasicAuth() {
		t.Fatal("sessions are refused by the service but the client did not fall back to Basic auth")
	}
	m, err := c.Manager(ctxT(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if m.Model != "iLO 5" {
		t.Fatalf("Model = %q", m.Model)
	}
}

func TestBadCredentialsDoNotLeak(t *testing.T) {
	for _, noSessions := range []bool{false, true} {
		s := startSim(t, similo.Config{NoSessions: noSessions})
		c := newClient(t, s, Options{Username: user, Password: "wrong-Secret-xyz"})
		err := c.Login(ctxT(t, 5*time.Second))
		var re *Error
		if !errors.As(err, &re) || re.StatusCode != http.StatusUnauthorized {
			t.Fatalf("noSessions=%v: err = %v, want HTTP 401", noSessions, err)
		}
		if strings.Contains(err.Error(), "wrong-Secret-xyz") {
			t.Fatalf("the password leaked into the error: %v", err)
		}
		if !strings.Contains(err.Error(), "credentials") {
			t.Fatalf("the error does not say what to do: %v", err)
		}
	}
}

func TestTLSVerification(t *testing.T) {
	s := startSim(t, similo.Config{})
	other := startSim(t, similo.Config{})
	colons := func(h string) string {
		var parts []string
		for i := 0; i < len(h); i += 2 {
			parts = append(parts, strings.ToUpper(h[i:i+2]))
		}
		return strings.Join(parts, ":")
	}
	tests := []struct {
		name      string
		tls       TLSOptions
		wrongCert bool
		check     func(error) bool
	}{
		{name: "pinned", tls: TLSOptions{FingerprintSHA256: s.CertFingerprint()}, check: func(e error) bool { return e == nil }},
		{name: "pinned with colons", tls: TLSOptions{FingerprintSHA256: colons(s.CertFingerprint())}, check: func(e error) bool { return e == nil }},
		{name: "pinned, other certificate", tls: TLSOptions{FingerprintSHA256: other.CertFingerprint()},
			check: func(e error) bool { return errors.Is(e, ErrFingerprintMismatch) }},
		{name: "pinned, server serves wrong cert", tls: TLSOptions{FingerprintSHA256: s.CertFingerprint()}, wrongCert: true,
			check: func(e error) bool { return errors.Is(e, ErrFingerprintMismatch) }},
		{name: "CA bundle", tls: TLSOptions{CABundle: s.CertPEM()}, check: func(e error) bool { return e == nil }},
		{name: "CA bundle of another iLO", tls: TLSOptions{CABundle: other.CertPEM()},
			check: func(e error) bool { var ua x509.UnknownAuthorityError; return errors.As(e, &ua) }},
		{name: "default verification refuses self-signed", tls: TLSOptions{},
			check: func(e error) bool { var ua x509.UnknownAuthorityError; return errors.As(e, &ua) }},
		{name: "explicit insecure", tls: TLSOptions{InsecureSkipVerify: true}, check: func(e error) bool { return e == nil }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s.UpdateFaults(func(f *similo.Faults) { f.WrongCert = tc.wrongCert })
			defer s.SetFaults(similo.Faults{})
			c, err := New(Options{Endpoint: s.Addr(), Username: user, Password: pass, TLS: tc.tls})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			err = c.Login(ctxT(t, 5*time.Second))
			if !tc.check(err) {
				t.Fatalf("Login: %v", err)
			}
		})
	}
	if _, err := New(Options{Endpoint: s.Addr(), TLS: TLSOptions{FingerprintSHA256: "abc"}}); err == nil {
		t.Fatal("a malformed fingerprint was accepted")
	}
}

// waitState reads the update state until it is terminal and returns every state read.
func waitState(t *testing.T, status func(context.Context) (UpdateStatus, error)) ([]UpdateStatus, UpdateStatus) {
	t.Helper()
	ctx := ctxT(t, time.Minute)
	var seen []UpdateStatus
	gomega.NewWithT(t).Eventually(func() (string, error) {
		st, err := status(ctx)
		if err != nil {
			return "", gomega.StopTrying("reading the update state").Wrap(err)
		}
		seen = append(seen, st)
		return st.State, nil
	}).WithTimeout(time.Minute).WithPolling(5 * time.Millisecond).Should(gomega.BeElementOf(StateComplete, StateError))
	return seen, seen[len(seen)-1]
}

func inventoryVersion(t *testing.T, c *Client, name string) string {
	t.Helper()
	inv, err := c.FirmwareInventory(ctxT(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range inv {
		if e.Name == name {
			return e.Version
		}
	}
	t.Fatalf("no inventory entry %q", name)
	return ""
}

func TestUpdateFlows(t *testing.T) {
	images := map[string][]byte{
		"ilo.bin": fwimage.Build("iLO", "2.99", []byte("payload")),
		"rom.bin": fwimage.Build("SystemROM", "2.68", []byte("rom")),
		"nic.fwpkg": fwimage.BuildHeader(fwimage.Header{Component: "SmartComponent", Version: "08.60.1",
			Target: "Marvell 2P 25GbE SFP28 QL41232HQCU-HC OCP3 Adapter"}, []byte("pkg")),
	}
	base := imageServer(t, images)
	tests := []struct {
		name      string
		cfg       similo.Config
		start     func(*Client) (UpdateAccepted, error)
		status    func(*Client) func(context.Context) (UpdateStatus, error)
		entry     string
		wantVer   string
		wantTask  bool
		wantModel string
	}{
		{name: "iLO 5 SimpleUpdate, no task", cfg: similo.Config{Model: similo.ILO5},
			start:  func(c *Client) (UpdateAccepted, error) { return c.SimpleUpdate(context.Background(), base+"/ilo.bin") },
			status: func(c *Client) func(context.Context) (UpdateStatus, error) { return c.UpdateStatus },
			entry:  "iLO 5", wantVer: "2.99", wantModel: "iLO 5"},
		{name: "iLO 5 SimpleUpdate with task", cfg: similo.Config{Model: similo.ILO5, SimpleUpdateTask: true},
			start:  func(c *Client) (UpdateAccepted, error) { return c.SimpleUpdate(context.Background(), base+"/rom.bin") },
			status: func(c *Client) func(context.Context) (UpdateStatus, error) { return c.UpdateStatus },
			// A ROM flash is staged on the redundant side until the next reboot.
			entry: "Redundant System ROM", wantVer: "2.68", wantTask: true, wantModel: "iLO 5"},
		{name: "iLO 6 SimpleUpdate", cfg: similo.Config{Model: similo.ILO6},
			start:  func(c *Client) (UpdateAccepted, error) { return c.SimpleUpdate(context.Background(), base+"/ilo.bin") },
			status: func(c *Client) func(context.Context) (UpdateStatus, error) { return c.UpdateStatus },
			entry:  "iLO 6", wantVer: "2.99", wantModel: "iLO 6"},
		{name: "iLO 4 InstallFromURI", cfg: similo.Config{Model: similo.ILO4},
			start: func(c *Client) (UpdateAccepted, error) {
				return UpdateAccepted{}, c.InstallFromURI(context.Background(), base+"/ilo.bin")
			},
			status: func(c *Client) func(context.Context) (UpdateStatus, error) { return c.ILO4UpdateStatus },
			entry:  "iLO 4", wantVer: "2.99", wantModel: "iLO 4"},
		{name: "Smart Component AddFromUri", cfg: similo.Config{Model: similo.ILO5},
			start: func(c *Client) (UpdateAccepted, error) {
				return UpdateAccepted{}, c.AddFromURI(context.Background(), AddFromURIRequest{ImageURI: base + "/nic.fwpkg", UpdateRepository: true, UpdateTarget: true})
			},
			status: func(c *Client) func(context.Context) (UpdateStatus, error) { return c.UpdateStatus },
			entry:  "Marvell 2P 25GbE SFP28 QL41232HQCU-HC OCP3 Adapter", wantVer: "08.60.1", wantModel: "iLO 5"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := startSim(t, tc.cfg)
			c := newClient(t, s, Options{})
			login(t, c)
			m, err := c.Manager(ctxT(t, 5*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			if m.Model != tc.wantModel {
				t.Fatalf("Model = %q, want %q", m.Model, tc.wantModel)
			}
			before := inventoryVersion(t, c, tc.entry)
			acc, err := tc.start(c)
			if err != nil {
				t.Fatal(err)
			}
			if (acc.TaskURI != "") != tc.wantTask || (acc.TaskMonitor != "") != tc.wantTask {
				t.Fatalf("accepted = %+v, want a task: %v", acc, tc.wantTask)
			}
			seen, last := waitState(t, tc.status(c))
			if last.State != StateComplete {
				t.Fatalf("ended in %+v", last)
			}
			sawUpdating := false
			for _, st := range seen {
				sawUpdating = sawUpdating || st.State == StateUpdating
			}
			if !sawUpdating {
				t.Fatalf("never saw Updating: %+v", seen)
			}
			if strings.HasPrefix(tc.entry, "iLO") {
				// The iLO resets after flashing itself and forgets the session: the client
				// logs in again at its first read afterwards.
				waitCond(t, "the iLO's reset", func() bool { return s.Stats().ILOResets == 1 && s.ILOPhase() == "" })
				defer func() {
					if n := c.Relogins(); n != 1 {
						t.Errorf("relogins = %d, want 1", n)
					}
				}()
			}
			after := inventoryVersion(t, c, tc.entry)
			if after == before || !strings.Contains(after, tc.wantVer) {
				t.Fatalf("inventory version %q -> %q, want one carrying %s", before, after, tc.wantVer)
			}
			if tc.wantTask {
				task, err := c.Task(ctxT(t, 5*time.Second), acc.TaskURI)
				if err != nil {
					t.Fatal(err)
				}
				if task.TaskState != "Completed" {
					t.Fatalf("task state %q", task.TaskState)
				}
			}
			if st := s.Stats(); st.FlashesStarted != 1 || st.FlashesCompleted != 1 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

func TestFlashErrorCarriesMessageID(t *testing.T) {
	s := startSim(t, similo.Config{})
	s.SetFaults(similo.Faults{FlashError: "iLO.2.14.UpdateFailed"})
	base := imageServer(t, map[string][]byte{"ilo.bin": fwimage.Build("iLO", "3.00", nil)})
	c := newClient(t, s, Options{})
	login(t, c)
	if _, err := c.SimpleUpdate(ctxT(t, 5*time.Second), base+"/ilo.bin"); err != nil {
		t.Fatal(err)
	}
	_, last := waitState(t, c.UpdateStatus)
	if last.State != StateError || last.MessageID != "iLO.2.14.UpdateFailed" {
		t.Fatalf("last = %+v", last)
	}
	// A second flash while none runs is accepted; a bad request is decoded into a typed error.
	_, err := c.Post(ctxT(t, 5*time.Second), PathSimpleUpdate, map[string]string{"TransferProtocol": "HTTP"}, nil)
	var re *Error
	if !errors.As(err, &re) || re.StatusCode != 400 || re.MessageID != "Base.1.4.PropertyMissing" {
		t.Fatalf("err = %v", err)
	}
}

func TestInventory(t *testing.T) {
	for _, ignore := range []bool{false, true} {
		s := startSim(t, similo.Config{IgnoreExpand: ignore})
		c := newClient(t, s, Options{})
		login(t, c)
		before := s.Stats().Requests
		inv, err := c.FirmwareInventory(ctxT(t, 5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		reqs := s.Stats().Requests - before
		if len(inv) != 12 {
			t.Fatalf("ignoreExpand=%v: %d members, want 12 (the capture's)", ignore, len(inv))
		}
		for _, e := range inv {
			if e.Name == "" || e.Version == "" {
				t.Fatalf("ignoreExpand=%v: incomplete member %+v", ignore, e)
			}
		}
		// With $expand one request suffices; without, one per member follows.
		if want := map[bool]int{false: 1, true: 13}[ignore]; reqs != want {
			t.Fatalf("ignoreExpand=%v: %d requests, want %d", ignore, reqs, want)
		}
	}
}

// TestCaptures reads both real captures: the versions must be those of the machines.
func TestCaptures(t *testing.T) {
	for _, name := range []string{dl325, "ilo5-xl675d-gen10plus-v2.55"} {
		t.Run(name, func(t *testing.T) {
			want := name[strings.LastIndex(name, "-v")+2:] // the folder names the iLO version
			s := startSim(t, similo.Config{MockupDir: mockup(t, name)})
			c := newClient(t, s, Options{})
			login(t, c)
			m, err := c.Manager(ctxT(t, 5*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			if m.FirmwareVersion != "iLO 5 v"+want {
				t.Fatalf("FirmwareVersion = %q, want iLO 5 v%s", m.FirmwareVersion, want)
			}
			if v := inventoryVersion(t, c, "iLO 5"); !strings.HasPrefix(v, want+" ") {
				t.Fatalf("inventory iLO 5 = %q, want %s…", v, want)
			}
			if v := inventoryVersion(t, c, "System ROM"); !strings.Contains(v, " v2.") {
				t.Fatalf("System ROM = %q", v)
			}
			st, err := c.UpdateStatus(ctxT(t, 5*time.Second))
			if err != nil || st.State != StateIdle {
				t.Fatalf("status %+v, %v", st, err)
			}
			// Both real iLO 5s advertise HTTPS for SimpleUpdate: the agent serves them HTTPS.
			if !st.SimpleUpdateOffers("HTTPS") || !st.SimpleUpdateOffers("HTTP") || st.SimpleUpdateOffers("FTP") {
				t.Fatalf("SimpleUpdate protocols %q, want HTTP and HTTPS as captured", st.SimpleUpdateProtocols)
			}
			// Links in the captures differ in case from the paths that serve them.
			var bios struct {
				ID string `json:"Id"`
			}
			if err := c.Get(ctxT(t, 5*time.Second), "/redfish/v1/systems/1/bios/", &bios); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestFaults(t *testing.T) {
	s := startSim(t, similo.Config{})
	c := newClient(t, s, Options{MaxRetries: 2})
	login(t, c)

	t.Run("5xx", func(t *testing.T) {
		s.SetFaults(similo.Faults{FailNext: 1, FailStatus: 502})
		_, err := c.Manager(ctxT(t, 5*time.Second))
		var re *Error
		if !errors.As(err, &re) || re.StatusCode != 502 || re.MessageID == "" {
			t.Fatalf("err = %v", err)
		}
		if _, err := c.Manager(ctxT(t, 5*time.Second)); err != nil {
			t.Fatalf("the fault outlived its count: %v", err)
		}
	})
	t.Run("stall bounded by the context", func(t *testing.T) {
		s.SetFaults(similo.Faults{StallMS: 2000})
		defer s.SetFaults(similo.Faults{})
		start := time.Now()
		_, err := c.Manager(ctxT(t, 150*time.Millisecond))
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want deadline exceeded", err)
		}
		if el := time.Since(start); el > time.Second {
			t.Fatalf("the call took %s despite a 150ms context", el)
		}
	})
	t.Run("dropped connection", func(t *testing.T) {
		// Go's transport replays an idempotent request once when a reused connection dies, so
		// more than one drop is needed for the caller to see it.
		s.SetFaults(similo.Faults{DropNext: 3})
		_, err := c.Manager(ctxT(t, 5*time.Second))
		if err == nil {
			t.Fatal("a dropped connection went unnoticed")
		}
		s.SetFaults(similo.Faults{})
		if _, err := c.Manager(ctxT(t, 5*time.Second)); err != nil {
			t.Fatalf("no recovery after the drop: %v", err)
		}
	})
	t.Run("503 Retry-After honoured", func(t *testing.T) {
		s.SetFaults(similo.Faults{RetryAfterNext: 1, RetryAfterSeconds: 1})
		start := time.Now()
		if _, err := c.Manager(ctxT(t, 5*time.Second)); err != nil {
			t.Fatal(err)
		}
		if el := time.Since(start); el < 900*time.Millisecond {
			t.Fatalf("retried after %s, before the 1s Retry-After", el)
		}
	})
	t.Run("503 retries are bounded", func(t *testing.T) {
		s.SetFaults(similo.Faults{RetryAfterNext: 10, RetryAfterSeconds: 0})
		defer s.SetFaults(similo.Faults{})
		cc := newClient(t, s, Options{MaxRetries: 1, MaxRetryWait: 10 * time.Millisecond})
		err := cc.Login(ctxT(t, 5*time.Second))
		var re *Error
		if !errors.As(err, &re) || re.StatusCode != 503 || re.RetryAfter == "" {
			t.Fatalf("err = %v", err)
		}
		if left := s.Faults().RetryAfterNext; left != 8 {
			t.Fatalf("%d 503s left, want 8 (one try + one retry)", left)
		}
	})
	t.Run("503 wait bounded by the context", func(t *testing.T) {
		s.SetFaults(similo.Faults{RetryAfterNext: 1, RetryAfterSeconds: 30})
		defer s.SetFaults(similo.Faults{})
		_, err := c.Manager(ctxT(t, 200*time.Millisecond))
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestSlowDownload(t *testing.T) {
	s := startSim(t, similo.Config{})
	payload := make([]byte, 3000)
	base := imageServer(t, map[string][]byte{"ilo.bin": fwimage.Build("iLO", "2.70", payload)})
	s.SetFaults(similo.Faults{DownloadBytesPerSec: 10000}) // ~0.3s for 3 kB
	c := newClient(t, s, Options{})
	login(t, c)
	start := time.Now()
	if _, err := c.SimpleUpdate(ctxT(t, 5*time.Second), base+"/ilo.bin"); err != nil {
		t.Fatal(err)
	}
	seen, last := waitState(t, c.UpdateStatus)
	if last.State != StateComplete {
		t.Fatalf("last %+v", last)
	}
	if el := time.Since(start); el < 250*time.Millisecond {
		t.Fatalf("flash took %s: the throttle did not apply", el)
	}
	uploading := 0
	for _, st := range seen {
		if st.State == StateUploading {
			uploading++
		}
	}
	if uploading < 5 {
		t.Fatalf("saw Uploading %d times only", uploading)
	}
}

// TestLocalSourcePort checks rule P4: every connection to the target leaves from the assigned
// port, also after the target dropped one.
func TestLocalSourcePort(t *testing.T) {
	s := startSim(t, similo.Config{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	c := newClient(t, s, Options{LocalAddress: "127.0.0.1", LocalPort: port})
	login(t, c)
	s.SetFaults(similo.Faults{DropNext: 3}) // see TestFaults/dropped_connection
	if _, err := c.Manager(ctxT(t, 5*time.Second)); err == nil {
		t.Fatal("drop not seen")
	}
	s.SetFaults(similo.Faults{})
	for range 3 {
		if _, err := c.Manager(ctxT(t, 5*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	// A new client on the same port right after: SO_REUSEADDR lets it bind.
	c2 := newClient(t, s, Options{LocalAddress: "127.0.0.1", LocalPort: port})
	login(t, c2)
	ports := s.SourcePorts()
	if len(ports) < 3 {
		t.Fatalf("only %d connections seen", len(ports))
	}
	for _, p := range ports {
		if p != port {
			t.Fatalf("connection from port %d, want %d: %v", p, port, ports)
		}
	}
}

func TestPaths(t *testing.T) {
	tests := []struct {
		a, b string
		same bool
	}{
		{"/redfish/v1/Systems/1/", "/redfish/v1/systems/1", true},
		{"/redfish/v1/UpdateService", "/redfish/v1/UpdateService/", true},
		{"/redfish/v1/Systems/1", "/redfish/v1/Systems/2", false},
	}
	for _, tc := range tests {
		if SamePath(tc.a, tc.b) != tc.same {
			t.Errorf("SamePath(%q, %q) != %v", tc.a, tc.b, tc.same)
		}
	}
	locs := []struct{ loc, want string }{
		{"https://10.0.0.5:443/redfish/v1/SessionService/Sessions/admin1/", "/redfish/v1/SessionService/Sessions/admin1/"},
		{"https://ilo.example/redfish/v1/SessionService/Sessions/admin1", "/redfish/v1/SessionService/Sessions/admin1"},
		{"/redfish/v1/SessionService/Sessions/admin1/", "/redfish/v1/SessionService/Sessions/admin1/"},
		{"Sessions/admin1", "/redfish/v1/SessionService/Sessions/admin1"},
	}
	for _, tc := range locs {
		if got := locationPath("/redfish/v1/SessionService/Sessions", tc.loc); got != tc.want {
			t.Errorf("locationPath(%q) = %q, want %q", tc.loc, got, tc.want)
		}
	}
}

func TestErrorDecoding(t *testing.T) {
	body := `{"error":{"code":"iLO.0.10.ExtendedInfo","message":"See ext","@Message.ExtendedInfo":[{"MessageId":"Base.1.4.Success"},{"MessageId":"iLO.2.14.InsufficientPrivilege","Message":"no right"}]}}`
	err := decodeError("POST", "/x", &http.Response{StatusCode: 403, Header: http.Header{}}, []byte(body))
	var re *Error
	if !errors.As(err, &re) || re.MessageID != "iLO.2.14.InsufficientPrivilege" || re.StatusCode != 403 {
		t.Fatalf("%#v", err)
	}
	if !strings.Contains(err.Error(), "privilege") || !strings.Contains(err.Error(), "no right") {
		t.Fatalf("message %q", err)
	}
	oem := `{"Oem":{"Hpe":{"Result":{"MessageId":"iLO.2.14.UpdateFailed"}}}}`
	err = decodeError("GET", "/y", &http.Response{StatusCode: 500, Header: http.Header{}}, []byte(oem))
	if !errors.As(err, &re) || re.MessageID != "iLO.2.14.UpdateFailed" {
		t.Fatalf("%#v", err)
	}
}

func waitCond(t *testing.T, what string, cond func() bool) {
	t.Helper()
	gomega.NewWithT(t).Eventually(cond).WithTimeout(time.Minute).Should(gomega.BeTrue(), what)
}
