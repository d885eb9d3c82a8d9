package ilo

import (
	"strings"
	"time"
)

// ilo4UpdatePath is iLO 4's update resource: InstallFromURI is posted to it and its State and
// ProgressPercent report the flash.
const ilo4UpdatePath = "/redfish/v1/Managers/1/UpdateService"

// defaults per generation for the iLO firmware, when the capture is of another generation.
var modelVersion = map[Model]string{ILO4: "2.80", ILO6: "1.55"}

// managerName is how the generation names itself ("iLO 5").
func (m Model) managerName() string {
	switch m {
	case ILO4:
		return "iLO 4"
	case ILO6:
		return "iLO 6"
	}
	return "iLO 5"
}

// adapt turns the captured (iLO 5) tree into the configured model, minimally, and resets the
// dynamic parts of the capture (sessions, update state).
func (s *Sim) adapt() {
	t := s.tree
	// Captured sessions are stale: start with none.
	if coll := t.get("/redfish/v1/SessionService/Sessions"); coll != nil {
		for _, p := range memberPaths(coll) {
			t.del(p)
		}
		coll["Members"] = []any{}
		coll["Members@odata.count"] = 0
		delete(coll, "Oem")
	}
	if t.get("/redfish/v1/TaskService/Tasks") == nil {
		t.put("/redfish/v1/TaskService/Tasks", map[string]any{
			"@odata.id": "/redfish/v1/TaskService/Tasks", "Name": "Tasks", "Members": []any{}, "Members@odata.count": 0,
		})
	}
	us := t.get("/redfish/v1/UpdateService")
	if us == nil {
		us = map[string]any{"@odata.id": "/redfish/v1/UpdateService", "Id": "UpdateService"}
		t.put("/redfish/v1/UpdateService", us)
	}
	hpe := obj(us, "Oem", "Hpe")
	hpe["State"] = "Idle"
	hpe["FlashProgressPercent"] = 0
	acts := obj(hpe, "Actions")
	if _, ok := acts["#HpeiLOUpdateServiceExt.AddFromUri"]; !ok {
		acts["#HpeiLOUpdateServiceExt.AddFromUri"] = map[string]any{
			"target": "/redfish/v1/UpdateService/Actions/Oem/Hpe/HpeiLOUpdateServiceExt.AddFromUri/"}
	}

	if s.cfg.Model == ILO5 {
		return
	}
	name := s.cfg.Model.managerName()
	ver := modelVersion[s.cfg.Model]
	if m := t.get("/redfish/v1/Managers/1"); m != nil {
		m["Model"] = name
		m["FirmwareVersion"] = name + " v" + ver
	}
	if root := t.get("/redfish/v1"); root != nil {
		if ms, ok := obj(root, "Oem", "Hpe")["Manager"].([]any); ok && len(ms) > 0 {
			if m0, ok := ms[0].(map[string]any); ok {
				m0["ManagerType"] = name
				m0["ManagerFirmwareVersion"] = ver
			}
		}
		mon := obj(root, "Oem", "Hpe", "Moniker")
		mon["PRODGEN"] = name
	}
	if e := s.inventoryEntry("iLO", ""); e != nil {
		e["Name"] = name
		e["Version"] = ver + " " + time.Now().Format("Jan 02 2006")
	}
	if s.cfg.Model == ILO4 {
		t.put(ilo4UpdatePath, map[string]any{
			"@odata.id":       ilo4UpdatePath,
			"@odata.type":     "#HpiLOFirmwareUpdate.1.0.0.HpiLOFirmwareUpdate",
			"Id":              "UpdateService",
			"Name":            "iLO Firmware Update",
			"State":           "IDLE",
			"ProgressPercent": 0,
			"Actions": map[string]any{
				"#HpiLOFirmwareUpdate.InstallFromURI": map[string]any{"target": ilo4UpdatePath + "/"},
			},
		})
	}
}

// inventoryEntry finds the inventory member of a component; target names a Smart Component's
// entry. Callers hold s.mu.
func (s *Sim) inventoryEntry(component, target string) map[string]any {
	for _, d := range s.tree.inventory() {
		name, _ := d["Name"].(string)
		desc, _ := d["Description"].(string)
		switch component {
		case "iLO":
			if desc == "SystemBMC" || strings.HasPrefix(name, "iLO") {
				return d
			}
		case "SystemROM":
			if strings.EqualFold(name, "System ROM") || desc == "SystemRomActive" {
				return d
			}
		case "SmartComponent":
			if target != "" && strings.EqualFold(name, target) {
				return d
			}
		}
	}
	return nil
}

// applyVersion records a flashed version where clients read it. Callers hold s.mu.
func (s *Sim) applyVersion(component, version, target string) {
	now := time.Now()
	switch component {
	case "iLO":
		name := s.cfg.Model.managerName()
		if m := s.tree.get("/redfish/v1/Managers/1"); m != nil {
			m["FirmwareVersion"] = name + " v" + version
		}
		if root := s.tree.get("/redfish/v1"); root != nil {
			if ms, ok := obj(root, "Oem", "Hpe")["Manager"].([]any); ok && len(ms) > 0 {
				if m0, ok := ms[0].(map[string]any); ok {
					m0["ManagerFirmwareVersion"] = version
				}
			}
		}
		if e := s.inventoryEntry("iLO", ""); e != nil {
			e["Version"] = version + " " + now.Format("Jan 02 2006")
		}
	case "SystemROM":
		// The running ROM changes only at the next POST (host.go).
		s.stageROMLocked(version)
	case "SmartComponent":
		if target == "" {
			target = "Smart Component"
		}
		if e := s.inventoryEntry("SmartComponent", target); e != nil {
			e["Version"] = version
			return
		}
		s.nextID++
		p := "/redfish/v1/UpdateService/FirmwareInventory/sc" + itoa(s.nextID)
		s.tree.addMember("/redfish/v1/UpdateService/FirmwareInventory", p, map[string]any{
			"@odata.id": p, "@odata.type": "#SoftwareInventory.v1_2_0.SoftwareInventory",
			"Id": "sc" + itoa(s.nextID), "Name": target, "Version": version,
			"Status": map[string]any{"Health": "OK", "State": "Enabled"},
		})
	}
}
