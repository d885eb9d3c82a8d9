package redfish

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Paths of the resources and actions the client uses.
const (
	PathUpdateService     = "/redfish/v1/UpdateService"
	PathSimpleUpdate      = "/redfish/v1/UpdateService/Actions/UpdateService.SimpleUpdate"
	PathAddFromURI        = "/redfish/v1/UpdateService/Actions/Oem/Hpe/HpeiLOUpdateServiceExt.AddFromUri/"
	PathFirmwareInventory = "/redfish/v1/UpdateService/FirmwareInventory"
	PathManager           = "/redfish/v1/Managers/1"
	PathILO4Update        = "/redfish/v1/Managers/1/UpdateService"
)

// Update states reported by iLO 5/6 (Oem.Hpe.State) and iLO 4 (State), as the client
// normalises them: iLO 4's IDLE, UPLOADING, PROGRESSING, COMPLETED and ERROR map onto
// Idle, Uploading, Updating, Complete and Error.
const (
	StateIdle      = "Idle"
	StateUploading = "Uploading"
	StateVerifying = "Verifying"
	StateWriting   = "Writing"
	StateUpdating  = "Updating"
	StateComplete  = "Complete"
	StateError     = "Error"
)

// UpdateAccepted is what the service said when it accepted a flash.
type UpdateAccepted struct {
	// TaskURI and TaskMonitor are set when the service returned a task (iLO 5 2.30 and later).
	TaskURI     string
	TaskMonitor string
}

// SimpleUpdate asks the service to download imageURI and flash it, with TransferProtocol HTTPS
// for an https:// URI and HTTP otherwise. Both answers are
// handled: 200 with no task (older iLO 5), and 202/200 with a Task.
func (c *Client) SimpleUpdate(ctx context.Context, imageURI string) (UpdateAccepted, error) {
	proto := "HTTP"
	if strings.HasPrefix(strings.ToLower(imageURI), "https://") {
		proto = "HTTPS"
	}
	var task struct {
		ODataID     string `json:"@odata.id"`
		TaskMonitor string `json:"TaskMonitor"`
	}
	resp, err := c.Post(ctx, PathSimpleUpdate, map[string]string{"ImageURI": imageURI, "TransferProtocol": proto}, &task)
	if err != nil {
		return UpdateAccepted{}, fmt.Errorf("redfish: SimpleUpdate: %w", err)
	}
	acc := UpdateAccepted{TaskMonitor: task.TaskMonitor}
	if loc := resp.Header.Get("Location"); loc != "" {
		acc.TaskURI = locationPath(PathSimpleUpdate, loc)
	} else if task.ODataID != "" && strings.Contains(strings.ToLower(task.ODataID), "/task") {
		acc.TaskURI = task.ODataID
	}
	return acc, nil
}

// InstallFromURI is iLO 4's flash: POST Managers/1/UpdateService {"Action":"InstallFromURI"}.
func (c *Client) InstallFromURI(ctx context.Context, firmwareURI string) error {
	_, err := c.Post(ctx, PathILO4Update, map[string]string{"Action": "InstallFromURI", "FirmwareURI": firmwareURI}, nil)
	if err != nil {
		return fmt.Errorf("redfish: InstallFromURI: %w", err)
	}
	return nil
}

// AddFromURIRequest is the body of HPE's component-repository action.
type AddFromURIRequest struct {
	ImageURI              string `json:"ImageURI"`
	ComponentSignatureURI string `json:"ComponentSignatureURI,omitempty"`
	UpdateRepository      bool   `json:"UpdateRepository"`
	UpdateTarget          bool   `json:"UpdateTarget"`
}

// AddFromURI adds a Smart Component to the iLO repository and, with UpdateTarget, flashes it:
// SimpleUpdate accepts Smart Components but never flashes them.
func (c *Client) AddFromURI(ctx context.Context, req AddFromURIRequest) error {
	if _, err := c.Post(ctx, PathAddFromURI, req, nil); err != nil {
		return fmt.Errorf("redfish: AddFromUri: %w", err)
	}
	return nil
}

