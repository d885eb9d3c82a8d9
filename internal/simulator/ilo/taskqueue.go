package ilo

// The update task queue (/redfish/v1/UpdateService/UpdateTaskQueue): an ordered list of tasks
// that iLO runs strictly in order. A task runs when it reaches the head and the agent that can
// apply it is there: UpdatableBy Bmc tasks (and Wait commands) at once, Uefi tasks when the
// system ROM finds them during the next host POST, RuntimeAgent tasks when an OS agent (SUM,
// SUT) does, which never happens here. States: Pending, InProgress, then Complete or Exception.
// A task in Exception (or Expired) stalls every task behind it until someone deletes it, and
// so does a task waiting for its agent. Task names are unique; a task locks the repository
// component it references until it is deleted.
//
// Sources: HPE's iLO 5 user guide ("How tasks in the installation queue are processed", the
// Installation Queue states), ilorest's UpdateTaskQueueCommand.py (the task bodies it POSTs:
// Name, Command ApplyUpdate/Wait/ResetServer, Filename, UpdatableBy, TPMOverride,
// WaitTimeSeconds; --cleanqueue deletes Complete and Exception tasks) and FwpkgCommand.py
// (an Exception in the queue "will prevent firmware from flashing"), the captured install set
// (the Sequence items' fields).

import (
	"context"
	"net/http"
	"slices"
	"time"

	"github.com/fwops/firmware-operator/internal/simulator/fwpkg"
)

const taskQueuePath = "/redfish/v1/UpdateService/UpdateTaskQueue"

// Task states as iLO reports them.
const (
	TaskPending    = "Pending"
	TaskInProgress = "InProgress"
	TaskComplete   = "Complete"
	TaskException  = "Exception"
	TaskExpired    = "Expired"
)

var taskCommands = []string{"ApplyUpdate", "Wait", "ResetServer"}

// postTask serves POST UpdateTaskQueue: it appends a task.
func (s *Sim) postTask(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Model == ILO4 {
		writeError(w, http.StatusNotFound, "Base.1.4.ResourceMissingAtURI", "iLO 4 has no update task queue")
		return
	}
	var body struct {
		Name            string
		Command         string
		Filename        string
		UpdatableBy     []string
		TPMOverride     bool
		WaitTimeSeconds int
	}
	if !decodeBody(w, r, &body) {
		return
	}
	switch {
	case body.Name == "":
		writeError(w, http.StatusBadRequest, "Base.1.4.PropertyMissing", "Name is required")
		return
	case !slices.Contains(taskCommands, body.Command):
		writeError(w, http.StatusBadRequest, "Base.1.4.PropertyValueNotInList", "Command must be ApplyUpdate, Wait or ResetServer")
		return
	case body.Command == "ApplyUpdate" && body.Filename == "":
		writeError(w, http.StatusBadRequest, "Base.1.4.PropertyMissing", "Filename is required by ApplyUpdate")
		return
	case body.WaitTimeSeconds < 0:
		writeError(w, http.StatusBadRequest, "Base.1.4.PropertyValueFormatError", "WaitTimeSeconds must not be negative")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range memberPaths(s.tree.get(taskQueuePath)) {
		if t := s.tree.get(p); t != nil && str(t["Name"]) == body.Name {
			writeError(w, http.StatusBadRequest, "Base.1.4.ResourceAlreadyExists", "a task named "+body.Name+" is already queued")
			return
		}
	}
	id := randHex(4)
	p := taskQueuePath + "/" + id
	now := time.Now().UTC().Format(time.RFC3339)
	task := map[string]any{
		"@odata.id": p, "@odata.type": "#HpeComponentUpdateTask.v1_2_0.HpeComponentUpdateTask", "Id": id,
		"Name": body.Name, "Command": body.Command, "State": TaskPending, "Created": now, "Modified": now,
		"TPMOverride": body.TPMOverride, "ExecutionTimeoutMinutes": 0, "UpdatableBy": toAny(body.UpdatableBy),
	}
	switch body.Command {
	case "ApplyUpdate":
		comp := s.componentByFilename(body.Filename)
		if comp == nil {
			writeError(w, http.StatusBadRequest, "Base.1.4.ResourceMissingAtURI", body.Filename+" is not in the iLO Repository")
			return
		}
		task["Filename"] = body.Filename
		task["Component"] = str(comp["@odata.id"])
		if len(body.UpdatableBy) == 0 {
			task["UpdatableBy"] = deepCopy(comp["UpdatableBy"])
		}
	case "Wait":
		task["WaitTimeSeconds"] = body.WaitTimeSeconds
		if len(body.UpdatableBy) == 0 {
			task["UpdatableBy"] = []any{fwpkg.Bmc}
		}
	case "ResetServer":
		if len(body.UpdatableBy) == 0 {
			task["UpdatableBy"] = []any{fwpkg.RuntimeAgent}
		}
	}
	s.tree.addMember(taskQueuePath, p, task)
	s.tree.refreshRepository()
	s.logf("update task %q queued (%s %s)", body.Name, body.Command, body.Filename)
	s.runQueueLocked()
	out := deepCopy(task)
	w.Header().Set("Location", p)
	writeJSON(w, http.StatusCreated, out)
}

// deleteTask serves DELETE UpdateTaskQueue/{id}; a running task cannot be deleted.
func (s *Sim) deleteTask(w http.ResponseWriter, p string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tree.get(p)
	if t == nil {
		writeError(w, http.StatusNotFound, "Base.1.4.ResourceMissingAtURI", "no such task")
		return
	}
	if t["State"] == TaskInProgress {
		writeError(w, http.StatusBadRequest, MsgUpdateInProgress, "the task is running")
		return
	}
	s.tree.removeMember(taskQueuePath, p)
	s.tree.refreshRepository()
	s.runQueueLocked()
	writeError(w, http.StatusOK, "Base.1.4.Success", "task deleted")
}

// kickQueue lets the queue move on (after a flash, a wait, a POST).
func (s *Sim) kickQueue() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.runQueueLocked()
}

