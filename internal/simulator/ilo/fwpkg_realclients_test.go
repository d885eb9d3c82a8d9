package ilo

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fwops/firmware-operator/internal/simulator/fwimage"
)

// ilorestSession runs ilorest commands against one simulator, logged in once, with its own
// cache directory, from a working directory of its own (ilorest looks for .compsig files there).
type ilorestSession struct {
	t        *testing.T
	bin, dir string
	env      []string
	common   []string
}

func newIlorest(t *testing.T, s *Sim) *ilorestSession {
	t.Helper()
	home := t.TempDir()
	r := &ilorestSession{t: t, bin: lookPath(t, "ilorest"), dir: t.TempDir(), env: []string{"HOME=" + home},
		common: []string{"--nologo", "--cache-dir", home + "/cache"}}
	r.run("login", s.URL(), "-u", testUser, "-p", testPass)
	return r
}

// run runs one command and returns its output; a non-zero exit fails the test.
func (r *ilorestSession) run(args ...string) string {
	r.t.Helper()
	start := time.Now()
	out, err := r.try(args...)
	r.t.Logf("ilorest %s: %s", args[0], time.Since(start))
	if err != nil {
		r.t.Fatalf("ilorest %s: %v\n%s", strings.Join(redact(args), " "), err, out)
	}
	return out
}

func (r *ilorestSession) try(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, r.bin, append(slices.Clone(r.common), args...)...)
	cmd.Env = append(os.Environ(), r.env...)
	cmd.Dir = r.dir
	// ilorest asks before overwriting a component; the tests never want it to.
	cmd.Stdin = strings.NewReader("n\n")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func fastTimings() Timings {
	return Timings{Upload: 10 * time.Millisecond, Verify: 10 * time.Millisecond, Write: 10 * time.Millisecond, Update: 40 * time.Millisecond,
		POST: 100 * time.Millisecond, ResetDelay: 10 * time.Millisecond, ILOReset: 200 * time.Millisecond, HalfUp: 100 * time.Millisecond}
}

// rebootHost restarts the host as ComputerSystem.Reset does and waits for its POST to finish.
func rebootHost(t *testing.T, s *Sim) {
	t.Helper()
	boots := s.HostBoots()
	if !s.RebootHost() {
		t.Fatal("the host refused to reboot")
	}
	waitFor(t, "the host's POST", func() bool { return s.HostBoots() > boots && s.PostState() == postFinished })
}

// inventoryVersion reads a FirmwareInventory member's Version.
func inventoryVersion(s *Sim, id string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return str(s.tree.get("/redfish/v1/UpdateService/FirmwareInventory/" + id)["Version"])
}

// TestILOrestFlashFwpkgDirect: a Bmc package with DirectFlashOk (flashfwpkg's type A) is
// uploaded to HttpPushUri with UpdateTarget and flashed at once.
func TestILOrestFlashFwpkgDirect(t *testing.T) {
	t.Parallel()
	s := startTest(t, Config{Timings: fastTimings()})
	r := newIlorest(t, s)
	pkg := writeFile(t, t.TempDir(), "cp999001.fwpkg", testPackage(kindDirect, targetVideo, "2.6"))
	out := r.run("flashfwpkg", pkg)
	if !strings.Contains(out, "Firmware has successfully been flashed.") {
		t.Fatalf("flashfwpkg:\n%s", out)
	}
	if v := inventoryVersion(s, "12"); v != "2.6" {
		t.Fatalf("Embedded Video Controller at %q after flashfwpkg, want 2.6", v)
	}
	if st := s.Stats(); st.FlashesStarted != 1 || st.FlashesCompleted != 1 {
		t.Fatalf("stats %+v, want one flash", st)
	}
	// ilorest's flashfwpkg passes --update_repository, which (store_false) keeps the image out of
	// the repository.
	if c := s.Components(); len(c) != 3 {
		t.Fatalf("repository %v: the direct flash added to the three captured components", c)
	}
}

// TestILOrestFlashFwpkgDirectWithReset: a ROM package (DirectFlashOk and ResetRequired,
// flashfwpkg's type B) flashes at once and activates at the next host reboot.
func TestILOrestFlashFwpkgDirectWithReset(t *testing.T) {
	t.Parallel()
	s := startTest(t, Config{Timings: fastTimings()})
	r := newIlorest(t, s)
	pkg := writeFile(t, t.TempDir(), "U46_2.60.fwpkg", testPackage(kindDirectReset, targetROM, "2.60"))
	out := r.run("flashfwpkg", pkg)
	if !strings.Contains(out, "a reboot is required for this firmware to take effect") {
		t.Fatalf("flashfwpkg:\n%s", out)
	}
	if st := s.Stats(); st.FlashesCompleted != 1 {
		t.Fatalf("stats %+v, want one flash", st)
	}
	if v := inventoryVersion(s, "2"); strings.Contains(v, "v2.60 ") || s.StagedROM() != "2.60" {
		t.Fatalf("System ROM at %q (staged %q) before the reboot, want 2.52 running and 2.60 staged", v, s.StagedROM())
	}
	rebootHost(t, s)
	if v := inventoryVersion(s, "2"); !strings.Contains(v, "v2.60 ") {
		t.Fatalf("System ROM at %q after the flash and a reboot, want v2.60", v)
	}
}

