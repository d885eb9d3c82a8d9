package ilo

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/onsi/gomega"

	"github.com/fwops/firmware-operator/internal/simulator/fwimage"
)

// lookPath finds a real client. A missing client fails the test in CI (a missing dependency
// is a failure there) and skips it elsewhere.
func lookPath(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not found (Debian package %s): %v", name, name, err)
		}
		t.Skipf("%s not installed (apt-get install -y %s)", name, name)
	}
	return p
}

func run(t *testing.T, env []string, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Dir = t.TempDir()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", bin, strings.Join(redact(args), " "), err, out.String())
	}
	return out.String()
}

// redact keeps the password out of test logs.
func redact(args []string) []string {
	out := append([]string(nil), args...)
	for i := range out {
		if i > 0 && (out[i-1] == "-p" || out[i-1] == "--password") {
			out[i] = "***"
		}
	}
	return out
}

func imageHost(t *testing.T, images map[string][]byte) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, ok := images[strings.TrimPrefix(r.URL.Path, "/")]
		if !ok {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(b)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestILOrest drives HPE's own ilorest against the simulator over HTTPS: login, firmware
// inventory, a firmware update to completion, and the new version read back.
func TestILOrest(t *testing.T) {
	bin := lookPath(t, "ilorest")
	// The reset is on: ilorest must see Complete before the iLO goes away (it polls every
	// fraction of a second while Updating), then log in again once the iLO is back.
	s := startTest(t, Config{Timings: Timings{Upload: 100 * time.Millisecond, Verify: 100 * time.Millisecond,
		Write: 100 * time.Millisecond, Update: 400 * time.Millisecond, Steps: 4,
		ResetDelay: time.Second, ILOReset: time.Second, HalfUp: 500 * time.Millisecond}})
	base := imageHost(t, map[string][]byte{"ilo5_278.bin": fwimage.Build("iLO", "2.78", []byte("payload"))})
	home := t.TempDir()
	env := []string{"HOME=" + home}
	common := []string{"--nologo", "--cache-dir", home + "/cache"}
	run(t, env, bin, append(common, "login", s.URL(), "-u", testUser, "-p", testPass)...)
	inv := run(t, env, bin, append(common, "serverinfo", "--firmware")...)
	if !strings.Contains(inv, "iLO 5 : 2.46") || !strings.Contains(inv, "System ROM : A43 v2.52") {
		t.Fatalf("serverinfo --firmware:\n%s", inv)
	}
	out := run(t, env, bin, append(common, "firmwareupdate", base+"/ilo5_278.bin")...)
	if !strings.Contains(out, "Firmware update has completed") {
		t.Fatalf("firmwareupdate:\n%s", out)
	}
	// The iLO resets after flashing itself; log in again once it is back (its session is gone)
	// and read the new version as ilorest sees it.
	waitFor(t, "the iLO's reset", func() bool { st := s.Stats(); return st.ILOResets == 1 && s.ILOPhase() == "" })
	if st := s.Stats(); st.FlashesCompleted != 1 || st.FlashesStarted != 1 {
		t.Fatalf("stats %+v", st)
	}
	run(t, env, bin, append(common, "login", s.URL(), "-u", testUser, "-p", testPass)...)
	raw := run(t, env, bin, append(common, "rawget", "/redfish/v1/Managers/1")...)
	if !strings.Contains(raw, `"FirmwareVersion": "iLO 5 v2.78"`) {
		t.Fatalf("rawget Managers/1 after the update:\n%s", raw)
	}
	run(t, env, bin, append(common, "logout")...)
}

// TestRedfishtool drives DMTF's redfishtool: raw GET of the inventory (Basic and Session
// auth) and a raw POST of SimpleUpdate.
func TestRedfishtool(t *testing.T) {
	bin := lookPath(t, "redfishtool")
	s := startTest(t, Config{Timings: Timings{Upload: 10 * time.Millisecond, Update: 40 * time.Millisecond, POST: 200 * time.Millisecond}})
	base := imageHost(t, map[string][]byte{"rom.bin": fwimage.Build("SystemROM", "2.70", nil)})
	for _, auth := range []string{"Basic", "Session"} {
		out := run(t, nil, bin, "-r", s.Addr(), "-S", "Always", "-A", auth, "-u", testUser, "-p", testPass,
			"raw", "GET", "/redfish/v1/UpdateService/FirmwareInventory")
		var coll struct{ Members []map[string]string }
		if err := json.Unmarshal([]byte(out), &coll); err != nil || len(coll.Members) != 12 {
			t.Fatalf("%s: inventory (%v):\n%s", auth, err, out)
		}
	}
	body := `{"ImageURI":"` + base + `/rom.bin","TransferProtocol":"HTTP"}`
	out := run(t, nil, bin, "-r", s.Addr(), "-S", "Always", "-u", testUser, "-p", testPass,
		"raw", "POST", "/redfish/v1/UpdateService/Actions/UpdateService.SimpleUpdate", "-d", body)
	if !strings.Contains(out, "Base.1.4.Success") {
		t.Fatalf("SimpleUpdate:\n%s", out)
	}
	gomega.NewWithT(t).Eventually(s.State).WithTimeout(time.Minute).Should(gomega.Equal("Complete"), "the flash's state")
	// The flash is staged: the running ROM (FirmwareInventory/2) keeps its version, the
	// redundant one (6) holds the new image until the host reboots.
	get := func(p string) string {
		return run(t, nil, bin, "-r", s.Addr(), "-S", "Always", "-u", testUser, "-p", testPass, "raw", "GET", p)
	}
	if out := get("/redfish/v1/UpdateService/FirmwareInventory/2"); !strings.Contains(out, "v2.52") {
		t.Fatalf("running System ROM changed before a reboot:\n%s", out)
	}
	if out := get("/redfish/v1/UpdateService/FirmwareInventory/6"); !strings.Contains(out, "v2.70") {
		t.Fatalf("Redundant System ROM after the update:\n%s", out)
	}
	out = run(t, nil, bin, "-r", s.Addr(), "-S", "Always", "-u", testUser, "-p", testPass,
		"raw", "POST", "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset", "-d", `{"ResetType":"ForceRestart"}`)
	if !strings.Contains(out, "Base.1.4.Success") {
		t.Fatalf("ComputerSystem.Reset:\n%s", out)
	}
	waitFor(t, "the host's POST", func() bool { return s.PostState() == postFinished })
	if out := get("/redfish/v1/UpdateService/FirmwareInventory/2"); !strings.Contains(out, "v2.70") {
		t.Fatalf("System ROM after the reboot:\n%s", out)
	}
}
