package ilo

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/onsi/gomega"

	"github.com/fwops/firmware-operator/internal/testutil/shared"

	"github.com/fwops/firmware-operator/internal/simulator/fwimage"
)

const (
	testUser = "Administrator"
	testPass = "sim-Secret-1"
)

func mockupDir(*testing.T) string { return shared.Mockup(shared.DL325) }

func startTest(t *testing.T, cfg Config) *Sim {
	t.Helper()
	if cfg.MockupDir == "" {
		cfg.MockupDir = mockupDir(t)
	}
	if cfg.Capture == nil {
		cfg.Capture = testCapture(t, cfg.MockupDir)
	}
	cfg.Username, cfg.Password = testUser, testPass
	if cfg.Timings == (Timings{}) {
		cfg.Timings = Timings{Upload: 10 * time.Millisecond, Verify: 10 * time.Millisecond, Write: 10 * time.Millisecond, Update: 40 * time.Millisecond}
	}
	// The reset and the POST stay on, short.
	for _, d := range []*time.Duration{&cfg.Timings.ResetDelay, &cfg.Timings.ILOReset, &cfg.Timings.HalfUp, &cfg.Timings.POST} {
		if *d == 0 {
			*d = 30 * time.Millisecond
		}
	}
	return startOn(t, "127.0.0.1:0", cfg)
}

