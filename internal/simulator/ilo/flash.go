package ilo

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/fwops/firmware-operator/internal/simulator/fwimage"
)

// Message ids the simulator reports. UpdateFailed is HPE's; the others follow its naming.
const (
	MsgUpdateFailed     = "iLO.2.14.UpdateFailed"
	MsgDownloadFailed   = "iLO.2.14.ImageDownloadFailed"
	MsgInvalidImage     = "iLO.2.14.InvalidFirmwareImage"
	MsgUpdateInProgress = "iLO.2.14.UpdateInProgress"
)

// maxImage bounds a download, to keep a wrong URL from filling memory.
const maxImage = 512 << 20

// route says how a flash was requested; it decides what the image may change.
type route int

const (
	routeSimpleUpdate route = iota
	routeAddFromURI
	routeInstallFromURI
	// routeTask is an UpdateTaskQueue ApplyUpdate task run by the iLO (UpdatableBy Bmc).
	routeTask
)

type flashReq struct {
	route        route
	imageURI     string
	signatureURI string
	taskPath     string
	// data is the file when it was pushed (HttpPushUri) or comes from the repository (an
	// update task); imageURI is then unused.
	data     []byte
	filename string
	// repository stores the file in the iLO Repository (AddFromUri and pushes with
	// UpdateRepository); signed says a compsig came with it.
	repository, signed bool
	// done, when set, learns the outcome (the update task queue).
	done func(ok bool, msgID string)
}

func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "Base.1.4.MalformedJSON", "the body is not valid JSON")
		return false
	}
	return true
}

func (s *Sim) postSimpleUpdate(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Model == ILO4 {
		writeError(w, http.StatusNotFound, "Base.1.4.ResourceMissingAtURI", "iLO 4 has no SimpleUpdate: use InstallFromURI")
		return
	}
	var body struct {
		ImageURI         string
		TransferProtocol string
	}
	if !decodeBody(w, r, &body) {
		return
	}
	if body.ImageURI == "" {
		writeError(w, http.StatusBadRequest, "Base.1.4.PropertyMissing", "ImageURI is required")
		return
	}
	if tp := strings.ToUpper(body.TransferProtocol); tp != "" && !s.offersTransferProtocol(tp) {
		writeError(w, http.StatusBadRequest, "Base.1.4.PropertyValueNotInList", "TransferProtocol "+body.TransferProtocol+" is not one of TransferProtocol@Redfish.AllowableValues")
		return
	}
	s.noteFlashRequest(FlashRequest{Action: "SimpleUpdate", ImageURI: body.ImageURI, TransferProtocol: body.TransferProtocol})
	s.startFlash(w, flashReq{route: routeSimpleUpdate, imageURI: body.ImageURI})
}

// offersTransferProtocol says whether the UpdateService lists tp for SimpleUpdate.
func (s *Sim) offersTransferProtocol(tp string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	list, _ := field(s.tree.get("/redfish/v1/UpdateService"), "Actions", "#UpdateService.SimpleUpdate")["TransferProtocol@Redfish.AllowableValues"].([]any)
	for _, v := range list {
		if p, ok := v.(string); ok && strings.EqualFold(p, tp) {
			return true
		}
	}
	return false
}

func (s *Sim) postAddFromURI(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Model == ILO4 {
		writeError(w, http.StatusNotFound, "Base.1.4.ResourceMissingAtURI", "iLO 4 has no component repository")
		return
	}
	var body struct {
		ImageURI              string
		ComponentSignatureURI string
		UpdateRepository      *bool
		UpdateTarget          *bool
	}
	if !decodeBody(w, r, &body) {
		return
	}
	if body.ImageURI == "" {
		writeError(w, http.StatusBadRequest, "Base.1.4.PropertyMissing", "ImageURI is required")
		return
	}
	s.noteFlashRequest(FlashRequest{Action: "AddFromUri", ImageURI: body.ImageURI})
	if body.UpdateTarget == nil || !*body.UpdateTarget {
		// Repository only: download and store it, flash nothing (repository.go).
		s.postAddToRepository(w, body.ImageURI, body.ComponentSignatureURI)
		return
	}
	s.startFlash(w, flashReq{route: routeAddFromURI, imageURI: body.ImageURI, signatureURI: body.ComponentSignatureURI,
		filename: path.Base(body.ImageURI), repository: body.UpdateRepository == nil || *body.UpdateRepository})
}

