// Package sshconn dials the SSH connections that the Onboard Administrator and Linux drivers
// share: host key always checked against the target's known_hosts (unless explicitly waived),
// key and/or password authentication, the source port of rule P4, and a dial and handshake
// bounded by the caller's context.
package sshconn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
	"golang.org/x/sys/unix"

	"github.com/fwops/firmware-operator/internal/agent/driver"
	"github.com/fwops/firmware-operator/internal/ports"
)

// DefaultPort is the SSH port used when neither the address nor Target.SSH.Port names one
// (rule P3).
const DefaultPort = 22

// DefaultTimeout bounds dial plus handshake when the context has no earlier deadline.
const DefaultTimeout = 30 * time.Second

// Options tune Dial; the zero value is ready to use.
type Options struct {
	// Timeout bounds dial plus handshake; zero means DefaultTimeout.
	Timeout time.Duration
	// Logger receives connection events; nil discards them. Credentials are never logged.
	Logger *slog.Logger
}

// ErrHostKeyMismatch is wrapped by the error of a dial whose server presented a key other
// than the ones known_hosts holds for it (possibly a man in the middle).
var ErrHostKeyMismatch = errors.New("ssh host key mismatch")

// ErrHostKeyUnknown is wrapped by the error of a dial whose server has no entry in known_hosts.
var ErrHostKeyUnknown = errors.New("ssh host key unknown")

// ErrNoKnownHosts is returned when a target has neither known_hosts content nor an explicit
// waiver: the host key cannot be checked, so the agent does not connect.
var ErrNoKnownHosts = errors.New("no known_hosts for target and host key check not waived")

// Addr is the host:port Dial connects to. A port in t.Address wins; else t.SSH.Port; else 22
// (rule P3). Both given and different is an error, as one of them is surely a mistake.
func Addr(t driver.Target) (string, error) {
	host, port, err := driver.SplitAddress(t.Address)
	if err != nil {
		return "", fmt.Errorf("target %s: %w", t.Name, err)
	}
	switch {
	case port != 0 && t.SSH.Port != 0 && port != t.SSH.Port:
		return "", fmt.Errorf("target %s: address %q names port %d but ssh port is %d", t.Name, t.Address, port, t.SSH.Port)
	case port == 0 && t.SSH.Port != 0:
		port = t.SSH.Port
	case port == 0:
		port = DefaultPort
	}
	if port < 1 || port > 65535 {
		return "", fmt.Errorf("target %s: ssh port %d out of range", t.Name, port)
	}
	return net.JoinHostPort(host, strconv.Itoa(port)), nil
}

// Dial connects to t over SSH and authenticates. The caller closes the returned client.
func Dial(ctx context.Context, t driver.Target, opts Options) (*ssh.Client, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	addr, err := Addr(t)
	if err != nil {
		return nil, err
	}
	cfg, err := ClientConfig(t)
	if err != nil {
		return nil, err
	}
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	d, err := dialer(t)
	if err != nil {
		return nil, err
	}
	dial := d.DialContext
	if t.LocalPort != 0 {
		// rule P4: the redial meets its own earlier 4-tuple until that has closed.
		dial = func(ctx context.Context, network, address string) (net.Conn, error) {
			return ports.DialWhileTupleBusy(ctx, d, network, address, ports.TupleBusyWait)
		}
	}
	conn, err := dial(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("target %s: dial %s%s: %w", t.Name, addr, fromPort(t), err)
	}
	if tc, ok := conn.(*net.TCPConn); ok && t.LocalPort != 0 {
		// rule P4: the next connection to this target leaves from the same port. A normal
		// close would leave this 4-tuple in TIME_WAIT for a minute and that connect would
		// fail (EADDRNOTAVAIL); closing with a reset leaves nothing behind. Nothing is lost:
		// the SSH session is over when the connection is closed.
		_ = tc.SetLinger(0)
	}
	// The handshake has no context of its own: a deadline and a close on cancel bound it.
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	c, chans, reqs, err := ssh.NewClientConn(conn, addr, cfg)
	if !stop() || ctx.Err() != nil {
		if err == nil {
			c.Close()
			err = ctx.Err()
		}
		return nil, fmt.Errorf("target %s: ssh handshake with %s: %w (%w)", t.Name, addr, err, ctx.Err())
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("target %s: ssh handshake with %s: %w", t.Name, addr, err)
	}
	_ = conn.SetDeadline(time.Time{})
	log.Info("ssh connected", "target", t.Name, "remote", addr, "local", conn.LocalAddr().String(), "user", t.Credentials.Username)
	return ssh.NewClient(c, chans, reqs), nil
}

