package runner

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fwops/firmware-operator/internal/testutil/shared"

	"github.com/fwops/firmware-operator/internal/testutil/syncbuf"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
	"github.com/fwops/firmware-operator/internal/agent/config"
	"github.com/fwops/firmware-operator/internal/agent/driver"
	"github.com/fwops/firmware-operator/internal/agent/ilo"
	"github.com/fwops/firmware-operator/internal/agent/linux"
	"github.com/fwops/firmware-operator/internal/agent/oa"
	"github.com/fwops/firmware-operator/internal/simulator/fwimage"
	similo "github.com/fwops/firmware-operator/internal/simulator/ilo"
	simoa "github.com/fwops/firmware-operator/internal/simulator/oa"
	"github.com/fwops/firmware-operator/internal/testutil/sshd"
)

const e2ePassword = "Fl4sh-Th3-Fl33t!"

// e2e holds what the end-to-end runs share: the API server, the image server, all output.
type e2e struct {
	t      testing.TB
	cfg    *rest.Config
	c      client.Client
	images map[string][]byte
	out    *syncbuf.Buffer // stdout and stderr of every agent run
	mu     sync.Mutex
}

// serveImages serves the test's firmware files on 127.0.0.1, as a job's --firmware-url.
func (e *e2e) serveImages() *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		b, ok := e.images[strings.TrimPrefix(r.URL.Path, "/")]
		e.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(b)
	}))
	e.t.Cleanup(srv.Close)
	return srv
}

