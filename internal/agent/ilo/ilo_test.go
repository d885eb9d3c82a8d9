package ilo

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fwops/firmware-operator/internal/testutil/shared"

	"github.com/fwops/firmware-operator/internal/agent/driver"
	"github.com/fwops/firmware-operator/internal/simulator/fwimage"
	similo "github.com/fwops/firmware-operator/internal/simulator/ilo"
)

const (
	user = "fwops"
	pass = "An0ther-secret"
)

func mockupDir(testing.TB) string { return shared.Mockup(shared.DL325) }

// fast keeps the iLO reset and the host POST on, short (about a second in all).
var fast = similo.Timings{Upload: 10 * time.Millisecond, Verify: 10 * time.Millisecond, Write: 10 * time.Millisecond, Update: 60 * time.Millisecond, Steps: 4,
	ResetDelay: 30 * time.Millisecond, ILOReset: 500 * time.Millisecond, HalfUp: 300 * time.Millisecond, POST: 200 * time.Millisecond}

var testOpts = Options{PollInterval: 5 * time.Millisecond, FlashTimeout: 10 * time.Second, VerifyTimeout: 5 * time.Second}

func startSim(t testing.TB, cfg similo.Config) *similo.Sim {
	t.Helper()
	cfg.MockupDir = mockupDir(t)
	cfg.Username, cfg.Password = user, pass
	if cfg.Timings == (similo.Timings{}) {
		cfg.Timings = fast
	}
	return startSimOn(t, "127.0.0.1:0", cfg)
}

func target(s *similo.Sim, typ driver.Type) driver.Target {
	return driver.Target{
		Name: "sim", Type: typ, Address: s.Addr(),
		Credentials: driver.Credentials{Username: user, Password: pass},
		TLS:         driver.TLS{FingerprintSHA256: s.CertFingerprint()},
	}
}

