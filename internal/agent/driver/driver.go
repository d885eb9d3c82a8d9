// Package driver is the small interface between the agent and the systems it flashes: iLO over
// Redfish, Onboard Administrators and Linux hosts over SSH. Each kind of target has its own
// implementation in a sibling package; Fake serves the controller's unit tests.
package driver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"
)

// Type names a kind of target, as in UpdateTarget's spec.type.
type Type string

const (
	TypeILO4  Type = "iLO4"
	TypeILO5  Type = "iLO5"
	TypeILO6  Type = "iLO6"
	TypeOA    Type = "OA"
	TypeLinux Type = "Linux"
)

// Component names what is flashed, as in UpdateJob's spec.component.
type Component string

const (
	ComponentILO            Component = "iLO"
	ComponentSystemROM      Component = "SystemROM"
	ComponentSmartComponent Component = "SmartComponent"
	ComponentOA             Component = "OA"
)

// Credentials are read from the target's Secret by the agent; they never leave memory.
type Credentials struct {
	Username string
	Password string
	// PrivateKey is a PEM-encoded SSH private key (Linux and OA targets), used before Password.
	PrivateKey []byte
}

// String hides the secret fields so that a credential printed by mistake leaks nothing.
func (c Credentials) String() string { return fmt.Sprintf("Credentials{Username:%q}", c.Username) }

// GoString hides the secret fields from %#v as well.
func (c Credentials) GoString() string { return c.String() }

// TLS is how a Redfish target's certificate is checked. Verification is on unless
// InsecureSkipVerify is set explicitly.
type TLS struct {
	// CABundle is PEM; when empty and no fingerprint is pinned, the system roots are used.
	CABundle []byte
	// FingerprintSHA256 pins the leaf certificate: hex, with or without colons.
	FingerprintSHA256  string
	InsecureSkipVerify bool
}

// SSH is how an OA or Linux target's host key is checked.
type SSH struct {
	// Port is the target's SSH port (rule P3, 22 by default).
	Port int
	// KnownHosts is the content of a known_hosts file.
	KnownHosts []byte
	// InsecureIgnoreHostKey waives the host key check; only set when the user asked for it.
	InsecureIgnoreHostKey bool
}

// Linux is how a Linux target runs Smart Components.
type Linux struct {
	// Sudo runs the component, and the removal of what it left, through "sudo -n": the SSH
	// user is not root and may use sudo without a password.
	Sudo bool
	// StagingDirectory is the directory on the host the component is copied to and run
	// from; empty means the driver's default. It must allow execution (not mounted noexec).
	StagingDirectory string
}

// Target is one endpoint the agent drives.
type Target struct {
	Name    string
	Type    Type
	Address string // host or IP, with an optional port
	// Bay, when non-zero on an OA target, selects the blade iLO flashed through the OA
	// (UPDATE ILO <bay>) instead of the OA itself.
	Bay         int
	Credentials Credentials
	TLS         TLS
	SSH         SSH
	// Linux applies to Linux targets only.
	Linux Linux
	// LocalPort is the source port of the agent's connections to this target (rule P4);
	// 0 lets the kernel choose.
	LocalPort int
	// LocalAddress is the node address to bind LocalPort on; empty means any.
	LocalAddress string
	// Receive, when set, is the target's rule P5 receive port: drivers that can be told of
	// progress (Redfish events on iLO 5 and 6) listen on it; the others leave it alone.
	Receive *Receive
}

// Receive is a rule P5 receive port the agent holds for one target.
type Receive struct {
	// Listener is bound to the port; the driver that uses it serves on it and closes it.
	Listener net.Listener
	// URL is how the target reaches the listener (https://node-address:port).
	URL string
	// Certificate is the agent's (agentcert), the one its firmware server presents too. It is
	// asked for on the first connection to the listener, not when the driver opens: the agent
	// may still be making it (an RSA key) while its drivers log in.
	Certificate func() (*tls.Certificate, error)
}

