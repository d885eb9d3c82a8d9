package ilo

import (
	"strings"
	"testing"
	"time"

	"github.com/fwops/firmware-operator/internal/simulator/fwimage"
)

// After flashing itself the iLO stays in Complete on its old firmware, then drops every
// connection, comes back half up (UpdateService 503), then whole on its new firmware with no
// session and no task of the flash left.
func TestILOResetsAfterFlashingItself(t *testing.T) {
	s := startTest(t, Config{SimpleUpdateTask: true, Timings: Timings{Upload: 10 * time.Millisecond, Update: 20 * time.Millisecond,
		ResetDelay: 300 * time.Millisecond, ILOReset: 300 * time.Millisecond, HalfUp: 300 * time.Millisecond}})
	c := httpClient(t, s)
	resp, _ := call(t, c, "POST", s.URL()+sessionsPath, map[string]string{"UserName": testUser, "Password": testPass}, map[string]string{"noauth": "1"})
	tok := map[string]string{"X-Auth-Token": resp.Header.Get("X-Auth-Token")}
	img := httpServe(t, fwimage.Build("iLO", "2.99", nil))
	resp, task := call(t, c, "POST", s.URL()+simpleUpdate, map[string]string{"ImageURI": img}, tok)
	if resp.StatusCode != 202 {
		t.Fatalf("SimpleUpdate: %d", resp.StatusCode)
	}
	monitor := task["TaskMonitor"].(string)
	waitFor(t, "Complete", func() bool { return s.State() == "Complete" })
	if s.ILOPhase() == "" {
		if v := s.Version("iLO"); !strings.HasPrefix(v, "2.46") {
			t.Fatalf("the new iLO firmware runs before the reset: %q", v)
		}
	}

	waitFor(t, "the reset", func() bool { return s.ILOPhase() == resetDown })
	if _, err := c.Get(s.URL() + "/redfish/v1"); err == nil {
		t.Fatal("a resetting iLO answered")
	}

	waitFor(t, "half up", func() bool { return s.ILOPhase() == resetHalfUp })
	if resp, _ := call(t, c, "GET", s.URL()+"/redfish/v1", nil, map[string]string{"noauth": "1"}); resp.StatusCode != 200 {
		t.Fatalf("service root half up: %d", resp.StatusCode)
	}
	if resp, _ := call(t, c, "GET", s.URL()+"/redfish/v1/UpdateService", nil, nil); resp.StatusCode != 503 {
		t.Fatalf("UpdateService half up: %d", resp.StatusCode)
	}

	waitFor(t, "up", func() bool { return s.ILOPhase() == "" })
	resp, body := call(t, c, "GET", s.URL()+"/redfish/v1/Managers/1", nil, tok)
	if resp.StatusCode != 401 || !strings.Contains(mustJSON(body), "NoValidSession") {
		t.Fatalf("the old session after the reset: %d %v", resp.StatusCode, body)
	}
	if resp, _ := call(t, c, "GET", s.URL()+monitor, nil, nil); resp.StatusCode != 404 {
		t.Fatalf("task monitor after the reset: %d", resp.StatusCode)
	}
	_, m := call(t, c, "GET", s.URL()+"/redfish/v1/Managers/1", nil, nil)
	_, inv := call(t, c, "GET", s.URL()+"/redfish/v1/UpdateService/FirmwareInventory/1", nil, nil)
	_, us := call(t, c, "GET", s.URL()+"/redfish/v1/UpdateService", nil, nil)
	if m["FirmwareVersion"] != "iLO 5 v2.99" || !strings.HasPrefix(inv["Version"].(string), "2.99 ") {
		t.Fatalf("after the reset: Managers/1 %v, inventory %v", m["FirmwareVersion"], inv["Version"])
	}
	if st := obj(us, "Oem", "Hpe")["State"]; st != "Idle" {
		t.Fatalf("update state after the reset: %v", st)
	}
	if st := s.Stats(); st.ILOResets != 1 || st.FlashesStarted != 1 || st.FlashesCompleted != 1 {
		t.Fatalf("stats %+v", st)
	}
	// The GET while down (dropped; the client may retry it once) and the 503 while half up.
	if st := s.Stats(); st.ResetRefused < 2 {
		t.Fatalf("ResetRefused = %d, want the dropped GET and the 503", st.ResetRefused)
	}
}
