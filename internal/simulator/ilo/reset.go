package ilo

// The reset of an iLO after it flashed its own firmware. The iLO leaves Complete after
// Timings.ResetDelay, drops every connection for Timings.ILOReset, then comes back half up for
// Timings.HalfUp (the service root answers, UpdateService answers 503) and finally whole, running
// its new firmware, with every session it issued gone (401 NoValidSession) and the flash's task
// and task monitor gone (404).
//
// Sources: ilorest's firmwareupdate, on Complete: "Firmware update has completed and iLO may
// reset. If iLO resets the session will be terminated. Please wait for iLO to initialize
// completely before logging in again."; the captured iLO registry's iLO.ResetInProgress ("A
// management processor reset is in progress"); reports from users of other operators (a task
// monitor deleted after a BMC flash, a half-up BMC). See docs/hardware.md.

import (
	"context"
	"net/http"
	"strings"
)

// Phases of a reset, in order; "" is up.
const (
	resetDown   = "down"
	resetHalfUp = "halfUp"
)

// resetState is guarded by Sim.mu.
type resetState struct {
	phase string
	count int
	// refused counts the requests dropped or answered 503 by the reset gate.
	refused int
}

// ILOPhase is "" when the iLO is up, "down" while it resets and "halfUp" while it comes back.
func (s *Sim) ILOPhase() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reset.phase
}

// resetILO runs the reset that follows a self-flash; version is the firmware it comes back
// with ("" keeps the running one, as a VersionUnchanged fault asks).
func (s *Sim) resetILO(ctx context.Context, taskPath, version string) {
	tm := s.cfg.Timings
	if !sleepCtx(ctx, tm.ResetDelay) {
		return
	}
	s.mu.Lock()
	s.reset.phase = resetDown
	s.reset.count++
	s.emitLocked(event{eventType: "StatusChange", messageID: MsgResetInProgress, origin: "/redfish/v1/Managers/1"})
	s.forgetSessionsLocked()
	s.forgetSubscriptionsLocked() // events.go
	if taskPath != "" {
		s.tree.removeMember("/redfish/v1/TaskService/Tasks", taskPath)
	}
	if version != "" {
		s.applyVersion("iLO", version, "")
	}
	// A rebooted iLO has no update in progress.
	s.setStateLocked("Idle", 0, "", "")
	s.mu.Unlock()
	s.logf("iLO resetting")
	if !sleepCtx(ctx, tm.ILOReset) {
		return
	}
	s.setResetPhase(resetHalfUp)
	s.logf("iLO half up: UpdateService answers 503")
	sleepCtx(ctx, tm.HalfUp)
	s.setResetPhase("")
	s.logf("iLO up after its reset")
}

func (s *Sim) setResetPhase(p string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reset.phase = p
}

// forgetSessionsLocked drops every session, as a rebooted iLO has none.
func (s *Sim) forgetSessionsLocked() {
	for _, p := range s.sessions {
		s.tree.removeMember(sessionsPath, p)
	}
	s.sessions = map[string]string{}
}

// resetGate answers the requests a resetting iLO cannot serve; it returns true when it did.
func (s *Sim) resetGate(w http.ResponseWriter, p string) bool {
	s.mu.Lock()
	phase := s.reset.phase
	refuse := phase == resetDown || phase == resetHalfUp &&
		(p == key("/redfish/v1/UpdateService") || strings.HasPrefix(p, key("/redfish/v1/UpdateService")+"/"))
	if refuse {
		s.reset.refused++
	}
	s.mu.Unlock()
	switch {
	case !refuse:
		return false
	case phase == resetDown:
		dropConnection(w)
	default:
		writeError(w, http.StatusServiceUnavailable, "iLO.2.14.ResetInProgress", "a management processor reset is in progress")
	}
	return true
}
