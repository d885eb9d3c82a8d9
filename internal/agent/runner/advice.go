package runner

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"syscall"

	"github.com/fwops/firmware-operator/internal/agent/sshconn"
)

// advice says what a person can do about a failure to reach a target, "" when the error
// already says it or is not one the agent recognises. The drivers' errors name what failed
// (a TLS verification, an EOF); the status message must also say where to look.
func advice(err error) string {
	var unknownCA x509.UnknownAuthorityError
	var badHost x509.HostnameError
	var invalid x509.CertificateInvalidError
	var verify *tls.CertificateVerificationError
	switch {
	case errors.As(err, &unknownCA), errors.As(err, &badHost), errors.As(err, &invalid), errors.As(err, &verify):
		return "the target's TLS certificate does not match the UpdateTarget's spec.tls (its CA bundle Secret or certificateSHA256 pin): " +
			"update spec.tls with the target's current certificate (it changes when the iLO is reset to factory settings or gets a new certificate)"
	case errors.Is(err, sshconn.ErrHostKeyMismatch), errors.Is(err, sshconn.ErrHostKeyUnknown):
		return "the target's SSH host key is not the one in the UpdateTarget's known_hosts Secret (spec.ssh.knownHostsSecretRef): " +
			"if the target was replaced or re-keyed, check its key out of band and update the Secret"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET):
		return "the target closed the connection without an answer: check that spec.address is its management address and port, " +
			"and that it is up and not resetting"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "nothing listens at the target's address: check spec.address (host and port) and that the management processor is up"
	}
	return ""
}
