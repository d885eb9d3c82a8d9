package agentcert

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"net"
	"testing"
	"time"
)

func TestNewNamesTheAgentsAddresses(t *testing.T) {
	now := time.Now()
	c, err := New([]string{"127.0.0.2", "::1", "agent.example.net", "127.0.0.2", ""}, now, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if len(leaf.IPAddresses) != 2 || !leaf.IPAddresses[0].Equal(net.ParseIP("127.0.0.2")) || !leaf.IPAddresses[1].Equal(net.IPv6loopback) {
		t.Errorf("IP SANs = %v, want [127.0.0.2 ::1] (each once)", leaf.IPAddresses)
	}
	if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != "agent.example.net" {
		t.Errorf("DNS SANs = %v, want [agent.example.net]", leaf.DNSNames)
	}
	for _, host := range []string{"127.0.0.2", "::1", "agent.example.net"} {
		if err := leaf.VerifyHostname(host); err != nil {
			t.Errorf("the certificate does not name %s: %v", host, err)
		}
	}
	if err := leaf.VerifyHostname("127.0.0.3"); err == nil {
		t.Error("the certificate names an address it was not made for")
	}
	if !leaf.NotAfter.Equal(now.Add(time.Hour).Truncate(time.Second)) {
		t.Errorf("NotAfter = %v, want %v", leaf.NotAfter, now.Add(time.Hour))
	}
	if err := leaf.CheckSignature(leaf.SignatureAlgorithm, leaf.RawTBSCertificate, leaf.Signature); err != nil {
		t.Errorf("not self-signed: %v", err)
	}
	if _, err := tls.X509KeyPair(pemCert(c), pemKey(t, c)); err != nil {
		t.Errorf("the key does not match the certificate: %v", err)
	}
}

func TestNewRefusesAnExpiredValidity(t *testing.T) {
	now := time.Now()
	if _, err := New([]string{"127.0.0.1"}, now, now); err == nil {
		t.Fatal("New made a certificate that expires at once")
	}
}

func TestFingerprintSHA256(t *testing.T) {
	now := time.Now()
	c, err := New([]string{"127.0.0.1"}, now, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(c.Certificate[0])
	if got, want := FingerprintSHA256(c), hex.EncodeToString(sum[:]); got != want || len(got) != 64 {
		t.Errorf("FingerprintSHA256 = %q, want %q", got, want)
	}
	if got := FingerprintSHA256(tls.Certificate{}); got != "" {
		t.Errorf("FingerprintSHA256 of no certificate = %q, want empty", got)
	}
}

func pemCert(c tls.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]})
}

func pemKey(t *testing.T, c tls.Certificate) []byte {
	der, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}