// UpdateStatus is the progress of a flash.
type UpdateStatus struct {
	// State is normalised to the iLO 5 names (see the State constants).
	State string
	// Percent is meaningful while Updating.
	Percent int
	// MessageID is Oem.Hpe.Result.MessageId (the cause when State is Error).
	MessageID string
	// SimpleUpdateProtocols are the TransferProtocol values SimpleUpdate advertises
	// (TransferProtocol@Redfish.AllowableValues: iLO 5 lists HTTP and HTTPS); iLO 5/6 only.
	SimpleUpdateProtocols []string
}

// SimpleUpdateOffers says whether SimpleUpdate advertises the transfer protocol (HTTPS, say).
func (s UpdateStatus) SimpleUpdateOffers(protocol string) bool {
	for _, p := range s.SimpleUpdateProtocols {
		if strings.EqualFold(p, protocol) {
			return true
		}
	}
	return false
}

// Active says whether a flash is running.
func (s UpdateStatus) Active() bool {
	switch s.State {
	case StateUploading, StateVerifying, StateWriting, StateUpdating:
		return true
	}
	return false
}

type result struct {
	MessageID string `json:"MessageId"`
}

// UpdateStatus reads iLO 5/6 progress: GET UpdateService → Oem.Hpe.
func (c *Client) UpdateStatus(ctx context.Context) (UpdateStatus, error) {
	var us struct {
		Actions struct {
			SimpleUpdate struct {
				Protocols []string `json:"TransferProtocol@Redfish.AllowableValues"`
			} `json:"#UpdateService.SimpleUpdate"`
		} `json:"Actions"`
		Oem struct {
			Hpe struct {
				State                string `json:"State"`
				FlashProgressPercent int    `json:"FlashProgressPercent"`
				Result               result `json:"Result"`
			} `json:"Hpe"`
		} `json:"Oem"`
	}
	if err := c.Get(ctx, PathUpdateService, &us); err != nil {
		return UpdateStatus{}, fmt.Errorf("redfish: update status: %w", err)
	}
	h := us.Oem.Hpe
	if h.State == "" {
		return UpdateStatus{}, errors.New("redfish: UpdateService has no Oem.Hpe.State (not an iLO 5/6?)")
	}
	return UpdateStatus{State: normState(h.State), Percent: h.FlashProgressPercent, MessageID: h.Result.MessageID,
		SimpleUpdateProtocols: us.Actions.SimpleUpdate.Protocols}, nil
}

// ILO4UpdateStatus reads iLO 4 progress from Managers/1/UpdateService.
func (c *Client) ILO4UpdateStatus(ctx context.Context) (UpdateStatus, error) {
	var us struct {
		State           string `json:"State"`
		ProgressPercent int    `json:"ProgressPercent"`
		Result          result `json:"Result"`
	}
	if err := c.Get(ctx, PathILO4Update, &us); err != nil {
		return UpdateStatus{}, fmt.Errorf("redfish: iLO 4 update status: %w", err)
	}
	if us.State == "" {
		return UpdateStatus{}, errors.New("redfish: Managers/1/UpdateService has no State (not an iLO 4?)")
	}
	return UpdateStatus{State: normState(us.State), Percent: us.ProgressPercent, MessageID: us.Result.MessageID}, nil
}

// normState maps both generations' spellings onto the iLO 5 names.
func normState(s string) string {
	switch strings.ToUpper(s) {
	case "IDLE":
		return StateIdle
	case "UPLOADING":
		return StateUploading
	case "VERIFYING":
		return StateVerifying
	case "WRITING":
		return StateWriting
	case "UPDATING", "PROGRESSING":
		return StateUpdating
	case "COMPLETE", "COMPLETED":
		return StateComplete
	case "ERROR":
		return StateError
	}
	return s
}