func open(t *testing.T, s *similo.Sim, tg driver.Target) driver.Driver {
	t.Helper()
	reg := driver.Registry{}
	Register(reg, testOpts)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d, err := reg.Open(ctx, tg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func imageServer(t testing.TB, images map[string][]byte) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, ok := images[strings.TrimPrefix(r.URL.Path, "/")]
		if !ok {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(b)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

// recorder collects progress reports.
type recorder struct {
	mu sync.Mutex
	ps []driver.Progress
}

func (r *recorder) report(p driver.Progress) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ps = append(r.ps, p)
}

func (r *recorder) check(t *testing.T) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	last, maxPct, verifying := -1, 0, false
	for _, p := range r.ps {
		switch p.Phase {
		case driver.PhaseFlashing:
			if verifying {
				t.Fatalf("Flashing after Verifying: %+v", r.ps)
			}
			if p.Percent < last {
				t.Fatalf("percent went back: %+v", r.ps)
			}
			last, maxPct = p.Percent, max(maxPct, p.Percent)
		case driver.PhaseVerifying:
			verifying = true
		}
	}
	if maxPct != 100 || !verifying {
		t.Fatalf("progress never reached 100%% then Verifying: %+v", r.ps)
	}
	mid := false
	for _, p := range r.ps {
		mid = mid || (p.Phase == driver.PhaseFlashing && p.Percent > 0 && p.Percent < 100)
	}
	if !mid {
		t.Fatalf("no intermediate percent reported: %+v", r.ps)
	}
}

func TestUpdate(t *testing.T) {
	const nic = "Marvell 2P 25GbE SFP28 QL41232HQCU-HC OCP3 Adapter"
	base := imageServer(t, map[string][]byte{
		"ilo.bin":   fwimage.Build("iLO", "2.99", []byte("x")),
		"rom.bin":   fwimage.Build("SystemROM", "2.68", []byte("y")),
		"nic.fwpkg": fwimage.BuildHeader(fwimage.Header{Component: "SmartComponent", Version: "08.60.1", Target: nic}, []byte("z")),
	})
	tests := []struct {
		name       string
		typ        driver.Type
		cfg        similo.Config
		fw         driver.Firmware
		wantBefore string
		wantAfter  string
		reboot     bool
	}{
		{name: "iLO 4 iLO", typ: driver.TypeILO4, cfg: similo.Config{Model: similo.ILO4},
			fw: driver.Firmware{Component: driver.ComponentILO, URL: base + "/ilo.bin"}, wantBefore: "2.80", wantAfter: "2.99"},
		{name: "iLO 5 iLO, no task", typ: driver.TypeILO5, cfg: similo.Config{Model: similo.ILO5},
			fw: driver.Firmware{Component: driver.ComponentILO, URL: base + "/ilo.bin", Version: "2.99"}, wantBefore: "2.46", wantAfter: "2.99"},
		{name: "iLO 5 SystemROM, task", typ: driver.TypeILO5, cfg: similo.Config{Model: similo.ILO5, SimpleUpdateTask: true},
			fw: driver.Firmware{Component: driver.ComponentSystemROM, URL: base + "/rom.bin"}, wantBefore: "2.52", wantAfter: "2.68", reboot: true},
		{name: "iLO 6 iLO", typ: driver.TypeILO6, cfg: similo.Config{Model: similo.ILO6},
			fw: driver.Firmware{Component: driver.ComponentILO, URL: base + "/ilo.bin"}, wantBefore: "1.55", wantAfter: "2.99"},
		{name: "iLO 5 Smart Component", typ: driver.TypeILO5, cfg: similo.Config{Model: similo.ILO5},
			fw: driver.Firmware{Component: driver.ComponentSmartComponent, URL: base + "/nic.fwpkg", Version: "08.60.1"}, wantBefore: "", wantAfter: "08.60.1", reboot: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := startSim(t, tc.cfg)
			d := open(t, s, target(s, tc.typ))
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if tc.fw.Component != driver.ComponentSmartComponent {
				v, err := d.Version(ctx, tc.fw.Component)
				if err != nil || v != tc.wantBefore {
					t.Fatalf("Version = %q, %v; want %q", v, err, tc.wantBefore)
				}
			}
			var rec recorder
			res, err := d.Update(ctx, tc.fw, rec.report)
			if err != nil {
				t.Fatal(err)
			}
			if res.VersionBefore != tc.wantBefore || res.VersionAfter != tc.wantAfter || res.RebootRequired != tc.reboot || res.NotNeeded {
				t.Fatalf("result %+v", res)
			}
			rec.check(t)
			if st := s.Stats(); st.FlashesCompleted != 1 {
				t.Fatalf("simulator stats %+v", st)
			}
			switch tc.fw.Component {
			case driver.ComponentSystemROM:
				// Staged: the running ROM changes at the next reboot only.
				if v, _ := d.Version(ctx, tc.fw.Component); v != tc.wantBefore || s.StagedROM() != tc.wantAfter {
					t.Fatalf("running ROM %q, staged %q", v, s.StagedROM())
				}
				if !strings.Contains(res.Message, "activates at the next reboot") {
					t.Fatalf("message %q", res.Message)
				}
			case driver.ComponentILO:
				if v, _ := d.Version(ctx, tc.fw.Component); v != tc.wantAfter {
					t.Fatalf("Version after = %q", v)
				}
				if st := s.Stats(); st.ILOResets != 1 {
					t.Fatalf("the iLO did not reset: %+v", st)
				}
			}
		})
	}
}

