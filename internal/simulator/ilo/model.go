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

// adaptTree turns the captured (iLO 5) tree into model m, minimally, and resets the dynamic
// parts of the capture (sessions, update state, the repository's bookkeeping). It runs once per
// capture and model (Capture.newTree).
func adaptTree(t *tree, m Model) {
	defer initRepositoryTree(t, m)
	// Captured sessions are stale: start with none.
	if coll := t.edit("/redfish/v1/SessionService/Sessions"); coll != nil {
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
	us := t.edit("/redfish/v1/UpdateService")
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

	if m == ILO5 {
		return
	}
	name := m.managerName()
	ver := modelVersion[m]
	if mgr := t.edit("/redfish/v1/Managers/1"); mgr != nil {
		mgr["Model"] = name
		mgr["FirmwareVersion"] = name + " v" + ver
	}
	if root := t.edit("/redfish/v1"); root != nil {
		if ms, ok := obj(root, "Oem", "Hpe")["Manager"].([]any); ok && len(ms) > 0 {
			if m0, ok := ms[0].(map[string]any); ok {
				m0["ManagerType"] = name
				m0["ManagerFirmwareVersion"] = ver
			}
		}
		mon := obj(root, "Oem", "Hpe", "Moniker")
		mon["PRODGEN"] = name
	}
	if e := t.edit(t.inventoryEntry("iLO", "")); e != nil {
		e["Name"] = name
		e["Version"] = ver + " " + time.Now().Format("Jan 02 2006")
	}
	if m == ILO4 {
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

// inventoryEntry finds the path of the inventory member of a component ("" when none); target
// names a Smart Component's entry. Callers hold the Sim's mutex.
func (t *tree) inventoryEntry(component, target string) string {
	for _, p := range t.inventory() {
		d := t.get(p)
		name, _ := d["Name"].(string)
		desc, _ := d["Description"].(string)
		switch component {
		case "iLO":
			if desc == "SystemBMC" || strings.HasPrefix(name, "iLO") {
				return p
			}
		case "SystemROM":
			if strings.EqualFold(name, "System ROM") || desc == "SystemRomActive" {
				return p
			}
		case "SmartComponent":
			if target != "" && strings.EqualFold(name, target) {
				return p
			}
		}
	}
	return ""
}

// applyVersion records a flashed version where clients read it. Callers hold s.mu.
func (s *Sim) applyVersion(component, version, target string) {
	now := time.Now()
	switch component {
	case "iLO":
		name := s.cfg.Model.managerName()
		if m := s.tree.edit("/redfish/v1/Managers/1"); m != nil {
			m["FirmwareVersion"] = name + " v" + version
		}
		if root := s.tree.edit("/redfish/v1"); root != nil {
			if ms, ok := obj(root, "Oem", "Hpe")["Manager"].([]any); ok && len(ms) > 0 {
				if m0, ok := ms[0].(map[string]any); ok {
					m0["ManagerFirmwareVersion"] = version
				}
			}
		}
		if e := s.tree.edit(s.tree.inventoryEntry("iLO", "")); e != nil {
			e["Version"] = version + " " + now.Format("Jan 02 2006")
		}
	case "SystemROM":
		// The running ROM changes only at the next POST (host.go).
		s.stageROMLocked(version)
	case "SmartComponent":
		if target == "" {
			target = "Smart Component"
		}
		if e := s.tree.edit(s.tree.inventoryEntry("SmartComponent", target)); e != nil {
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
