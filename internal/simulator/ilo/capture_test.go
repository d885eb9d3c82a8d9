package ilo

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/onsi/gomega"

	"github.com/fwops/firmware-operator/internal/simulator/fwimage"
	"github.com/fwops/firmware-operator/internal/testutil/shared"
)

// The package's tests share one parsed capture per mockup folder, as a fleet does, so that a
// write that bypasses tree.edit shows: TestMain fails the run when a shared capture changed.
var (
	capturesMu sync.Mutex
	captures   = map[string]*sharedCapture{}
)

type sharedCapture struct {
	c      *Capture
	digest string
}

// testCapture is the shared capture of dir, its bases of every model built and fingerprinted.
func testCapture(t testing.TB, dir string) *Capture {
	t.Helper()
	capturesMu.Lock()
	defer capturesMu.Unlock()
	if sc, ok := captures[dir]; ok {
		return sc.c
	}
	c := loadCapture(t, dir)
	captures[dir] = &sharedCapture{c: c, digest: captureDigest(c)}
	return c
}

// loadCapture parses dir and builds the bases of every model, so that a digest taken now
// covers everything the capture will share.
func loadCapture(t testing.TB, dir string) *Capture {
	t.Helper()
	c, err := LoadCapture(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []Model{ILO4, ILO5, ILO6} {
		c.newTree(m)
	}
	return c
}

// captureDigest fingerprints everything a Capture shares: the parsed documents and the
// per-model bases.
func captureDigest(c *Capture) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	h := sha256.New()
	b, err := json.Marshal(c.docs) // map keys are sorted
	if err != nil {
		panic(err)
	}
	h.Write(b)
	h.Write(c.metadata)
	for _, m := range slices.Sorted(maps.Keys(c.bases)) {
		b, err := json.Marshal(c.bases[m])
		if err != nil {
			panic(err)
		}
		fmt.Fprintf(h, "%s:", m)
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// changedCaptures lists the shared captures whose documents differ from when they were loaded.
func changedCaptures() []string {
	capturesMu.Lock()
	defer capturesMu.Unlock()
	var out []string
	for dir, sc := range captures {
		if captureDigest(sc.c) != sc.digest {
			out = append(out, dir)
		}
	}
	return out
}

func TestMain(m *testing.M) {
	code := m.Run()
	if changed := changedCaptures(); len(changed) > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: the tests changed the shared capture of %s: a write went through tree.get instead of tree.edit\n",
			strings.Join(changed, ", "))
		code = 1
	}
	os.Exit(code)
}

// TestSimulatorsShareOneCapture flashes, logs in to and reboots the host of one of two
// simulators made from one capture: the other serves the capture unchanged, and so does the
// capture.
func TestSimulatorsShareOneCapture(t *testing.T) {
	c := loadCapture(t, mockupDir(t))
	digest := captureDigest(c)

	a := startTest(t, Config{Capture: c})
	b := startTest(t, Config{Capture: c})
	ca := httpClient(t, a)
	resp, _ := call(t, ca, "POST", a.URL()+sessionsPath, map[string]string{"UserName": testUser, "Password": testPass}, map[string]string{"noauth": "1"})
	if resp.StatusCode != 201 {
		t.Fatalf("login: %d", resp.StatusCode)
	}
	img := httpServe(t, fwimage.Build("SystemROM", "2.90", nil))
	if resp, _ := call(t, ca, "POST", a.URL()+simpleUpdate, map[string]string{"ImageURI": img}, nil); resp.StatusCode != 200 {
		t.Fatalf("SimpleUpdate: %d", resp.StatusCode)
	}
	waitFor(t, "the flash", func() bool { return a.Stats().FlashesCompleted == 1 })
	if !a.RebootHost() {
		t.Fatal("reboot refused")
	}
	waitFor(t, "the POST", func() bool { return a.PostState() == postFinished })
	if v := a.Version("SystemROM"); !strings.Contains(v, "v2.90 ") {
		t.Fatalf("flashed simulator's ROM: %q", v)
	}
	if v := b.Version("SystemROM"); v != "A43 v2.52 (10/29/2021)" {
		t.Fatalf("the other simulator's ROM changed: %q", v)
	}
	_, sessions := call(t, httpClient(t, b), "GET", b.URL()+sessionsPath, nil, nil)
	if n := sessions["Members@odata.count"]; n != float64(0) {
		t.Fatalf("the other simulator lists %v sessions", n)
	}
	if captureDigest(c) != digest {
		t.Fatal("the shared capture changed")
	}
}