func fromPort(t driver.Target) string {
	if t.LocalPort == 0 {
		return ""
	}
	return fmt.Sprintf(" from local port %d", t.LocalPort)
}

// dialer binds the source address and port of rule P4 when the target asks for one.
func dialer(t driver.Target) (*net.Dialer, error) {
	d := &net.Dialer{}
	if t.LocalPort == 0 && t.LocalAddress == "" {
		return d, nil
	}
	if t.LocalPort < 0 || t.LocalPort > 65535 {
		return nil, fmt.Errorf("target %s: local port %d out of range", t.Name, t.LocalPort)
	}
	la := &net.TCPAddr{Port: t.LocalPort}
	if t.LocalAddress != "" {
		ip := net.ParseIP(strings.Trim(t.LocalAddress, "[]"))
		if ip == nil {
			return nil, fmt.Errorf("target %s: local address %q is not an IP", t.Name, t.LocalAddress)
		}
		la.IP = ip
	}
	d.LocalAddr = la
	// rule P4: the same source port serves every (re)connection to this target, so a
	// previous connection's TIME_WAIT must not block the bind.
	d.Control = ports.ReuseAddr
	return d, nil
}

// ClientConfig builds the ssh.ClientConfig for t: user, auth methods and host key check.
func ClientConfig(t driver.Target) (*ssh.ClientConfig, error) {
	auth, err := authMethods(t)
	if err != nil {
		return nil, err
	}
	cfg := &ssh.ClientConfig{User: t.Credentials.Username, Auth: auth}
	if t.SSH.InsecureIgnoreHostKey {
		cfg.HostKeyCallback = ssh.InsecureIgnoreHostKey() // waived explicitly by the user
		return cfg, nil
	}
	if len(strings.TrimSpace(string(t.SSH.KnownHosts))) == 0 {
		return nil, fmt.Errorf("target %s: %w", t.Name, ErrNoKnownHosts)
	}
	cb, err := knownHostsCallback(t.SSH.KnownHosts)
	if err != nil {
		return nil, fmt.Errorf("target %s: known_hosts: %w", t.Name, err)
	}
	addr, err := Addr(t)
	if err != nil {
		return nil, err
	}
	// Offer only the key types known_hosts holds for this host, else the server may present
	// a key of another type and the check fails although the right key is on file.
	cfg.HostKeyAlgorithms = knownAlgorithms(cb, addr)
	cfg.HostKeyCallback = func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		err := cb(hostname, remote, key)
		if err == nil {
			return nil
		}
		presented := key.Type() + " " + ssh.FingerprintSHA256(key)
		var ke *knownhosts.KeyError
		var re *knownhosts.RevokedError
		switch {
		case errors.As(err, &ke) && len(ke.Want) > 0:
			want := make([]string, 0, len(ke.Want))
			for _, k := range ke.Want {
				want = append(want, k.Key.Type()+" "+ssh.FingerprintSHA256(k.Key))
			}
			return fmt.Errorf("%w: target %s (%s) presented %s, known_hosts expects %s",
				ErrHostKeyMismatch, t.Name, hostname, presented, strings.Join(want, ", "))
		case errors.As(err, &ke):
			return fmt.Errorf("%w: target %s (%s) presented %s, which is not in known_hosts",
				ErrHostKeyUnknown, t.Name, hostname, presented)
		case errors.As(err, &re):
			return fmt.Errorf("%w: target %s (%s) presented revoked key %s",
				ErrHostKeyMismatch, t.Name, hostname, presented)
		}
		return fmt.Errorf("target %s (%s) host key %s: %w", t.Name, hostname, presented, err)
	}
	return cfg, nil
}

