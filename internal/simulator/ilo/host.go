package ilo

// The server the iLO manages: its power, its POST, and what happens at POST. A system ROM flash
// only stages the image (see stageROMLocked); the host boots it at its next POST, and hooks
// registered with OnHostPOST (the UpdateTaskQueue's Uefi tasks) run during POST too.
//
// Sources: HPE ProLiant server user guides ("A system reboot is required for a ROM upgrade to
// take effect"; redundant ROM: one side holds the current ROM, the other a backup, and a flash
// writes over the backup side), ilorest's firmwareupdate ("A reboot may be required for firmware
// changes to take effect"), the captured Systems/1 (PowerState, Oem.Hpe.PostState,
// Oem.Hpe.Bios.Current/Backup, the ComputerSystem.Reset action and its allowable values) and
// the captured iLO message registry (InvalidOperationForSystemState). See docs/hardware.md.

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"time"
)

const (
	systemPath      = "/redfish/v1/Systems/1"
	systemResetPath = systemPath + "/Actions/ComputerSystem.Reset"

	msgInvalidSystemState = "iLO.2.14.InvalidOperationForSystemState"
)

// POST states as Systems/1 Oem.Hpe.PostState reports them on iLO 5.
const (
	postPowerOff      = "PowerOff"
	postInPost        = "InPost"
	postDiscoveryDone = "InPostDiscoveryComplete"
	postFinished      = "FinishedPost"
)

// resetTypes are the captured Systems/1 ResetType@Redfish.AllowableValues.
var resetTypes = []string{"On", "ForceOff", "GracefulShutdown", "ForceRestart", "Nmi", "PushPowerButton", "GracefulRestart"}

// POSTHook runs during each host POST, after power-on and before POST finishes (the system ROM
// applies its queued UEFI updates there). The simulator's lock is not held: a hook takes s.mu
// itself to change the tree. ctx ends when the simulator closes.
type POSTHook func(ctx context.Context)

// hostState is the managed server's state; guarded by Sim.mu.
type hostState struct {
	hooks   []POSTHook
	posting bool
	// stagedROM is the system ROM version written to the backup bank and not yet booted.
	stagedROM string
	boots     int
}

// OnHostPOST registers h to run at every host POST.
func (s *Sim) OnHostPOST(h POSTHook) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.host.hooks = append(s.host.hooks, h)
}

// HostBoots is how many POSTs the host has run (each ComputerSystem.Reset that boots it).
func (s *Sim) HostBoots() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.host.boots
}

// PostState is Systems/1 Oem.Hpe.PostState.
func (s *Sim) PostState() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, _ := field(s.tree.get(systemPath), "Oem", "Hpe")["PostState"].(string)
	return v
}

// StagedROM is the system ROM version flashed and waiting for the next POST ("" when none).
func (s *Sim) StagedROM() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.host.stagedROM
}

// RebootHost restarts the host as a ComputerSystem.Reset ForceRestart would, for tests that
// play the operator; it returns false when the host is off or already in POST.
func (s *Sim) RebootHost() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.resetHostLocked("ForceRestart") == ""
}

func (s *Sim) setPostStateLocked(power, post string) {
	sys := s.tree.edit(systemPath)
	if sys == nil {
		return
	}
	sys["PowerState"] = power
	obj(sys, "Oem", "Hpe")["PostState"] = post
}

func (s *Sim) powerStateLocked() string {
	v, _ := s.tree.get(systemPath)["PowerState"].(string)
	if v == "" {
		return "On"
	}
	return v
}

// postSystemReset serves POST Systems/1/Actions/ComputerSystem.Reset.
func (s *Sim) postSystemReset(w http.ResponseWriter, r *http.Request) {
	var body struct{ ResetType string }
	if !decodeBody(w, r, &body) {
		return
	}
	if !slices.Contains(resetTypes, body.ResetType) {
		writeError(w, http.StatusBadRequest, "Base.1.4.PropertyValueNotInList",
			"ResetType must be one of "+strings.Join(resetTypes, ", "))
		return
	}
	s.mu.Lock()
	why := s.resetHostLocked(body.ResetType)
	s.mu.Unlock()
	if why != "" {
		writeError(w, http.StatusBadRequest, msgInvalidSystemState, why)
		return
	}
	writeError(w, http.StatusOK, "Base.1.4.Success", "reset requested")
}

