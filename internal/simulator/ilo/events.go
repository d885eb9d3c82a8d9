package ilo

// The Redfish event service of iLO 5 and 6: clients subscribe (POST
// /redfish/v1/EventService/Subscriptions with Destination, Context and EventTypes, or
// RegistryPrefixes on iLO 6), list (GET) and unsubscribe (DELETE); the iLO POSTs a Redfish Event
// to each subscription's HTTPS destination when the update state changes, when a task changes
// and before it resets, retrying a failed delivery DeliveryRetryAttempts times; a reset forgets
// every subscription. iLO 4 is not simulated here: it answers 405 and its clients keep polling.
//
// Sources and assumptions (docs/hardware.md, "Redfish events"): HPE's iLO Event services page
// (servermanagementportal.ext.hpe.com, "iLO Event services" and "The Redfish Event Service"):
// the subscription body, 201 with the created subscription, iLO 5 filtering on EventTypes and
// iLO 6 on RegistryPrefixes, deliveries are HTTPS POSTs, the destination is not tested at
// subscription time; the captures: EventService (DeliveryRetryAttempts 3,
// DeliveryRetryIntervalSeconds 30), a subscription's shape, CACertificates described as "for
// REST Event Mutual Authentication" with MutualAuthenticationEnabled false (so the
// destination's certificate is not verified: an inference); the registries TaskEvent.1.0.0
// and iLO (ResetInProgress). Which MessageId a real iLO sends on an UpdateService state change
// is not in the captures (the iLOEvents registry is listed, its messages are not): the one
// used here is an assumption, and clients must take an event as a hint to read the state.

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

const (
	subscriptionsPath = "/redfish/v1/EventService/Subscriptions"
	// deliveryRetries is DeliveryRetryAttempts in the captures' EventService.
	deliveryRetries = 3
	// defaultEventRetry is DeliveryRetryIntervalSeconds in the captures.
	defaultEventRetry = 30 * time.Second
)

// Message ids of the events the simulator sends.
const (
	// MsgStateChanged is sent on each Oem.Hpe.State change of UpdateService (assumed id).
	MsgStateChanged = "iLOEvents.2.3.UpdateServiceStateChanged"
	// MsgResetInProgress is sent just before the iLO resets (the captured iLO registry's).
	MsgResetInProgress = "iLO.2.14.ResetInProgress"
	MsgTaskStarted     = "TaskEvent.1.0.0.TaskStarted"
	MsgTaskProgress    = "TaskEvent.1.0.0.TaskProgressChanged"
	MsgTaskCompletedOK = "TaskEvent.1.0.0.TaskCompletedOK"
	MsgTaskAborted     = "TaskEvent.1.0.0.TaskAborted"
)

// subscription is one client subscription; guarded by Sim.mu.
type subscription struct {
	path, destination, context string
	eventTypes, prefixes       []string
}

// eventState is guarded by Sim.mu.
type eventState struct {
	subs      map[string]*subscription // by key(path)
	nextID    int
	delivered int
	failed    int // deliveries given up after every retry
	retries   int
	// completedAt is when the update state last became Complete.
	completedAt time.Time
	wg          sync.WaitGroup
}

// event is one entry of an Event's Events array.
type event struct {
	eventType, messageID, origin string
	args                         []string
}

