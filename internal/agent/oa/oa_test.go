package oa

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/fwops/firmware-operator/internal/testutil/syncbuf"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/fwops/firmware-operator/internal/agent/driver"
	"github.com/fwops/firmware-operator/internal/agent/sshconn"
	oasim "github.com/fwops/firmware-operator/internal/simulator/oa"
)

const password = "Oa-Pa55-w0rd-secret"

type fixture struct {
	sim    *oasim.Simulator
	images *httptest.Server
	target driver.Target
	logs   *syncbuf.Buffer
	opts   Options
}

func setup(t *testing.T, cfg oasim.Config) *fixture {
	t.Helper()
	cfg.Password = password
	if cfg.RestartDelay == 0 {
		cfg.RestartDelay = 400 * time.Millisecond
	}
	sim, err := oasim.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	img := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/oa-5.00.bin":
			w.Write([]byte("FWOPS-IMAGE component=OA version=5.00\npayload"))
		case "/ilo-2.82.bin":
			w.Write([]byte("FWOPS-IMAGE component=iLO4 version=2.82\npayload"))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(img.Close)
	logs := &syncbuf.Buffer{}
	f := &fixture{sim: sim, images: img, logs: logs,
		target: driver.Target{Name: "oa-1", Type: driver.TypeOA, Address: sim.Addr(),
			Credentials: driver.Credentials{Username: "Administrator", Password: password},
			SSH:         driver.SSH{KnownHosts: []byte(sim.KnownHostsLine() + "\n")}},
		opts: Options{ReconnectBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
			DownWait: 5 * time.Second, ILOVerifyTimeout: 500 * time.Millisecond,
			Timeouts: driver.Timeouts{Connect: 5 * time.Second, Flash: 20 * time.Second},
			Logger:   slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))},
	}
	t.Cleanup(func() {
		if strings.Contains(logs.String(), password) {
			t.Error("password appears in the driver's logs")
		}
	})
	return f
}

func (f *fixture) open(t *testing.T) *Driver {
	t.Helper()
	d, err := NewFactory(f.opts)(context.Background(), f.target)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d.(*Driver)
}

func noLeak(t *testing.T, err error) {
	t.Helper()
	if err != nil && strings.Contains(err.Error(), password) {
		t.Fatalf("password in error: %v", err)
	}
}

func TestVersion(t *testing.T) {
	f := setup(t, oasim.Config{Version: "4.97", KeyboardInteractiveOnly: true}) // as real OAs
	d := f.open(t)
	v, err := d.Version(context.Background(), driver.ComponentOA)
	if err != nil || v != "4.97" {
		t.Fatalf("Version = %q, %v; want 4.97", v, err)
	}
	if _, err := d.Version(context.Background(), driver.ComponentSystemROM); !errors.Is(err, driver.ErrUnsupported) {
		t.Fatalf("SystemROM on an OA: %v", err)
	}
}

func TestUpdateOA(t *testing.T) {
	f := setup(t, oasim.Config{Version: "4.97"})
	f.target.LocalAddress = "127.0.0.1"
	f.target.LocalPort = freePort(t)
	d := f.open(t)
	var phases []driver.Progress
	res, err := d.Update(context.Background(), driver.Firmware{Component: driver.ComponentOA,
		URL: f.images.URL + "/oa-5.00.bin", Version: "5.00"}, func(p driver.Progress) { phases = append(phases, p) })
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	if res.VersionBefore != "4.97" || res.VersionAfter != "5.00" {
		t.Fatalf("result %+v", res)
	}
	if f.sim.Flashes() != 1 || f.sim.Restarts() != 1 {
		t.Fatalf("simulator flashes %d restarts %d", f.sim.Flashes(), f.sim.Restarts())
	}
	var sawFlash100, sawVerify bool
	for _, p := range phases {
		sawFlash100 = sawFlash100 || (p.Phase == driver.PhaseFlashing && p.Percent == 100)
		sawVerify = sawVerify || p.Phase == driver.PhaseVerifying
	}
	if !sawFlash100 || !sawVerify {
		t.Fatalf("progress %+v lacks Flashing 100%% or Verifying", phases)
	}
	// rule P4: every connection, including the ones after the restart, left from LocalPort.
	ports := f.sim.SourcePorts()
	if len(ports) < 2 {
		t.Fatalf("expected a reconnection after the restart, source ports %v", ports)
	}
	for _, p := range ports {
		if p != f.target.LocalPort {
			t.Fatalf("source ports %v, want all %d", ports, f.target.LocalPort)
		}
	}
	// The driver still works after the restart.
	if v, err := d.Version(context.Background(), driver.ComponentOA); err != nil || v != "5.00" {
		t.Fatalf("Version after = %q, %v", v, err)
	}
}

