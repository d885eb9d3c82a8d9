package ilo

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/onsi/gomega"

	"github.com/fwops/firmware-operator/internal/agent/driver"
	"github.com/fwops/firmware-operator/internal/agent/redfish"
	"github.com/fwops/firmware-operator/internal/simulator/fwimage"
	"github.com/fwops/firmware-operator/internal/simulator/fwpkg"
	similo "github.com/fwops/firmware-operator/internal/simulator/ilo"
)

// Targets of the captured DL325's FirmwareInventory members (Oem.Hpe.Targets).
const (
	targetVideo  = "a6b1a447-382a-5a4f-102b-0538159000e4" // Embedded Video Controller 2.5
	targetOCPNIC = "a6b1a447-382a-5a4f-1077-807010770073" // Marvell 2P 25GbE OCP3 08.50.78
	targetROM    = "00000000-0000-0000-0000-000001413433" // System ROM A43 v2.52
	targetAbsent = "a6b1a447-382a-5a4f-14e4-16d714e40000" // no member of this server
	targetILO    = "c0bcf2b9-1141-49af-aab8-c73791f0349c" // iLO 5 2.46
)

type smartKind int

const (
	smartDirect smartKind = iota
	smartDirectReset
	smartUefi
	smartHostOS
	smartILO // the iLO's own firmware: the iLO resets after flashing it
)

// smartComponent writes a one-device .fwpkg for target at version and returns the firmware to
// install. sign adds a .compsig for what the iLO receives.
func smartComponent(t *testing.T, kind smartKind, file, target, version string, sign bool) driver.Firmware {
	t.Helper()
	p := fwpkg.Payload{Name: "Test component", Version: version, UpdatableBy: []string{fwpkg.Bmc}}
	im := fwpkg.Image{DirectFlashOk: fwpkg.Flag(true)}
	h := fwimage.Header{Component: "SmartComponent", Version: version, Target: "Embedded Video Controller"}
	switch kind {
	case smartDirectReset:
		im.ResetRequired, im.UefiFlashable = true, true
		h = fwimage.Header{Component: "SystemROM", Version: version}
	case smartILO:
		h = fwimage.Header{Component: "iLO", Version: version}
	case smartUefi, smartHostOS:
		p.UpdatableBy = []string{fwpkg.Uefi}
		if kind == smartHostOS {
			p.UpdatableBy = append(p.UpdatableBy, fwpkg.RuntimeAgent)
		}
		im.DirectFlashOk, im.UefiFlashable = fwpkg.Flag(false), true
		h.Target = "Marvell 2P 25GbE SFP28 QL41232HQCU-HC OCP3 Adapter"
	}
	im.FileName = "image_" + version + ".bin"
	p.Devices.Device = []fwpkg.Device{{DeviceName: "test device", Target: target, Version: version, FirmwareImages: []fwpkg.Image{im}}}
	files := map[string][]byte{im.FileName: fwimage.BuildHeader(h, []byte("payload"))}
	if sign {
		files["image_"+version+".compsig"] = []byte("signature of the image")
		files[strings.TrimSuffix(file, ".fwpkg")+".compsig"] = []byte("signature of the package")
	}
	pkg := fwpkg.Build(p, files)
	path := filepath.Join(t.TempDir(), file)
	if err := os.WriteFile(path, pkg, 0o644); err != nil {
		t.Fatal(err)
	}
	// The agent's firmware server (rule P2) serves it too, as in production.
	url := imageServer(t, map[string][]byte{file: pkg}) + "/" + file
	return driver.Firmware{Component: driver.ComponentSmartComponent, LocalPath: path, FileName: file, URL: url}
}

func update(t *testing.T, d driver.Driver, fw driver.Firmware) (driver.Result, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return d.Update(ctx, fw, nil)
}

