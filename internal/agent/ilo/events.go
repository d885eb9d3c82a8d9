package ilo

// Redfish events on the target's rule P5 receive port (issue 15). For an iLO 5 or 6 given a
// receive port, the driver serves HTTPS on it with the agent's certificate, subscribes before
// the flash with a context that names the target and a random token, and unsubscribes after it
// (on success, failure, and when the agent stops). An accepted event only wakes the follow loop:
// the state is still read over Redfish, so an event lost, forged or misread costs at most a poll
// interval, never a wrong verdict. While events arrive, polling slows to EventPollInterval.
//
// An event is accepted only from one of the target's addresses and with the subscription's
// context; any other is answered 403, logged and counted as dropped.

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/fwops/firmware-operator/internal/agent/driver"
	"github.com/fwops/firmware-operator/internal/agent/redfish"
)

// EventCounters count the events received on the receive ports; one may be shared by every
// driver of an agent (Options.Events). Safe for concurrent use.
type EventCounters struct {
	// Accepted events woke a target's follow loop; Dropped came from an address that is not
	// the target's or carried the wrong context.
	Accepted, Dropped atomic.Int64
	// Subscribed and Unsubscribed count the subscriptions made and removed.
	Subscribed, Unsubscribed atomic.Int64
}

// eventListener serves one target's receive port.
type eventListener struct {
	log      *slog.Logger
	counters *EventCounters
	url      string
	context  string
	from     []net.IP
	srv      *http.Server
	done     chan struct{}
	wake     chan struct{}
	last     atomic.Int64 // UnixNano of the last accepted event; 0: none since subscribing
	// sub is the subscription's path while subscribed; resubscribed says the subscription
	// was renewed after the iLO's reset. Used by the driver's goroutine only.
	sub          string
	resubscribed bool
}

// listen starts the event listener when the target is an iLO 5 or 6 with a receive port. It
// never fails the driver: without it the driver polls, as for iLO 4.
func (d *Driver) listen(ctx context.Context) {
	rc := d.t.Receive
	if rc == nil || rc.Listener == nil || (d.t.Type != driver.TypeILO5 && d.t.Type != driver.TypeILO6) {
		return
	}
	log := d.opts.Log.With("target", d.t.Name)
	from, err := targetIPs(ctx, d.t.Address)
	if err == nil && rc.Certificate == nil {
		err = errors.New("the agent has no certificate for its receive port")
	}
	if err != nil {
		_ = rc.Listener.Close()
		log.Warn("no Redfish events for this target, polling only", "err", err)
		return
	}
	tok := make([]byte, 12)
	_, _ = rand.Read(tok)
	l := &eventListener{log: log, counters: d.opts.Events, url: strings.TrimSuffix(rc.URL, "/") + "/redfish/events",
		context: "firmware-operator/" + d.t.Name + "/" + hex.EncodeToString(tok), from: from,
		done: make(chan struct{}), wake: make(chan struct{}, 1)}
	l.srv = &http.Server{Handler: l, ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{MinVersion: tls.VersionTLS12,
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return rc.Certificate() }},
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	go func() {
		defer close(l.done)
		_ = l.srv.ServeTLS(rc.Listener, "", "")
	}()
	d.ev = l
	log.Info("listening for Redfish events (rule P5)", "port", rc.Listener.Addr().String())
}

// targetIPs resolves the target's address to the addresses its events may come from: the host
// of spec.address as the one address parser reads it (driver.SplitAddress), the machine the
// driver talks to.
func targetIPs(ctx context.Context, address string) ([]net.IP, error) {
	host, _, err := driver.SplitAddress(address)
	if err != nil {
		return nil, err
	}
	if ip := net.ParseIP(host); ip != nil {
		return []net.IP{ip}, nil
	}
	addrs, err := net.DefaultResolver.LookupIPAddr(ctx, host)
	if err != nil {
		return nil, err
	}
	out := make([]net.IP, 0, len(addrs))
	for _, a := range addrs {
		out = append(out, a.IP)
	}
	return out, nil
}

// ServeHTTP takes one event POST.
func (l *eventListener) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST events here", http.StatusMethodNotAllowed)
		return
	}
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	var body struct {
		Context string
		Events  []struct{ EventType, MessageId string } //nolint:revive // Redfish's name
	}
	err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&body)
	ip := net.ParseIP(host)
	why := ""
	switch {
	case !l.fromTarget(ip):
		why = "the sender is not the target's address"
	case err != nil:
		why = "the body is not a Redfish event"
	case body.Context != l.context:
		why = "wrong context"
	}
	if why != "" {
		if l.counters != nil {
			l.counters.Dropped.Add(1)
		}
		l.log.Warn("Redfish event dropped", "reason", why, "from", host)
		http.Error(w, why, http.StatusForbidden)
		return
	}
	if l.counters != nil {
		l.counters.Accepted.Add(1)
	}
	l.last.Store(time.Now().UnixNano())
	ids := make([]string, 0, len(body.Events))
	for _, e := range body.Events {
		ids = append(ids, e.MessageId)
	}
	l.log.Debug("Redfish event", "messageIds", ids)
	select {
	case l.wake <- struct{}{}:
	default:
	}
	w.WriteHeader(http.StatusOK)
}