func TestUpdateOAWithoutWantedVersion(t *testing.T) {
	f := setup(t, oasim.Config{Version: "4.97"})
	d := f.open(t)
	res, err := d.Update(context.Background(), driver.Firmware{URL: f.images.URL + "/oa-5.00.bin"}, nil)
	if err != nil || res.VersionAfter != "5.00" {
		t.Fatalf("Update = %+v, %v", res, err)
	}
}

func TestUpdateOAFaults(t *testing.T) {
	for _, tc := range []struct {
		name   string
		faults oasim.Faults
		path   string
		want   string
	}{
		{"download error", oasim.Faults{DownloadError: true}, "/oa-5.00.bin", `OA said "ERROR: Unable to download`},
		{"404", oasim.Faults{}, "/nope.bin", `OA said "ERROR: Unable to download the firmware image (HTTP 404)"`},
		{"wrong image", oasim.Faults{}, "/ilo-2.82.bin", "is not Onboard Administrator firmware"},
		{"version unchanged", oasim.Faults{VersionUnchanged: true}, "/oa-5.00.bin", "version after flash is 4.97, want 5.00"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := setup(t, oasim.Config{Version: "4.97", RestartDelay: 100 * time.Millisecond})
			d := f.open(t)
			f.sim.SetFaults(tc.faults)
			_, err := d.Update(context.Background(), driver.Firmware{URL: f.images.URL + tc.path, Version: "5.00"}, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
			noLeak(t, err)
		})
	}
}

func TestAuthRefused(t *testing.T) {
	f := setup(t, oasim.Config{})
	f.sim.SetFaults(oasim.Faults{RefuseAuth: true})
	_, err := NewFactory(f.opts)(context.Background(), f.target)
	if err == nil || !strings.Contains(err.Error(), "unable to authenticate") {
		t.Fatalf("err = %v", err)
	}
	noLeak(t, err)
}

func TestHostKeyMismatch(t *testing.T) {
	f := setup(t, oasim.Config{})
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	k, _ := ssh.NewPublicKey(pub)
	f.target.SSH.KnownHosts = []byte(knownhosts.Line([]string{knownhosts.Normalize(f.sim.Addr())}, k))
	_, err := NewFactory(f.opts)(context.Background(), f.target)
	if !errors.Is(err, sshconn.ErrHostKeyMismatch) {
		t.Fatalf("err = %v, want host key mismatch", err)
	}
	if !strings.Contains(err.Error(), ssh.FingerprintSHA256(f.sim.HostKey())) || !strings.Contains(err.Error(), "oa-1") {
		t.Fatalf("error %q should name the target and the presented key", err)
	}
	if len(f.sim.SourcePorts()) != 1 || f.sim.Flashes() != 0 {
		t.Fatal("expected exactly one refused connection")
	}
	noLeak(t, err)
}

func TestBladeILO(t *testing.T) {
	f := setup(t, oasim.Config{Bays: map[int]string{3: "2.80"}})
	f.target.Bay = 3
	d := f.open(t)
	if v, err := d.Version(context.Background(), driver.ComponentILO); err != nil || v != "2.80" {
		t.Fatalf("Version = %q, %v", v, err)
	}
	res, err := d.Update(context.Background(), driver.Firmware{Component: driver.ComponentILO,
		URL: f.images.URL + "/ilo-2.82.bin", Version: "2.82"}, nil)
	if err != nil || res.VersionBefore != "2.80" || res.VersionAfter != "2.82" {
		t.Fatalf("Update = %+v, %v", res, err)
	}
	if f.sim.ILOFlashes() != 1 || f.sim.Flashes() != 0 || f.sim.Version() != "4.97" {
		t.Fatal("UPDATE ILO must flash the iLO, not the OA")
	}
	f.sim.SetFaults(oasim.Faults{VersionUnchanged: true})
	_, err = d.Update(context.Background(), driver.Firmware{URL: f.images.URL + "/ilo-2.82.bin", Version: "2.90"}, nil)
	if err == nil || !strings.Contains(err.Error(), "want 2.90") {
		t.Fatalf("unchanged iLO version: %v", err)
	}
	f.sim.SetFaults(oasim.Faults{DownloadError: true})
	_, err = d.Update(context.Background(), driver.Firmware{URL: f.images.URL + "/ilo-2.82.bin"}, nil)
	if err == nil || !strings.Contains(err.Error(), "Unable to download") {
		t.Fatalf("download error: %v", err)
	}
}

