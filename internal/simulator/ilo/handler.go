package ilo

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

const (
	sessionsPath    = "/redfish/v1/SessionService/Sessions"
	simpleUpdate    = "/redfish/v1/UpdateService/Actions/UpdateService.SimpleUpdate"
	addFromURI      = "/redfish/v1/UpdateService/Actions/Oem/Hpe/HpeiLOUpdateServiceExt.AddFromUri"
	taskMonitorBase = "/redfish/v1/TaskService/TaskMonitors/"
)

func itoa(i int) string { return strconv.Itoa(i) }

// ServeHTTP serves the Redfish tree, the session service, the update actions and the admin
// endpoint under /_sim/.
func (s *Sim) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/_sim/") {
		s.admin(w, r)
		return
	}
	p := key(r.URL.Path)
	if s.resetGate(w, p) {
		return
	}
	if s.injectFault(w, r) {
		return
	}
	switch {
	case p == "/redfish" && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, map[string]any{"v1": "/redfish/v1/"})
		return
	case p == "/redfish/v1" && r.Method == http.MethodGet:
		// The service root is readable without a session, as on a real iLO: clients read it
		// first to find the session service and the generation.
		s.serveDoc(w, r, p)
		return
	case p == key("/redfish/v1/$metadata") && r.Method == http.MethodGet:
		s.mu.Lock()
		md := s.tree.metadata
		s.mu.Unlock()
		if md == nil {
			writeError(w, http.StatusNotFound, "Base.1.4.ResourceMissingAtURI", "no $metadata in this capture")
			return
		}
		w.Header().Set("Content-Type", "application/xml")
		_, _ = w.Write(md)
		return
	case p == key(sessionsPath) && r.Method == http.MethodPost:
		s.login(w, r)
		return
	case p == key(httpPushPath) && r.Method == http.MethodPost && s.cfg.Model != ILO4:
		// Authenticated by its sessionKey form field or cookie (repository.go).
		s.pushUploadHandler(w, r)
		return
	}
	if !s.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Basic realm="iLO"`)
		writeError(w, http.StatusUnauthorized, "Base.1.4.NoValidSession", "no valid session: log in first")
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		if strings.HasPrefix(p, key(taskMonitorBase)+"/") {
			s.taskMonitor(w, p)
			return
		}
		s.serveDoc(w, r, p)
	case http.MethodPost:
		switch p {
		case key(simpleUpdate):
			s.postSimpleUpdate(w, r)
		case key(addFromURI):
			s.postAddFromURI(w, r)
		case key(taskQueuePath):
			s.postTask(w, r)
		case key(systemResetPath):
			s.postSystemReset(w, r)
		case key(subscriptionsPath):
			s.postSubscription(w, r) // events.go
		case key(ilo4UpdatePath):
			if s.cfg.Model != ILO4 {
				writeError(w, http.StatusMethodNotAllowed, "Base.1.4.ActionNotSupported", "not an iLO 4")
				return
			}
			s.postInstallFromURI(w, r)
		default:
			writeError(w, http.StatusMethodNotAllowed, "Base.1.4.ActionNotSupported", "POST is not supported on "+r.URL.Path)
		}
	case http.MethodDelete:
		switch {
		case strings.HasPrefix(p, key(repositoryPath)+"/"):
			s.deleteComponent(w, p)
		case strings.HasPrefix(p, key(taskQueuePath)+"/"):
			s.deleteTask(w, p)
		case strings.HasPrefix(p, key(subscriptionsPath)+"/"):
			s.deleteSubscription(w, p)
		default:
			s.logout(w, r, p)
		}
	default:
		writeError(w, http.StatusMethodNotAllowed, "Base.1.4.ActionNotSupported", r.Method+" is not supported")
	}
}

// injectFault applies the request-level faults; it returns true when the request was answered.
func (s *Sim) injectFault(w http.ResponseWriter, r *http.Request) bool {
	s.mu.Lock()
	s.stats.Requests++
	f := &s.faults
	drop, retry, fail := false, 0, 0
	switch {
	case f.DropNext > 0:
		f.DropNext--
		drop = true
	case f.RetryAfterNext > 0:
		f.RetryAfterNext--
		retry = f.RetryAfterSeconds
		if retry <= 0 {
			retry = 1
		}
	case f.FailNext > 0:
		f.FailNext--
		fail = f.FailStatus
		if fail == 0 {
			fail = http.StatusInternalServerError
		}
	}
	stall := time.Duration(f.StallMS) * time.Millisecond
	s.mu.Unlock()

	if drop {
		dropConnection(w)
		return true
	}
	if stall > 0 {
		select {
		case <-time.After(stall):
		case <-r.Context().Done():
			return true
		}
	}
	if retry > 0 {
		w.Header().Set("Retry-After", retryAfter(retry))
		writeError(w, http.StatusServiceUnavailable, "iLO.2.14.ServiceTemporarilyUnavailable", "the service is busy, retry later")
		return true
	}
	if fail > 0 {
		writeError(w, fail, "iLO.2.14.InternalError", "injected failure")
		return true
	}
	return false
}

// dropConnection closes the client's connection without an answer.
func dropConnection(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if c, _, err := hj.Hijack(); err == nil {
			c.Close()
			return
		}
	}
	panic(http.ErrAbortHandler) // closes the connection when hijacking is impossible
}

func (s *Sim) authorized(r *http.Request) bool {
	if tok := r.Header.Get("X-Auth-Token"); tok != "" {
		s.mu.Lock()
		_, ok := s.sessions[tok]
		s.mu.Unlock()
		return ok
	}
	u, p, ok := r.BasicAuth()
	return ok && s.credentialsOK(u, p)
}

func (s *Sim) credentialsOK(u, p string) bool {
	return subtle.ConstantTimeCompare([]byte(u), []byte(s.cfg.Username)) == 1 &&
		subtle.ConstantTimeCompare([]byte(p), []byte(s.cfg.Password)) == 1
}

func (s *Sim) login(w http.ResponseWriter, r *http.Request) {
	if s.cfg.NoSessions {
		writeError(w, http.StatusMethodNotAllowed, "Base.1.4.ActionNotSupported", "sessions are disabled")
		return
	}
	var body struct {
		UserName, Password string
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&body); err != nil {
		writeError(w, http.StatusBadRequest, "Base.1.4.MalformedJSON", "the body is not valid JSON")
		return
	}
	if !s.credentialsOK(body.UserName, body.Password) {
		writeError(w, http.StatusUnauthorized, "Base.1.4.NoValidSession", "login failed")
		return
	}
	tok := randHex(16)
	s.mu.Lock()
	s.nextID++
	id := body.UserName + randHex(8)
	p := sessionsPath + "/" + id
	s.sessions[tok] = p
	s.secrets.tokens = append(s.secrets.tokens, tok)
	doc := map[string]any{
		"@odata.id": p + "/", "@odata.type": "#Session.v1_0_0.Session", "Id": id,
		"Name": "User Session", "UserName": body.UserName,
	}
	s.tree.addMember(sessionsPath, p+"/", doc)
	out := deepCopy(doc)
	s.mu.Unlock()
	// A path-only Location: HPE's ilorest mishandles one that carries a port.
	w.Header().Set("Location", p+"/")
	w.Header().Set("X-Auth-Token", tok)
	writeJSON(w, http.StatusCreated, out)
}

func (s *Sim) logout(w http.ResponseWriter, r *http.Request, p string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !strings.HasPrefix(p, key(sessionsPath)+"/") || s.tree.get(p) == nil {
		writeError(w, http.StatusNotFound, "Base.1.4.ResourceMissingAtURI", "no such session")
		return
	}
	for tok, sp := range s.sessions {
		if key(sp) == p {
			delete(s.sessions, tok)
		}
	}
	s.tree.removeMember(sessionsPath, p)
	writeError(w, http.StatusOK, "Base.1.4.Success", "session deleted")
}

func (s *Sim) serveDoc(w http.ResponseWriter, r *http.Request, p string) {
	s.mu.Lock()
	doc := s.tree.get(p)
	if doc == nil {
		s.mu.Unlock()
		writeError(w, http.StatusNotFound, "Base.1.4.ResourceMissingAtURI", "no resource at "+r.URL.Path)
		return
	}
	out := deepCopy(doc).(map[string]any)
	if r.URL.Query().Get("$expand") != "" && !s.cfg.IgnoreExpand {
		if ms, ok := out["Members"].([]any); ok {
			for i, m := range ms {
				mm, _ := m.(map[string]any)
				id, _ := mm["@odata.id"].(string)
				if d := s.tree.get(id); d != nil {
					ms[i] = deepCopy(d)
				}
			}
		}
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("OData-Version", "4.0")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// writeError answers in iLO's envelope, which it also uses for successes.
func writeError(w http.ResponseWriter, status int, messageID, message string) {
	writeJSON(w, status, map[string]any{"error": map[string]any{
		"code":    "iLO.0.10.ExtendedInfo",
		"message": "See @Message.ExtendedInfo for more information.",
		"@Message.ExtendedInfo": []any{map[string]any{
			"MessageId": messageID, "Message": message,
		}},
	}})
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
