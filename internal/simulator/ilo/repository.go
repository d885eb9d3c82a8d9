package ilo

// The iLO Repository (/redfish/v1/UpdateService/ComponentRepository): the components uploaded
// to the iLO's NAND, added with the Oem.Hpe AddFromUri action or pushed as multipart to
// HttpPushUri, listed, and deleted when no task or install set references (locks) them.
//
// Sources: the captured UpdateService, ComponentRepository and InstallSets documents
// (../shared/testdata/redfish-mockups; a component's fields are those of the captured
// HpeComponent), HPE's iLO 5 user guide (iLO Repository, Installation Queue) and ilorest's
// UploadComponentCommand.py, ListComponentCommand.py and DeleteComponentCommand.py (the
// multipart form: sessionKey, parameters {UpdateRepository, UpdateTarget, ETag, Section},
// compsig, file; 32 MiB sections that share an ETag; a Locked component cannot be replaced or
// deleted).

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/fwops/firmware-operator/internal/simulator/fwimage"
	"github.com/fwops/firmware-operator/internal/simulator/fwpkg"
)

const (
	repositoryPath = "/redfish/v1/UpdateService/ComponentRepository"
	installSetPath = "/redfish/v1/UpdateService/InstallSets"
	// httpPushPath is the captured UpdateService.HttpPushUri.
	httpPushPath = "/cgi-bin/uploadFile"
	// pushSectionSize is the size ilorest splits components into (its maxcompsize): every
	// section of a split upload but the last is exactly this long.
	pushSectionSize = 32 << 20
)

// Message ids of the repository. HPE's documents do not list the ids a real iLO gives for
// these refusals; the simulator names them in HPE's style.
const (
	MsgComponentLocked   = "iLO.2.14.ComponentLocked"
	MsgSectionOutOfOrder = "iLO.2.14.UploadSectionOutOfOrder"
)

// repoState holds what the tree cannot: the components' bytes and the split uploads being
// assembled. Guarded by Sim.mu.
type repoState struct {
	data map[string][]byte // component id -> file
	// uploads are split pushes being assembled, by ETag.
	uploads map[string]*pushUpload
	// pendingAtPOST are inventory versions that activate at the next host POST
	// (ResetRequired images, Uefi tasks' results), by inventory member path.
	pendingAtPOST map[string]string
	// added counts the files stored; signed the uploads that came with a signature.
	added, signed int
}

type pushUpload struct {
	filename string
	next     int
	buf      bytes.Buffer
	sig      bool
	params   pushParams
}

func (s *Sim) initRepository() {
	s.repo = repoState{data: map[string][]byte{}, uploads: map[string]*pushUpload{}, pendingAtPOST: map[string]string{}}
	// The system ROM applies queued Uefi tasks during POST (host.go runs the hook).
	s.host.hooks = append(s.host.hooks, s.runUefiTasks)
}

// initRepositoryTree adds the repository's and the task queue's collections when the capture
// lacks them (adaptTree).
func initRepositoryTree(t *tree, m Model) {
	if t.get(repositoryPath) == nil {
		t.put(repositoryPath, map[string]any{
			"@odata.id": repositoryPath, "@odata.type": "#HpeComponentCollection.HpeComponentCollection",
			"Name": "Component Collection", "Members": []any{}, "Members@odata.count": 0,
		})
	}
	if t.get(taskQueuePath) == nil {
		t.put(taskQueuePath, map[string]any{
			"@odata.id": taskQueuePath, "@odata.type": "#HpeComponentUpdateTaskQueueCollection.HpeComponentUpdateTaskQueueCollection",
			"Name": "Component Update Task Queue", "Members": []any{}, "Members@odata.count": 0,
		})
	}
	if _, ok := t.get("/redfish/v1/UpdateService")["HttpPushUri"]; !ok && m != ILO4 {
		t.edit("/redfish/v1/UpdateService")["HttpPushUri"] = httpPushPath
	}
	t.refreshRepository()
}

// componentInfo is what the iLO reads from a file it stores.
type componentInfo struct {
	name, version, deviceClass, activates string
	updatableBy, targets                  []string
}