func (s *Sim) postSubscription(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Model == ILO4 {
		writeError(w, http.StatusMethodNotAllowed, "Base.1.4.ActionNotSupported", "the simulated iLO 4 has no event service: poll")
		return
	}
	var body struct {
		Destination      string
		Context          string
		Protocol         string
		EventTypes       []string
		RegistryPrefixes []string
	}
	if !decodeBody(w, r, &body) {
		return
	}
	u, err := url.Parse(body.Destination)
	switch {
	case body.Destination == "":
		writeError(w, http.StatusBadRequest, "Base.1.4.PropertyMissing", "Destination is required")
		return
	case err != nil || u.Scheme != "https" || u.Host == "":
		writeError(w, http.StatusBadRequest, "Base.1.4.PropertyValueFormatError", "Destination must be an https:// URL")
		return
	case body.Protocol != "" && body.Protocol != "Redfish":
		writeError(w, http.StatusBadRequest, "Base.1.4.PropertyValueNotInList", "Protocol must be Redfish")
		return
	}
	allowed := []string{"StatusChange", "ResourceUpdated", "ResourceAdded", "ResourceRemoved", "Alert"}
	for _, et := range body.EventTypes {
		if !slices.Contains(allowed, et) {
			writeError(w, http.StatusBadRequest, "Base.1.4.PropertyValueNotInList", "EventTypes: "+et+" is not one of "+strings.Join(allowed, ", "))
			return
		}
	}
	if s.cfg.Model == ILO5 && len(body.EventTypes) == 0 {
		writeError(w, http.StatusBadRequest, "Base.1.4.PropertyMissing", "EventTypes is required on iLO 5")
		return
	}
	if s.cfg.Model == ILO5 && len(body.RegistryPrefixes) > 0 {
		writeError(w, http.StatusBadRequest, "Base.1.4.PropertyUnknown", "RegistryPrefixes is not supported on iLO 5: use EventTypes")
		return
	}
	s.mu.Lock()
	if s.events.subs == nil {
		s.events.subs = map[string]*subscription{}
	}
	s.events.nextID++
	id := itoa(s.events.nextID)
	p := subscriptionsPath + "/" + id + "/"
	doc := map[string]any{
		"@odata.id": p, "@odata.type": "#EventDestination.v1_0_0.EventDestination", "Id": id,
		"Name": "Event Subscription", "Description": "iLO Event Subscription",
		"Destination": body.Destination, "Context": body.Context, "Protocol": "Redfish",
		"EventTypes": toAny(body.EventTypes), "HttpHeaders": []any{},
		"Oem": map[string]any{"Hpe": map[string]any{
			"DeliveryRetryAttempts": deliveryRetries, "DeliveryRetryIntervalInSeconds": int(s.eventRetry() / time.Second),
			"MutualAuthenticationEnabled": false,
		}},
	}
	if s.cfg.Model == ILO6 {
		doc["RegistryPrefixes"] = toAny(body.RegistryPrefixes)
	}
	s.tree.addMember(subscriptionsPath, p, doc)
	s.events.subs[key(p)] = &subscription{path: p, destination: body.Destination, context: body.Context,
		eventTypes: body.EventTypes, prefixes: body.RegistryPrefixes}
	out := deepCopy(doc)
	s.mu.Unlock()
	s.logf("event subscription %s to %s", id, body.Destination)
	w.Header().Set("Location", p)
	writeJSON(w, http.StatusCreated, out)
}

func (s *Sim) deleteSubscription(w http.ResponseWriter, p string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tree.get(p) == nil {
		writeError(w, http.StatusNotFound, "Base.1.4.ResourceMissingAtURI", "no such subscription")
		return
	}
	delete(s.events.subs, p)
	s.tree.removeMember(subscriptionsPath, p)
	writeError(w, http.StatusOK, "Base.1.4.Success", "subscription deleted")
}

// forgetSubscriptionsLocked drops every subscription, captured ones too, as a rebooted iLO
// does (an assumption: docs/hardware.md).
func (s *Sim) forgetSubscriptionsLocked() {
	coll := s.tree.get(subscriptionsPath)
	if coll == nil {
		return
	}
	for _, p := range memberPaths(coll) {
		s.tree.removeMember(subscriptionsPath, p)
	}
	s.events.subs = nil
}

func (s *Sim) eventRetry() time.Duration {
	if s.cfg.Timings.EventRetry > 0 {
		return s.cfg.Timings.EventRetry
	}
	return defaultEventRetry
}