func TestUpdateFailures(t *testing.T) {
	base := imageServer(t, map[string][]byte{
		"ilo.bin":     fwimage.Build("iLO", "2.99", nil),
		"generic.bin": []byte("\x7fELF not a FWOPS image"),
	})
	tests := []struct {
		name   string
		typ    driver.Type
		cfg    similo.Config
		faults similo.Faults
		fw     driver.Firmware
		check  func(*testing.T, error)
	}{
		{name: "flash ends in Error", typ: driver.TypeILO5, faults: similo.Faults{FlashError: "iLO.2.14.UpdateFailed"},
			fw: driver.Firmware{Component: driver.ComponentILO, URL: base + "/ilo.bin"},
			check: func(t *testing.T, err error) {
				var fe *FlashError
				if !errors.As(err, &fe) || fe.MessageID != "iLO.2.14.UpdateFailed" || !strings.Contains(err.Error(), "iLO.2.14.UpdateFailed") {
					t.Fatalf("err = %v", err)
				}
			}},
		{name: "iLO 4 flash ends in ERROR", typ: driver.TypeILO4, cfg: similo.Config{Model: similo.ILO4}, faults: similo.Faults{FlashError: "iLO.2.14.UpdateFailed"},
			fw: driver.Firmware{Component: driver.ComponentILO, URL: base + "/ilo.bin"},
			check: func(t *testing.T, err error) {
				var fe *FlashError
				if !errors.As(err, &fe) || fe.MessageID != "iLO.2.14.UpdateFailed" {
					t.Fatalf("err = %v", err)
				}
			}},
		{name: "version unchanged", typ: driver.TypeILO5, faults: similo.Faults{VersionUnchanged: true},
			fw: driver.Firmware{Component: driver.ComponentILO, URL: base + "/ilo.bin"},
			check: func(t *testing.T, err error) {
				if !errors.Is(err, ErrVersionUnchanged) || !strings.Contains(err.Error(), "2.46") {
					t.Fatalf("err = %v", err)
				}
			}},
		{name: "generic image changes nothing", typ: driver.TypeILO5,
			fw: driver.Firmware{Component: driver.ComponentILO, URL: base + "/generic.bin"},
			check: func(t *testing.T, err error) {
				if !errors.Is(err, ErrVersionUnchanged) {
					t.Fatalf("err = %v", err)
				}
			}},
		{name: "version differs from the job's", typ: driver.TypeILO5,
			fw: driver.Firmware{Component: driver.ComponentILO, URL: base + "/ilo.bin", Version: "3.01"},
			check: func(t *testing.T, err error) {
				if !errors.Is(err, ErrVersionUnchanged) || !strings.Contains(err.Error(), `"2.99"`) || !strings.Contains(err.Error(), `"3.01"`) {
					t.Fatalf("err = %v", err)
				}
			}},
		{name: "image not found", typ: driver.TypeILO5,
			fw: driver.Firmware{Component: driver.ComponentILO, URL: base + "/missing.bin"},
			check: func(t *testing.T, err error) {
				var fe *FlashError
				if !errors.As(err, &fe) || fe.MessageID != similo.MsgDownloadFailed {
					t.Fatalf("err = %v", err)
				}
			}},
		{name: "SimpleUpdate refused with 5xx", typ: driver.TypeILO5,
			fw: driver.Firmware{Component: driver.ComponentILO, URL: base + "/ilo.bin"},
			// The version read before the flash tries Managers/1 then the inventory: both fail.
			faults: similo.Faults{FailNext: 2, FailStatus: 500},
			check: func(t *testing.T, err error) {
				if err == nil || !strings.Contains(err.Error(), "HTTP 500") {
					t.Fatalf("err = %v", err)
				}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := startSim(t, tc.cfg)
			d := open(t, s, target(s, tc.typ))
			s.SetFaults(tc.faults)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err := d.Update(ctx, tc.fw, nil)
			tc.check(t, err)
		})
	}
}

func TestNotNeeded(t *testing.T) {
	s := startSim(t, similo.Config{})
	d := open(t, s, target(s, driver.TypeILO5))
	res, err := d.Update(context.Background(), driver.Firmware{Component: driver.ComponentILO, URL: "http://127.0.0.1:1/unused", Version: "2.46"}, nil)
	if err != nil || !res.NotNeeded || res.VersionAfter != "2.46" {
		t.Fatalf("res %+v, err %v", res, err)
	}
	if st := s.Stats(); st.FlashesStarted != 0 {
		t.Fatalf("flashed although not needed: %+v", st)
	}
}

func TestSlowDownloadCompletes(t *testing.T) {
	s := startSim(t, similo.Config{})
	base := imageServer(t, map[string][]byte{"ilo.bin": fwimage.Build("iLO", "2.72", make([]byte, 2000))})
	s.SetFaults(similo.Faults{DownloadBytesPerSec: 8000})
	d := open(t, s, target(s, driver.TypeILO5))
	start := time.Now()
	res, err := d.Update(context.Background(), driver.Firmware{Component: driver.ComponentILO, URL: base + "/ilo.bin"}, nil)
	if err != nil || res.VersionAfter != "2.72" {
		t.Fatalf("res %+v, err %v", res, err)
	}
	if el := time.Since(start); el < 200*time.Millisecond {
		t.Fatalf("took %s: throttle not applied", el)
	}
}