// describe reads a component the way the iLO does: a .fwpkg (or the .zip that ilorest makes of
// one) by its payload.json, a simulator image by its header; anything else is a generic file
// that only the iLO can apply.
func (s *Sim) describe(filename string, data []byte) (componentInfo, error) {
	if pkg, err := fwpkg.Open(data); err == nil {
		p := pkg.Payload
		ci := componentInfo{name: p.Name, version: p.Version, deviceClass: p.DeviceClass,
			updatableBy: slices.Clone(p.UpdatableBy), targets: p.Targets(), activates: "Immediately"}
		for _, d := range p.Devices.Device {
			for _, im := range d.FirmwareImages {
				if im.ResetRequired || !p.Has(fwpkg.Bmc) {
					ci.activates = "AfterReboot"
				}
			}
		}
		if ci.name == "" {
			ci.name = filename
		}
		return ci, nil
	} else if !errors.Is(err, fwpkg.ErrNotFwpkg) {
		return componentInfo{}, err
	}
	h, err := fwimage.Parse(bytes.NewReader(data))
	switch {
	case errors.Is(err, fwimage.ErrGeneric):
		return componentInfo{name: filename, updatableBy: []string{fwpkg.Bmc}, activates: "Immediately"}, nil
	case err != nil:
		return componentInfo{}, err
	}
	ci := componentInfo{version: h.Version, updatableBy: []string{fwpkg.Bmc}, activates: "Immediately"}
	entry := s.tree.get(s.tree.inventoryEntry(h.Component, h.Target))
	switch h.Component {
	case "iLO":
		ci.name = s.cfg.Model.managerName()
	case "SystemROM":
		ci.name, ci.activates = "System ROM", "AfterReboot"
	default:
		ci.name = h.Target
		if ci.name == "" {
			ci.name = filename
		}
	}
	if entry != nil {
		hpe := field(entry, "Oem", "Hpe")
		ci.deviceClass, _ = hpe["DeviceClass"].(string)
		for _, t := range anyList(hpe["Targets"]) {
			if ts, ok := t.(string); ok {
				ci.targets = append(ci.targets, ts)
			}
		}
	}
	return ci, nil
}

// storeComponentLocked adds a file to the repository, replacing an unlocked one of the same
// name; it returns the MessageId and reason of a refusal.
func (s *Sim) storeComponentLocked(filename string, data []byte, sig bool) (msgID, why string) {
	ci, err := s.describe(filename, data)
	if err != nil {
		return MsgInvalidImage, err.Error()
	}
	id := ""
	for _, p := range memberPaths(s.tree.get(repositoryPath)) {
		d := s.tree.get(p)
		if d == nil || !strings.EqualFold(str(d["Filename"]), filename) {
			continue
		}
		if locked, _ := d["Locked"].(bool); locked {
			return MsgComponentLocked, filename + " is locked by an update task or install set: remove them first"
		}
		id = str(d["Id"])
		s.tree.removeMember(repositoryPath, p)
	}
	if id == "" {
		id = randHex(4)
	}
	p := repositoryPath + "/" + id
	doc := map[string]any{
		"@odata.id": p, "@odata.type": "#HpeComponent.v1_0_1.HpeComponent", "Id": id,
		"Activates": ci.activates, "ComponentUri": "/fwrepo/" + filename, "Configuration": "",
		"Created": time.Now().UTC().Format(time.RFC3339), "Criticality": "Optional",
		"DeviceClass": ci.deviceClass, "ExecutionParameters": "", "Filename": filename, "Filepath": filename,
		"Locked": false, "Name": ci.name, "SizeBytes": len(data), "Targets": toAny(ci.targets),
		"UpdatableBy": toAny(ci.updatableBy), "Version": ci.version,
		"ComponentSignatureUploaded": sig,
	}
	s.tree.addMember(repositoryPath, p, doc)
	s.repo.data[id] = data
	s.repo.added++
	s.tree.refreshRepository()
	s.logf("component %s added to the repository (%s %s)", filename, ci.name, ci.version)
	return "", ""
}

// refreshRepository recomputes each component's Locked flag (referenced by a queued task or an
// install set) and the collection's counts. It edits only the documents whose values change.
// Callers hold the Sim's mutex.
func (t *tree) refreshRepository() {
	refs := map[string]bool{}
	for _, p := range memberPaths(t.get(taskQueuePath)) {
		if task := t.get(p); task != nil {
			refs[key(str(task["Component"]))] = true
		}
	}
	for _, p := range memberPaths(t.get(installSetPath)) {
		set := t.get(p)
		for _, st := range anyList(set["Sequence"]) {
			if m, ok := st.(map[string]any); ok {
				refs[key(str(m["Component"]))] = true
			}
		}
	}
	var used int
	members := memberPaths(t.get(repositoryPath))
	for _, p := range members {
		d := t.get(p)
		if d == nil {
			continue
		}
		if locked := refs[key(p)]; d["Locked"] != locked {
			t.edit(p)["Locked"] = locked
		}
		if n, ok := d["SizeBytes"].(int); ok {
			used += n
		} else if f, ok := d["SizeBytes"].(float64); ok {
			used += int(f)
		}
	}
	const total = 1073168384 // the captured TotalSizeBytes
	counts := map[string]any{"ComponentCount": len(members), "TotalSizeBytes": total, "FreeSizeBytes": max(total-used, 0)}
	hpe := field(t.get(repositoryPath), "Oem", "Hpe")
	for k, v := range counts {
		if hpe[k] != v {
			obj(t.edit(repositoryPath), "Oem", "Hpe")[k] = v
		}
	}
}