// liveBytes is the heap and stack in use after two collections.
func liveBytes() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc + m.StackInuse
}

// BenchmarkFleetMemory reports the memory one simulated iLO holds (heap and stacks after GC,
// B/iLO) in a started fleet that shares one capture, idle and after each iLO flashed itself once
// (a session, a SimpleUpdate, the reset), against the reference of one parsed capture per
// simulator (how fleets were built before). The shared capture itself is in the figures.
// FLEET_N sets the fleet's size (default 1000); the reference runs a twentieth of it (its cost
// per iLO does not depend on the count). Run it with -benchtime=1x: one fleet per sub-benchmark.
func BenchmarkFleetMemory(b *testing.B) {
	n := 1000
	if v := os.Getenv("FLEET_N"); v != "" {
		if _, err := fmt.Sscan(v, &n); err != nil || n < 20 {
			b.Fatalf("FLEET_N=%q: want a count of at least 20", v)
		}
	}
	cfg := Config{MockupDir: shared.Mockup(shared.DL325), Username: testUser, Password: testPass,
		Timings: Timings{Upload: time.Millisecond, Verify: time.Millisecond, Write: time.Millisecond, Update: time.Millisecond,
			ResetDelay: time.Millisecond, ILOReset: time.Millisecond, HalfUp: time.Millisecond, POST: time.Millisecond}}
	run := func(b *testing.B, n int, start func() []*Sim, flash bool) {
		for b.Loop() {
			before := liveBytes()
			fleet := start()
			if flash {
				flashEach(b, fleet)
			}
			after := liveBytes()
			b.ReportMetric(float64(after-before)/float64(n), "B/iLO")
			b.ReportMetric(float64(n), "iLOs")
			for _, s := range fleet {
				s.Close()
			}
		}
	}
	shared := func() []*Sim {
		f, err := StartFleet(cfg, n, "127.0.0.1:0", true)
		if err != nil {
			b.Fatal(err)
		}
		return f.Sims
	}
	b.Run("impl=shared-capture/idle", func(b *testing.B) { run(b, n, shared, false) })
	b.Run("impl=shared-capture/flashed", func(b *testing.B) { run(b, n, shared, true) })
	b.Run("impl=capture-per-iLO/idle", func(b *testing.B) {
		m := max(n/20, 1)
		run(b, m, func() []*Sim {
			var fleet []*Sim
			for range m {
				s, err := New(cfg) // parses its own capture
				if err == nil {
					err = s.Start("127.0.0.1:0")
				}
				if err != nil {
					b.Fatal(err)
				}
				fleet = append(fleet, s)
			}
			return fleet
		}, false)
	})
}

// flashEach logs in to every simulator, flashes its iLO firmware through SimpleUpdate and waits
// until it is back from its reset, 50 at a time.
func flashEach(b *testing.B, fleet []*Sim) {
	img := fwimage.Build("iLO", "2.90", []byte("payload"))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(img) }))
	defer srv.Close()
	// A benchmark's client on loopback; the certificate checks have their own tests.
	// No keep-alive: 10,000 idle connections would hold two descriptors each.
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // see above
		DisableKeepAlives: true}}
	defer c.CloseIdleConnections()
	post := func(url string, body any) error {
		raw, _ := json.Marshal(body)
		req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(raw))
		req.SetBasicAuth(testUser, testPass)
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("POST %s: HTTP %d", url, resp.StatusCode)
		}
		return nil
	}
	sem := make(chan struct{}, 50)
	var wg sync.WaitGroup
	for _, s := range fleet {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			if err := post(s.URL()+sessionsPath, map[string]string{"UserName": testUser, "Password": testPass}); err != nil {
				b.Error(err)
				return
			}
			if err := post(s.URL()+simpleUpdate, map[string]string{"ImageURI": srv.URL + "/ilo.bin"}); err != nil {
				b.Error(err)
				return
			}
			// Off the benchmark's goroutine: a failed wait is an error of b, not a FailNow.
			g := gomega.NewGomega(func(msg string, _ ...int) { b.Errorf("%s: %s", s.URL(), msg) })
			g.Eventually(func() bool { return s.Stats().ILOResets >= 1 && s.ILOPhase() == "" }).
				WithTimeout(time.Minute).Should(gomega.BeTrue(), "back from its reset")
		})
	}
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
}
