package runner

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
	"github.com/fwops/firmware-operator/internal/agent/config"
	"github.com/fwops/firmware-operator/internal/agent/ilo"
	"github.com/fwops/firmware-operator/internal/simulator/fwimage"
	similo "github.com/fwops/firmware-operator/internal/simulator/ilo"
	"github.com/fwops/firmware-operator/internal/testutil/apiserver"
	"github.com/fwops/firmware-operator/internal/testutil/shared"
	"github.com/fwops/firmware-operator/internal/testutil/syncbuf"
)

// newE2E starts a real API server with the test namespace, for the end-to-end tests.
func newE2E(t testing.TB) *e2e {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end")
	}
	cfg, c := apiserver.StartForTest(t)
	if err := c.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: testNS}}); err != nil {
		t.Fatal(err)
	}
	return &e2e{t: t, cfg: cfg, c: c, images: map[string][]byte{}, out: &syncbuf.Buffer{}}
}

// eventRun is one agent run flashing one iLO 5's system ROM, and what it cost.
type eventRun struct {
	requests       int           // Redfish requests the simulator served
	completeToDone time.Duration // from the iLO's Complete to the agent's end (final phase written)
	delivered      int           // events the simulator delivered
	status         fwv1.TargetUpdateStatus
	sim            *similo.Sim
}