// TestILOrestFlashFwpkgUefi: a Uefi-only package (flashfwpkg's type C) goes to the repository
// as a .zip with a Pending task; the task runs at the next POST and the version then changes.
func TestILOrestFlashFwpkgUefi(t *testing.T) {
	t.Parallel()
	s := startTest(t, Config{Timings: fastTimings()})
	r := newIlorest(t, s)
	pkg := writeFile(t, t.TempDir(), "cp999003.fwpkg", testPackage(kindUefi, targetOCPNIC, "08.60.12"))
	// The captured BIOS reports TpmState PresentEnabled: ilorest requires --tpmover then.
	out := r.run("flashfwpkg", pkg, "--tpmover")
	if !strings.Contains(out, "This firmware is set to flash on reboot.") {
		t.Fatalf("flashfwpkg:\n%s", out)
	}
	if !slices.Contains(s.Components(), "cp999003.zip") {
		t.Fatalf("repository %v: no cp999003.zip", s.Components())
	}
	q := r.run("taskqueue")
	if !strings.Contains(q, "Filename: cp999003.zip") || !strings.Contains(q, "State:Pending") {
		t.Fatalf("taskqueue before the reboot:\n%s", q)
	}
	if v := inventoryVersion(s, "11"); v != "08.50.78" {
		t.Fatalf("NIC at %q before the reboot: a Uefi task ran without a POST", v)
	}
	// The queued component is locked: ilorest refuses to delete it.
	if out, _ := r.try("deletecomp", "cp999003.zip"); !strings.Contains(out, "Unable to delete cp999003.zip") {
		t.Fatalf("deletecomp of a locked component:\n%s", out)
	}
	rebootHost(t, s)
	if v := inventoryVersion(s, "11"); v != "08.60.12" {
		t.Fatalf("NIC at %q after the POST, want 08.60.12", v)
	}
	q = r.run("taskqueue", "--cleanqueue")
	if !strings.Contains(q, "Deleting Update-") || strings.Contains(q, "State:") {
		t.Fatalf("taskqueue --cleanqueue after the POST:\n%s", q)
	}
	r.run("deletecomp", "cp999003.zip")
	if slices.Contains(s.Components(), "cp999003.zip") {
		t.Fatal("deletecomp left the component")
	}
}

// TestILOrestRepositoryCommands: uploadcomp (repository only, with a signature), listcomp,
// taskqueue create of a Bmc component (it runs at once), a Wait task, and a large component
// uploaded in 32 MiB sections.
func TestILOrestRepositoryCommands(t *testing.T) {
	t.Parallel()
	s := startTest(t, Config{Timings: fastTimings()})
	r := newIlorest(t, s)
	dir := t.TempDir()
	comp := writeFile(t, dir, "video_27.bin", fwimage.BuildHeader(fwimage.Header{Component: "SmartComponent", Version: "2.7", Target: "Embedded Video Controller"}, nil))
	sig := writeFile(t, dir, "video_27.compsig", []byte("signature"))
	r.run("uploadcomp", "--component", comp, "--compsig", sig)
	list := r.run("listcomp")
	if !strings.Contains(list, "Name: Embedded Video Controller\nVersion: 2.7\nLocked:No") {
		t.Fatalf("listcomp:\n%s", list)
	}
	if st := s.Stats(); st.FlashesStarted != 0 {
		t.Fatalf("uploadcomp without --update_target flashed: %+v", st)
	}
	r.run("taskqueue", "create", "video_27.bin", "--tpmover")
	waitFor(t, "the Bmc task to flash 2.7", func() bool { return inventoryVersion(s, "12") == "2.7" })
	waitFor(t, "the Bmc task to complete", func() bool { return strings.HasSuffix(strings.Join(s.TaskStates(), ","), "=Complete") })
	r.run("taskqueue", "create", "0")
	waitFor(t, "the Wait task to run", func() bool { return !strings.Contains(strings.Join(s.TaskStates(), ","), "Pending") })
	q := r.run("taskqueue", "--resetqueue")
	if !strings.Contains(q, "Deleting all update tasks") || len(s.TaskStates()) != 0 {
		t.Fatalf("taskqueue --resetqueue:\n%s\n%v", q, s.TaskStates())
	}

	// A component over 32 MiB goes in sections; each section has its own signature file.
	big := append(fwimage.BuildHeader(fwimage.Header{Component: "SmartComponent", Version: "2.8", Target: "Embedded Video Controller"}, nil),
		bytes.Repeat([]byte{0x5a}, pushSectionSize+1000)...)
	bigPath := writeFile(t, dir, "video_28.bin", big)
	sig28 := writeFile(t, dir, "video_28.compsig", []byte("signature"))
	writeFile(t, dir, "video_28_part1.compsig", []byte("signature 1"))
	writeFile(t, dir, "video_28_part2.compsig", []byte("signature 2"))
	if out := r.run("uploadcomp", "--component", bigPath, "--compsig", sig28); !strings.Contains(out, "Spliting component") {
		t.Fatalf("uploadcomp of %d bytes did not split it:\n%s", len(big), out)
	}
	list = r.run("listcomp")
	if !strings.Contains(list, "Version: 2.8") || !strings.Contains(list, "SizeBytes: "+itoa(len(big))) {
		t.Fatalf("listcomp after a sectioned upload of %d bytes:\n%s", len(big), list)
	}
	r.run("deletecomp", "video_28.bin")
	if slices.Contains(s.Components(), "video_28.bin") {
		t.Fatal("deletecomp left video_28.bin")
	}
}
