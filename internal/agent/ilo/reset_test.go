package ilo

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/onsi/gomega"

	"github.com/fwops/firmware-operator/internal/agent/driver"
	"github.com/fwops/firmware-operator/internal/simulator/fwimage"
	similo "github.com/fwops/firmware-operator/internal/simulator/ilo"
)

func openWith(t *testing.T, s *similo.Sim, opts Options) driver.Driver {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d, err := NewFactory(opts)(ctx, target(s, driver.TypeILO5))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// The iLO resets after flashing itself and forgets the driver's session. Without logging in
// again, the verification reads 401 until its deadline and a flash the iLO installed ends
// Failed (then retried: a second flash); with it, the driver verifies the new version.
func TestILOResetNeedsRelogin(t *testing.T) {
	base := imageServer(t, map[string][]byte{"ilo.bin": fwimage.Build("iLO", "2.99", nil)})
	fw := driver.Firmware{Component: driver.ComponentILO, URL: base + "/ilo.bin", Version: "2.99"}
	for _, relogin := range []bool{false, true} {
		s := startSim(t, similo.Config{SimpleUpdateTask: true})
		opts := testOpts
		opts.NoRelogin = !relogin
		opts.VerifyTimeout = 3 * time.Second
		d := openWith(t, s, opts)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		res, err := d.Update(ctx, fw, nil)
		cancel()
		if !relogin {
			if err == nil || !strings.Contains(err.Error(), "NoValidSession") {
				t.Fatalf("without re-login: res %+v, err %v; want a 401 NoValidSession failure", res, err)
			}
			continue
		}
		if err != nil || res.VersionAfter != "2.99" {
			t.Fatalf("with re-login: res %+v, err %v", res, err)
		}
		if n := d.(*Driver).Client().Relogins(); n < 1 {
			t.Fatalf("relogins = %d", n)
		}
		if st := s.Stats(); st.FlashRequests != 1 || st.ILOResets != 1 {
			t.Fatalf("stats %+v", st)
		}
	}
}

// A new agent that finds a flash running (its predecessor stopped mid-flash) follows it and
// never asks for a second one.
func TestResumedAgentFollowsTheRunningFlash(t *testing.T) {
	s := startSim(t, similo.Config{Timings: similo.Timings{Upload: 10 * time.Millisecond, Update: 800 * time.Millisecond, Steps: 8,
		ResetDelay: fast.ResetDelay, ILOReset: fast.ILOReset, HalfUp: fast.HalfUp}})
	base := imageServer(t, map[string][]byte{"ilo.bin": fwimage.Build("iLO", "2.99", nil)})
	fw := driver.Firmware{Component: driver.ComponentILO, URL: base + "/ilo.bin", Version: "2.99"}

	// The first agent starts the flash and stops while the iLO is Updating.
	first := openWith(t, s, testOpts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := first.Update(ctx, fw, func(p driver.Progress) {
			if p.Message == "Updating" {
				cancel()
			}
		})
		done <- err
	}()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("first agent: %v", err)
	}
	if st := s.State(); st != "Updating" {
		t.Fatalf("state after the first agent stopped: %s", st)
	}

	second := openWith(t, s, testOpts)
	var rec recorder
	res, err := second.Update(context.Background(), fw, rec.report)
	if err != nil || res.VersionAfter != "2.99" {
		t.Fatalf("second agent: res %+v, err %v", res, err)
	}
	if st := s.Stats(); st.FlashRequests != 1 || st.FlashesStarted != 1 || st.FlashesCompleted != 1 {
		t.Fatalf("the second agent asked for another flash: %+v", st)
	}
	if len(rec.ps) == 0 || !strings.Contains(rec.ps[0].Message, "already running") {
		t.Fatalf("progress %+v", rec.ps)
	}
}