// Task is the part of a Redfish Task the client reads.
type Task struct {
	TaskState       string `json:"TaskState"`
	TaskStatus      string `json:"TaskStatus"`
	PercentComplete int    `json:"PercentComplete"`
	Messages        []struct {
		MessageID string `json:"MessageId"`
		Message   string `json:"Message"`
	} `json:"Messages"`
}

// Task reads a task resource.
func (c *Client) Task(ctx context.Context, uri string) (Task, error) {
	var t Task
	if err := c.Get(ctx, uri, &t); err != nil {
		return Task{}, fmt.Errorf("redfish: task: %w", err)
	}
	return t, nil
}

// SoftwareInventory is one firmware inventory member.
type SoftwareInventory struct {
	ODataID     string `json:"@odata.id"`
	ID          string `json:"Id"`
	Name        string `json:"Name"`
	Description string `json:"Description"`
	Version     string `json:"Version"`
}

// FirmwareInventory reads the inventory with $expand=., falling back to member-by-member reads
// when the members come back as bare links.
func (c *Client) FirmwareInventory(ctx context.Context) ([]SoftwareInventory, error) {
	var coll struct {
		Members []SoftwareInventory `json:"Members"`
	}
	if err := c.Get(ctx, PathFirmwareInventory+"?$expand=.", &coll); err != nil {
		var re *Error
		if !errors.As(err, &re) || re.StatusCode != http.StatusBadRequest && re.StatusCode != http.StatusNotImplemented {
			return nil, fmt.Errorf("redfish: firmware inventory: %w", err)
		}
		// Services that reject $expand get the plain read.
		if err := c.Get(ctx, PathFirmwareInventory, &coll); err != nil {
			return nil, fmt.Errorf("redfish: firmware inventory: %w", err)
		}
	}
	out := make([]SoftwareInventory, 0, len(coll.Members))
	for _, m := range coll.Members {
		if m.Name == "" && m.Version == "" && m.ODataID != "" {
			var full SoftwareInventory
			if err := c.Get(ctx, m.ODataID, &full); err != nil {
				return nil, fmt.Errorf("redfish: firmware inventory member: %w", err)
			}
			if full.ODataID == "" {
				full.ODataID = m.ODataID
			}
			m = full
		}
		out = append(out, m)
	}
	return out, nil
}

// Manager is the part of Managers/1 the client reads.
type Manager struct {
	Model           string `json:"Model"`
	FirmwareVersion string `json:"FirmwareVersion"`
}

// Manager reads Managers/1.
func (c *Client) Manager(ctx context.Context) (Manager, error) {
	var m Manager
	if err := c.Get(ctx, PathManager, &m); err != nil {
		return Manager{}, fmt.Errorf("redfish: manager: %w", err)
	}
	return m, nil
}

// PathSystem is the managed server.
const (
	PathSystem      = "/redfish/v1/Systems/1"
	PathSystemReset = "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset"
)

// POST states of HPE's Systems/1 Oem.Hpe.PostState.
const (
	PostStateFinished = "FinishedPost"
	PostStatePowerOff = "PowerOff"
)

// System is the part of Systems/1 the client reads.
type System struct {
	// Model is the server model ("ProLiant DL325 Gen10 Plus").
	Model      string `json:"Model"`
	PowerState string `json:"PowerState"`
	Oem        struct {
		Hpe struct {
			PostState string `json:"PostState"`
		} `json:"Hpe"`
	} `json:"Oem"`
}

// System reads Systems/1.
func (c *Client) System(ctx context.Context) (System, error) {
	var s System
	if err := c.Get(ctx, PathSystem, &s); err != nil {
		return System{}, fmt.Errorf("redfish: system: %w", err)
	}
	return s, nil
}

// ResetSystem posts ComputerSystem.Reset with resetType (GracefulRestart, say).
func (c *Client) ResetSystem(ctx context.Context, resetType string) error {
	if _, err := c.Post(ctx, PathSystemReset, map[string]string{"ResetType": resetType}, nil); err != nil {
		return fmt.Errorf("redfish: ComputerSystem.Reset %s: %w", resetType, err)
	}
	return nil
}