func TestEmptyBay(t *testing.T) {
	f := setup(t, oasim.Config{Bays: map[int]string{1: "2.80"}})
	f.target.Bay = 5
	d := f.open(t)
	_, err := d.Update(context.Background(), driver.Firmware{URL: f.images.URL + "/ilo-2.82.bin"}, nil)
	if err == nil || !strings.Contains(err.Error(), "bay 5") {
		t.Fatalf("err = %v", err)
	}
}

func TestBadURL(t *testing.T) {
	f := setup(t, oasim.Config{})
	d := f.open(t)
	for _, u := range []string{"", "ftp://x/y", "http://x/a b"} {
		if _, err := d.Update(context.Background(), driver.Firmware{URL: u}, nil); err == nil {
			t.Errorf("URL %q accepted", u)
		}
	}
}

func TestOANeverBack(t *testing.T) {
	f := setup(t, oasim.Config{Version: "4.97", RestartDelay: time.Hour})
	d := f.open(t)
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	_, err := d.Update(ctx, driver.Firmware{URL: f.images.URL + "/oa-5.00.bin"}, nil)
	if err == nil || !strings.Contains(err.Error(), "not back after restart") {
		t.Fatalf("err = %v", err)
	}
}

func TestParse(t *testing.T) {
	if v, err := ParseOAVersion("\tFirmware Ver. : 4.97 Apr 28 2021\r\n", "t"); err != nil || v != "4.97" {
		t.Errorf("ParseOAVersion = %q, %v", v, err)
	}
	if _, err := ParseOAVersion("Invalid Arguments\n", "t"); err == nil || !strings.Contains(err.Error(), `"Invalid Arguments"`) {
		t.Errorf("err = %v", err)
	}
	out := "ROM Version: I36\n\tFirmware Version: 9.99 bogus\n\tManagement Processor Information:\n\tType: iLO4\n\tFirmware Version: 2.80 Jan 25 2022\n"
	if v, err := ParseILOVersion(out, "t", 1); err != nil || v != "2.80" {
		t.Errorf("ParseILOVersion = %q, %v", v, err)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// rule P2: an OA is given the image over HTTP even when the agent serves HTTPS; under
// firmwareServer.tls Required it fails without being asked to flash, saying what to set.
func TestUpdateOAOverHTTPOnly(t *testing.T) {
	f := setup(t, oasim.Config{Version: "4.97"})
	d := f.open(t)
	plain := f.images.URL + "/oa-5.00.bin"
	secure := "https://" + strings.TrimPrefix(plain, "http://")
	_, err := d.Update(context.Background(), driver.Firmware{Component: driver.ComponentOA, URL: plain, SecureURL: secure,
		Version: "5.00", RequireHTTPS: true}, nil)
	if !errors.Is(err, driver.ErrHTTPSRequired) || !strings.Contains(err.Error(), "Onboard Administrator") || !strings.Contains(err.Error(), "Preferred") {
		t.Fatalf("Update under Required: %v, want ErrHTTPSRequired naming the OA and the Preferred setting", err)
	}
	if f.sim.Flashes() != 0 {
		t.Fatalf("the OA flashed %d times under Required", f.sim.Flashes())
	}
	res, err := d.Update(context.Background(), driver.Firmware{Component: driver.ComponentOA, URL: plain, SecureURL: secure, Version: "5.00"}, nil)
	if err != nil || res.VersionAfter != "5.00" {
		t.Fatalf("Update under Preferred: %+v, %v", res, err)
	}
	if got := f.sim.FetchedURLs(); len(got) != 1 || got[0] != plain {
		t.Fatalf("the OA fetched %q, want only %s", got, plain)
	}
}