// httpClient trusts the simulator's certificate through a pool, so that the SANs are checked too.
func httpClient(t *testing.T, s *Sim) *http.Client {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(s.CertPEM()) {
		t.Fatal("CertPEM holds no certificate")
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}

func call(t *testing.T, c *http.Client, method, url string, body any, hdr map[string]string) (*http.Response, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	if _, ok := hdr["X-Auth-Token"]; !ok && hdr["noauth"] == "" {
		req.SetBasicAuth(testUser, testPass)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc map[string]any
	b, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(b, &doc)
	return resp, doc
}

func TestPathsAndExpand(t *testing.T) {
	s := startTest(t, Config{})
	c := httpClient(t, s)
	for _, p := range []string{"/redfish/v1/Systems/1", "/redfish/v1/systems/1/", "/REDFISH/V1/SYSTEMS/1", "/redfish/v1/systems/1/bios"} {
		resp, doc := call(t, c, "GET", s.URL()+p, nil, nil)
		if resp.StatusCode != 200 || doc["@odata.id"] == nil {
			t.Fatalf("GET %s: %d %v", p, resp.StatusCode, doc)
		}
	}
	_, doc := call(t, c, "GET", s.URL()+"/redfish/v1/UpdateService/FirmwareInventory/?$expand=.", nil, nil)
	ms := doc["Members"].([]any)
	if v := ms[0].(map[string]any)["Version"]; v != "2.46 May 11 2021" {
		t.Fatalf("expanded member 0 Version = %v", v)
	}
	_, doc = call(t, c, "GET", s.URL()+"/redfish/v1/UpdateService/FirmwareInventory", nil, nil)
	if _, ok := doc["Members"].([]any)[0].(map[string]any)["Version"]; ok {
		t.Fatal("members inlined without $expand")
	}
	resp, _ := call(t, c, "GET", s.URL()+"/redfish/v1/nothing", nil, nil)
	if resp.StatusCode != 404 {
		t.Fatalf("missing resource: %d", resp.StatusCode)
	}
}

func TestAuth(t *testing.T) {
	s := startTest(t, Config{})
	c := httpClient(t, s)
	resp, _ := call(t, c, "GET", s.URL()+"/redfish/v1/Managers/1", nil, map[string]string{"noauth": "1"})
	if resp.StatusCode != 401 {
		t.Fatalf("unauthenticated GET: %d", resp.StatusCode)
	}
	resp, _ = call(t, c, "GET", s.URL()+"/redfish/v1", nil, map[string]string{"noauth": "1"})
	if resp.StatusCode != 200 {
		t.Fatalf("service root must be open: %d", resp.StatusCode)
	}
	resp, _ = call(t, c, "POST", s.URL()+"/redfish/v1/SessionService/Sessions", map[string]string{"UserName": testUser, "Password": "nope"}, map[string]string{"noauth": "1"})
	if resp.StatusCode != 401 {
		t.Fatalf("bad password login: %d", resp.StatusCode)
	}
	resp, _ = call(t, c, "POST", s.URL()+"/redfish/v1/SessionService/Sessions/", map[string]string{"UserName": testUser, "Password": testPass}, map[string]string{"noauth": "1"})
	tok, loc := resp.Header.Get("X-Auth-Token"), resp.Header.Get("Location")
	if resp.StatusCode != 201 || tok == "" || !strings.HasPrefix(loc, "/redfish/v1/SessionService/Sessions/") {
		t.Fatalf("login: %d token=%q location=%q", resp.StatusCode, tok, loc)
	}
	h := map[string]string{"X-Auth-Token": tok}
	if resp, _ = call(t, c, "GET", s.URL()+"/redfish/v1/Managers/1", nil, h); resp.StatusCode != 200 {
		t.Fatalf("GET with token: %d", resp.StatusCode)
	}
	if resp, _ = call(t, c, "DELETE", s.URL()+loc, nil, h); resp.StatusCode != 200 {
		t.Fatalf("logout: %d", resp.StatusCode)
	}
	if resp, _ = call(t, c, "GET", s.URL()+"/redfish/v1/Managers/1", nil, h); resp.StatusCode != 401 {
		t.Fatalf("token still valid after logout: %d", resp.StatusCode)
	}
}

func TestCertificate(t *testing.T) {
	s := startTest(t, Config{})
	block, _ := pem.Decode(s.CertPEM())
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if err := cert.VerifyHostname("127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	if err := cert.VerifyHostname("localhost"); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "c.pem")
	if err := s.WriteCertPEM(path); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); !bytes.Equal(b, s.CertPEM()) {
		t.Fatal("written PEM differs")
	}
	// The wrong-certificate fault serves another key.
	s.SetFaults(Faults{WrongCert: true})
	conn, err := tls.Dial("tcp", s.Addr(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	got := fingerprint(conn.ConnectionState().PeerCertificates[0].Raw)
	conn.Close()
	if got == s.CertFingerprint() {
		t.Fatal("WrongCert served the right certificate")
	}
}

func TestModels(t *testing.T) {
	for _, tc := range []struct {
		model     Model
		name, ver string
	}{{ILO4, "iLO 4", "2.80"}, {ILO5, "iLO 5", "2.46"}, {ILO6, "iLO 6", "1.55"}} {
		s := startTest(t, Config{Model: tc.model})
		c := httpClient(t, s)
		_, m := call(t, c, "GET", s.URL()+"/redfish/v1/Managers/1", nil, nil)
		if m["Model"] != tc.name || m["FirmwareVersion"] != tc.name+" v"+tc.ver {
			t.Fatalf("%s: Managers/1 = %v / %v", tc.model, m["Model"], m["FirmwareVersion"])
		}
		resp, u := call(t, c, "GET", s.URL()+"/redfish/v1/Managers/1/UpdateService", nil, nil)
		if (tc.model == ILO4) != (resp.StatusCode == 200) || (tc.model == ILO4 && u["State"] != "IDLE") {
			t.Fatalf("%s: iLO 4 update resource: %d %v", tc.model, resp.StatusCode, u)
		}
	}
}

func TestAdminEndpointAndFlashStates(t *testing.T) {
	s := startTest(t, Config{Timings: Timings{Upload: 20 * time.Millisecond, Verify: 20 * time.Millisecond, Write: 20 * time.Millisecond, Update: 100 * time.Millisecond, Steps: 4}})
	c := httpClient(t, s)
	img := httpServe(t, fwimage.Build("iLO", "2.90", nil))
	// Faults over HTTP, as the CLI user sets them.
	resp, _ := call(t, c, "POST", s.URL()+"/_sim/faults", map[string]any{"failNext": 1, "failStatus": 503}, nil)
	if resp.StatusCode != 200 || s.Faults().FailNext != 1 {
		t.Fatalf("admin faults: %d %+v", resp.StatusCode, s.Faults())
	}
	if resp, _ = call(t, c, "GET", s.URL()+"/redfish/v1/Managers/1", nil, nil); resp.StatusCode != 503 {
		t.Fatalf("injected failure: %d", resp.StatusCode)
	}
	if resp, _ = call(t, c, "POST", s.URL()+"/_sim/faults", map[string]any{"bogus": 1}, nil); resp.StatusCode != 400 {
		t.Fatalf("unknown fault field accepted: %d", resp.StatusCode)
	}
	if first := s.Stats().FirstFlashRequest; !first.IsZero() {
		t.Fatalf("first flash request at %s before any was made", first)
	}
	asked := time.Now()
	resp, _ = call(t, c, "POST", s.URL()+simpleUpdate, map[string]string{"ImageURI": img, "TransferProtocol": "HTTP"}, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("SimpleUpdate: %d", resp.StatusCode)
	}
	first := s.Stats().FirstFlashRequest
	if first.Before(asked) || first.After(time.Now()) {
		t.Fatalf("first flash request at %s, asked at %s", first, asked)
	}
	if resp, _ = call(t, c, "POST", s.URL()+simpleUpdate, map[string]string{"ImageURI": img}, nil); resp.StatusCode != 400 {
		t.Fatalf("second flash while one runs: %d", resp.StatusCode)
	}
	if again := s.Stats().FirstFlashRequest; !again.Equal(first) {
		t.Fatalf("the first flash request's time moved to %s on a second request", again)
	}
	var states []string
	gomega.NewWithT(t).Eventually(func() string {
		st := s.State()
		if len(states) == 0 || states[len(states)-1] != st {
			states = append(states, st)
		}
		return st
	}).WithTimeout(time.Minute).WithPolling(2*time.Millisecond).Should(gomega.Equal("Complete"), "the flash's states")
	if got := strings.Join(states, ","); got != "Uploading,Verifying,Writing,Updating,Complete" {
		t.Fatalf("states %s", got)
	}
	waitFor(t, "the iLO's reset", func() bool { st := s.Stats(); return st.ILOResets == 1 && s.ILOPhase() == "" })
	if v := s.Version("iLO"); !strings.HasPrefix(v, "2.90 ") {
		t.Fatalf("version %q", v)
	}
	_, st := call(t, c, "GET", s.URL()+"/_sim/stats", nil, nil)
	if st["flashesCompleted"] != float64(1) || len(st["sourcePorts"].([]any)) == 0 {
		t.Fatalf("stats %v", st)
	}
}

func TestSmartComponentThroughSimpleUpdateChangesNothing(t *testing.T) {
	s := startTest(t, Config{})
	c := httpClient(t, s)
	img := httpServe(t, fwimage.BuildHeader(fwimage.Header{Component: "SmartComponent", Version: "9.9", Target: "Embedded Video Controller"}, nil))
	call(t, c, "POST", s.URL()+simpleUpdate, map[string]string{"ImageURI": img}, nil)
	gomega.NewWithT(t).Eventually(s.State).WithTimeout(time.Minute).Should(gomega.Equal("Complete"))
	_, d := call(t, c, "GET", s.URL()+"/redfish/v1/UpdateService/FirmwareInventory/12", nil, nil)
	if d["Version"] != "2.5" {
		t.Fatalf("Smart Component flashed through SimpleUpdate: %v", d["Version"])
	}
}

func TestFleetPerPort(t *testing.T) {
	f, err := StartFleet(Config{MockupDir: mockupDir(t), Username: testUser, Password: testPass}, 3, "127.0.0.1:0", true)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	seen := map[string]bool{}
	for _, s := range f.Sims {
		if h, _, _ := net.SplitHostPort(s.Addr()); h != "127.0.0.1" || seen[s.Addr()] {
			t.Fatalf("address %s", s.Addr())
		}
		seen[s.Addr()] = true
	}
}

func httpServe(t *testing.T, b []byte) string {
	return imageHost(t, map[string][]byte{"img": b}) + "/img"
}