// Firmware is the verified image the agent serves and the driver installs.
type Firmware struct {
	Component Component
	// URL is where the target pulls the image from the agent's firmware server over plain
	// HTTP (rule P2). Drivers choose between it and SecureURL with ImageURL.
	URL string
	// SecureURL is the same image over HTTPS, on the same port (rule P2's internal secure web
	// server); empty when the agent serves no HTTPS (PortPolicy firmwareServer.tls Disabled).
	SecureURL string
	// RequireHTTPS is set when the PortPolicy's firmwareServer.tls is Required: a target that
	// cannot fetch over HTTPS must not be given the plain URL.
	RequireHTTPS bool
	// OnImageURL, when set, learns from ImageURL whether the target is given the image over
	// HTTPS (the runner records the certificate's fingerprint then).
	OnImageURL func(secure bool)
	// LocalPath is the verified file on the node, for drivers that push the file (Linux).
	LocalPath string
	// FileName is the image's original file name (Smart Components keep theirs).
	FileName string
	SHA256   string
	// Version is the version the job wants; empty when the job did not say.
	Version string
	// RebootIfRequired lets the driver reboot the host gracefully when the firmware activates
	// only at the next reboot (a system ROM), and verify the version after POST
	// (UpdateJob rollout.reboot: IfRequired).
	RebootIfRequired bool
	// RebootBy, when set, is when the job's maintenance window ends: the driver reboots the
	// host only when the reboot can end by then, else leaves the firmware staged.
	RebootBy time.Time
	// EarlierAttempt says an earlier attempt of this job may have asked for this flash and ended
	// before it learnt the result (its agent was killed, or the pod was deleted): a flash it
	// asked for may have completed and not yet taken effect, and must not be asked for again.
	EarlierAttempt bool
	// KeepInRepository keeps what the driver added to the target's firmware repository (the
	// iLO Repository) after it was applied; by default the driver removes it.
	KeepInRepository bool
}

// ImageURL is the URL to give a target: SecureURL when the target can fetch over HTTPS
// (canHTTPS) and the agent serves it, else URL. When HTTPS is required and the target cannot
// do it, the error says why (cannot, "iLO 4 downloads firmware over HTTP only", say) and
// what to do; nothing is to be flashed then.
func (f Firmware) ImageURL(canHTTPS bool, cannot string) (string, error) {
	switch {
	case canHTTPS && f.SecureURL != "":
		if f.OnImageURL != nil {
			f.OnImageURL(true)
		}
		return f.SecureURL, nil
	case f.RequireHTTPS:
		if canHTTPS {
			cannot = "the agent serves no HTTPS"
		}
		return "", fmt.Errorf("%w: %s; nothing was flashed. Set the PortPolicy's spec.firmwareServer.tls to Preferred to serve this target over HTTP, or upgrade its firmware to one that fetches images over HTTPS", ErrHTTPSRequired, cannot)
	}
	if f.OnImageURL != nil {
		f.OnImageURL(false)
	}
	return f.URL, nil
}

// ErrHTTPSRequired is the error of ImageURL for a target that cannot fetch over HTTPS when the
// PortPolicy requires it.
var ErrHTTPSRequired = errors.New("the PortPolicy's firmwareServer.tls is Required and this target cannot fetch the image over HTTPS")

// Phase is a step of one target's update, as reported in its status.
type Phase string

const (
	PhaseStaging   Phase = "Staging"
	PhaseFlashing  Phase = "Flashing"
	PhaseVerifying Phase = "Verifying"
)

// Progress is what a driver reports while it works.
type Progress struct {
	Phase   Phase
	Percent int
	Message string
}

// Result is the outcome of a successful Update.
type Result struct {
	VersionBefore  string
	VersionAfter   string
	RebootRequired bool
	// NotNeeded is true when the target said the update was not needed (Smart Component
	// exit code 2, or already at the version).
	NotNeeded bool
	Message   string
}

// Driver drives one target. Implementations are not safe for concurrent use.
type Driver interface {
	// Version reads the currently installed version of the component.
	Version(ctx context.Context, component Component) (string, error)
	// Update installs the firmware, reporting progress, and verifies the result.
	Update(ctx context.Context, fw Firmware, report func(Progress)) (Result, error)
	// Close ends the session with the target.
	Close() error
}

// Factory opens a Driver for a target.
type Factory func(ctx context.Context, t Target) (Driver, error)

// ErrUnsupported is returned by a factory for a target type it does not handle.
var ErrUnsupported = errors.New("unsupported target type")

// Registry picks a Factory by target type.
type Registry map[Type]Factory

// Open opens a driver for t with the factory registered for its type.
func (r Registry) Open(ctx context.Context, t Target) (Driver, error) {
	f, ok := r[t.Type]
	if !ok {
		return nil, fmt.Errorf("target %s: %w %q", t.Name, ErrUnsupported, t.Type)
	}
	return f(ctx, t)
}

// Timeouts bound each step of an update; zero values mean the driver's defaults.
type Timeouts struct {
	Connect time.Duration
	Flash   time.Duration
}

type reporterKey struct{}

// WithReporter returns ctx carrying report, for what a driver has to say before Update, which
// takes its reporter as an argument: while it opens a target or reads its version, say, and
// waits for a target that is resetting.
func WithReporter(ctx context.Context, report func(Progress)) context.Context {
	return context.WithValue(ctx, reporterKey{}, report)
}

// ReporterFrom returns the reporter ctx carries (WithReporter), or one that drops everything.
func ReporterFrom(ctx context.Context) func(Progress) {
	if r, ok := ctx.Value(reporterKey{}).(func(Progress)); ok && r != nil {
		return r
	}
	return func(Progress) {}
}