// runROMJob runs an agent on one simulated iLO 5 (on 127.0.0.1, as the agent) with or without
// a rule P5 receive port. during, when set, runs while the flash is on with the simulator.
func (e *e2e) runROMJob(name string, receive bool, tm similo.Timings, opts ilo.Options, during func(*similo.Sim)) eventRun {
	t := e.t
	img := fwimage.Build("SystemROM", "2.68", []byte("system ROM payload"))
	e.mu.Lock()
	e.images[name+".bin"] = img
	e.mu.Unlock()
	imgSrv := e.serveImages()
	s, err := similo.New(similo.Config{MockupDir: shared.Mockup(shared.DL325), Model: similo.ILO5, Username: "Administrator",
		Password: e2ePassword, Timings: tm, SimpleUpdateTask: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	cfg := e.job(name, config.Firmware{URL: imgSrv.URL + "/" + name + ".bin", SHA256: digest(img), Version: "2.68", Component: "SystemROM"},
		[]config.Target{{Name: "ilo5", Type: "iLO5", Address: s.Addr(), CertificateSHA256: s.CertFingerprint()}})
	if !receive {
		cfg.Ports.Reverse = nil
	}
	mountCredentials(t, cfg, "ilo5", "Administrator", e2ePassword)
	done := make(chan struct{})
	if during != nil {
		go func() {
			defer close(done)
			during(s)
		}()
	} else {
		close(done)
	}
	if err := e.run(cfg, WithILOOptions(opts)); err != nil {
		t.Fatalf("agent: %v\n%s", err, e.out.String())
	}
	end := time.Now()
	<-done
	st := s.Stats()
	return eventRun{requests: st.Requests, completeToDone: end.Sub(st.LastComplete), delivered: st.EventsDelivered,
		status: e.status(name, "ilo5"), sim: s}
}

// subscriptionOf reads the simulator's one subscription (Destination and Context) as a client
// of the iLO would.
func subscriptionOf(s *similo.Sim) (dest, ctxStr string, err error) {
	cl := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // test reads its own simulator
	defer cl.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodGet, s.URL()+"/redfish/v1/EventService/Subscriptions?$expand=.", nil)
	req.SetBasicAuth("Administrator", e2ePassword)
	resp, err := cl.Do(req)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	var coll struct {
		Members []struct{ Destination, Context string }
	}
	if err := json.NewDecoder(resp.Body).Decode(&coll); err != nil {
		return "", "", err
	}
	for _, m := range coll.Members {
		if strings.HasPrefix(m.Context, "firmware-operator/") {
			return m.Destination, m.Context, nil
		}
	}
	return "", "", errors.New("no subscription of the agent")
}

// forge posts an event with the right context from another address (127.0.0.9).
func forge(dest, ctxStr string) (int, error) {
	cl := &http.Client{Transport: &http.Transport{
		DialContext:     (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.9")}}).DialContext,
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // the agent's self-made certificate
	}}
	defer cl.CloseIdleConnections()
	b, _ := json.Marshal(map[string]any{"Context": ctxStr, "Events": []any{map[string]any{"EventType": "StatusChange", "MessageId": "TaskEvent.1.0.0.TaskCompletedOK"}}})
	resp, err := cl.Post(dest, "application/json", bytes.NewReader(b))
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// rule P5 end to end: an agent pod's run (Main, real API server) flashing an iLO 5 learns the
// progress from Redfish events on its receive port; the subscription is gone afterwards; a
// forged event is dropped and logged. Then the figures: the same flash with events and with
// polling only, at the poll-to-flash ratio of real hardware (polls every 2 s, flashes of
// minutes), scaled down.
func TestP5_EndToEndEvents(t *testing.T) {
	e := newE2E(t)
	slow := similo.Timings{Upload: 100 * time.Millisecond, Verify: 100 * time.Millisecond, Write: 100 * time.Millisecond,
		Update: 2 * time.Second, Steps: 4, POST: 300 * time.Millisecond}

	t.Run("events alone finish the flash", func(t *testing.T) {
		// Polls an hour apart: within the run's two minutes only events can move the flash on.
		// Seen failing without the receive port (receive=false): the agent times out.
		forged := make(chan string, 1)
		r := e.runROMJob("events-only", true, slow, ilo.Options{PollInterval: time.Hour, EventPollInterval: time.Hour, VerifyReads: 1,
			FlashTimeout: time.Minute, VerifyTimeout: time.Minute},
			func(s *similo.Sim) {
				// This runs beside the agent, off the test's goroutine: a failed wait is
				// reported through forged, which the test reads.
				g := gomega.NewGomega(func(msg string, _ ...int) { forged <- "the agent never subscribed: " + msg })
				if !g.Eventually(func() int { return s.Stats().Subscriptions }).WithTimeout(time.Minute).Should(gomega.Equal(1)) {
					return
				}
				dest, ctxStr, err := subscriptionOf(s)
				if err != nil {
					forged <- err.Error()
					return
				}
				code, err := forge(dest, ctxStr)
				forged <- fmt.Sprintf("%d %v", code, err)
			})
		if r.status.Phase != fwv1.TargetPhaseSucceeded || !r.status.RebootRequired {
			t.Fatalf("status %+v", r.status)
		}
		if got := <-forged; got != "403 <nil>" {
			t.Fatalf("forged event from 127.0.0.9: %s, want 403", got)
		}
		if !strings.Contains(e.out.String(), `"msg":"Redfish event dropped"`) || !strings.Contains(e.out.String(), `"from":"127.0.0.9"`) {
			t.Errorf("no log line for the dropped event:\n%s", e.out.String())
		}
		if st := r.sim.Stats(); st.Subscriptions != 0 || r.delivered == 0 {
			t.Fatalf("after the run: %d subscriptions on the iLO, %d events delivered; want none left, some delivered", st.Subscriptions, r.delivered)
		}
		if len(r.status.ReceivePorts) != 1 || r.status.ReceivePort != r.status.ReceivePorts[0] || r.status.ReceiveVia != fwv1.ReceiveViaRedfishEvents {
			t.Errorf("receivePorts %v, receivePort %d via %q: want the one port, via RedfishEvents", r.status.ReceivePorts, r.status.ReceivePort, r.status.ReceiveVia)
		}
	})

	t.Run("figures", func(t *testing.T) {
		// 20 ms polls against a 2.3 s flash is the ratio of 2 s polls against a four-minute
		// flash (the request count); 500 ms polls show the wait events save after Complete.
		t.Logf("rule P5 figures (iLO 5 system ROM, flash %s, fallback poll 5 x poll once events arrive, 3 verify reads):",
			slow.Upload+slow.Verify+slow.Write+slow.Update)
		for _, poll := range []time.Duration{20 * time.Millisecond, 500 * time.Millisecond} {
			opts := ilo.Options{PollInterval: poll, FlashTimeout: time.Minute, VerifyTimeout: time.Minute}
			name := strings.TrimSuffix(poll.String(), "ms")
			ev := e.runROMJob("events-"+name, true, slow, opts, nil)
			pl := e.runROMJob("polling-"+name, false, slow, opts, nil)
			for _, r := range []eventRun{ev, pl} {
				if r.status.Phase != fwv1.TargetPhaseSucceeded || r.sim.Stats().Subscriptions != 0 {
					t.Fatalf("status %+v, %d subscriptions left", r.status, r.sim.Stats().Subscriptions)
				}
			}
			if pl.delivered != 0 || ev.delivered == 0 {
				t.Fatalf("events delivered: %d with the receive port, %d without", ev.delivered, pl.delivered)
			}
			t.Logf("  poll %-6s with events:  %3d Redfish requests per flash, Complete -> final phase %s (%d events)",
				poll, ev.requests, ev.completeToDone.Round(time.Millisecond), ev.delivered)
			t.Logf("  poll %-6s polling only: %3d Redfish requests per flash, Complete -> final phase %s",
				poll, pl.requests, pl.completeToDone.Round(time.Millisecond))
		}
	})
}