// resetHostLocked applies a ResetType; it returns why it was refused, or "".
func (s *Sim) resetHostLocked(resetType string) string {
	on := s.powerStateLocked() == "On"
	if s.host.posting {
		return "the server is in POST"
	}
	switch resetType {
	case "Nmi":
		if !on {
			return "the server is off"
		}
	case "On":
		if on {
			return "the server is already on"
		}
		s.bootLocked()
	case "ForceOff", "GracefulShutdown":
		if !on {
			return "the server is already off"
		}
		s.setPostStateLocked("Off", postPowerOff)
	case "PushPowerButton":
		if on {
			s.setPostStateLocked("Off", postPowerOff)
		} else {
			s.bootLocked()
		}
	case "ForceRestart", "GracefulRestart":
		if !on {
			return "the server is off"
		}
		s.bootLocked()
	}
	s.logf("host reset %s", resetType)
	return ""
}

// bootLocked powers the host on and runs its POST in the background.
func (s *Sim) bootLocked() {
	s.host.posting = true
	s.host.boots++
	s.setPostStateLocked("On", postInPost)
	hooks := slices.Clone(s.host.hooks)
	s.flashWG.Add(1)
	go s.post(hooks)
}

// post is one POST: hooks run first, then the staged ROM becomes the running one, then POST
// finishes. Its length is Timings.POST, split around the hooks.
func (s *Sim) post(hooks []POSTHook) {
	defer s.flashWG.Done()
	half := s.cfg.Timings.POST / 2
	ok := sleepCtx(s.flashCtx, half)
	if ok {
		for _, h := range hooks {
			h(s.flashCtx)
		}
	}
	s.mu.Lock()
	s.activateStagedROMLocked()
	s.setPostStateLocked("On", postDiscoveryDone)
	s.mu.Unlock()
	if ok {
		sleepCtx(s.flashCtx, s.cfg.Timings.POST-half)
	}
	s.mu.Lock()
	s.setPostStateLocked("On", postFinished)
	s.host.posting = false
	s.mu.Unlock()
	s.logf("host POST finished")
}

// stageROMLocked records a system ROM flash as a ProLiant does: the image is written over the
// backup side of the redundant ROM, so "Redundant System ROM" (SystemRomBackup) and Systems/1
// Oem.Hpe.Bios.Backup show it while the running "System ROM" keeps its version until the next
// POST.
func (s *Sim) stageROMLocked(version string) {
	s.host.stagedROM = version
	full := s.romVersionString(version)
	if e := s.tree.edit(s.inventoryEntryByDescription("SystemRomBackup")); e != nil {
		e["Version"] = full
	}
	if sys := s.tree.edit(systemPath); sys != nil {
		b := obj(sys, "Oem", "Hpe", "Bios", "Backup")
		b["VersionString"], b["Date"] = full, time.Now().Format("01/02/2006")
	}
}

// activateStagedROMLocked boots the staged ROM: the sides swap, the old running ROM becomes the
// backup.
func (s *Sim) activateStagedROMLocked() {
	if s.host.stagedROM == "" {
		return
	}
	active := s.tree.edit(s.tree.inventoryEntry("SystemROM", ""))
	backup := s.tree.edit(s.inventoryEntryByDescription("SystemRomBackup"))
	if active == nil {
		s.host.stagedROM = ""
		return
	}
	oldActive, _ := active["Version"].(string)
	newActive := s.romVersionString(s.host.stagedROM)
	active["Version"] = newActive
	if backup != nil {
		backup["Version"] = oldActive
	}
	if sys := s.tree.edit(systemPath); sys != nil {
		sys["BiosVersion"] = newActive
		bios := obj(sys, "Oem", "Hpe", "Bios")
		obj(bios, "Current")["VersionString"] = newActive
		obj(bios, "Backup")["VersionString"] = oldActive
	}
	s.logf("host booted system ROM %s", newActive)
	s.host.stagedROM = ""
}

// romVersionString writes a ROM version as ProLiant ROMs do ("A43 v2.52 (10/29/2021)"),
// keeping the running ROM's family.
func (s *Sim) romVersionString(version string) string {
	family := ""
	if e := s.tree.get(s.tree.inventoryEntry("SystemROM", "")); e != nil {
		old, _ := e["Version"].(string)
		family, _, _ = strings.Cut(old, " ")
	}
	if family == "" || strings.HasPrefix(family, "v") {
		family = "U00"
	}
	return family + " v" + version + " (" + time.Now().Format("01/02/2006") + ")"
}

// inventoryEntryByDescription finds the path of an inventory member by its Description
// ("SystemRomBackup"), or "". Callers hold s.mu.
func (s *Sim) inventoryEntryByDescription(desc string) string {
	for _, p := range s.tree.inventory() {
		if s.tree.get(p)["Description"] == desc {
			return p
		}
	}
	return ""
}