// componentByFilename finds a repository component; callers hold s.mu.
func (s *Sim) componentByFilename(filename string) map[string]any {
	for _, p := range memberPaths(s.tree.get(repositoryPath)) {
		if d := s.tree.get(p); d != nil && str(d["Filename"]) == filename {
			return d
		}
	}
	return nil
}

// deleteComponent serves DELETE ComponentRepository/{id}.
func (s *Sim) deleteComponent(w http.ResponseWriter, p string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.tree.get(p)
	if d == nil {
		writeError(w, http.StatusNotFound, "Base.1.4.ResourceMissingAtURI", "no such component")
		return
	}
	if locked, _ := d["Locked"].(bool); locked {
		writeError(w, http.StatusBadRequest, MsgComponentLocked, str(d["Filename"])+" is locked by an update task or install set")
		return
	}
	delete(s.repo.data, str(d["Id"]))
	s.tree.removeMember(repositoryPath, p)
	s.tree.refreshRepository()
	s.logf("component %s deleted from the repository", str(d["Filename"]))
	writeError(w, http.StatusOK, "Base.1.4.Success", "component deleted")
}

// Components lists the repository's file names, in order.
func (s *Sim) Components() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, p := range memberPaths(s.tree.get(repositoryPath)) {
		if d := s.tree.get(p); d != nil {
			out = append(out, str(d["Filename"]))
		}
	}
	return out
}

// ComponentsAdded counts the files the repository has stored since the start.
func (s *Sim) ComponentsAdded() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.repo.added
}

// SignaturesReceived counts the component signatures (.compsig) that came with uploads and
// AddFromUri requests to the repository.
func (s *Sim) SignaturesReceived() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.repo.signed
}

type pushParams struct {
	UpdateRepository  bool   `json:"UpdateRepository"`
	UpdateTarget      bool   `json:"UpdateTarget"`
	ETag              string `json:"ETag"`
	Section           int    `json:"Section"`
	UpdateRecoverySet bool   `json:"UpdateRecoverySet"`
}

