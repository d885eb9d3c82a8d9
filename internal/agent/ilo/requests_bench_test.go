package ilo

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/onsi/gomega"

	"github.com/fwops/firmware-operator/internal/agent/driver"
	"github.com/fwops/firmware-operator/internal/simulator/fwimage"
	similo "github.com/fwops/firmware-operator/internal/simulator/ilo"
)

// requestsTimings make one flash of an iLO 5's own firmware last about 4 s and its reset about
// 4 s: long enough for both clients to poll at their own pace (the driver every 2 s, its
// default; ilorest every 0.5 s).
var requestsTimings = similo.Timings{Upload: time.Second, Verify: 500 * time.Millisecond, Write: 500 * time.Millisecond,
	Update: 2 * time.Second, Steps: 4, ResetDelay: time.Second, ILOReset: 2 * time.Second, HalfUp: time.Second}

// BenchmarkRedfishRequestsPerFlash counts, as the simulator counts them, the Redfish requests
// one flash of an iLO 5's own firmware costs: the agent's driver with the agent's options (open,
// read the version, update, close: what the agent does per target) against HPE's ilorest
// firmwareupdate (which logs in and out itself) on the same image, same simulator timings.
// requests/flash are the requests served; refused/flash those the reset refused (the driver
// follows the reset and reads the new version back; ilorest returns at Complete).
// impl=agent-events is the agent's driver with a rule P5 receive port: the iLO's Redfish events
// wake it and it polls every 10 s as a fallback (events.go). Run with -benchtime=1x.
func BenchmarkRedfishRequestsPerFlash(b *testing.B) {
	url := imageServer(b, map[string][]byte{"ilo5_299.bin": fwimage.Build("iLO", "2.99", []byte("payload"))}) + "/ilo5_299.bin"
	// agent flashes as the agent does per target; with events, the iLO (on an address of its
	// own) posts Redfish events to a rule P5 receive port.
	agent := func(b *testing.B, events bool) {
		for b.Loop() {
			tg := driver.Target{Name: "sim", Type: driver.TypeILO5,
				Credentials: driver.Credentials{Username: user, Password: pass}}
			var s *similo.Sim
			if events {
				s = startSimOn(b, "127.0.0.2:0", similo.Config{Model: similo.ILO5, Timings: requestsTimings})
				tg.Receive = receivePort(b)
			} else {
				s = startSim(b, similo.Config{Model: similo.ILO5, Timings: requestsTimings})
			}
			tg.Address, tg.TLS = s.Addr(), driver.TLS{FingerprintSHA256: s.CertFingerprint()}
			reg := driver.Registry{}
			Register(reg, Options{})
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			d, err := reg.Open(ctx, tg)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := d.Version(ctx, driver.ComponentILO); err != nil {
				b.Fatal(err)
			}
			if _, err := d.Update(ctx, driver.Firmware{Component: driver.ComponentILO, URL: url, Version: "2.99"}, func(driver.Progress) {}); err != nil {
				b.Fatal(err)
			}
			d.Close()
			cancel()
			if st := s.Stats(); events && (st.EventsDelivered == 0 || st.Subscriptions != 0) {
				b.Fatalf("events: %d delivered, %d subscriptions left", st.EventsDelivered, st.Subscriptions)
			}
			reportRequests(b, s)
		}
	}
	b.Run("impl=agent", func(b *testing.B) { agent(b, false) })
	b.Run("impl=agent-events", func(b *testing.B) { agent(b, true) })
	b.Run("impl=ilorest", func(b *testing.B) {
		bin, err := exec.LookPath("ilorest")
		if err != nil {
			b.Fatalf("ilorest, the reference, is missing (apt-get install -y ilorest): %v", err)
		}
		for b.Loop() {
			s := startSim(b, similo.Config{Model: similo.ILO5, Timings: requestsTimings})
			home := b.TempDir()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			cmd := exec.CommandContext(ctx, bin, "--nologo", "--cache-dir", home+"/cache",
				"firmwareupdate", url, "--url", s.URL(), "-u", user, "-p", pass)
			cmd.Env, cmd.Dir = append(os.Environ(), "HOME="+home), home
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			err := cmd.Run()
			cancel()
			if err != nil || !strings.Contains(out.String(), "Firmware update has completed") {
				b.Fatalf("ilorest firmwareupdate: %v\n%s", err, out.String())
			}
			// Nothing more is sent; let the reset end so that both counts cover the same flash.
			gomega.NewWithT(b).Eventually(func() bool { return s.Stats().ILOResets >= 1 && s.ILOPhase() == "" }).
				WithTimeout(time.Minute).Should(gomega.BeTrue(), "the iLO back from its reset")
			reportRequests(b, s)
		}
	})
}

func reportRequests(b *testing.B, s *similo.Sim) {
	b.Helper()
	st := s.Stats()
	if st.FlashesStarted != 1 || st.FlashesCompleted != 1 || st.FlashRequests != 1 {
		b.Fatalf("want exactly one flash asked and completed: %+v", st)
	}
	b.ReportMetric(float64(st.Requests), "requests/flash")
	b.ReportMetric(float64(st.ResetRefused), "refused/flash")
}
