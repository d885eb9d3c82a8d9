package ilo

import (
	"context"
	"encoding/json"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/onsi/gomega"

	"github.com/fwops/firmware-operator/internal/simulator/fwimage"
)

// waitFor waits until cond holds, failing the test with what when it does not within a
// minute. cond runs on the test's goroutine.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	gomega.NewWithT(t).Eventually(cond).WithTimeout(time.Minute).Should(gomega.BeTrue(), what)
}

// A system ROM flash is staged on the backup side and runs only after a ComputerSystem.Reset
// and the POST that follows; POST hooks run during that POST.
func TestSystemROMActivatesAtNextPOST(t *testing.T) {
	s := startTest(t, Config{Timings: Timings{Upload: 10 * time.Millisecond, Update: 20 * time.Millisecond, POST: 200 * time.Millisecond}})
	var hookRuns atomic.Int32
	s.OnHostPOST(func(context.Context) {
		if s.PostState() != postInPost {
			t.Errorf("hook ran in PostState %s", s.PostState())
		}
		hookRuns.Add(1)
	})
	c := httpClient(t, s)
	img := httpServe(t, fwimage.Build("SystemROM", "2.70", nil))
	if resp, _ := call(t, c, "POST", s.URL()+simpleUpdate, map[string]string{"ImageURI": img}, nil); resp.StatusCode != 200 {
		t.Fatalf("SimpleUpdate: %d", resp.StatusCode)
	}
	waitFor(t, "Complete", func() bool { return s.State() == "Complete" })

	_, active := call(t, c, "GET", s.URL()+"/redfish/v1/UpdateService/FirmwareInventory/2", nil, nil)
	_, backup := call(t, c, "GET", s.URL()+"/redfish/v1/UpdateService/FirmwareInventory/6", nil, nil)
	if active["Version"] != "A43 v2.52 (10/29/2021)" || !strings.HasPrefix(backup["Version"].(string), "A43 v2.70 ") {
		t.Fatalf("before the reboot: System ROM %v, Redundant System ROM %v", active["Version"], backup["Version"])
	}
	if s.StagedROM() != "2.70" {
		t.Fatalf("staged ROM %q", s.StagedROM())
	}

	resp, _ := call(t, c, "POST", s.URL()+systemResetPath, map[string]string{"ResetType": "Bogus"}, nil)
	if resp.StatusCode != 400 {
		t.Fatalf("bad ResetType: %d", resp.StatusCode)
	}
	if resp, _ = call(t, c, "POST", s.URL()+systemResetPath, map[string]string{"ResetType": "GracefulRestart"}, nil); resp.StatusCode != 200 {
		t.Fatalf("GracefulRestart: %d", resp.StatusCode)
	}
	if st := s.PostState(); st != postInPost {
		t.Fatalf("PostState right after the reset: %s", st)
	}
	_, body := call(t, c, "POST", s.URL()+systemResetPath, map[string]string{"ResetType": "ForceRestart"}, nil)
	if !strings.Contains(mustJSON(body), msgInvalidSystemState) {
		t.Fatalf("a reset during POST was accepted: %v", body)
	}
	waitFor(t, "FinishedPost", func() bool { return s.PostState() == postFinished })
	_, active = call(t, c, "GET", s.URL()+"/redfish/v1/UpdateService/FirmwareInventory/2", nil, nil)
	_, backup = call(t, c, "GET", s.URL()+"/redfish/v1/UpdateService/FirmwareInventory/6", nil, nil)
	if !strings.HasPrefix(active["Version"].(string), "A43 v2.70 ") || backup["Version"] != "A43 v2.52 (10/29/2021)" {
		t.Fatalf("after POST: System ROM %v, Redundant System ROM %v", active["Version"], backup["Version"])
	}
	if hookRuns.Load() != 1 || s.HostBoots() != 1 || s.StagedROM() != "" {
		t.Fatalf("hook runs %d, boots %d, staged %q", hookRuns.Load(), s.HostBoots(), s.StagedROM())
	}
}

func TestHostPowerStates(t *testing.T) {
	s := startTest(t, Config{Timings: Timings{POST: time.Millisecond}})
	c := httpClient(t, s)
	for _, step := range []struct {
		reset  string
		status int
		power  string
	}{
		{"On", 400, "On"}, {"ForceOff", 200, "Off"}, {"GracefulRestart", 400, "Off"}, {"GracefulShutdown", 400, "Off"},
		{"PushPowerButton", 200, "On"}, {"Nmi", 200, "On"},
	} {
		waitFor(t, "POST to finish", func() bool { st := s.PostState(); return st == postFinished || st == postPowerOff })
		resp, _ := call(t, c, "POST", s.URL()+systemResetPath, map[string]string{"ResetType": step.reset}, nil)
		_, sys := call(t, c, "GET", s.URL()+systemPath, nil, nil)
		if resp.StatusCode != step.status || sys["PowerState"] != step.power {
			t.Fatalf("%s: %d, PowerState %v; want %d, %s", step.reset, resp.StatusCode, sys["PowerState"], step.status, step.power)
		}
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
