package runner

import (
	"context"
	"crypto/tls"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/onsi/gomega"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
	"github.com/fwops/firmware-operator/internal/agent/driver"
)

// startUnclaimed runs the fixture's agent in follow mode with every target assigned on its
// pod and none claimed yet: the agent reads them and waits for the controller's claim.
func (f *fixture) startUnclaimed(t *testing.T, mod func(*Deps)) (claimAll func(), stop func()) {
	t.Helper()
	f.cfg.Follow = true
	assigned := f.cfg.Targets
	f.cfg.Targets = nil
	pc, _ := followPod(t, assigned)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	d := Deps{Client: f.c, Drivers: f.fake.Registry(), MinWriteInterval: time.Hour, Log: slog.New(slog.NewJSONHandler(f.logs, nil)),
		Assignments: PodAssignments{Client: pc, Namespace: testNS, Pod: "agent-pod"}}
	if mod != nil {
		mod(&d)
	}
	go func() { done <- Run(ctx, f.cfg, d) }()
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	t.Cleanup(stop)
	return func() { f.claim(t, "agent-pod", assigned...) }, stop
}

// waitFor waits, on the condition and not on a clock, until cond holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	gomega.NewWithT(t).Eventually(cond).WithTimeout(time.Minute).WithPolling(5*time.Millisecond).Should(gomega.BeTrue(), "never: %s", what)
}

// The job's image is fetched and verified as the agent starts, while its first targets wait
// for their claims, not by the first claimed target on its way to the flash request; and
// once for all of them.
func TestImageFetchedOnceBeforeAnyClaim(t *testing.T) {
	f := newFixture(t, 3, driver.FakeBehavior{Version: "1.0"})
	claimAll, stop := f.startUnclaimed(t, nil)
	waitFor(t, "the image verified before any target was claimed", func() bool {
		return strings.Contains(f.logs.String(), `"msg":"firmware image verified"`)
	})
	if n := f.fake.Opens("t0") + f.fake.Opens("t1") + f.fake.Opens("t2"); n != 0 {
		t.Fatalf("%d targets opened before their claim", n)
	}
	claimAll()
	for _, tg := range []string{"t0", "t1", "t2"} {
		f.waitPhase(t, tg, fwv1.TargetPhaseSucceeded)
	}
	stop()
	if n := strings.Count(f.logs.String(), `"msg":"firmware image verified"`); n != 1 {
		t.Errorf("the image was fetched and verified %d times for 3 targets, want once", n)
	}
}

// The agent's certificate (rule P2's HTTPS) is made while its first targets wait for their
// claims, not by the first claimed target on its way to the flash request.
func TestCertificateMadeBeforeAnyClaim(t *testing.T) {
	f := newFixture(t, 2, driver.FakeBehavior{Version: "1.0"})
	f.cfg.FirmwareTLS = fwv1.FirmwareServerTLSPreferred
	var certs atomic.Int32
	claimAll, stop := f.startUnclaimed(t, func(d *Deps) { d.OnCertificate = func(tls.Certificate) { certs.Add(1) } })
	waitFor(t, "the certificate made before any target was claimed", func() bool { return certs.Load() > 0 })
	claimAll()
	f.waitPhase(t, "t0", fwv1.TargetPhaseSucceeded)
	f.waitPhase(t, "t1", fwv1.TargetPhaseSucceeded)
	stop()
	if n := certs.Load(); n != 1 {
		t.Errorf("%d certificates made, want one per agent", n)
	}
}

// A target logs in and reads its version while the agent is still making its certificate
// (an RSA key, slow on a busy node): only the flash request needs it, through the firmware
// server's HTTPS URL and the receive port's listener (rule P5), which asks for it on the
// target's first connection.
func TestLoginDoesNotWaitForTheCertificate(t *testing.T) {
	f := newFixture(t, 1, driver.FakeBehavior{Version: "1.0"})
	f.cfg.FirmwareTLS = fwv1.FirmwareServerTLSPreferred
	f.cfg.Ports.Reverse = freePorts(t, 1) // the slot's receive port: its listener presents the certificate
	var waited atomic.Bool
	claimAll, stop := f.startUnclaimed(t, func(d *Deps) {
		d.OnCertificate = func(tls.Certificate) {
			// Held until the target has read its version; a login that waits for the
			// certificate never gets there.
			// Off the test's goroutine: a timeout is recorded, not failed here.
			g := gomega.NewGomega(func(string, ...int) { waited.Store(true) })
			g.Eventually(func() bool { return strings.Contains(f.logs.String(), `"msg":"current version read"`) }).
				WithTimeout(time.Minute).WithPolling(5 * time.Millisecond).Should(gomega.BeTrue())
		}
	})
	claimAll()
	f.waitPhase(t, "t0", fwv1.TargetPhaseSucceeded)
	stop()
	if waited.Load() {
		t.Error("the target read its version only after the agent's certificate was made")
	}
	if f.fake.Flashes("t0") != 1 {
		t.Errorf("t0 flashed %d times, want once", f.fake.Flashes("t0"))
	}
}
