package redfish

// HPE's iLO Repository and update task queue (iLO 5 and 6), and the parts of the firmware
// inventory that say which devices a Smart Component applies to. Sources: HPE's iLO REST API
// documentation (UpdateService: component repository, update task queue) and ilorest's
// UploadComponentCommand.py and UpdateTaskQueueCommand.py, whose requests these calls repeat.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"strings"
	"time"
)

// Paths of the repository resources.
const (
	PathComponentRepository = "/redfish/v1/UpdateService/ComponentRepository"
	PathUpdateTaskQueue     = "/redfish/v1/UpdateService/UpdateTaskQueue"
	// PathHTTPPush is iLO's UpdateService.HttpPushUri when the service does not say otherwise.
	PathHTTPPush = "/cgi-bin/uploadFile"
)

// Component is an iLO Repository member.
type Component struct {
	ODataID     string   `json:"@odata.id"`
	ID          string   `json:"Id"`
	Filename    string   `json:"Filename"`
	Name        string   `json:"Name"`
	Version     string   `json:"Version"`
	Locked      bool     `json:"Locked"`
	UpdatableBy []string `json:"UpdatableBy"`
}

// UpdateTask is an UpdateTaskQueue member.
type UpdateTask struct {
	ODataID     string   `json:"@odata.id"`
	ID          string   `json:"Id"`
	Name        string   `json:"Name"`
	Command     string   `json:"Command"`
	Filename    string   `json:"Filename"`
	State       string   `json:"State"`
	UpdatableBy []string `json:"UpdatableBy"`
	Result      result   `json:"Result"`
}

// Update task states.
const (
	TaskPending    = "Pending"
	TaskInProgress = "InProgress"
	TaskComplete   = "Complete"
	TaskException  = "Exception"
	TaskExpired    = "Expired"
)

// UpdateTaskRequest is the body of a new ApplyUpdate task, as ilorest's taskqueue create sends.
type UpdateTaskRequest struct {
	Name        string   `json:"Name"`
	Command     string   `json:"Command"`
	Filename    string   `json:"Filename"`
	UpdatableBy []string `json:"UpdatableBy"`
	TPMOverride bool     `json:"TPMOverride"`
}

// InventoryDevice is a firmware inventory member with the fields that match Smart Components.
type InventoryDevice struct {
	ODataID string `json:"@odata.id"`
	Name    string `json:"Name"`
	Version string `json:"Version"`
	Oem     struct {
		Hpe struct {
			DeviceContext string   `json:"DeviceContext"`
			Targets       []string `json:"Targets"`
		} `json:"Hpe"`
	} `json:"Oem"`
}

// members reads a collection with $expand=., then member by member when the service sent bare
// links.
func members[T any](ctx context.Context, c *Client, path string, isBare func(T) bool, id func(T) string) ([]T, error) {
	var coll struct {
		Members []T `json:"Members"`
	}
	if err := c.Get(ctx, path+"?$expand=.", &coll); err != nil {
		return nil, err
	}
	for i, m := range coll.Members {
		if isBare(m) && id(m) != "" {
			if err := c.Get(ctx, id(m), &coll.Members[i]); err != nil {
				return nil, err
			}
		}
	}
	return coll.Members, nil
}

// Components lists the iLO Repository.
func (c *Client) Components(ctx context.Context) ([]Component, error) {
	out, err := members(ctx, c, PathComponentRepository,
		func(m Component) bool { return m.Filename == "" }, func(m Component) string { return m.ODataID })
	if err != nil {
		return nil, fmt.Errorf("redfish: component repository: %w", err)
	}
	return out, nil
}

// UpdateTasks lists the update task queue, in order.
func (c *Client) UpdateTasks(ctx context.Context) ([]UpdateTask, error) {
	out, err := members(ctx, c, PathUpdateTaskQueue,
		func(m UpdateTask) bool { return m.State == "" }, func(m UpdateTask) string { return m.ODataID })
	if err != nil {
		return nil, fmt.Errorf("redfish: update task queue: %w", err)
	}
	return out, nil
}

// InventoryDevices lists the firmware inventory with each member's Oem.Hpe.Targets.
func (c *Client) InventoryDevices(ctx context.Context) ([]InventoryDevice, error) {
	out, err := members(ctx, c, PathFirmwareInventory,
		func(m InventoryDevice) bool { return m.Name == "" && m.Version == "" }, func(m InventoryDevice) string { return m.ODataID })
	if err != nil {
		return nil, fmt.Errorf("redfish: firmware inventory: %w", err)
	}
	return out, nil
}

// CreateUpdateTask appends a task to the update task queue.
func (c *Client) CreateUpdateTask(ctx context.Context, req UpdateTaskRequest) error {
	if _, err := c.Post(ctx, PathUpdateTaskQueue, req, nil); err != nil {
		return fmt.Errorf("redfish: creating update task %q: %w", req.Name, err)
	}
	return nil
}