func digest(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// job creates the TargetUpdates of a job and returns the agent's config for it.
func (e *e2e) job(name string, fw config.Firmware, targets []config.Target) config.Config {
	t := e.t
	ps := freePorts(t, 4+len(targets))
	cfg := config.Config{
		Namespace: testNS, Job: name, JobUID: "uid-" + name, Node: "node-1", Pod: name + "-agent",
		Firmware: fw,
		Ports: config.Ports{Control: ps[0], FirmwareServer: ps[1], FirmwareFallback: [2]int{ps[1] + 1, ps[1] + 3},
			FirmwareSelection: "Random", IPC: ps[2], Reverse: ps[3+len(targets):]},
		Timeout: 30 * time.Second, Address: "127.0.0.1", MountRoot: t.TempDir(),
	}
	for i, tg := range targets {
		tg.TargetUpdate = name + "-" + tg.Name
		tg.Slot = i
		if tg.CredentialsSecret == "" {
			tg.CredentialsSecret = tg.Name + "-" + credentialsSub
		}
		cfg.Ports.Sessions = append(cfg.Ports.Sessions, ps[3+i]) // rule P4, one per slot
		cfg.Targets = append(cfg.Targets, tg)
		tu := newTU(name, tg.Name)
		tu.Spec.TargetType = fwv1.TargetType(tg.Type)
		if err := e.c.Create(context.Background(), tu); err != nil {
			t.Fatalf("create TargetUpdate: %v", err)
		}
	}
	return cfg
}

// run runs one agent in-process through Main with the pod's arguments.
func (e *e2e) run(cfg config.Config, opts ...Option) error {
	return e.runUntil(context.Background(), cfg, opts...)
}

// runUntil is run for an agent that stops when ctx ends, as when its pod is deleted.
func (e *e2e) runUntil(parent context.Context, cfg config.Config, opts ...Option) error {
	args := append(cfg.Args(), "--mount-root="+cfg.MountRoot)
	ctx, cancel := context.WithTimeout(parent, 2*time.Minute)
	defer cancel()
	opts = append([]Option{WithClient(e.c), WithMinWriteInterval(200 * time.Millisecond),
		WithILOOptions(ilo.Options{PollInterval: 5 * time.Millisecond, FlashTimeout: 10 * time.Second, VerifyTimeout: 10 * time.Second,
			RebootTimeout: 10 * time.Second, ReloginBackoff: 20 * time.Millisecond, MaxReloginBackoff: 200 * time.Millisecond,
			ComeBackBackoff: 20 * time.Millisecond, MaxComeBackBackoff: 200 * time.Millisecond}),
		WithOAOptions(oa.Options{ReconnectBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, DownWait: 5 * time.Second,
			Timeouts: driver.Timeouts{Connect: 5 * time.Second, Flash: 20 * time.Second}}),
	}, opts...)
	return Main(ctx, args, e.out, e.out, opts...)
}

func (e *e2e) status(job, target string) fwv1.TargetUpdateStatus {
	tu := &fwv1.TargetUpdate{}
	if err := e.c.Get(context.Background(), types.NamespacedName{Namespace: testNS, Name: job + "-" + target}, tu); err != nil {
		e.t.Fatal(err)
	}
	return tu.Status
}

// The Secrets of a test target are named after it: <target>-credentials, <target>-ca and
// <target>-known-hosts.
const (
	credentialsSub = "credentials"
	caSub          = "ca"
	knownHostsSub  = "known-hosts"
)

// mountSecret writes key of the target's Secret sub as the pod mounts it.
func mountSecret(t *testing.T, cfg config.Config, target, sub, key string, b []byte) {
	writeFile(t, filepath.Join(cfg.SecretDir(target+"-"+sub), key), b)
}

func onlyPort(ports []int, want int) bool {
	if len(ports) == 0 {
		return false
	}
	for _, p := range ports {
		if p != want {
			return false
		}
	}
	return true
}

// flashWant is the flash action and TransferProtocol an iLO should be asked for.
type flashWant struct{ action, protocol string }

// TestEndToEnd runs agents in-process against a real API server and a mixed fleet: iLO 4, 5
// and 6 simulators, an Onboard Administrator simulator and a Linux host (a real sshd).
func TestEndToEnd(t *testing.T) {
	e := newE2E(t)
	imgSrv := e.serveImages()

	iloImage := fwimage.Build("iLO", "2.78", []byte(strings.Repeat("iLO firmware payload ", 500)))
	romImage := fwimage.Build("SystemROM", "2.68", []byte("system ROM payload"))
	oaImage := fwimage.Build("OA", "5.00", []byte("OA firmware payload"))
	script := []byte("#!/bin/sh\necho 'smart component: installed, reboot to activate'\nexit 1\n")
	e.images["ilo5_278.bin"], e.images["oa_500.bin"], e.images["cp012345.scexe"] = iloImage, oaImage, script
	e.images["a43_268.fwpkg"] = romImage

	mockup := shared.Mockup(shared.DL325)
	fast := fastILO
	sims := map[string]*similo.Sim{}
	before := map[string]string{"ilo4": "2.80", "ilo5": "2.46", "ilo6": "1.55"}
	for _, m := range []similo.Model{similo.ILO4, similo.ILO5, similo.ILO6} {
		s, err := similo.New(similo.Config{MockupDir: mockup, Model: m, Username: "Administrator", Password: e2ePassword,
			Timings: fast, SimpleUpdateTask: m == similo.ILO6})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Start("127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		sims[string(m)] = s
	}

	// --- iLO 4, 5 and 6 in one agent run.
	iloTargets := []config.Target{
		{Name: "ilo4", Type: "iLO4", Address: sims["ilo4"].Addr(), CABundleSecret: "ilo4-ca"},
		{Name: "ilo5", Type: "iLO5", Address: sims["ilo5"].Addr(), CertificateSHA256: sims["ilo5"].CertFingerprint()},
		{Name: "ilo6", Type: "iLO6", Address: sims["ilo6"].Addr(), CABundleSecret: "ilo6-ca"},
	}
	iloFW := config.Firmware{URL: imgSrv.URL + "/ilo5_278.bin", SHA256: digest(iloImage), Version: "2.78", Component: "iLO"}
	iloCfg := e.job("ilo", iloFW, iloTargets)
	iloCfg.FirmwareTLS = fwv1.FirmwareServerTLSPreferred // the PortPolicy's default
	for _, tg := range iloCfg.Targets {
		mountCredentials(t, iloCfg, tg.Name, "Administrator", e2ePassword)
		if tg.CABundleSecret != "" {
			mountSecret(t, iloCfg, tg.Name, caSub, fwv1.SecretKeyCABundle, sims[tg.Name].CertPEM())
		}
	}
	// rule P2, firmwareServer.tls Required: iLO 4 cannot fetch over HTTPS, so it fails without
	// being asked to flash, with a message that says what to change.
	t.Run("Required fails iLO 4", func(t *testing.T) {
		cfg := e.job("ilo-required", iloFW, iloTargets[:1])
		cfg.FirmwareTLS = fwv1.FirmwareServerTLSRequired
		cfg.Ports.Sessions[0] = iloCfg.Ports.Sessions[0] // rule P4: the iLO sees one source port
		mountCredentials(t, cfg, "ilo4", "Administrator", e2ePassword)
		mountSecret(t, cfg, "ilo4", caSub, fwv1.SecretKeyCABundle, sims["ilo4"].CertPEM())
		if err := e.run(cfg); err == nil || !strings.Contains(err.Error(), "ilo4") {
			t.Fatalf("agent: %v, want an error naming ilo4", err)
		}
		s := e.status("ilo-required", "ilo4")
		if s.Phase != fwv1.TargetPhaseFailed {
			t.Fatalf("phase %s (%s), want Failed", s.Phase, s.Message)
		}
		for _, say := range []string{"firmwareServer.tls is Required", "iLO 4 downloads firmware over HTTP only",
			"set the PortPolicy's spec.firmwareServer.tls to Preferred", "upgrade", "nothing was flashed"} {
			if !strings.Contains(strings.ToLower(s.Message), strings.ToLower(say)) {
				t.Errorf("message %q does not say %q", s.Message, say)
			}
		}
		if st := sims["ilo4"].Stats(); st.FlashRequests != 0 || st.FlashesStarted != 0 {
			t.Errorf("iLO 4 got %d flash requests, %d flashes; want none", st.FlashRequests, st.FlashesStarted)
		}
	})
	t.Run("iLO4-5-6", func(t *testing.T) {
		if err := e.run(iloCfg); err != nil {
			t.Fatalf("agent: %v\n%s", err, e.out.String())
		}
		// rule P2: iLO 5 and 6 advertise HTTPS for SimpleUpdate and are given it; iLO 4 is
		// given HTTP, from the same port. Each status names the certificate its iLO saw.
		for _, tg := range iloCfg.Targets {
			reqs := sims[tg.Name].FlashRequestsReceived()
			certs := sims[tg.Name].ImageServerCertificates()
			s := e.status("ilo", tg.Name)
			wantPrefix := "https://127.0.0.1:" + strconv.Itoa(iloCfg.Ports.FirmwareServer) + "/fw/"
			want := flashWant{"SimpleUpdate", "HTTPS"}
			if tg.Name == "ilo4" {
				wantPrefix, want = "http://127.0.0.1:"+strconv.Itoa(iloCfg.Ports.FirmwareServer)+"/fw/", flashWant{"InstallFromURI", ""}
			}
			if len(reqs) != 1 || !strings.HasPrefix(reqs[0].ImageURI, wantPrefix) || reqs[0].Action != want.action || reqs[0].TransferProtocol != want.protocol {
				t.Errorf("%s: asked %+v; want one %s of %s… with TransferProtocol %q", tg.Name, reqs, want.action, wantPrefix, want.protocol)
			}
			switch {
			case tg.Name == "ilo4" && (len(certs) != 0 || s.FirmwareServerCertificateSHA256 != ""):
				t.Errorf("ilo4: fetched over HTTPS (%q) or status names a certificate %q", certs, s.FirmwareServerCertificateSHA256)
			case tg.Name != "ilo4" && (len(certs) != 1 || len(s.FirmwareServerCertificateSHA256) != 64 || certs[0] != s.FirmwareServerCertificateSHA256):
				t.Errorf("%s: the iLO saw certificates %q, the status names %q; want the one, the same", tg.Name, certs, s.FirmwareServerCertificateSHA256)
			}
		}
		if n := strings.Count(e.out.String(), `"tls":true`); n < 2 {
			t.Errorf("%d firmware requests over TLS logged, want iLO 5's and 6's", n)
		}
		if n := strings.Count(e.out.String(), `"msg":"firmware request"`); n < 3 {
			t.Errorf("%d firmware requests logged, want one per iLO at least", n)
		}
		for _, tg := range iloCfg.Targets {
			s := e.status("ilo", tg.Name)
			if s.Phase != fwv1.TargetPhaseSucceeded || s.VersionBefore != before[tg.Name] || s.VersionAfter != "2.78" {
				t.Errorf("%s: phase %s, %q -> %q (%s); want Succeeded %s -> 2.78", tg.Name, s.Phase, s.VersionBefore, s.VersionAfter, s.Message, before[tg.Name])
			}
			st := sims[tg.Name].Stats()
			if st.FlashRequests != 1 || st.FlashesStarted != 1 || st.FlashesCompleted != 1 || st.ILOResets != 1 {
				t.Errorf("%s: simulator saw %d flash requests, %d started, %d completed, %d resets; want 1 each",
					tg.Name, st.FlashRequests, st.FlashesStarted, st.FlashesCompleted, st.ILOResets)
			}
			if sp := iloCfg.Ports.Sessions[tg.Slot]; !onlyPort(st.SourcePorts, sp) || int(s.SessionPort) != sp { // rule P4
				t.Errorf("%s: source ports %v, status sessionPort %d; want only %d", tg.Name, st.SourcePorts, s.SessionPort, sp)
			}
			if int(s.FirmwareServerPort) != iloCfg.Ports.FirmwareServer {
				t.Errorf("%s: firmwareServerPort %d, want %d", tg.Name, s.FirmwareServerPort, iloCfg.Ports.FirmwareServer)
			}
			// Through the real API server: the CRD keeps the ports the agent reports (P1, P5).
			if int(s.ControlPort) != iloCfg.Ports.Control || int(s.IPCPort) != iloCfg.Ports.IPC ||
				len(s.ReceivePorts) != 1 || int(s.ReceivePorts[0]) != iloCfg.Ports.Reverse[0] {
				t.Errorf("%s: status controlPort %d, ipcPort %d, receivePorts %v; want %d, %d, %v",
					tg.Name, s.ControlPort, s.IPCPort, s.ReceivePorts, iloCfg.Ports.Control, iloCfg.Ports.IPC, iloCfg.Ports.Reverse)
			}
		}
	})
	t.Run("rerun flashes nothing", func(t *testing.T) {
		if err := e.run(iloCfg); err != nil {
			t.Fatalf("agent: %v", err)
		}
		for name, s := range sims {
			if n := s.Stats().FlashesStarted; n != 1 {
				t.Errorf("%s: %d flashes after a second run, want 1", name, n)
			}
		}
	})
	t.Run("already at version is skipped", func(t *testing.T) {
		cfg := e.job("ilo-again", iloFW, iloTargets[1:2])
		mountCredentials(t, cfg, "ilo5", "Administrator", e2ePassword)
		if err := e.run(cfg); err != nil {
			t.Fatalf("agent: %v", err)
		}
		if s := e.status("ilo-again", "ilo5"); s.Phase != fwv1.TargetPhaseSkipped || s.Message != "already at version 2.78" {
			t.Errorf("status %+v", s)
		}
		if n := sims["ilo5"].Stats().FlashesStarted; n != 1 {
			t.Errorf("%d flashes, want 1", n)
		}
	})

	// --- A system ROM: staged until the host reboots, never flashed twice; with
	// --reboot-if-required the agent reboots the host and verifies after POST.
	romFW := config.Firmware{URL: imgSrv.URL + "/a43_268.fwpkg", SHA256: digest(romImage), Version: "2.68", Component: "SystemROM"}
	romJob := func(name string, reboot bool) config.Config {
		cfg := e.job(name, romFW, iloTargets[1:2])
		cfg.RebootIfRequired = reboot
		mountCredentials(t, cfg, "ilo5", "Administrator", e2ePassword)
		return cfg
	}
	t.Run("SystemROM staged", func(t *testing.T) {
		// The iLO flash above ends with the iLO's reset, and this job starts while the iLO is
		// still coming back: the driver waits for it.
		t.Logf("ilo5's reset phase as the ROM job starts: %q", sims["ilo5"].ILOPhase())
		for _, name := range []string{"rom", "rom-again"} {
			if err := e.run(romJob(name, false)); err != nil {
				t.Fatalf("agent: %v\n%s", err, e.out.String())
			}
			s := e.status(name, "ilo5")
			if s.Phase != fwv1.TargetPhaseSucceeded || !s.RebootRequired || s.VersionAfter != "2.68" || !strings.Contains(s.Message, "activates at the next reboot") {
				t.Errorf("%s: status %+v", name, s)
			}
		}
		if st := sims["ilo5"].Stats(); st.FlashRequests != 2 || st.HostBoots != 0 { // the iLO flash above, then one ROM flash
			t.Errorf("stats %+v; want 2 flash requests in all, no reboot", st)
		}
	})
	t.Run("SystemROM: no reboot past the window", func(t *testing.T) {
		// A window that closes within two minutes, and a reboot that may take five: the
		// agent leaves the ROM staged and says why.
		cfg := romJob("rom-window", true)
		now := time.Now().UTC()
		cfg.Window = &fwv1.MaintenanceWindow{Start: now.Add(-time.Hour).Format("15:04"), End: now.Add(time.Minute).Format("15:04"), TimeZone: "UTC"}
		slow := ilo.Options{PollInterval: 5 * time.Millisecond, FlashTimeout: 10 * time.Second, VerifyTimeout: 10 * time.Second,
			RebootTimeout: 5 * time.Minute, ComeBackBackoff: 20 * time.Millisecond, MaxComeBackBackoff: 200 * time.Millisecond}
		if err := e.run(cfg, WithILOOptions(slow)); err != nil {
			t.Fatalf("agent: %v\n%s", err, e.out.String())
		}
		s := e.status("rom-window", "ilo5")
		if s.Phase != fwv1.TargetPhaseSucceeded || !s.RebootRequired || !strings.Contains(s.Message, "not rebooted") || !strings.Contains(s.Message, "maintenance window ends") {
			t.Errorf("status %+v; want Succeeded, reboot required, the window named", s)
		}
		if st := sims["ilo5"].Stats(); st.FlashRequests != 2 || st.HostBoots != 0 {
			t.Errorf("stats %+v; want no new flash and no reboot", st)
		}
	})
	t.Run("SystemROM with reboot", func(t *testing.T) {
		if err := e.run(romJob("rom-reboot", true)); err != nil {
			t.Fatalf("agent: %v\n%s", err, e.out.String())
		}
		s := e.status("rom-reboot", "ilo5")
		if s.Phase != fwv1.TargetPhaseSucceeded || s.RebootRequired || s.VersionAfter != "2.68" || !strings.Contains(s.Message, "rebooted") {
			t.Errorf("status %+v", s)
		}
		if st := sims["ilo5"].Stats(); st.FlashRequests != 2 || st.HostBoots != 1 {
			t.Errorf("stats %+v; want no new flash and one reboot", st)
		}
		if v := sims["ilo5"].Version("SystemROM"); !strings.Contains(v, "v2.68") {
			t.Errorf("running ROM %q", v)
		}
	})

	// --- A wrong SHA-256 fails every target and contacts none.
	t.Run("wrong sha256", func(t *testing.T) {
		bad := iloFW
		bad.SHA256 = strings.Repeat("0", 64)
		cfg := e.job("ilo-badsha", bad, iloTargets)
		for _, tg := range cfg.Targets {
			mountCredentials(t, cfg, tg.Name, "Administrator", e2ePassword)
		}
		reqs := map[string]int{}
		for n, s := range sims {
			reqs[n] = s.Stats().Requests
		}
		mark := len(e.out.String())
		err := e.run(cfg)
		if err == nil {
			t.Fatal("agent succeeded with a wrong digest")
		}
		for _, tg := range cfg.Targets {
			s := e.status("ilo-badsha", tg.Name)
			// The expected digest is named, the file's real one never (docs/security.md).
			if s.Phase != fwv1.TargetPhaseFailed || !strings.Contains(s.Message, bad.SHA256) || strings.Contains(s.Message, iloFW.SHA256) {
				t.Errorf("%s: %s %q; want Failed naming the expected digest and not the file's", tg.Name, s.Phase, s.Message)
			}
			if got := sims[tg.Name].Stats().Requests; got != reqs[tg.Name] {
				t.Errorf("%s: the simulator got %d requests during a run with a bad image", tg.Name, got-reqs[tg.Name])
			}
		}
		if strings.Contains(e.out.String()[mark:], `"msg":"firmware request"`) {
			t.Error("the firmware server served something")
		}
	})

	// --- An Onboard Administrator.
	t.Run("OA", func(t *testing.T) {
		sim, err := simoa.Start(simoa.Config{Password: e2ePassword, Version: "4.97", RestartDelay: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sim.Close() })
		cfg := e.job("oa", config.Firmware{URL: imgSrv.URL + "/oa_500.bin", SHA256: digest(oaImage), Version: "5.00", Component: "OA"},
			[]config.Target{{Name: "oa1", Type: "OA", Address: sim.Addr(), KnownHostsSecret: "oa1-known-hosts"}})
		mountCredentials(t, cfg, "oa1", "Administrator", e2ePassword)
		mountSecret(t, cfg, "oa1", knownHostsSub, fwv1.SecretKeyKnownHosts, []byte(sim.KnownHostsLine()+"\n"))
		if err := e.run(cfg); err != nil {
			t.Fatalf("agent: %v", err)
		}
		s := e.status("oa", "oa1")
		if s.Phase != fwv1.TargetPhaseSucceeded || s.VersionBefore != "4.97" || s.VersionAfter != "5.00" {
			t.Errorf("status %+v", s)
		}
		if sim.Flashes() != 1 {
			t.Errorf("%d OA flashes, want 1", sim.Flashes())
		}
		if sp := cfg.Ports.Sessions[0]; !onlyPort(sim.SourcePorts(), sp) {
			t.Errorf("OA saw source ports %v, want only %d", sim.SourcePorts(), sp)
		}
	})

	// --- A Linux host over real SSH; the image is the Smart Component itself.
	host := sshd.Start(t)
	stateDir := t.TempDir()
	linuxFW := config.Firmware{URL: imgSrv.URL + "/cp012345.scexe", SHA256: digest(script), Version: "1.2.3", Component: "SmartComponent"}
	linuxOpts := WithLinuxOptions(linux.Options{StateDir: stateDir, Timeouts: driver.Timeouts{Connect: 5 * time.Second}})
	t.Run("Linux", func(t *testing.T) {
		cfg := e.job("linux", linuxFW, []config.Target{{Name: "host1", Type: "Linux", Address: "127.0.0.1", SSHPort: host.Port, KnownHostsSecret: "host1-known-hosts"}})
		mountSecret(t, cfg, "host1", credentialsSub, fwv1.SecretKeyUsername, []byte(host.User))
		mountSecret(t, cfg, "host1", credentialsSub, fwv1.SecretKeyPassword, []byte(e2ePassword))
		mountSecret(t, cfg, "host1", credentialsSub, fwv1.SecretKeySSHPrivateKey, host.UserKey)
		mountSecret(t, cfg, "host1", knownHostsSub, fwv1.SecretKeyKnownHosts, host.KnownHosts)
		if err := e.run(cfg, linuxOpts); err != nil {
			t.Fatalf("agent: %v\n%s", err, e.out.String())
		}
		s := e.status("linux", "host1")
		if s.Phase != fwv1.TargetPhaseSucceeded || !s.RebootRequired || !strings.Contains(s.Message, "reboot") || s.VersionAfter != "1.2.3" {
			t.Errorf("status %+v", s)
		}
		// rule P5: the host's call-back comes through the SSH session to the target's receive port.
		if s.ReceivePort != int32(cfg.Ports.Reverse[0]) || s.ReceiveVia != fwv1.ReceiveViaSSHCallback {
			t.Errorf("receivePort %d via %q, want %d via SSHCallback", s.ReceivePort, s.ReceiveVia, cfg.Ports.Reverse[0])
		}
		if !strings.Contains(e.out.String(), "the host reports the run's end through the SSH session") {
			t.Errorf("the agent did not ask the host for the call-back:\n%s", e.out.String())
		}
		sp := cfg.Ports.Sessions[0]
		if !strings.Contains(host.Logs(), "from 127.0.0.1 port "+strconv.Itoa(sp)) { // rule P4
			t.Errorf("sshd saw no connection from port %d:\n%s", sp, host.Logs())
		}
		// A second agent of another job finds the version recorded and skips.
		again := e.job("linux-again", linuxFW, []config.Target{{Name: "host1", Type: "Linux", Address: "127.0.0.1", SSHPort: host.Port, KnownHostsSecret: "host1-known-hosts"}})
		for _, k := range []string{fwv1.SecretKeyUsername, fwv1.SecretKeySSHPrivateKey} {
			b, _ := os.ReadFile(filepath.Join(cfg.SecretDir("host1-"+credentialsSub), k))
			mountSecret(t, again, "host1", credentialsSub, k, b)
		}
		mountSecret(t, again, "host1", knownHostsSub, fwv1.SecretKeyKnownHosts, host.KnownHosts)
		if err := e.run(again, linuxOpts); err != nil {
			t.Fatalf("agent: %v", err)
		}
		if s := e.status("linux-again", "host1"); s.Phase != fwv1.TargetPhaseSkipped {
			t.Errorf("second job: %+v, want Skipped", s)
		}
	})
	t.Run("Linux host key mismatch", func(t *testing.T) {
		_, other, _ := ed25519.GenerateKey(rand.Reader)
		signer, _ := ssh.NewSignerFromKey(other)
		line := knownhosts.Line([]string{knownhosts.Normalize(host.Addr)}, signer.PublicKey()) + "\n"
		cfg := e.job("linux-mitm", linuxFW, []config.Target{{Name: "host1", Type: "Linux", Address: "127.0.0.1", SSHPort: host.Port, KnownHostsSecret: "host1-known-hosts"}})
		mountSecret(t, cfg, "host1", credentialsSub, fwv1.SecretKeyUsername, []byte(host.User))
		mountSecret(t, cfg, "host1", credentialsSub, fwv1.SecretKeySSHPrivateKey, host.UserKey)
		mountSecret(t, cfg, "host1", knownHostsSub, fwv1.SecretKeyKnownHosts, []byte(line))
		if err := e.run(cfg, linuxOpts); err == nil {
			t.Fatal("agent succeeded against a host with the wrong key")
		}
		s := e.status("linux-mitm", "host1")
		if s.Phase != fwv1.TargetPhaseFailed || !strings.Contains(strings.ToLower(s.Message), "host key") {
			t.Errorf("status %s %q; want Failed with a host key message", s.Phase, s.Message)
		}
		t.Logf("host key mismatch message: %s", s.Message)
	})

	if out := e.out.String(); strings.Contains(out, e2ePassword) {
		t.Errorf("the password appears in the agents' output")
	} else if !strings.Contains(out, `"msg":"ports bound"`) {
		t.Errorf("output was not captured:\n%s", out)
	}
}