func TestSmartComponentDirect(t *testing.T) {
	s := startSim(t, similo.Config{Timings: fast})
	d := open(t, s, target(s, driver.TypeILO5))
	res, err := update(t, d, smartComponent(t, smartDirect, "cp900001.fwpkg", targetVideo, "2.6", true))
	if err != nil {
		t.Fatal(err)
	}
	if res.VersionBefore != "2.5" || res.VersionAfter != "2.6" || res.RebootRequired || res.NotNeeded || !strings.Contains(res.Message, "Embedded Video Controller") {
		t.Fatalf("result %+v", res)
	}
	if st := s.Stats(); st.FlashesStarted != 1 || st.FlashesCompleted != 1 {
		t.Fatalf("stats %+v, want one flash", st)
	}
	if s.SignaturesReceived() != 1 {
		t.Fatalf("%d signatures reached the iLO, want the image's", s.SignaturesReceived())
	}
	if got := len(s.Components()); got != 3 || len(s.TaskStates()) != 0 {
		t.Fatalf("repository %v, queue %v: a direct flash left something behind", s.Components(), s.TaskStates())
	}
}

// The iLO's own firmware as a .fwpkg: the iLO resets after the flash and forgets the session;
// the driver follows it through the reset and reads the new version.
func TestSmartComponentILOFirmware(t *testing.T) {
	s := startSim(t, similo.Config{Timings: fast})
	d := open(t, s, target(s, driver.TypeILO5))
	res, err := update(t, d, smartComponent(t, smartILO, "ilo5_278.fwpkg", targetILO, "2.78", false))
	if err != nil {
		t.Fatal(err)
	}
	if res.VersionBefore != "2.46" || res.VersionAfter != "2.78" {
		t.Fatalf("result %+v", res)
	}
	if st := s.Stats(); st.FlashesStarted != 1 || st.ILOResets != 1 {
		t.Fatalf("stats %+v, want one flash and one reset", st)
	}
}

func TestSmartComponentDirectWithReset(t *testing.T) {
	s := startSim(t, similo.Config{Timings: fast})
	d := open(t, s, target(s, driver.TypeILO5))
	res, err := update(t, d, smartComponent(t, smartDirectReset, "U46_2.60.fwpkg", targetROM, "2.60", false))
	if err != nil {
		t.Fatal(err)
	}
	if !res.RebootRequired || !strings.Contains(res.Message, "activates at the next reboot") {
		t.Fatalf("result %+v, want reboot required", res)
	}
	if s.StagedROM() != "2.60" || s.Stats().FlashesStarted != 1 {
		t.Fatalf("staged ROM %q, stats %+v", s.StagedROM(), s.Stats())
	}
}

// A Uefi package is queued once: Succeeded with rebootRequired, the running version unchanged;
// a resumed agent does not queue it again; after the reboot the next run finds it applied and
// removes the task and the component.
func TestSmartComponentUefiQueue(t *testing.T) {
	s := startSim(t, similo.Config{Timings: fast})
	d := open(t, s, target(s, driver.TypeILO5))
	fw := smartComponent(t, smartUefi, "cp900003.fwpkg", targetOCPNIC, "08.60.12", true)
	res, err := update(t, d, fw)
	if err != nil {
		t.Fatal(err)
	}
	if !res.RebootRequired || res.NotNeeded || !strings.Contains(res.Message, "activates at the next reboot") || res.VersionBefore != "08.50.78" {
		t.Fatalf("result %+v", res)
	}
	if q := s.TaskStates(); len(q) != 1 || !strings.HasSuffix(q[0], "=Pending") || !slices.Contains(s.Components(), "cp900003.zip") {
		t.Fatalf("queue %v, repository %v", q, s.Components())
	}
	if s.SignaturesReceived() != 1 || s.ComponentsAdded() != 1 {
		t.Fatalf("signatures %d, components added %d", s.SignaturesReceived(), s.ComponentsAdded())
	}

	// A resumed agent follows the queued task instead of queueing a second one.
	res, err = update(t, d, fw)
	if err != nil || !res.RebootRequired || !strings.Contains(res.Message, "already queued") {
		t.Fatalf("resumed: %+v, %v", res, err)
	}
	if s.ComponentsAdded() != 1 || len(s.TaskStates()) != 1 {
		t.Fatalf("resumed run uploaded again: %d components added, queue %v", s.ComponentsAdded(), s.TaskStates())
	}

	rebootHost(t, s)
	res, err = update(t, d, fw)
	if err != nil || !res.NotNeeded || res.VersionAfter != "08.60.12" {
		t.Fatalf("after the reboot: %+v, %v", res, err)
	}
	if len(s.TaskStates()) != 0 || slices.Contains(s.Components(), "cp900003.zip") {
		t.Fatalf("left behind: queue %v, repository %v", s.TaskStates(), s.Components())
	}
	if st := s.Stats(); st.FlashesStarted != 1 || st.FlashesCompleted != 1 {
		t.Fatalf("stats %+v, want exactly one flash", st)
	}
}

