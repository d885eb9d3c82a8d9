package ilo

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/onsi/gomega"

	"github.com/fwops/firmware-operator/internal/simulator/fwimage"
)

const taskQueueURL = "/redfish/v1/UpdateService/UpdateTaskQueue"

// addComponent adds a file to the repository with AddFromUri (UpdateTarget false) and waits
// for it to be stored.
func addComponent(t *testing.T, s *Sim, name string, data []byte) {
	t.Helper()
	c := httpClient(t, s)
	uri := imageHost(t, map[string][]byte{name: data}) + "/" + name
	resp, _ := call(t, c, "POST", s.URL()+addFromURI, map[string]any{"ImageURI": uri, "UpdateRepository": true, "UpdateTarget": false}, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("AddFromUri: %d", resp.StatusCode)
	}
	waitFor(t, "the component "+name, func() bool { return slices.Contains(s.Components(), name) && s.State() == "Complete" })
}

func TestAddFromUriToRepositoryFlashesNothing(t *testing.T) {
	s := startTest(t, Config{Timings: fastTimings()})
	addComponent(t, s, "cp1.fwpkg", testPackage(kindUefi, targetOCPNIC, "08.60.12"))
	if st := s.Stats(); st.FlashesStarted != 0 {
		t.Fatalf("a repository-only add flashed: %+v", st)
	}
	_, doc := call(t, httpClient(t, s), "GET", s.URL()+"/redfish/v1/UpdateService/ComponentRepository?$expand=.", nil, nil)
	var got map[string]any
	for _, m := range doc["Members"].([]any) {
		if mm := m.(map[string]any); mm["Filename"] == "cp1.fwpkg" {
			got = mm
		}
	}
	if got == nil || got["Version"] != "08.60.12" || !hasString(got["UpdatableBy"], "Uefi") || !hasString(got["Targets"], targetOCPNIC) || got["Locked"] != false {
		t.Fatalf("component read from payload.json: %v", got)
	}
}

func TestDirectFlashOfPackageRefusals(t *testing.T) {
	for _, tc := range []struct {
		name, msgID string
		pkg         []byte
	}{
		{"not on this server", MsgNotApplicable, testPackage(kindDirect, targetAbsent, "2.6")},
		{"Uefi only", MsgNotBmcUpdatable, testPackage(kindUefi, targetOCPNIC, "08.60.12")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startTest(t, Config{Timings: fastTimings()})
			c := httpClient(t, s)
			uri := httpServe(t, tc.pkg)
			resp, _ := call(t, c, "POST", s.URL()+addFromURI, map[string]any{"ImageURI": uri, "UpdateRepository": true, "UpdateTarget": true}, nil)
			if resp.StatusCode != 200 {
				t.Fatalf("AddFromUri: %d", resp.StatusCode)
			}
			waitFor(t, "the flash to end", func() bool { return s.State() == "Error" || s.State() == "Complete" })
			_, us := call(t, c, "GET", s.URL()+"/redfish/v1/UpdateService", nil, nil)
			if got := obj(us, "Oem", "Hpe", "Result")["MessageId"]; s.State() != "Error" || got != tc.msgID {
				t.Fatalf("state %s, MessageId %v; want Error %s", s.State(), got, tc.msgID)
			}
			if v := inventoryVersion(s, "12"); v != "2.5" {
				t.Fatalf("refused package changed the video controller to %q", v)
			}
		})
	}
}