// A system ROM flash ends staged (Succeeded, reboot required); asked again, the driver does not
// flash it a second time; with RebootIfRequired it reboots the host and verifies after POST.
func TestSystemROMStagedThenRebooted(t *testing.T) {
	s := startSim(t, similo.Config{SimpleUpdateTask: true})
	base := imageServer(t, map[string][]byte{"rom.bin": fwimage.Build("SystemROM", "2.68", nil)})
	fw := driver.Firmware{Component: driver.ComponentSystemROM, URL: base + "/rom.bin", Version: "2.68"}
	d := openWith(t, s, testOpts)
	ctx := context.Background()

	res, err := d.Update(ctx, fw, nil)
	if err != nil || !res.RebootRequired || res.VersionAfter != "2.68" || res.VersionBefore != "2.52" ||
		!strings.Contains(res.Message, "activates at the next reboot") {
		t.Fatalf("first: res %+v, err %v", res, err)
	}
	res, err = d.Update(ctx, fw, nil)
	if err != nil || !res.RebootRequired || !strings.Contains(res.Message, "staged by an earlier flash") {
		t.Fatalf("again: res %+v, err %v", res, err)
	}
	if st := s.Stats(); st.FlashRequests != 1 || st.HostBoots != 0 {
		t.Fatalf("stats %+v", st)
	}

	fw.RebootIfRequired = true
	var rec recorder
	res, err = d.Update(ctx, fw, rec.report)
	if err != nil || res.RebootRequired || res.VersionAfter != "2.68" || !strings.Contains(res.Message, "rebooted") {
		t.Fatalf("with reboot: res %+v, err %v", res, err)
	}
	if v, _ := d.Version(ctx, driver.ComponentSystemROM); v != "2.68" {
		t.Fatalf("running ROM after the reboot: %q", v)
	}
	if st := s.Stats(); st.FlashRequests != 1 || st.HostBoots != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// pollReads wants VerifyReads good reads in a row: an error or a bad read starts again.
func TestPollReadsWantsConsecutiveReads(t *testing.T) {
	d := &Driver{opts: Options{PollInterval: time.Millisecond, VerifyReads: 3}.withDefaults()}
	script := []error{nil, nil, errors.New("EOF"), nil, errNotYet, nil, nil, nil}
	calls := 0
	err := d.pollReads(context.Background(), 5*time.Second, func(context.Context) (bool, error) {
		e := script[calls]
		calls++
		if errors.Is(e, errNotYet) {
			return false, nil
		}
		return e == nil, e
	})
	if err != nil || calls != len(script) {
		t.Fatalf("err %v after %d reads, want success after %d", err, calls, len(script))
	}
}

// A driver that polls slower than the iLO leaves Complete never sees Complete: it sees the
// connection drop, then UpdateService answer 503 while the iLO comes back, then Idle. That is the
// reset, not a failure.
func TestFollowThroughTheResetWithoutSeeingComplete(t *testing.T) {
	s := startSim(t, similo.Config{SimpleUpdateTask: true, Timings: similo.Timings{Upload: 10 * time.Millisecond, Update: 40 * time.Millisecond,
		ResetDelay: time.Millisecond, ILOReset: 400 * time.Millisecond, HalfUp: 400 * time.Millisecond}})
	base := imageServer(t, map[string][]byte{"ilo.bin": fwimage.Build("iLO", "2.99", nil)})
	opts := testOpts
	opts.PollInterval = 150 * time.Millisecond
	d := openWith(t, s, opts)
	var rec recorder
	res, err := d.Update(context.Background(), driver.Firmware{Component: driver.ComponentILO, URL: base + "/ilo.bin"}, rec.report)
	if err != nil || res.VersionAfter != "2.99" {
		t.Fatalf("res %+v, err %v", res, err)
	}
	outage := false
	for _, p := range rec.ps {
		outage = outage || strings.Contains(p.Message, "not answering")
	}
	if !outage {
		t.Fatalf("the driver never saw the iLO go away: %+v", rec.ps)
	}
	if st := s.Stats(); st.FlashRequests != 1 || st.ILOResets != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// An agent that comes to an iLO while it resets (another job flashed the iLO a moment ago) waits
// for it to come back, then reads the update state before it asks for anything: opened while the
// iLO drops every connection, and while it is half up (UpdateService answers 503), a system ROM
// flash ends staged, one flash request for it. Without the wait, the login fails on the dropped
// connection (down) and the read of the update state on the 503 (half up).
func TestOpenWhileTheILOResets(t *testing.T) {
	base := imageServer(t, map[string][]byte{
		"ilo.bin": fwimage.Build("iLO", "2.99", nil),
		"rom.bin": fwimage.Build("SystemROM", "2.68", nil),
	})
	iloFW := driver.Firmware{Component: driver.ComponentILO, URL: base + "/ilo.bin", Version: "2.99"}
	romFW := driver.Firmware{Component: driver.ComponentSystemROM, URL: base + "/rom.bin", Version: "2.68"}
	opts := testOpts
	opts.ComeBackBackoff, opts.MaxComeBackBackoff = 20*time.Millisecond, 100*time.Millisecond
	for _, phase := range []string{"down", "halfUp"} {
		t.Run(phase, func(t *testing.T) {
			s := startSim(t, similo.Config{Timings: similo.Timings{Upload: 10 * time.Millisecond, Update: 40 * time.Millisecond,
				ResetDelay: time.Millisecond, ILOReset: 1500 * time.Millisecond, HalfUp: 3 * time.Second, POST: 200 * time.Millisecond}})

			// Another agent flashes the iLO's own firmware; the iLO resets after it.
			other := openWith(t, s, opts)
			octx, ocancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { _, err := other.Update(octx, iloFW, nil); done <- err }()
			gomega.NewWithT(t).Eventually(s.ILOPhase).WithTimeout(time.Minute).WithPolling(time.Millisecond).
				Should(gomega.Equal(phase), "the iLO's reset phase")
			ocancel()
			<-done

			var rec recorder
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			ctx = driver.WithReporter(ctx, rec.report)
			d, err := NewFactory(opts)(ctx, target(s, driver.TypeILO5))
			if err != nil {
				t.Fatalf("opening the resetting iLO: %v", err)
			}
			t.Cleanup(func() { d.Close() })
			res, err := d.Update(ctx, romFW, rec.report)
			if err != nil || !res.RebootRequired || res.VersionAfter != "2.68" {
				t.Fatalf("ROM flash after the reset: res %+v, err %v", res, err)
			}
			if st := s.Stats(); st.FlashRequests != 2 || st.ILOResets != 1 { // the iLO's own flash, then the ROM
				t.Fatalf("stats %+v; want 2 flash requests (iLO, then ROM) and 1 reset", st)
			}
			waited := false
			for _, p := range rec.ps {
				waited = waited || strings.Contains(p.Message, "not answering") && strings.Contains(p.Message, "waiting up to")
			}
			if !waited {
				t.Fatalf("no progress said the driver waited for the iLO: %+v", rec.ps)
			}
		})
	}
}

// rollout.reboot: IfRequired reboots only inside the job's maintenance window: when the window
// ends before a reboot and POST could (RebootTimeout), the ROM stays staged and the message says
// why; with room left, the server is rebooted.
func TestRebootOnlyInsideTheWindow(t *testing.T) {
	s := startSim(t, similo.Config{SimpleUpdateTask: true})
	base := imageServer(t, map[string][]byte{"rom.bin": fwimage.Build("SystemROM", "2.68", nil)})
	opts := testOpts
	opts.RebootTimeout = 10 * time.Minute
	d := openWith(t, s, opts)
	fw := driver.Firmware{Component: driver.ComponentSystemROM, URL: base + "/rom.bin", Version: "2.68",
		RebootIfRequired: true, RebootBy: time.Now().Add(5 * time.Minute)}
	res, err := d.Update(context.Background(), fw, nil)
	if err != nil || !res.RebootRequired || res.VersionAfter != "2.68" || !strings.Contains(res.Message, "activates at the next reboot") ||
		!strings.Contains(res.Message, "not rebooted") || !strings.Contains(res.Message, "maintenance window ends at") {
		t.Fatalf("window ending in 5m, reboot taking up to 10m: res %+v, err %v; want staged, not rebooted, the window named", res, err)
	}
	if st := s.Stats(); st.FlashRequests != 1 || st.HostBoots != 0 {
		t.Fatalf("stats %+v; want one flash, no reboot", st)
	}

	fw.RebootBy = time.Now().Add(time.Hour)
	res, err = d.Update(context.Background(), fw, nil)
	if err != nil || res.RebootRequired || res.VersionAfter != "2.68" || !strings.Contains(res.Message, "rebooted gracefully") {
		t.Fatalf("window ending in 1h: res %+v, err %v; want rebooted", res, err)
	}
	if st := s.Stats(); st.FlashRequests != 1 || st.HostBoots != 1 {
		t.Fatalf("stats %+v; want still one flash, one reboot", st)
	}
}

// whenUp gives up after ComeBackTimeout with a message that says what to check, and does not
// retry what is not the iLO being away (a refused login, say).
func TestWhenUpBounds(t *testing.T) {
	d := &Driver{opts: Options{ComeBackTimeout: 100 * time.Millisecond, ComeBackBackoff: time.Millisecond, MaxComeBackBackoff: 10 * time.Millisecond}.withDefaults()}
	calls := 0
	err := d.whenUp(context.Background(), "logging in", func(driver.Progress) {}, func(context.Context) error {
		calls++
		return fmt.Errorf("dial: %w", syscall.ECONNREFUSED)
	})
	if err == nil || !strings.Contains(err.Error(), "has not answered for 100ms") || !strings.Contains(err.Error(), "reachable") || calls < 3 {
		t.Fatalf("after %d attempts: %v; want several attempts, then the bound and what to check", calls, err)
	}
	calls = 0
	refused := errors.New("HTTP 401 Unauthorized")
	if err := d.whenUp(context.Background(), "logging in", func(driver.Progress) {}, func(context.Context) error { calls++; return refused }); !errors.Is(err, refused) || calls != 1 {
		t.Fatalf("a refused login: %v after %d attempts; want it at once", err, calls)
	}
}
