// Package agentcert makes the agent's TLS certificate: the one its firmware server presents
// over HTTPS (rule P2) and its Redfish event listeners present on the receive ports (rule P5).
//
// The certificate is self-signed and lives in memory only, for one agent run: no Secret, no
// file, nothing for a compromised node to copy after the agent ends. The targets that fetch
// from it do not verify it (iLO 5 has no place for a CA to trust for image downloads), so it
// buys encryption against passive listeners; its fingerprint is reported in each TargetUpdate's
// status so that a person can compare it with what a target logged.
package agentcert

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"net"
	"slices"
	"time"
)

// New makes a self-signed certificate for hosts (IP addresses become IP SANs, names DNS SANs),
// valid from an hour before now (clocks of management processors drift) until notAfter. RSA
// 2048 rather than ECDSA: it is what every TLS client of an embedded management processor can
// negotiate.
func New(hosts []string, now, notAfter time.Time) (tls.Certificate, error) {
	if !notAfter.After(now) {
		return tls.Certificate{}, errors.New("agentcert: the certificate would expire before it is used")
	}
	key, err := NewKey()
	if err != nil {
		return tls.Certificate{}, err
	}
	return NewWithKey(key, hosts, now, notAfter)
}

// NewKey makes the certificate's private key (RSA 2048, see New): the slow part, which an
// agent starts before it knows the addresses its certificate is for.
func NewKey() (*rsa.PrivateKey, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("agentcert: %w", err)
	}
	return key, nil
}

// NewWithKey is New with a key made by NewKey.
func NewWithKey(key *rsa.PrivateKey, hosts []string, now, notAfter time.Time) (tls.Certificate, error) {
	if !notAfter.After(now) {
		return tls.Certificate{}, errors.New("agentcert: the certificate would expire before it is used")
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("agentcert: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: "firmware-operator agent"},
		NotBefore: now.Add(-time.Hour), NotAfter: notAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			if !slices.ContainsFunc(tmpl.IPAddresses, ip.Equal) {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			}
		} else if h != "" && !slices.Contains(tmpl.DNSNames, h) {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("agentcert: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("agentcert: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// FingerprintSHA256 is the SHA-256 of the certificate's leaf (DER), in lower-case hex: what
// `openssl x509 -fingerprint -sha256` prints, without the colons.
func FingerprintSHA256(c tls.Certificate) string {
	if len(c.Certificate) == 0 {
		return ""
	}
	sum := sha256.Sum256(c.Certificate[0])
	return hex.EncodeToString(sum[:])
}
