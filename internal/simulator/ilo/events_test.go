package ilo

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/fwops/firmware-operator/internal/simulator/fwimage"
)

// receiver is an HTTPS event listener that records what it is posted and from where; fail
// answers the first fail deliveries 500.
type receiver struct {
	srv  *httptest.Server
	mu   sync.Mutex
	got  []map[string]any
	from []string
	fail int
}

func newReceiver(t *testing.T, fail int) *receiver {
	rc := &receiver{fail: fail}
	rc.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		defer rc.mu.Unlock()
		if rc.fail > 0 {
			rc.fail--
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		var doc map[string]any
		if err := json.Unmarshal(b, &doc); err != nil {
			t.Errorf("event body is not JSON: %s", b)
		}
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		rc.got, rc.from = append(rc.got, doc), append(rc.from, host)
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

// messageIDs lists the MessageId of every event received, in order, and the contexts seen.
func (rc *receiver) messageIDs() (ids, contexts, from []string) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, d := range rc.got {
		contexts = append(contexts, str(d["Context"]))
		for _, e := range anyList(d["Events"]) {
			em, _ := e.(map[string]any)
			ids = append(ids, str(em["MessageId"]))
			if o, _ := em["OriginOfCondition"].(map[string]any); str(o["@odata.id"]) == "" {
				ids = append(ids, "NO-ORIGIN")
			}
		}
	}
	return ids, contexts, append([]string(nil), rc.from...)
}

// startOn starts a simulator on addr (an address of its own, so that the source address of its
// events can be checked).
func startOn(t *testing.T, addr string, cfg Config) *Sim {
	t.Helper()
	if cfg.Capture == nil {
		cfg.Capture = testCapture(t, mockupDir(t))
	}
	cfg.Username, cfg.Password, cfg.Logf = testUser, testPass, t.Logf
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(addr); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// An iLO 5 posts the update's events to a subscription, with its context and from its own
// address, until it resets after flashing itself; then it has forgotten every subscription.
func TestEvents_SubscriptionGetsUpdateEventsAndIsForgottenOnReset(t *testing.T) {
	s := startOn(t, "127.0.0.2:0", Config{SimpleUpdateTask: true, Timings: Timings{Upload: 10 * time.Millisecond,
		Update: 40 * time.Millisecond, ResetDelay: 100 * time.Millisecond, ILOReset: 100 * time.Millisecond,
		HalfUp: 50 * time.Millisecond, POST: 50 * time.Millisecond}})
	c := httpClient(t, s)
	rc := newReceiver(t, 0)
	resp, sub := call(t, c, "POST", s.URL()+subscriptionsPath, map[string]any{"Destination": rc.srv.URL + "/events/t1",
		"Context": "job/t1", "EventTypes": []string{"StatusChange", "ResourceUpdated"}}, nil)
	if resp.StatusCode != http.StatusCreated || resp.Header.Get("Location") == "" || sub["Context"] != "job/t1" {
		t.Fatalf("subscribe: %d %v %v", resp.StatusCode, resp.Header, sub)
	}
	_, coll := call(t, c, "GET", s.URL()+subscriptionsPath, nil, nil)
	if !slices.Contains(memberPaths(coll), resp.Header.Get("Location")) {
		t.Fatalf("the collection does not list %s: %v", resp.Header.Get("Location"), coll)
	}
	if st := s.Stats(); st.Subscriptions != 1 {
		t.Fatalf("Subscriptions = %d, want 1", st.Subscriptions)
	}

	img := httpServe(t, fwimage.Build("iLO", "2.99", nil))
	if resp, _ := call(t, c, "POST", s.URL()+simpleUpdate, map[string]string{"ImageURI": img}, nil); resp.StatusCode != 202 {
		t.Fatalf("SimpleUpdate: %d", resp.StatusCode)
	}
	waitFor(t, "the reset and back", func() bool { return s.Stats().ILOResets == 1 && s.ILOPhase() == "" })
	waitFor(t, "the reset's event", func() bool {
		ids, _, _ := rc.messageIDs()
		return slices.Contains(ids, MsgResetInProgress)
	})
	ids, contexts, from := rc.messageIDs()
	for _, want := range []string{MsgStateChanged, MsgTaskStarted, MsgTaskProgress, MsgTaskCompletedOK, MsgResetInProgress} {
		if !slices.Contains(ids, want) {
			t.Errorf("no %s event among %v", want, ids)
		}
	}
	if slices.Contains(ids, "NO-ORIGIN") {
		t.Errorf("an event without OriginOfCondition: %v", ids)
	}
	for i := range contexts {
		if contexts[i] != "job/t1" || from[i] != "127.0.0.2" {
			t.Fatalf("event %d: context %q from %s, want job/t1 from the iLO's 127.0.0.2", i, contexts[i], from[i])
		}
	}
	// The state events cover every state of the flash (delivery order is not guaranteed).
	if n := countOf(ids, MsgStateChanged); n < 5 {
		t.Errorf("%d state-change events, want Uploading, Verifying, Writing, Updating, Complete and Idle: %v", n, ids)
	}

	_, coll = call(t, c, "GET", s.URL()+subscriptionsPath, nil, nil)
	if n := len(memberPaths(coll)); n != 0 || s.Stats().Subscriptions != 0 {
		t.Fatalf("after the reset: %d subscriptions listed, %d counted; want none", n, s.Stats().Subscriptions)
	}
	if st := s.Stats(); st.EventsDelivered != len(ids) || st.EventsFailed != 0 {
		t.Fatalf("stats %+v, %d events received", st, len(ids))
	}
}

func countOf(ss []string, x string) int {
	n := 0
	for _, s := range ss {
		if s == x {
			n++
		}
	}
	return n
}

// A failed delivery is retried; one that keeps failing is given up and counted.
func TestEvents_DeliveryRetriedThenGivenUp(t *testing.T) {
	s := startTest(t, Config{Timings: Timings{Upload: time.Millisecond, Verify: time.Millisecond, Write: time.Millisecond,
		Update: time.Millisecond, Steps: 1, EventRetry: 10 * time.Millisecond}})
	c := httpClient(t, s)
	flaky := newReceiver(t, 2) // two failures, then fine
	call(t, c, "POST", s.URL()+subscriptionsPath, map[string]any{"Destination": flaky.srv.URL, "EventTypes": []string{"ResourceUpdated"}}, nil)
	img := httpServe(t, fwimage.Build("SystemROM", "2.99", nil))
	call(t, c, "POST", s.URL()+simpleUpdate, map[string]string{"ImageURI": img}, nil)
	waitFor(t, "Complete delivered", func() bool {
		ids, _, _ := flaky.messageIDs()
		return countOf(ids, MsgStateChanged) == 5 // Uploading, Verifying, Writing, Updating, Complete
	})
	if st := s.Stats(); st.EventRetries != 2 || st.EventsFailed != 0 {
		t.Fatalf("stats %+v: want the two failures retried", st)
	}

	// A destination nobody listens on: every attempt fails, the event is given up.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := "https://" + ln.Addr().String() + "/"
	ln.Close()
	call(t, c, "POST", s.URL()+subscriptionsPath, map[string]any{"Destination": dead, "EventTypes": []string{"ResourceUpdated"}}, nil)
	call(t, c, "POST", s.URL()+simpleUpdate, map[string]string{"ImageURI": img}, nil)
	waitFor(t, "given up", func() bool { return s.Stats().EventsFailed == 5 })
	if st := s.Stats(); st.EventRetries != 2+5*deliveryRetries {
		t.Fatalf("EventRetries = %d, want 2 + %d", st.EventRetries, 5*deliveryRetries)
	}
}

// DELETE removes a subscription; bad bodies are refused naming the field; iLO 6 filters on
// RegistryPrefixes; the simulated iLO 4 has no event service.
func TestEvents_DeleteValidationModels(t *testing.T) {
	s := startTest(t, Config{Model: ILO6, Timings: Timings{Upload: time.Millisecond, Verify: time.Millisecond,
		Write: time.Millisecond, Update: time.Millisecond, Steps: 1}})
	c := httpClient(t, s)
	rc := newReceiver(t, 0)
	for _, bad := range []map[string]any{
		{"EventTypes": []string{"Alert"}},
		{"Destination": "http://127.0.0.1:1/", "EventTypes": []string{"Alert"}},
		{"Destination": rc.srv.URL, "EventTypes": []string{"Nonsense"}},
	} {
		if resp, body := call(t, c, "POST", s.URL()+subscriptionsPath, bad, nil); resp.StatusCode != 400 {
			t.Fatalf("%v: %d %v", bad, resp.StatusCode, body)
		}
	}
	resp, _ := call(t, c, "POST", s.URL()+subscriptionsPath, map[string]any{"Destination": rc.srv.URL, "RegistryPrefixes": []string{"TaskEvent"}}, nil)
	loc := resp.Header.Get("Location")
	other := newReceiver(t, 0)
	call(t, c, "POST", s.URL()+subscriptionsPath, map[string]any{"Destination": other.srv.URL, "RegistryPrefixes": []string{"iLOEvents"}}, nil)
	img := httpServe(t, fwimage.Build("SystemROM", "2.99", nil))
	call(t, c, "POST", s.URL()+"/redfish/v1/UpdateService/Actions/UpdateService.SimpleUpdate", map[string]string{"ImageURI": img}, nil)
	waitFor(t, "the iLOEvents subscription's five state events", func() bool {
		ids, _, _ := other.messageIDs()
		return countOf(ids, MsgStateChanged) == 5
	})
	// No task (SimpleUpdateTask off), so no TaskEvent: nothing may have come.
	if ids, _, _ := rc.messageIDs(); len(ids) != 0 {
		t.Fatalf("RegistryPrefixes TaskEvent received %v", ids)
	}
	if resp, _ := call(t, c, "DELETE", s.URL()+loc, nil, nil); resp.StatusCode != 200 {
		t.Fatalf("DELETE: %d", resp.StatusCode)
	}
	if resp, _ := call(t, c, "GET", s.URL()+loc, nil, nil); resp.StatusCode != 404 || s.Stats().Subscriptions != 1 {
		t.Fatalf("after DELETE: GET %d, %d counted, want the other one", resp.StatusCode, s.Stats().Subscriptions)
	}

	s4 := startTest(t, Config{Model: ILO4})
	if resp, _ := call(t, httpClient(t, s4), "POST", s4.URL()+subscriptionsPath, map[string]any{"Destination": rc.srv.URL, "EventTypes": []string{"Alert"}}, nil); resp.StatusCode != 405 {
		t.Fatalf("iLO 4 subscribe: %d, want 405", resp.StatusCode)
	}
}