// Delete deletes a resource (a repository component, an update task).
func (c *Client) Delete(ctx context.Context, path string) error {
	if _, err := c.do(ctx, http.MethodDelete, path, nil, nil, withAuth); err != nil {
		return fmt.Errorf("redfish: %w", err)
	}
	return nil
}

// PushRequest is one file sent to the iLO's HttpPushUri.
type PushRequest struct {
	Filename string
	Data     []byte
	// Compsig is the component's signature file, when it has one.
	Compsig          []byte
	UpdateRepository bool
	UpdateTarget     bool
}

// PushComponent uploads a file as ilorest's uploadcomp does: a multipart POST to the
// UpdateService's HttpPushUri (Oem.Hpe.PushUpdateUri when the service names one) with the
// session key as a form field and a cookie, the JSON parameters, the compsig and the file.
// The iLO then processes it; follow UpdateStatus for the outcome.
func (c *Client) PushComponent(ctx context.Context, req PushRequest) error {
	var us struct {
		HTTPPushURI string `json:"HttpPushUri"`
		Oem         struct {
			Hpe struct {
				PushUpdateURI string `json:"PushUpdateUri"`
			} `json:"Hpe"`
		} `json:"Oem"`
	}
	if err := c.Get(ctx, PathUpdateService, &us); err != nil {
		return fmt.Errorf("redfish: push: %w", err)
	}
	target := PathHTTPPush
	switch {
	case us.Oem.Hpe.PushUpdateURI != "":
		target = us.Oem.Hpe.PushUpdateURI
	case us.HTTPPushURI != "":
		target = us.HTTPPushURI
	}
	etag := "sum" + strings.NewReplacer(".", "", "-", "", "_", "").Replace(req.Filename)
	params, _ := json.Marshal(map[string]any{
		"UpdateRepository": req.UpdateRepository, "UpdateTarget": req.UpdateTarget,
		"ETag": etag, "Section": 0, "UpdateRecoverySet": false,
	})
	// An upload takes longer than a read: allow a megabyte per second on top of the usual bound.
	ctx, cancel := context.WithTimeout(ctx, c.opts.RequestTimeout+time.Duration(len(req.Data)>>20)*time.Second)
	defer cancel()
	for relogged := false; ; relogged = true {
		tok := c.currentToken()
		status, data, err := c.pushOnce(ctx, target, tok, params, req)
		if err != nil {
			return fmt.Errorf("redfish: POST %s: %w", target, err)
		}
		if status.StatusCode == http.StatusUnauthorized && tok != "" && !relogged && !c.opts.NoRelogin {
			// The iLO forgot the session (it reset): log in again and send once more.
			if lerr := c.relogin(ctx, tok); lerr != nil {
				return fmt.Errorf("redfish: uploading %s: the service ended the session (HTTP 401) and logging in again failed: %w", req.Filename, lerr)
			}
			continue
		}
		if status.StatusCode != http.StatusOK {
			return fmt.Errorf("redfish: uploading %s: %w", req.Filename, decodeError(http.MethodPost, target, status, data))
		}
		return nil
	}
}

// pushOnce sends one multipart upload with the session key tok.
func (c *Client) pushOnce(ctx context.Context, target, tok string, params []byte, req PushRequest) (*http.Response, []byte, error) {
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	_ = mw.WriteField("sessionKey", tok)
	_ = mw.WriteField("parameters", string(params))
	filePart := func(field, name string, data []byte) {
		h := textproto.MIMEHeader{}
		h.Set("Content-Disposition", fmt.Sprintf(`form-data; name=%q; filename=%q`, field, name))
		h.Set("Content-Type", "application/octet-stream")
		w, _ := mw.CreatePart(h)
		_, _ = w.Write(data)
	}
	if len(req.Compsig) > 0 {
		filePart("compsig", strings.TrimSuffix(req.Filename, extOf(req.Filename))+".compsig", req.Compsig)
	}
	filePart("file", req.Filename, req.Data)
	_ = mw.Close()

	u := *c.base
	u.Path = target
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), &body)
	if err != nil {
		return nil, nil, err
	}
	hr.Header.Set("Content-Type", mw.FormDataContentType())
	hr.Header.Set("Accept", "application/json")
	c.mu.Lock()
	basic := c.basic
	c.mu.Unlock()
	switch {
	case tok != "":
		hr.Header.Set("X-Auth-Token", tok)
		hr.AddCookie(&http.Cookie{Name: "sessionKey", Value: tok})
	case basic:
		hr.SetBasicAuth(c.user, c.pass)
	}
	resp, err := c.hc.Do(hr)
	if err != nil {
		return nil, nil, scrub(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp, data, scrub(err)
}

func extOf(name string) string {
	if i := strings.LastIndexByte(name, '.'); i > 0 {
		return name[i:]
	}
	return ""
}