// An Exception at the head stalls the queue: the Bmc task behind it waits until the failed
// task is deleted. Task names are unique.
func TestTaskQueueExceptionStallsQueue(t *testing.T) {
	s := startTest(t, Config{Timings: fastTimings()})
	c := httpClient(t, s)
	addComponent(t, s, "video_26.bin", fwimage.BuildHeader(fwimage.Header{Component: "SmartComponent", Version: "2.6", Target: "Embedded Video Controller"}, nil))
	addComponent(t, s, "video_27.bin", fwimage.BuildHeader(fwimage.Header{Component: "SmartComponent", Version: "2.7", Target: "Embedded Video Controller"}, nil))

	s.UpdateFaults(func(f *Faults) { f.FlashError = MsgUpdateFailed })
	task := func(name, file string) map[string]any {
		return map[string]any{"Name": name, "Command": "ApplyUpdate", "Filename": file, "UpdatableBy": []string{"Bmc"}}
	}
	if resp, _ := call(t, c, "POST", s.URL()+taskQueueURL, task("first", "video_26.bin"), nil); resp.StatusCode != 201 {
		t.Fatalf("create task: %d", resp.StatusCode)
	}
	waitFor(t, "the first task to fail", func() bool { return slices.Contains(s.TaskStates(), "first="+TaskException) })
	s.SetFaults(Faults{})
	if resp, _ := call(t, c, "POST", s.URL()+taskQueueURL, task("first", "video_27.bin"), nil); resp.StatusCode != 400 {
		t.Fatalf("a second task named first: %d, want 400", resp.StatusCode)
	}
	if resp, _ := call(t, c, "POST", s.URL()+taskQueueURL, task("second", "video_27.bin"), nil); resp.StatusCode != 201 {
		t.Fatalf("create task: %d", resp.StatusCode)
	}
	// Give the queue every chance to (wrongly) run the second task: another flash would have
	// to start and finish.
	gomega.NewWithT(t).Consistently(func() string { return strings.Join(s.TaskStates(), ",") + " video " + inventoryVersion(s, "12") }).
		WithTimeout(300*time.Millisecond).Should(gomega.Equal("first=Exception,second=Pending video 2.5"), "the task behind the Exception ran")
	// The failed task's component is locked until the task goes.
	_, doc := call(t, c, "GET", s.URL()+taskQueueURL+"?$expand=.", nil, nil)
	first := doc["Members"].([]any)[0].(map[string]any)
	if resp, _ := call(t, c, "DELETE", s.URL()+str(first["Component"]), nil, nil); resp.StatusCode != 400 {
		t.Fatalf("delete of a locked component: %d, want 400", resp.StatusCode)
	}
	if resp, _ := call(t, c, "DELETE", s.URL()+str(first["@odata.id"]), nil, nil); resp.StatusCode != 200 {
		t.Fatalf("delete the failed task: %d", resp.StatusCode)
	}
	waitFor(t, "the second task to run", func() bool { return slices.Contains(s.TaskStates(), "second="+TaskComplete) })
	if v := inventoryVersion(s, "12"); v != "2.7" {
		t.Fatalf("video at %q after the second task, want 2.7", v)
	}
}

// A Uefi task waits at the head for the host's POST, and the tasks behind it wait with it.
func TestTaskQueueUefiTaskWaitsForPOST(t *testing.T) {
	s := startTest(t, Config{Timings: fastTimings()})
	c := httpClient(t, s)
	addComponent(t, s, "cp3.zip", testPackage(kindUefi, targetOCPNIC, "08.60.12"))
	addComponent(t, s, "video_26.bin", fwimage.BuildHeader(fwimage.Header{Component: "SmartComponent", Version: "2.6", Target: "Embedded Video Controller"}, nil))
	call(t, c, "POST", s.URL()+taskQueueURL, map[string]any{"Name": "nic", "Command": "ApplyUpdate", "Filename": "cp3.zip"}, nil)
	call(t, c, "POST", s.URL()+taskQueueURL, map[string]any{"Name": "video", "Command": "ApplyUpdate", "Filename": "video_26.bin"}, nil)
	// Room for a wrong start.
	gomega.NewWithT(t).Consistently(func() string { return strings.Join(s.TaskStates(), ",") }).
		WithTimeout(200*time.Millisecond).Should(gomega.Equal("nic=Pending,video=Pending"), "the queue before the POST")
	rebootHost(t, s)
	waitFor(t, "both tasks", func() bool { return strings.Join(s.TaskStates(), ",") == "nic=Complete,video=Complete" })
	if inventoryVersion(s, "11") != "08.60.12" || inventoryVersion(s, "12") != "2.6" {
		t.Fatalf("versions %s / %s after the queue ran", inventoryVersion(s, "11"), inventoryVersion(s, "12"))
	}
	if st := s.Stats(); st.FlashesStarted != 2 || st.FlashesCompleted != 2 {
		t.Fatalf("stats %+v, want two flashes", st)
	}
}