func (s *Sim) postInstallFromURI(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Action      string
		FirmwareURI string
	}
	if !decodeBody(w, r, &body) {
		return
	}
	if body.Action != "InstallFromURI" {
		writeError(w, http.StatusBadRequest, "Base.1.4.ActionNotSupported", "Action must be InstallFromURI")
		return
	}
	if body.FirmwareURI == "" {
		writeError(w, http.StatusBadRequest, "Base.1.4.PropertyMissing", "FirmwareURI is required")
		return
	}
	s.noteFlashRequest(FlashRequest{Action: "InstallFromURI", ImageURI: body.FirmwareURI})
	// iLO 4 downloads firmware over plain HTTP only: HPE documents FirmwareURI as an http://
	// URI, and its update resource advertises no TransferProtocol. It refuses the request
	// rather than flash anything.
	if !strings.HasPrefix(strings.ToLower(body.FirmwareURI), "http://") {
		writeError(w, http.StatusBadRequest, "Base.1.4.PropertyValueFormatError", "FirmwareURI must be an http:// URI: iLO 4 cannot download firmware over HTTPS")
		return
	}
	s.startFlash(w, flashReq{route: routeInstallFromURI, imageURI: body.FirmwareURI})
}

// startFlash accepts a flash request and runs it in the background.
func (s *Sim) startFlash(w http.ResponseWriter, req flashReq) {
	s.mu.Lock()
	s.stats.FlashRequests++
	if s.stats.FirstFlashRequest.IsZero() {
		s.stats.FirstFlashRequest = time.Now()
	}
	if s.flashing {
		s.mu.Unlock()
		writeError(w, http.StatusBadRequest, MsgUpdateInProgress, "an update is already in progress")
		return
	}
	s.flashing = true
	s.stats.FlashesStarted++
	var task map[string]any
	if req.route == routeSimpleUpdate && s.cfg.SimpleUpdateTask {
		s.nextID++
		id := itoa(s.nextID)
		req.taskPath = "/redfish/v1/TaskService/Tasks/" + id + "/"
		task = map[string]any{
			"@odata.id": req.taskPath, "@odata.type": "#Task.v1_4_3.Task", "Id": id, "Name": "SimpleUpdate",
			"TaskState": "Running", "TaskStatus": "OK", "PercentComplete": 0,
			"TaskMonitor": taskMonitorBase + id + "/",
			"StartTime":   time.Now().UTC().Format(time.RFC3339),
		}
		s.tree.addMember("/redfish/v1/TaskService/Tasks", req.taskPath, task)
		task = deepCopy(task).(map[string]any)
	}
	s.setStateLocked("Uploading", 0, "", req.taskPath)
	s.mu.Unlock()
	s.launchFlash(req)

	if task != nil {
		w.Header().Set("Location", req.taskPath)
		writeJSON(w, http.StatusAccepted, task)
		return
	}
	// Older iLO 5 answer 200 and no task, in their error-shaped success envelope.
	writeError(w, http.StatusOK, "Base.1.4.Success", "the update has started")
}

// launchFlash runs an accepted flash (s.flashing set, counted) in the background.
func (s *Sim) launchFlash(req flashReq) {
	s.local.inc()
	if s.cfg.Counter != nil {
		s.cfg.Counter.inc()
	}
	s.flashWG.Add(1)
	go s.flash(req)
	s.logf("flash started from %s", cmp.Or(req.imageURI, req.filename))
}