// spec.firmware.keepInRepository: once the queued package is applied, the driver removes its
// finished task but leaves the component in the iLO Repository.
func TestSmartComponentKeptInRepository(t *testing.T) {
	s := startSim(t, similo.Config{Timings: fast})
	d := open(t, s, target(s, driver.TypeILO5))
	fw := smartComponent(t, smartUefi, "cp900003.fwpkg", targetOCPNIC, "08.60.12", true)
	fw.KeepInRepository = true
	if res, err := update(t, d, fw); err != nil || !res.RebootRequired {
		t.Fatalf("queueing: %+v, %v", res, err)
	}
	rebootHost(t, s)
	res, err := update(t, d, fw)
	if err != nil || !res.NotNeeded || res.VersionAfter != "08.60.12" {
		t.Fatalf("after the reboot: %+v, %v", res, err)
	}
	if len(s.TaskStates()) != 0 || !slices.Contains(s.Components(), "cp900003.zip") {
		t.Fatalf("queue %v, repository %v; want the finished task gone and cp900003.zip kept", s.TaskStates(), s.Components())
	}
}

// rebootHost reboots the simulated server and waits for the end of its POST.
func rebootHost(t *testing.T, s *similo.Sim) {
	t.Helper()
	boots := s.HostBoots()
	if !s.RebootHost() {
		t.Fatal("reboot refused")
	}
	gomega.NewWithT(t).Eventually(func() bool { return s.HostBoots() > boots && s.PostState() == "FinishedPost" }).
		WithTimeout(time.Minute).Should(gomega.BeTrue(), "POST did not finish")
}

func TestSmartComponentNotApplicable(t *testing.T) {
	s := startSim(t, similo.Config{Timings: fast})
	d := open(t, s, target(s, driver.TypeILO5))
	res, err := update(t, d, smartComponent(t, smartDirect, "cp900004.fwpkg", targetAbsent, "1.0", false))
	if err != nil {
		t.Fatal(err)
	}
	if !res.NotNeeded || !strings.Contains(res.Message, "not applicable to this server") {
		t.Fatalf("result %+v", res)
	}
	if st := s.Stats(); st.FlashesStarted != 0 || s.ComponentsAdded() != 0 {
		t.Fatalf("a package for absent hardware reached the iLO: %+v", st)
	}
}

