// Package sshdhost runs a real OpenSSH sshd on a loopback port that logs in the current user
// with a generated key: it stands in for a Linux host, in tests and in the demo.
package sshdhost

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"github.com/fwops/firmware-operator/internal/testutil/syncbuf"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Binary is where Debian's openssh-server installs sshd. It must be run by absolute path:
// sshd re-executes itself for each connection.
const Binary = "/usr/sbin/sshd"

// privsepDir must exist even when sshd runs unprivileged.
const privsepDir = "/run/sshd"

// ErrUnavailable says no usable sshd is on this machine.
var ErrUnavailable = errors.New("no usable sshd")

// Available tells whether a real sshd can run here: nil when it can, else an error wrapping
// ErrUnavailable that says why.
func Available() error {
	if _, err := os.Stat(Binary); err != nil {
		return fmt.Errorf("%w: %s not found (Debian package openssh-server): %w", ErrUnavailable, Binary, err)
	}
	if _, err := os.Stat(privsepDir); err != nil && os.Geteuid() != 0 {
		return fmt.Errorf("%w: sshd needs %s and this user cannot create it", ErrUnavailable, privsepDir)
	}
	return nil
}

// Server is a running sshd on 127.0.0.1.
type Server struct {
	// Addr is "127.0.0.1:port".
	Addr string
	Host string
	Port int
	// User is the account sshd logs in: the current user.
	User string
	// KnownHosts is a known_hosts line ("[127.0.0.1]:port ssh-ed25519 ...") for the host key.
	KnownHosts []byte
	// HostKey is the server's public host key.
	HostKey ssh.PublicKey
	// UserKey is the PEM (OpenSSH format) private key accepted for User.
	UserKey []byte
	// Dir holds the config, keys and pid file.
	Dir string

	cmd  *exec.Cmd
	logs *syncbuf.Buffer
	done chan struct{}
	// probes are the source ports of the start's own banner probes, not the agents'.
	probes map[string]bool // "ip port"
}

// Start runs sshd with its config, keys and pid file in dir. Stop ends it.
func Start(dir string) (*Server, error) { return StartWith(dir) }

// StartWith is Start with more sshd_config lines, for hosts configured otherwise than
// OpenSSH's defaults ("AllowTcpForwarding no" on a hardened host, say).
func StartWith(dir string, options ...string) (*Server, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(privsepDir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", privsepDir, err)
	}
	u, err := user.Current()
	if err != nil {
		return nil, fmt.Errorf("current user: %w", err)
	}
	hostPub, hostPEM, err := newSSHKey()
	if err != nil {
		return nil, err
	}
	userPub, userPEM, err := newSSHKey()
	if err != nil {
		return nil, err
	}
	hostKeyPath := filepath.Join(dir, "ssh_host_ed25519_key")
	if err := os.WriteFile(hostKeyPath, hostPEM, 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "authorized_keys"), ssh.MarshalAuthorizedKey(userPub), 0o600); err != nil {
		return nil, err
	}
	// A free port is only free until someone takes it: try again if sshd loses the race.
	var lastErr error
	for range 5 {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		h := &Server{
			Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Host: "127.0.0.1", Port: port,
			User: u.Username, HostKey: hostPub, UserKey: userPEM, Dir: dir,
			KnownHosts: []byte(knownhosts.Line([]string{knownhosts.Normalize("127.0.0.1:" + strconv.Itoa(port))}, hostPub) + "\n"),
			logs:       &syncbuf.Buffer{}, done: make(chan struct{}), probes: map[string]bool{},
		}
		conf := filepath.Join(dir, "sshd_config")
		if err := os.WriteFile(conf, []byte(config(dir, port, hostKeyPath, options)), 0o600); err != nil {
			return nil, err
		}
		if lastErr = h.run(conf); lastErr == nil {
			return h, nil
		}
	}
	return nil, fmt.Errorf("sshd did not start: %w", lastErr)
}

func config(dir string, port int, hostKey string, options []string) string {
	lines := []string{
		"Port " + strconv.Itoa(port),
		"ListenAddress 127.0.0.1", // loopback only
		"HostKey " + hostKey,
		"PidFile " + filepath.Join(dir, "sshd.pid"),
		"AuthorizedKeysFile " + filepath.Join(dir, "authorized_keys"),
		"UsePAM no",
		"StrictModes no",
		"PubkeyAuthentication yes",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"PermitRootLogin prohibit-password", // keys only, when run as root
		"Subsystem sftp internal-sftp",      // no dependence on where sftp-server lives
		"LogLevel VERBOSE",                  // logs each connection's source port (rule P4 checks)
		"MaxStartups 50",
	}
	lines = append(lines, options...)
	return strings.Join(lines, "\n") + "\n"
}

// Logs returns what sshd printed so far (it runs with -e, so its log goes to stderr).
func (h *Server) Logs() string { return h.logs.String() }

func (h *Server) run(conf string) error {
	cmd := exec.Command(Binary, "-D", "-e", "-f", conf)
	cmd.Stdout, cmd.Stderr = h.logs, h.logs
	// Own process group, so that stop also ends the per-connection children it forked.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	h.cmd = cmd
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait(); close(h.done) }()
	addr := h.Addr
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			return fmt.Errorf("sshd exited (%w): %s", err, h.logs.String())
		default:
		}
		if h.banner(addr) {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	h.Stop()
	return fmt.Errorf("sshd not answering on %s after 10s: %s", addr, h.logs.String())
}

// banner is true once something on addr speaks SSH.
func (h *Server) banner(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	// sshd logs this connection too, maybe after the banner: remember it is not an agent's.
	la := c.LocalAddr().(*net.TCPAddr)
	h.probes[la.IP.String()+" "+strconv.Itoa(la.Port)] = true
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 4)
	_, err = io.ReadFull(c, buf)
	return err == nil && string(buf) == "SSH-"
}

// Stop ends sshd and the per-connection processes it forked.
func (h *Server) Stop() {
	if h == nil || h.cmd == nil || h.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-h.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-h.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-h.cmd.Process.Pid, syscall.SIGKILL)
		<-h.done
	}
}

var connectionFrom = regexp.MustCompile(`Connection from (\S+) port (\d+) on`)

// SourcePorts lists the source port of every connection sshd accepted, from its log, less
// the start's own probes.
func (h *Server) SourcePorts() []int {
	var out []int
	for _, m := range connectionFrom.FindAllStringSubmatch(h.logs.String(), -1) {
		if p, err := strconv.Atoi(m[2]); err == nil && !h.probes[m[1]+" "+m[2]] {
			out = append(out, p)
		}
	}
	return out
}

func newSSHKey() (ssh.PublicKey, []byte, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		return nil, nil, err
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil, nil, err
	}
	return sp, pem.EncodeToMemory(block), nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