// emitLocked sends ev to every subscription that asked for it, in the background. Only
// subscriptions made through this simulator receive events: the captured ones point at the
// capture site's collector, and tests talk only to loopback.
func (s *Sim) emitLocked(ev event) {
	for _, sub := range s.events.subs {
		if !sub.wants(ev) {
			continue
		}
		s.nextID++
		payload := map[string]any{
			"@odata.type": "#Event.v1_0_0.Event", "Id": itoa(s.nextID), "Name": "Events", "Context": sub.context,
			"Events": []any{map[string]any{
				"EventType": ev.eventType, "EventId": itoa(s.nextID), "MessageId": ev.messageID,
				"MessageArgs": toAny(ev.args), "Severity": "OK",
				"EventTimestamp":    time.Now().UTC().Format(time.RFC3339),
				"OriginOfCondition": map[string]any{"@odata.id": ev.origin},
			}},
		}
		b, _ := json.Marshal(payload)
		s.events.wg.Add(1)
		go s.deliver(sub.destination, b)
	}
}

func (sub *subscription) wants(ev event) bool {
	if len(sub.prefixes) > 0 {
		reg, _, _ := strings.Cut(ev.messageID, ".")
		return slices.Contains(sub.prefixes, reg)
	}
	return len(sub.eventTypes) == 0 || slices.Contains(sub.eventTypes, ev.eventType)
}

// deliver POSTs one event, from the iLO's own address, retrying as the EventService says.
func (s *Sim) deliver(dest string, body []byte) {
	defer s.events.wg.Done()
	host, _, _ := net.SplitHostPort(s.Addr())
	dialer := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(host)}}
	cl := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: dialer.DialContext, Proxy: nil,
		// Mutual authentication off (the captures' default): the destination's certificate is
		// not verified. See the file comment.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // as a real iLO
	}}
	defer cl.CloseIdleConnections()
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(s.flashCtx, http.MethodPost, dest, bytes.NewReader(body))
		if err != nil {
			s.countDelivery(false, false)
			return
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := cl.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode/100 == 2 {
				s.countDelivery(true, false)
				return
			}
		}
		if attempt >= deliveryRetries || !sleepCtx(s.flashCtx, s.eventRetry()) {
			s.countDelivery(false, false)
			s.logf("event to %s given up after %d attempts", dest, attempt+1)
			return
		}
		s.countDelivery(false, true)
	}
}

func (s *Sim) countDelivery(ok, retry bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case ok:
		s.events.delivered++
	case retry:
		s.events.retries++
	default:
		s.events.failed++
	}
}

// stateEventsLocked emits the events of an update state change: the UpdateService's state, and
// the task's progress or end. Called by setStateLocked with the states before and after.
func (s *Sim) stateEventsLocked(prevState, state string, prevPct, pct int, taskPath string, taskBefore string) {
	if prevState != state && state == "Complete" {
		s.events.completedAt = time.Now()
	}
	if prevState != state {
		s.emitLocked(event{eventType: "ResourceUpdated", messageID: MsgStateChanged,
			origin: "/redfish/v1/UpdateService", args: []string{state}})
	}
	if taskPath == "" {
		return
	}
	t := s.tree.get(taskPath)
	if t == nil {
		return
	}
	after, _ := t["TaskState"].(string)
	switch {
	case prevState != state && state == "Uploading":
		s.emitLocked(event{eventType: "StatusChange", messageID: MsgTaskStarted, origin: taskPath, args: []string{taskID(taskPath)}})
	case after == "Completed" && taskBefore != after:
		s.emitLocked(event{eventType: "StatusChange", messageID: MsgTaskCompletedOK, origin: taskPath, args: []string{taskID(taskPath)}})
	case after == "Exception" && taskBefore != after:
		s.emitLocked(event{eventType: "StatusChange", messageID: MsgTaskAborted, origin: taskPath, args: []string{taskID(taskPath)}})
	case pct != prevPct:
		s.emitLocked(event{eventType: "StatusChange", messageID: MsgTaskProgress, origin: taskPath, args: []string{taskID(taskPath), itoa(pct)}})
	}
}

func taskID(p string) string {
	p = strings.TrimSuffix(p, "/")
	return p[strings.LastIndex(p, "/")+1:]
}
