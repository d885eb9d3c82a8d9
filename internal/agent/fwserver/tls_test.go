package fwserver

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fwops/firmware-operator/internal/agent/agentcert"
)

func testCert(t *testing.T) *tls.Certificate {
	t.Helper()
	c, err := agentcert.New([]string{"127.0.0.1"}, time.Now(), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return &c
}

// rule P2: one port serves an iLO 4 over HTTP and an iLO 5 over HTTPS, with the agent's
// certificate; both get the verified image.
func TestTLSAndPlainOnOnePort(t *testing.T) {
	cert := testCert(t)
	f := startServer(t, 300_000, cert)
	want := readFile(t, f.img.Path)

	pool := x509.NewCertPool()
	pool.AddCert(cert.Leaf)
	secure := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, Proxy: nil}}
	plain := &http.Client{Transport: &http.Transport{Proxy: nil}}
	for _, tc := range []struct {
		url    string
		client *http.Client
		tls    bool
	}{
		{"https://" + f.addr + f.path, secure, true},
		{"http://" + f.addr + f.path, plain, false},
		{"https://" + f.addr + f.path, secure, true}, // again: the order does not matter
	} {
		resp, err := tc.client.Get(tc.url)
		if err != nil {
			t.Fatalf("GET %s: %v", tc.url, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(body, want) {
			t.Fatalf("GET %s: %d, %d bytes (%v), want 200 and the image's %d", tc.url, resp.StatusCode, len(body), err, len(want))
		}
		if got := resp.TLS != nil; got != tc.tls {
			t.Errorf("GET %s: TLS %v, want %v", tc.url, got, tc.tls)
		}
		if tc.tls && !resp.TLS.PeerCertificates[0].Equal(cert.Leaf) {
			t.Errorf("GET %s: the server presented another certificate", tc.url)
		}
	}
	// The access log tells the two apart.
	var tlsLines, plainLines int
	for _, line := range strings.Split(strings.TrimSpace(f.log.String()), "\n") {
		var rec struct{ TLS bool }
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatal(err)
		}
		if rec.TLS {
			tlsLines++
		} else {
			plainLines++
		}
	}
	if tlsLines != 2 || plainLines != 1 {
		t.Errorf("access log has %d TLS and %d plain requests, want 2 and 1:\n%s", tlsLines, plainLines, f.log.String())
	}
}

// TLS 1.2 at least: a TLS 1.1 client is refused, and still the port keeps serving.
func TestTLSRefusesTLS11(t *testing.T) {
	f := startServer(t, 1000, testCert(t))
	c, err := tls.Dial("tcp", f.addr, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}) //nolint:gosec // the test's point
	if err == nil {
		c.Close()
		t.Fatal("a TLS 1.1 handshake succeeded")
	}
	if got := f.rawStatus(t, f.path); got != http.StatusOK {
		t.Fatalf("after a refused handshake: %d, want 200", got)
	}
}

// A client that connects and says nothing holds up no other client.
func TestSilentClientBlocksNoOne(t *testing.T) {
	f := startServer(t, 1000, testCert(t))
	silent, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	if got := f.rawStatus(t, f.path); got != http.StatusOK {
		t.Fatalf("beside a silent connection: %d, want 200", got)
	}
	f.tls = false
	if got := f.rawStatus(t, f.path); got != http.StatusOK {
		t.Fatalf("plain HTTP beside a silent connection: %d, want 200", got)
	}
}

// Without a certificate a TLS handshake gets no TLS answer: the server is plain HTTP only.
func TestNoCertificateNoTLS(t *testing.T) {
	f := start(t, 1000)
	c, err := tls.Dial("tcp", f.addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // the test's point
	if err == nil {
		c.Close()
		t.Fatal("a server without a certificate completed a TLS handshake")
	}
}
