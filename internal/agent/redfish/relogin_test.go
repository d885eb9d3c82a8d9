package redfish

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// sessionServer issues X-Auth-Token sessions and serves GET /x to a valid one. The second
// login waits until release is closed, and loginWaiting is closed when it starts; seenDuring
// is closed at the first GET /x that arrives while that login waits.
type sessionServer struct {
	mu           sync.Mutex
	valid        map[string]bool
	logins       int
	release      chan struct{}
	loginWaiting chan struct{}
	seenDuring   chan struct{}
	waiting      bool
	seen         bool
	unauthorized []string
}

func (s *sessionServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost && r.URL.Path == "/redfish/v1/SessionService/Sessions" {
		s.mu.Lock()
		s.logins++
		n := s.logins
		if n == 2 {
			s.waiting = true
			close(s.loginWaiting)
		}
		s.mu.Unlock()
		if n == 2 {
			<-s.release
		}
		tok := fmt.Sprintf("token-%d", n)
		s.mu.Lock()
		s.valid[tok] = true
		s.waiting = false
		s.mu.Unlock()
		w.Header().Set("X-Auth-Token", tok)
		w.Header().Set("Location", fmt.Sprintf("/redfish/v1/SessionService/Sessions/%d", n))
		w.WriteHeader(http.StatusCreated)
		return
	}
	tok := r.Header.Get("X-Auth-Token")
	s.mu.Lock()
	ok := s.valid[tok]
	if s.waiting && !s.seen {
		s.seen = true
		close(s.seenDuring)
	}
	if !ok {
		s.unauthorized = append(s.unauthorized, tok)
	}
	s.mu.Unlock()
	if !ok {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"error":{"code":"Base.1.4.NoValidSession","message":"no valid session: log in first"}}`))
		return
	}
	_, _ = w.Write([]byte(`{}`))
}

// An iLO that reset forgot the session; one request logs in again while another is sent. The
// other must not go out without a token (and fail with a 401 it cannot answer by logging in):
// it waits for the new session. The 10,000-target scale bench failed a target that way:
// "following the flash: … GET /redfish/v1/UpdateService: HTTP 401 … NoValidSession".
func TestRequestDuringAReloginWaitsForTheNewSession(t *testing.T) {
	s := &sessionServer{valid: map[string]bool{}, release: make(chan struct{}), loginWaiting: make(chan struct{}), seenDuring: make(chan struct{})}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	c, err := New(Options{Endpoint: srv.URL, Username: "admin", Password: "pw"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t, time.Minute)
	if err := c.Login(ctx); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	s.valid = map[string]bool{} // the reset: every session gone
	s.mu.Unlock()

	errs := make(chan error, 2)
	go func() { errs <- c.Get(ctx, "/x", nil) }() // logs in again, the login held
	select {
	case <-s.loginWaiting:
	case <-ctx.Done():
		t.Fatal("the first request never logged in again")
	}
	go func() { errs <- c.Get(ctx, "/x", nil) }()
	select {
	case <-s.seenDuring:
	case <-ctx.Done():
		t.Fatal("the second request never reached the service")
	}
	close(s.release)
	for range 2 {
		if err := <-errs; err != nil {
			t.Errorf("request: %v", err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, tok := range s.unauthorized {
		if tok == "" {
			t.Errorf("a request went out with no token while the client logged in again (refused: %q)", s.unauthorized)
			break
		}
	}
	if s.logins != 2 {
		t.Errorf("logins = %d, want 2 (one new session for both requests)", s.logins)
	}
}