// headTaskLocked is the first task that is not Complete and its path, or nil.
func (s *Sim) headTaskLocked() (string, map[string]any) {
	for _, p := range memberPaths(s.tree.get(taskQueuePath)) {
		if t := s.tree.get(p); t != nil && t["State"] != TaskComplete {
			return p, t
		}
	}
	return "", nil
}

// runQueueLocked starts the task at the head when the iLO itself can run it.
func (s *Sim) runQueueLocked() {
	p, t := s.headTaskLocked()
	if t == nil || t["State"] != TaskPending || s.flashCtx.Err() != nil {
		// Nothing queued, a task running, or an Exception/Expired task stalling the queue.
		return
	}
	switch {
	case t["Command"] == "Wait":
		s.setTaskLocked(p, TaskInProgress, "")
		wait := time.Duration(intOf(t["WaitTimeSeconds"])) * time.Second
		s.flashWG.Add(1)
		go func() {
			defer s.flashWG.Done()
			ok := sleepCtx(s.flashCtx, wait)
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.tree.get(p) != nil && ok {
				s.setTaskLocked(p, TaskComplete, "")
				s.runQueueLocked()
			}
		}()
	case t["Command"] == "ApplyUpdate" && hasString(t["UpdatableBy"], fwpkg.Bmc):
		if s.flashing {
			return // the flash's end kicks the queue again
		}
		s.flashing = true
		s.stats.FlashesStarted++
		s.setTaskLocked(p, TaskInProgress, "")
		s.setStateLocked("Uploading", 0, "", "")
		comp := s.tree.get(str(t["Component"]))
		s.launchFlash(flashReq{route: routeTask, data: s.repo.data[str(comp["Id"])], filename: str(t["Filename"]),
			done: func(ok bool, msgID string) {
				s.mu.Lock()
				defer s.mu.Unlock()
				if ok {
					s.setTaskLocked(p, TaskComplete, "")
				} else {
					s.setTaskLocked(p, TaskException, msgID)
				}
			}})
	}
	// Uefi and RuntimeAgent tasks wait at the head for their agent.
}

// runUefiTasks is what the system ROM does during POST: it applies the Uefi tasks at the head
// of the queue, in order, until the head is a task it cannot run. It also activates the images
// that a direct flash left for the next reset.
func (s *Sim) runUefiTasks(ctx context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.activatePendingLocked()
	for ctx.Err() == nil {
		p, t := s.headTaskLocked()
		if t == nil || t["State"] != TaskPending || t["Command"] != "ApplyUpdate" || !hasString(t["UpdatableBy"], fwpkg.Uefi) {
			break
		}
		s.stats.FlashesStarted++
		msgID := s.applyUefiTaskLocked(t)
		if msgID != "" {
			s.stats.FlashesFailed++
			s.setTaskLocked(p, TaskException, msgID)
			s.logf("UEFI update task %q failed: %s", str(t["Name"]), msgID)
			break
		}
		s.stats.FlashesCompleted++
		s.setTaskLocked(p, TaskComplete, "")
		s.logf("UEFI update task %q applied at POST", str(t["Name"]))
	}
	s.runQueueLocked()
}

// applyUefiTaskLocked flashes a Uefi task's component; it returns a MessageId on failure.
func (s *Sim) applyUefiTaskLocked(t map[string]any) string {
	if s.faults.FlashError != "" {
		return s.faults.FlashError
	}
	comp := s.tree.get(str(t["Component"]))
	if comp == nil {
		return MsgInvalidImage
	}
	pkg, err := fwpkg.Open(s.repo.data[str(comp["Id"])])
	if err != nil {
		// Not a package the simulator can read (a captured component): nothing to change.
		return ""
	}
	if s.faults.VersionUnchanged {
		return ""
	}
	if n, _ := s.applyPackageLocked(pkg, true); n == 0 {
		return MsgNotApplicable
	}
	return ""
}

// setTaskLocked sets the state of the task at p, when it is still queued.
func (s *Sim) setTaskLocked(p, state, msgID string) {
	t := s.tree.edit(p)
	if t == nil {
		return
	}
	t["State"] = state
	t["Modified"] = time.Now().UTC().Format(time.RFC3339)
	switch {
	case msgID != "":
		t["Result"] = map[string]any{"MessageId": msgID}
	case state == TaskComplete:
		t["Result"] = map[string]any{"MessageId": "Base.1.4.Success"}
	}
}

// TaskStates lists the queue as "name=State", in order.
func (s *Sim) TaskStates() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, p := range memberPaths(s.tree.get(taskQueuePath)) {
		if t := s.tree.get(p); t != nil {
			out = append(out, str(t["Name"])+"="+str(t["State"]))
		}
	}
	return out
}

func hasString(v any, want string) bool {
	for _, e := range anyList(v) {
		if str(e) == want {
			return true
		}
	}
	return false
}

func intOf(v any) int {
	switch n := v.(type) {
	case int:
		return n
	case float64:
		return int(n)
	}
	return 0
}