func (l *eventListener) fromTarget(ip net.IP) bool {
	for _, a := range l.from {
		if a.Equal(ip) {
			return true
		}
	}
	return false
}

// subscribe creates the target's subscription; a failure leaves the driver polling.
func (d *Driver) subscribe(ctx context.Context) {
	l := d.ev
	if l == nil || l.sub != "" {
		return
	}
	d.removeStaleSubscriptions(ctx)
	body := map[string]any{"Destination": l.url, "Context": l.context, "Protocol": "Redfish"}
	if d.t.Type == driver.TypeILO5 {
		// iLO 5 filters on EventTypes (iLO 6 on RegistryPrefixes: none asks for all).
		body["EventTypes"] = []string{"StatusChange", "ResourceUpdated", "Alert"}
	}
	sub, err := d.c.Subscribe(ctx, body)
	l.sub = sub
	if err != nil {
		l.log.Warn("could not subscribe to Redfish events; polling only", "err", err)
		return
	}
	l.last.Store(0)
	if d.opts.Events != nil {
		d.opts.Events.Subscribed.Add(1)
	}
	l.log.Info("subscribed to Redfish events", "subscription", l.sub, "destination", l.url)
}

// removeStaleSubscriptions deletes the subscriptions an earlier agent made for this target and
// could not delete (it was killed): their destination is a port nobody may listen on any more.
// Subscriptions of anyone else are left alone. An iLO that does not expand the collection is
// not asked member by member: the stale ones then stay until the iLO resets.
func (d *Driver) removeStaleSubscriptions(ctx context.Context) {
	subs, err := d.c.Subscriptions(ctx)
	if err != nil {
		return
	}
	prefix := "firmware-operator/" + d.t.Name + "/"
	for _, m := range subs {
		if !strings.HasPrefix(m.Context, prefix) || m.Context == d.ev.context || m.ODataID == "" {
			continue
		}
		if err := d.c.Delete(ctx, m.ODataID); err != nil {
			d.ev.log.Warn("could not delete an earlier agent's event subscription", "subscription", m.ODataID, "err", err)
			continue
		}
		d.ev.log.Info("deleted an earlier agent's event subscription", "subscription", m.ODataID)
	}
}

// unsubscribe deletes the subscription, even when ctx has ended (the agent stopping).
func (d *Driver) unsubscribe(ctx context.Context) {
	l := d.ev
	if l == nil || l.sub == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	err := d.c.Delete(ctx, l.sub)
	var re *redfish.Error
	if errors.As(err, &re) && re.StatusCode == http.StatusNotFound {
		err = nil // forgotten by a reset
	}
	if err != nil {
		l.log.Warn("could not delete the Redfish event subscription; delete it on the iLO", "subscription", l.sub, "err", err)
	} else if d.opts.Events != nil {
		d.opts.Events.Unsubscribed.Add(1)
	}
	l.sub = ""
}

// resubscribeAfterReset subscribes again once the iLO is back from a reset, which forgets
// subscriptions.
func (d *Driver) resubscribeAfterReset(ctx context.Context) {
	l := d.ev
	if l == nil || l.resubscribed {
		return
	}
	l.resubscribed = true
	if l.sub != "" {
		var doc map[string]any
		err := d.c.Get(ctx, l.sub, &doc)
		var re *redfish.Error
		if !errors.As(err, &re) || re.StatusCode != http.StatusNotFound {
			return // still there, or the iLO cannot tell yet
		}
		l.sub = ""
	}
	d.subscribe(ctx)
}

// pause waits for the next poll, cut short by an event: PollInterval, or EventPollInterval once
// an event has come since the subscription was made (events reach the agent) and until the iLO
// goes away (eventsLost). It returns false when ctx ends.
func (d *Driver) pause(ctx context.Context) bool {
	wait := d.opts.PollInterval
	var wake chan struct{}
	if l := d.ev; l != nil {
		wake = l.wake
		if l.last.Load() != 0 {
			wait = d.opts.EventPollInterval
		}
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
	case <-wake:
		// An iLO sends events in bursts (the state and the task change together): let the
		// burst settle and read once.
		t.Reset(eventSettle(d.opts.PollInterval))
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
		select {
		case <-wake:
		default:
		}
	}
	return true
}

// eventSettle is how long a woken driver waits for the rest of a burst of events: an eighth of
// the poll interval, at most 250 ms (at the 2 s default: a read 250 ms after the event, where
// polling reads up to 2 s after the change).
func eventSettle(poll time.Duration) time.Duration { return min(poll/8, 250*time.Millisecond) }

// stopEvents unsubscribes and stops the listener.
func (d *Driver) stopEvents() {
	l := d.ev
	if l == nil {
		return
	}
	d.unsubscribe(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = l.srv.Shutdown(ctx)
	_ = d.t.Receive.Listener.Close()
	<-l.done
	d.ev = nil
}

// eventsLost goes back to the normal poll rate: the iLO is not answering (it resets), so it
// sends no events, and it forgets the subscription.
func (d *Driver) eventsLost() {
	if d.ev != nil {
		d.ev.last.Store(0)
	}
}