// flash runs one update: download, verify, write, update, then record the new version.
func (s *Sim) flash(req flashReq) {
	defer s.flashWG.Done()
	start := time.Now()
	tm := s.cfg.Timings
	ok, failedID := false, ""
	defer s.kickQueue() // a queued Bmc task may have waited for this flash (taskqueue.go)
	defer func() {
		s.local.dec()
		if s.cfg.Counter != nil {
			s.cfg.Counter.dec()
		}
		s.mu.Lock()
		s.flashing = false
		if ok {
			s.stats.FlashesCompleted++
		} else {
			s.stats.FlashesFailed++
		}
		s.mu.Unlock()
		if req.done != nil {
			req.done(ok, failedID)
		}
	}()
	fail := func(msgID, why string) {
		failedID = msgID
		s.logf("flash failed: %s: %s", msgID, why)
		s.setState("Error", 0, msgID, req.taskPath)
	}
	ctx, cancel := context.WithTimeout(s.flashCtx, 10*time.Minute)
	defer cancel()

	img := req.data
	if img == nil && req.imageURI != "" {
		var err error
		if img, err = s.download(ctx, req.imageURI); err != nil {
			fail(MsgDownloadFailed, err.Error())
			return
		}
	}
	if req.signatureURI != "" {
		if _, err := s.download(ctx, req.signatureURI); err != nil {
			fail(MsgDownloadFailed, "signature: "+err.Error())
			return
		}
	}
	if !sleepCtx(ctx, tm.Upload-time.Since(start)) {
		return
	}
	s.setState("Verifying", 0, "", req.taskPath)
	if !sleepCtx(ctx, tm.Verify) {
		return
	}
	pkg, msgID, why := s.verifyPackage(img)
	if msgID != "" {
		fail(msgID, why)
		return
	}
	hdr, perr := fwimage.Parse(bytes.NewReader(img))
	generic := errors.Is(perr, fwimage.ErrGeneric)
	if perr != nil && !generic {
		fail(MsgInvalidImage, perr.Error())
		return
	}
	if req.repository {
		s.mu.Lock()
		msgID, why = s.storeComponentLocked(req.filename, img, req.signed || req.signatureURI != "")
		s.mu.Unlock()
		if msgID != "" {
			fail(msgID, why)
			return
		}
	}
	s.setState("Writing", 0, "", req.taskPath)
	if !sleepCtx(ctx, tm.Write) {
		return
	}
	s.mu.Lock()
	flashErr, unchanged := s.faults.FlashError, s.faults.VersionUnchanged
	s.mu.Unlock()
	for i := 0; i <= tm.Steps; i++ {
		if i > 0 && !sleepCtx(ctx, tm.Update/time.Duration(tm.Steps)) {
			return
		}
		s.setState("Updating", i*100/tm.Steps, "", req.taskPath)
		if flashErr != "" && i == tm.Steps/2 {
			fail(flashErr, "injected flash failure")
			return
		}
	}
	s.mu.Lock()
	newILO := ""
	switch {
	case unchanged:
	case pkg != nil:
		// An iLO image in the package resets the iLO like any self-flash (reset.go).
		newILO = s.installPackageLocked(pkg)
	case generic:
	case hdr.Component == "SmartComponent" && req.route != routeAddFromURI && req.route != routeTask:
		// SimpleUpdate takes iLO and ROM binaries; a Smart Component "succeeds" and changes
		// nothing, as on a real iLO.
	case hdr.Component == "OA":
	case hdr.Component == "iLO":
		// The iLO runs its new firmware only once it has reset (reset.go).
		newILO = hdr.Version
	default:
		s.applyVersion(hdr.Component, hdr.Version, hdr.Target)
	}
	s.mu.Unlock()
	ok = true
	s.setState("Complete", 100, "iLO.2.14.Success", req.taskPath)
	s.logf("flash complete (%s %s)", hdr.Component, hdr.Version)
	if hdr.Component == "iLO" || newILO != "" {
		s.flashWG.Add(1)
		go func() {
			defer s.flashWG.Done()
			s.resetILO(s.flashCtx, req.taskPath, newILO)
		}()
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// download fetches the image the way an iLO does: a plain GET, following the throttle fault.
func (s *Sim) download(ctx context.Context, uri string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, uri, nil)
	if err != nil {
		return nil, err
	}
	cl := &http.Client{Transport: &http.Transport{
		// For HTTPS ImageURIs the simulator is as lenient as an iLO 5: its UpdateService has
		// no place for a CA to trust for image downloads (no RemoteServerCertificates, no
		// VerifyRemoteServerCertificate in the captures), so it accepts any certificate.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // see above
		Proxy:           nil,
	}}
	defer cl.CloseIdleConnections()
	resp, err := cl.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: HTTP %d", uri, resp.StatusCode)
	}
	s.mu.Lock()
	s.secrets.imageURIs = append(s.secrets.imageURIs, uri)
	if resp.TLS != nil && len(resp.TLS.PeerCertificates) > 0 {
		sum := sha256.Sum256(resp.TLS.PeerCertificates[0].Raw)
		s.secrets.serverCerts = append(s.secrets.serverCerts, hex.EncodeToString(sum[:]))
	}
	bps := s.faults.DownloadBytesPerSec
	s.mu.Unlock()
	body := io.LimitReader(resp.Body, maxImage+1)
	var buf bytes.Buffer
	if bps <= 0 {
		_, err = buf.ReadFrom(body)
	} else {
		// Throttle in tenths of a second.
		chunk := max(bps/10, 1)
		for {
			n, rerr := io.CopyN(&buf, body, int64(chunk))
			if errors.Is(rerr, io.EOF) {
				break
			}
			if rerr != nil {
				err = rerr
				break
			}
			if n > 0 && !sleepCtx(ctx, 100*time.Millisecond) {
				err = ctx.Err()
				break
			}
		}
	}
	if err != nil {
		return nil, err
	}
	if buf.Len() > maxImage {
		return nil, fmt.Errorf("image larger than %d bytes", maxImage)
	}
	return buf.Bytes(), nil
}