// pushUploadHandler serves the multipart POST to HttpPushUri, as ilorest's uploadcomp sends it:
// the session key in a form field (and a sessionKey cookie), the JSON parameters, an optional
// compsig and the file. A split component arrives in sections that share an ETag.
func (s *Sim) pushUploadHandler(w http.ResponseWriter, r *http.Request) {
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || !strings.HasPrefix(mt, "multipart/") {
		writeError(w, http.StatusBadRequest, "Base.1.4.UnsupportedMediaType", "the upload must be multipart/form-data")
		return
	}
	mr := multipart.NewReader(io.LimitReader(r.Body, maxImage+1<<20), params["boundary"])
	var (
		sessionKey, rawParams, filename string
		file                            []byte
		sig                             bool
	)
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			writeError(w, http.StatusBadRequest, "Base.1.4.MalformedJSON", "multipart: "+err.Error())
			return
		}
		b, err := io.ReadAll(io.LimitReader(part, maxImage+1))
		if err != nil || len(b) > maxImage {
			writeError(w, http.StatusRequestEntityTooLarge, "Base.1.4.PropertyValueFormatError", "part too large or unreadable")
			return
		}
		switch part.FormName() {
		case "sessionKey":
			sessionKey = string(b)
		case "parameters":
			rawParams = string(b)
		case "compsig":
			sig = len(b) > 0
		case "file":
			filename, file = path.Base(part.FileName()), b
		}
	}
	if c, err := r.Cookie("sessionKey"); sessionKey == "" && err == nil {
		sessionKey = c.Value
	}
	if sessionKey == "" {
		sessionKey = r.Header.Get("X-Auth-Token")
	}
	s.mu.Lock()
	_, ok := s.sessions[sessionKey]
	s.mu.Unlock()
	if !ok {
		writeError(w, http.StatusUnauthorized, "Base.1.4.NoValidSession", "the upload carries no valid sessionKey")
		return
	}
	var pp pushParams
	if err := json.Unmarshal([]byte(rawParams), &pp); err != nil {
		writeError(w, http.StatusBadRequest, "Base.1.4.MalformedJSON", "parameters: "+err.Error())
		return
	}
	if file == nil || filename == "" || filename == "." {
		writeError(w, http.StatusBadRequest, "Base.1.4.PropertyMissing", "no file part with a file name")
		return
	}

	s.mu.Lock()
	if s.flashing {
		s.mu.Unlock()
		writeError(w, http.StatusBadRequest, MsgUpdateInProgress, "an update is already in progress")
		return
	}
	up := s.repo.uploads[pp.ETag]
	switch {
	case pp.Section == 0:
		up = &pushUpload{filename: filename}
	case up == nil || up.next != pp.Section || up.filename != filename:
		s.mu.Unlock()
		writeError(w, http.StatusBadRequest, MsgSectionOutOfOrder, "section "+itoa(pp.Section)+" of "+filename+" does not follow the sections received for ETag "+pp.ETag)
		return
	}
	up.buf.Write(file)
	up.sig = up.sig || sig
	if sig {
		s.repo.signed++
	}
	up.next = pp.Section + 1
	up.params = pp
	if len(file) == pushSectionSize {
		// More sections follow.
		s.repo.uploads[pp.ETag] = up
		s.mu.Unlock()
		writeError(w, http.StatusOK, "Base.1.4.Success", "section received")
		return
	}
	delete(s.repo.uploads, pp.ETag)
	data := up.buf.Bytes()
	if pp.UpdateRepository && !pp.UpdateTarget {
		// The UpdateService reports the outcome of the upload, as ilorest's uploadcomp reads it
		// (it waits for COMPLETE or IDLE and takes ERROR as a failed upload).
		msgID, why := s.storeComponentLocked(filename, data, up.sig)
		if msgID != "" {
			s.setStateLocked("Error", 0, msgID, "")
		} else {
			s.setStateLocked("Complete", 100, "iLO.2.14.Success", "")
		}
		s.mu.Unlock()
		if msgID != "" {
			writeError(w, http.StatusBadRequest, msgID, why)
			return
		}
		writeError(w, http.StatusOK, "Base.1.4.Success", "component uploaded")
		return
	}
	s.mu.Unlock()
	if !pp.UpdateTarget {
		// Neither repository nor target: nothing to do, as the iLO answers.
		writeError(w, http.StatusOK, "Base.1.4.Success", "nothing to do")
		return
	}
	s.startFlash(w, flashReq{route: routeAddFromURI, data: data, filename: filename, repository: pp.UpdateRepository, signed: up.sig})
}

// postAddToRepository serves AddFromUri without UpdateTarget: the iLO downloads the file
// (UpdateService State Uploading, then Complete or Error) and stores it.
func (s *Sim) postAddToRepository(w http.ResponseWriter, imageURI, sigURI string) {
	s.mu.Lock()
	if s.flashing {
		s.mu.Unlock()
		writeError(w, http.StatusBadRequest, MsgUpdateInProgress, "an update is already in progress")
		return
	}
	s.flashing = true
	s.setStateLocked("Uploading", 0, "", "")
	s.mu.Unlock()
	s.flashWG.Add(1)
	go func() {
		defer s.flashWG.Done()
		defer s.kickQueue()
		img, err := s.download(s.flashCtx, imageURI)
		if err == nil && sigURI != "" {
			if _, err = s.download(s.flashCtx, sigURI); err == nil {
				s.mu.Lock()
				s.repo.signed++
				s.mu.Unlock()
			}
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		s.flashing = false
		if err != nil {
			s.logf("AddFromUri: download failed: %v", err)
			s.setStateLocked("Error", 0, MsgDownloadFailed, "")
			return
		}
		if msgID, why := s.storeComponentLocked(path.Base(imageURI), img, sigURI != ""); msgID != "" {
			s.logf("AddFromUri: %s", why)
			s.setStateLocked("Error", 0, msgID, "")
			return
		}
		s.setStateLocked("Complete", 100, "iLO.2.14.Success", "")
	}()
	writeError(w, http.StatusOK, "Base.1.4.Success", "the component is being added to the repository")
}

func str(v any) string { s, _ := v.(string); return s }

func anyList(v any) []any { l, _ := v.([]any); return l }

func toAny(ss []string) []any {
	out := make([]any, 0, len(ss))
	for _, s := range ss {
		out = append(out, s)
	}
	return out
}