func TestFlashTimeout(t *testing.T) {
	s := startSim(t, similo.Config{Timings: similo.Timings{Update: 5 * time.Second, Steps: 2}})
	base := imageServer(t, map[string][]byte{"ilo.bin": fwimage.Build("iLO", "2.99", nil)})
	reg := driver.Registry{}
	o := testOpts
	o.FlashTimeout = 200 * time.Millisecond
	Register(reg, o)
	d, err := reg.Open(context.Background(), target(s, driver.TypeILO5))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	_, err = d.Update(context.Background(), driver.Firmware{Component: driver.ComponentILO, URL: base + "/ilo.bin"}, nil)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "Updating") {
		t.Fatalf("err = %v", err)
	}
}

// TestSourcePortAndConcurrency runs three targets at once, each from its own assigned source
// port (rule P4), and checks the fleet saw them flash concurrently.
func TestSourcePortAndConcurrency(t *testing.T) {
	cfg := similo.Config{MockupDir: mockupDir(t), Username: user, Password: pass,
		Timings: similo.Timings{Upload: 10 * time.Millisecond, Update: 300 * time.Millisecond, Steps: 3,
			ResetDelay: fast.ResetDelay, ILOReset: fast.ILOReset, HalfUp: fast.HalfUp}}
	fleet, err := similo.StartFleet(cfg, 3, "127.0.0.1:0", true)
	if err != nil {
		t.Fatal(err)
	}
	defer fleet.Close()
	base := imageServer(t, map[string][]byte{"ilo.bin": fwimage.Build("iLO", "2.99", nil)})
	var ports []int
	var lns []net.Listener
	for range fleet.Sims {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		// Held until every port is chosen, so that all differ; closed before dialling.
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		ln.Close()
	}
	var wg sync.WaitGroup
	errs := make([]error, len(fleet.Sims))
	for i, s := range fleet.Sims {
		tg := target(s, driver.TypeILO5)
		tg.LocalAddress, tg.LocalPort = "127.0.0.1", ports[i]
		wg.Add(1)
		go func() {
			defer wg.Done()
			reg := driver.Registry{}
			Register(reg, testOpts)
			d, err := reg.Open(context.Background(), tg)
			if err != nil {
				errs[i] = err
				return
			}
			defer d.Close()
			_, errs[i] = d.Update(context.Background(), driver.Firmware{Component: driver.ComponentILO, URL: base + "/ilo.bin", Version: "2.99"}, nil)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("target %d: %v", i, err)
		}
	}
	for i, s := range fleet.Sims {
		for _, p := range s.SourcePorts() {
			if p != ports[i] {
				t.Fatalf("target %d: connection from port %d, want %d", i, p, ports[i])
			}
		}
		if len(s.SourcePorts()) == 0 {
			t.Fatalf("target %d saw no connection", i)
		}
	}
	if m := fleet.MaxConcurrentFlashes(); m != 3 {
		t.Fatalf("max concurrent flashes = %d, want 3", m)
	}
}

func TestNormalizeVersion(t *testing.T) {
	for in, want := range map[string]string{
		"iLO 5 v2.46":            "2.46",
		"2.46 May 11 2021":       "2.46",
		"A43 v2.52 (10/29/2021)": "2.52",
		"08.50.78":               "08.50.78",
		"0x0D":                   "0x0D",
		"  ":                     "",
	} {
		if got := NormalizeVersion(in); got != want {
			t.Errorf("NormalizeVersion(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestFactoryRefusesOtherTypes(t *testing.T) {
	_, err := NewFactory(testOpts)(context.Background(), driver.Target{Name: "oa", Type: driver.TypeOA, Address: "127.0.0.1:1"})
	if !errors.Is(err, driver.ErrUnsupported) {
		t.Fatalf("err = %v", err)
	}
}
