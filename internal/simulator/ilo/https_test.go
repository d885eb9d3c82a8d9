package ilo

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/fwops/firmware-operator/internal/simulator/fwimage"
)

// httpsImage serves b over HTTPS with httptest's self-signed certificate and returns the URL
// and the certificate's SHA-256.
func httpsImage(t *testing.T, b []byte) (string, string) {
	t.Helper()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(b) }))
	t.Cleanup(srv.Close)
	sum := sha256.Sum256(srv.Certificate().Raw)
	return srv.URL + "/img", hex.EncodeToString(sum[:])
}

// An iLO 5 fetches an https ImageURI without verifying the server (it has no CA to trust for
// downloads) and the simulator tells which certificate it saw.
func TestILO5FetchesOverHTTPS(t *testing.T) {
	s := startTest(t, Config{})
	c := httpClient(t, s)
	img, certSHA := httpsImage(t, fwimage.Build("iLO", "2.90", nil))
	resp, _ := call(t, c, "POST", s.URL()+simpleUpdate, map[string]string{"ImageURI": img, "TransferProtocol": "HTTPS"}, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("SimpleUpdate over HTTPS: %d", resp.StatusCode)
	}
	waitFor(t, "the flash and the iLO's reset", func() bool { return s.Stats().ILOResets == 1 && s.ILOPhase() == "" })
	if v := s.Version("iLO"); !strings.HasPrefix(v, "2.90 ") {
		t.Fatalf("version %q after a flash over HTTPS", v)
	}
	if got := s.ImageServerCertificates(); len(got) != 1 || got[0] != certSHA {
		t.Fatalf("certificates seen %q, want [%s]", got, certSHA)
	}
	if got := s.FlashRequestsReceived(); len(got) != 1 || got[0] != (FlashRequest{Action: "SimpleUpdate", ImageURI: img, TransferProtocol: "HTTPS"}) {
		t.Fatalf("flash requests %+v", got)
	}
}

// iLO 4 downloads over HTTP only: an https FirmwareURI is refused and nothing is flashed; an
// http one is flashed.
func TestILO4RefusesHTTPS(t *testing.T) {
	s := startTest(t, Config{Model: ILO4})
	c := httpClient(t, s)
	body := fwimage.Build("iLO", "2.82", nil)
	secure, _ := httpsImage(t, body)
	resp, d := call(t, c, "POST", s.URL()+ilo4UpdatePath, map[string]string{"Action": "InstallFromURI", "FirmwareURI": secure}, nil)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(strings.ToLower(asString(d)), "https") {
		t.Fatalf("InstallFromURI with https: %d %v, want 400 naming HTTPS", resp.StatusCode, d)
	}
	if st := s.Stats(); st.FlashesStarted != 0 || len(s.FetchedImageURIs()) != 0 {
		t.Fatalf("iLO 4 started a flash (%d) or fetched %q from an https URI", st.FlashesStarted, s.FetchedImageURIs())
	}
	plain := httpServe(t, body)
	if resp, d = call(t, c, "POST", s.URL()+ilo4UpdatePath, map[string]string{"Action": "InstallFromURI", "FirmwareURI": plain}, nil); resp.StatusCode != 200 {
		t.Fatalf("InstallFromURI with http: %d %v", resp.StatusCode, d)
	}
	waitFor(t, "the flash over HTTP", func() bool { return s.Stats().FlashesCompleted == 1 })
}

func asString(m map[string]any) string {
	b, _ := json.Marshal(m)
	return string(b)
}

// An iLO that does not list HTTPS for SimpleUpdate refuses TransferProtocol HTTPS, as a
// Redfish service refuses a value outside its AllowableValues, and flashes nothing.
func TestSimpleUpdateRefusesAProtocolItDoesNotList(t *testing.T) {
	s := startTest(t, Config{SimpleUpdateProtocols: []string{"HTTP"}})
	c := httpClient(t, s)
	_, us := call(t, c, "GET", s.URL()+"/redfish/v1/UpdateService", nil, nil)
	if got := field(us, "Actions", "#UpdateService.SimpleUpdate")["TransferProtocol@Redfish.AllowableValues"]; fmt.Sprint(got) != "[HTTP]" {
		t.Fatalf("advertised %v, want [HTTP]", got)
	}
	img, _ := httpsImage(t, fwimage.Build("iLO", "2.90", nil))
	resp, d := call(t, c, "POST", s.URL()+simpleUpdate, map[string]string{"ImageURI": img, "TransferProtocol": "HTTPS"}, nil)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(asString(d), "PropertyValueNotInList") {
		t.Fatalf("SimpleUpdate with an unlisted protocol: %d %v, want 400 PropertyValueNotInList", resp.StatusCode, d)
	}
	if st := s.Stats(); st.FlashesStarted != 0 {
		t.Fatalf("%d flashes started", st.FlashesStarted)
	}
}