// knownHostsCallback parses known_hosts content. knownhosts only reads files, and an agent
// pod has a read-only root file system with no writable /tmp, so the content goes through an
// anonymous in-memory file (memfd) that knownhosts opens by its /proc/self/fd path.
func knownHostsCallback(content []byte) (ssh.HostKeyCallback, error) {
	fd, err := unix.MemfdCreate("fwops-known-hosts", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("in-memory file for known_hosts: %w", err)
	}
	f := os.NewFile(uintptr(fd), "known_hosts")
	defer f.Close()
	if _, err := f.Write(content); err != nil {
		return nil, err
	}
	path := "/proc/self/fd/" + strconv.Itoa(fd)
	cb, err := knownhosts.New(path)
	if err != nil {
		// The descriptor's path means nothing to the user.
		return nil, errors.New(strings.ReplaceAll(err.Error(), path, "known_hosts"))
	}
	return cb, nil
}

// knownAlgorithms asks the callback about a throw-away key: the mismatch error lists every
// key on file for addr, whose types become the host key algorithms to offer. Nil (the
// library's defaults) when nothing is on file, e.g. for @cert-authority entries only.
func knownAlgorithms(cb ssh.HostKeyCallback, addr string) []string {
	probe, err := ssh.NewPublicKey(make([]byte, 32)) // an all-zero ed25519 key nobody holds
	if err != nil {
		return nil
	}
	err = cb(addr, &net.TCPAddr{IP: net.IPv4zero}, probe)
	var ke *knownhosts.KeyError
	if !errors.As(err, &ke) || len(ke.Want) == 0 {
		return nil
	}
	var algos []string
	seen := map[string]bool{}
	add := func(a ...string) {
		for _, s := range a {
			if !seen[s] {
				seen[s] = true
				algos = append(algos, s)
			}
		}
	}
	for _, k := range ke.Want {
		if k.Key.Type() == ssh.KeyAlgoRSA {
			add(ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA)
			continue
		}
		add(k.Key.Type())
	}
	return algos
}

// authMethods offers the private key first, then the password both as "password" and as
// keyboard-interactive answers (Onboard Administrators ask through the latter).
func authMethods(t driver.Target) ([]ssh.AuthMethod, error) {
	var m []ssh.AuthMethod
	if len(t.Credentials.PrivateKey) > 0 {
		signer, err := ssh.ParsePrivateKey(t.Credentials.PrivateKey)
		if err != nil {
			var pe *ssh.PassphraseMissingError
			if errors.As(err, &pe) {
				return nil, fmt.Errorf("target %s: private key is passphrase-protected, which is not supported", t.Name)
			}
			// The parser's message names the format problem, never the key bytes.
			return nil, fmt.Errorf("target %s: parse private key: %w", t.Name, err)
		}
		m = append(m, ssh.PublicKeys(signer))
	}
	if pw := t.Credentials.Password; pw != "" {
		m = append(m, ssh.Password(pw),
			ssh.KeyboardInteractive(func(_, _ string, questions []string, _ []bool) ([]string, error) {
				answers := make([]string, len(questions))
				for i := range answers {
					answers[i] = pw
				}
				return answers, nil
			}))
	}
	if len(m) == 0 {
		return nil, fmt.Errorf("target %s: no ssh credentials (neither private key nor password)", t.Name)
	}
	return m, nil
}