func (s *Sim) setState(state string, percent int, msgID, taskPath string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.setStateLocked(state, percent, msgID, taskPath)
}

// ilo4State maps the iLO 5 states onto iLO 4's.
var ilo4State = map[string]string{
	"Idle": "IDLE", "Uploading": "UPLOADING", "Verifying": "PROGRESSING", "Writing": "PROGRESSING",
	"Updating": "PROGRESSING", "Complete": "COMPLETED", "Error": "ERROR",
}

func (s *Sim) setStateLocked(state string, percent int, msgID, taskPath string) {
	hpe := obj(s.tree.edit("/redfish/v1/UpdateService"), "Oem", "Hpe")
	prevState, _ := hpe["State"].(string)
	prevPct, _ := hpe["FlashProgressPercent"].(int)
	taskBefore := ""
	if taskPath != "" {
		taskBefore, _ = s.tree.get(taskPath)["TaskState"].(string)
	}
	defer func() { s.stateEventsLocked(prevState, state, prevPct, percent, taskPath, taskBefore) }()
	hpe["State"] = state
	hpe["FlashProgressPercent"] = percent
	if msgID != "" {
		hpe["Result"] = map[string]any{"MessageId": msgID}
	} else {
		delete(hpe, "Result")
	}
	if d := s.tree.edit(ilo4UpdatePath); d != nil {
		d["State"] = ilo4State[state]
		d["ProgressPercent"] = percent
		if msgID != "" {
			d["Result"] = map[string]any{"MessageId": msgID}
		}
	}
	if taskPath == "" {
		return
	}
	if t := s.tree.edit(taskPath); t != nil {
		t["PercentComplete"] = percent
		switch state {
		case "Complete":
			t["TaskState"] = "Completed"
			t["EndTime"] = time.Now().UTC().Format(time.RFC3339)
		case "Error":
			t["TaskState"] = "Exception"
			t["TaskStatus"] = "Critical"
			t["Messages"] = []any{map[string]any{"MessageId": msgID}}
		}
	}
}

// taskMonitor answers 202 while the task runs and the task itself once it has ended.
func (s *Sim) taskMonitor(w http.ResponseWriter, p string) {
	id := strings.TrimPrefix(p, key(taskMonitorBase)+"/")
	s.mu.Lock()
	t := s.tree.get("/redfish/v1/TaskService/Tasks/" + id)
	var out map[string]any
	if t != nil {
		out = deepCopy(t).(map[string]any)
	}
	s.mu.Unlock()
	if out == nil {
		writeError(w, http.StatusNotFound, "Base.1.4.ResourceMissingAtURI", "no such task")
		return
	}
	status := http.StatusOK
	if out["TaskState"] == "Running" {
		status = http.StatusAccepted
	}
	writeJSON(w, status, out)
}

// admin serves /_sim/: faults (GET, POST), stats (GET) and cert (GET). It is not subject to the
// faults and needs no login: it is a test hook, not part of the iLO.
func (s *Sim) admin(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/_sim/faults" && r.Method == http.MethodPost:
		var f Faults
		dec := json.NewDecoder(io.LimitReader(r.Body, 1<<16))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&f); err != nil {
			http.Error(w, "faults: "+err.Error(), http.StatusBadRequest)
			return
		}
		s.SetFaults(f)
		writeJSON(w, http.StatusOK, f)
	case r.URL.Path == "/_sim/faults" && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, s.Faults())
	case r.URL.Path == "/_sim/stats" && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, s.Stats())
	case r.URL.Path == "/_sim/cert" && r.Method == http.MethodGet:
		w.Header().Set("Content-Type", "application/x-pem-file")
		_, _ = w.Write(s.certPEM)
	default:
		http.NotFound(w, r)
	}
}
