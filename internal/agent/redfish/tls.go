package redfish

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// TLSOptions say how the target's certificate is checked. Verification is on unless
// InsecureSkipVerify is set explicitly.
type TLSOptions struct {
	// CABundle is PEM; when empty and no fingerprint is pinned, the system roots are used.
	CABundle []byte
	// FingerprintSHA256 pins the leaf certificate (hex, colons allowed); pinning replaces
	// chain verification, as real fleets use self-signed BMC certificates.
	FingerprintSHA256 string
	// InsecureSkipVerify waives every check; only when the user asked for it.
	InsecureSkipVerify bool
}

// ErrFingerprintMismatch is returned (wrapped) when the pinned fingerprint does not match.
var ErrFingerprintMismatch = errors.New("certificate fingerprint does not match the pinned SHA-256")

// ParseFingerprint decodes a SHA-256 fingerprint written in hex, with or without colons.
func ParseFingerprint(s string) ([]byte, error) {
	s = strings.NewReplacer(":", "", " ", "").Replace(strings.TrimSpace(s))
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != sha256.Size {
		return nil, fmt.Errorf("fingerprint %q: want 64 hex digits (colons allowed)", s)
	}
	return b, nil
}

func (o TLSOptions) config(serverName string) (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	switch {
	case o.FingerprintSHA256 != "":
		want, err := ParseFingerprint(o.FingerprintSHA256)
		if err != nil {
			return nil, err
		}
		// The pin replaces chain verification, so the standard checks are off and
		// VerifyConnection does the whole job.
		c.InsecureSkipVerify = true //nolint:gosec // the pin is checked below
		c.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("tls: the server sent no certificate")
			}
			got := sha256.Sum256(cs.PeerCertificates[0].Raw)
			if subtle.ConstantTimeCompare(got[:], want) != 1 {
				return fmt.Errorf("tls: %w: got %s", ErrFingerprintMismatch, hex.EncodeToString(got[:]))
			}
			return nil
		}
	case o.InsecureSkipVerify:
		c.InsecureSkipVerify = true //nolint:gosec // explicit user choice
	case len(bytes.TrimSpace(o.CABundle)) > 0:
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(o.CABundle) {
			return nil, errors.New("tls: the CA bundle holds no PEM certificate")
		}
		c.RootCAs = pool
	}
	return c, nil
}
