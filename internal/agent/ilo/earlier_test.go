package ilo

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/fwops/firmware-operator/internal/agent/driver"
	"github.com/fwops/firmware-operator/internal/simulator/fwimage"
	similo "github.com/fwops/firmware-operator/internal/simulator/ilo"
)

// An agent killed between the iLO's Complete and its reset leaves the iLO at Complete with the
// old version. The retry must wait for that reset, not ask for the flash a second time.
func TestRetryAfterCompleteWaitsForTheReset(t *testing.T) {
	tm := fast
	tm.ResetDelay = 1500 * time.Millisecond // room to stop the first agent at Complete
	s := startSim(t, similo.Config{Timings: tm})
	base := imageServer(t, map[string][]byte{"ilo.bin": fwimage.Build("iLO", "2.99", nil)})
	fw := driver.Firmware{Component: driver.ComponentILO, URL: base + "/ilo.bin", Version: "2.99"}

	first := openWith(t, s, testOpts)
	ctx, cancel := context.WithCancel(context.Background())
	_, err := first.Update(ctx, fw, func(p driver.Progress) {
		if p.Message == "Complete" {
			cancel()
		}
	})
	cancel()
	if err == nil {
		t.Fatal("the first agent finished: it was to be stopped at Complete")
	}
	if st := s.State(); st != "Complete" {
		t.Fatalf("state after the first agent stopped: %s, want Complete (before the reset)", st)
	}

	second := openWith(t, s, testOpts)
	var rec recorder
	fw.EarlierAttempt = true
	res, err := second.Update(context.Background(), fw, rec.report)
	if err != nil || res.VersionAfter != "2.99" {
		t.Fatalf("retry: res %+v, err %v", res, err)
	}
	if st := s.Stats(); st.FlashRequests != 1 || st.ILOResets != 1 {
		t.Fatalf("the retry asked for another flash: %+v", st)
	}
	if !strings.Contains(rec.ps[0].Message, "an earlier attempt of this job may have asked for it") {
		t.Fatalf("progress %+v", rec.ps)
	}
}

// A Complete left by an earlier flash of another component (a staged system ROM) is stale: the
// retry waits EarlierFlashWait for a reset that does not come, then asks for its flash.
func TestRetryAfterAStaleCompleteFlashes(t *testing.T) {
	s := startSim(t, similo.Config{})
	base := imageServer(t, map[string][]byte{
		"rom.bin": fwimage.Build("SystemROM", "2.68", nil),
		"ilo.bin": fwimage.Build("iLO", "2.99", nil),
	})
	opts := testOpts
	opts.EarlierFlashWait = 300 * time.Millisecond
	d := openWith(t, s, opts)
	ctx := context.Background()
	if _, err := d.Update(ctx, driver.Firmware{Component: driver.ComponentSystemROM, URL: base + "/rom.bin", Version: "2.68"}, nil); err != nil {
		t.Fatal(err)
	}
	if st := s.State(); st != "Complete" {
		t.Fatalf("state after the ROM flash: %s, want Complete", st)
	}
	res, err := d.Update(ctx, driver.Firmware{Component: driver.ComponentILO, URL: base + "/ilo.bin", Version: "2.99", EarlierAttempt: true}, nil)
	if err != nil || res.VersionAfter != "2.99" {
		t.Fatalf("iLO flash after the ROM's: res %+v, err %v", res, err)
	}
	if st := s.Stats(); st.FlashRequests != 2 || st.ILOResets != 1 {
		t.Fatalf("stats %+v, want the ROM's flash and the iLO's", st)
	}
}