func TestSmartComponentRefusals(t *testing.T) {
	s := startSim(t, similo.Config{Timings: fast})
	d := open(t, s, target(s, driver.TypeILO5))
	_, err := update(t, d, smartComponent(t, smartHostOS, "cp900005.fwpkg", targetOCPNIC, "08.60.12", false))
	if err == nil || !strings.Contains(err.Error(), "Linux target") {
		t.Fatalf("host-OS package: %v", err)
	}

	// An Exception in the queue stalls it: refuse to queue behind it, and say what to do.
	video := fwimage.BuildHeader(fwimage.Header{Component: "SmartComponent", Version: "2.6", Target: "Embedded Video Controller"}, nil)
	c := d.(*Driver).Client()
	ctx := context.Background()
	if err := c.PushComponent(ctx, redfish.PushRequest{Filename: "video_26.bin", Data: video, UpdateRepository: true}); err != nil {
		t.Fatal(err)
	}
	s.UpdateFaults(func(f *similo.Faults) { f.FlashError = similo.MsgUpdateFailed })
	if err := c.CreateUpdateTask(ctx, redfish.UpdateTaskRequest{Name: "failing", Command: "ApplyUpdate", Filename: "video_26.bin", UpdatableBy: []string{"Bmc"}}); err != nil {
		t.Fatal(err)
	}
	gomega.NewWithT(t).Eventually(s.TaskStates).WithTimeout(time.Minute).Should(gomega.ContainElement("failing=Exception"), "the task queue")
	_, err = update(t, d, smartComponent(t, smartUefi, "cp900006.fwpkg", targetOCPNIC, "08.60.12", false))
	if err == nil || !strings.Contains(err.Error(), "stalls every task behind it") || slices.Contains(s.Components(), "cp900006.zip") {
		t.Fatalf("queueing behind an Exception: %v (repository %v)", err, s.Components())
	}

	// iLO 4 has no repository.
	s4 := startSim(t, similo.Config{Model: similo.ILO4})
	d4 := open(t, s4, target(s4, driver.TypeILO4))
	if _, err := update(t, d4, smartComponent(t, smartDirect, "cp900007.fwpkg", targetVideo, "2.6", false)); err == nil {
		t.Fatal("iLO 4 accepted a .fwpkg")
	}
}

// With rollout.reboot: IfRequired, a Smart Component that activates at the next reboot is not
// left staged: the driver reboots the server, judges after POST, and leaves nothing it added
// in the iLO (the queued task and the component); a window too short leaves it staged.
func TestSmartComponentRebootIfRequired(t *testing.T) {
	for _, tc := range []struct {
		name                  string
		kind                  smartKind
		file, target, version string
		rebootBy              time.Time
		rebooted              bool
	}{
		{"queued for UEFI", smartUefi, "cp900003.fwpkg", targetOCPNIC, "08.60.12", time.Time{}, true},
		{"flashed, activates at reboot", smartDirectReset, "U46_2.60.fwpkg", targetROM, "2.60", time.Time{}, true},
		{"window too short", smartUefi, "cp900003.fwpkg", targetOCPNIC, "08.60.12", time.Now().Add(time.Minute), false}, // RebootTimeout is 20m
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startSim(t, similo.Config{Timings: fast})
			d := open(t, s, target(s, driver.TypeILO5))
			fw := smartComponent(t, tc.kind, tc.file, tc.target, tc.version, tc.kind == smartUefi)
			fw.RebootIfRequired, fw.RebootBy = true, tc.rebootBy
			res, err := update(t, d, fw)
			switch {
			case err != nil:
				t.Fatal(err)
			case tc.rebooted && (res.RebootRequired || res.VersionAfter != tc.version || !strings.Contains(res.Message, "rebooted gracefully") || s.HostBoots() != 1):
				t.Fatalf("res %+v, %d boots; want active after one reboot", res, s.HostBoots())
			case !tc.rebooted && (!res.RebootRequired || !strings.Contains(res.Message, "maintenance window ends") || s.HostBoots() != 0):
				t.Fatalf("res %+v, %d boots; want staged, not rebooted, the window named", res, s.HostBoots())
			}
			if st := s.Stats(); st.FlashesStarted != map[bool]int{true: 1, false: 0}[tc.rebooted || tc.kind == smartDirectReset] {
				t.Fatalf("stats %+v", st)
			}
			if tc.rebooted && (len(s.TaskStates()) != 0 || slices.Contains(s.Components(), "cp900003.zip")) {
				t.Fatalf("left on the iLO: queue %v, repository %v", s.TaskStates(), s.Components())
			}
		})
	}
}
