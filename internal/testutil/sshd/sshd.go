// Package sshd starts a real OpenSSH sshd on a loopback port for tests: it stands in for a
// Linux host (the Smart Component runs on this very machine), with a generated host key and
// a generated user key.
package sshd

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fwops/firmware-operator/internal/testutil/syncbuf"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Binary is where Debian's openssh-server installs sshd. It must be run by absolute path:
// sshd re-executes itself for each connection.
const Binary = "/usr/sbin/sshd"

// privsepDir must exist even when sshd runs unprivileged.
const privsepDir = "/run/sshd"

// Server is a running sshd.
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
}

// Logs returns what sshd printed so far (it runs with -e, so its log goes to stderr).
func (s *Server) Logs() string { return s.logs.String() }

// Start runs sshd for the duration of the test. Without sshd the test is skipped, or fails
// when CI=true, so that CI cannot pass by skipping.
func Start(t testing.TB) *Server {
	t.Helper()
	if _, err := os.Stat(Binary); err != nil {
		missing(t, fmt.Sprintf("%s not found (Debian package openssh-server): %v", Binary, err))
	}
	if _, err := os.Stat(privsepDir); err != nil {
		if os.Geteuid() != 0 {
			missing(t, fmt.Sprintf("sshd needs %s and this user cannot create it", privsepDir))
		}
		if err := os.MkdirAll(privsepDir, 0o755); err != nil {
			t.Fatalf("create %s: %v", privsepDir, err)
		}
	}
	u, err := user.Current()
	if err != nil {
		t.Fatalf("current user: %v", err)
	}
	dir := t.TempDir()
	hostPub, hostPEM := newKey(t)
	userPub, userPEM := newKey(t)
	hostKeyPath := filepath.Join(dir, "ssh_host_ed25519_key")
	writeFile(t, hostKeyPath, hostPEM, 0o600)
	writeFile(t, filepath.Join(dir, "authorized_keys"), ssh.MarshalAuthorizedKey(userPub), 0o600)

	// A free port is only free until someone takes it: try again if sshd loses the race.
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port := freePort(t)
		s := &Server{
			Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Host: "127.0.0.1", Port: port,
			User: u.Username, HostKey: hostPub, UserKey: userPEM, Dir: dir,
			KnownHosts: []byte(knownhosts.Line([]string{knownhosts.Normalize("127.0.0.1:" + strconv.Itoa(port))}, hostPub) + "\n"),
			logs:       &syncbuf.Buffer{}, done: make(chan struct{}),
		}
		conf := filepath.Join(dir, "sshd_config")
		writeFile(t, conf, []byte(config(dir, port, hostKeyPath)), 0o600)
		if lastErr = s.run(conf); lastErr == nil {
			t.Cleanup(s.stop)
			return s
		}
	}
	t.Fatalf("sshd did not start: %v", lastErr)
	return nil
}

func missing(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(why)
	}
	t.Skip(why)
}

func config(dir string, port int, hostKey string) string {
	lines := []string{
		"Port " + strconv.Itoa(port),
		"ListenAddress 127.0.0.1",
		"HostKey " + hostKey,
		"PidFile " + filepath.Join(dir, "sshd.pid"),
		"AuthorizedKeysFile " + filepath.Join(dir, "authorized_keys"),
		"UsePAM no",
		"StrictModes no",
		"PubkeyAuthentication yes",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"PermitRootLogin prohibit-password", // tests run as root here; keys only
		"Subsystem sftp internal-sftp",      // no dependence on where sftp-server lives
		"LogLevel VERBOSE",
		"MaxStartups 50",
	}
	return strings.Join(lines, "\n") + "\n"
}

func (s *Server) run(conf string) error {
	cmd := exec.Command(Binary, "-D", "-e", "-f", conf)
	cmd.Stdout = s.logs
	cmd.Stderr = s.logs
	// Own process group, so that stop also ends the per-connection children it forked.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	s.cmd = cmd
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait(); close(s.done) }()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			return fmt.Errorf("sshd exited (%w): %s", err, s.Logs())
		default:
		}
		if banner(s.Addr) {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.stop()
	return fmt.Errorf("sshd not answering on %s after 10s: %s", s.Addr, s.Logs())
}

// banner is true once something on addr speaks SSH.
func banner(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 4)
	_, err = io.ReadFull(c, buf)
	return err == nil && string(buf) == "SSH-"
}

func (s *Server) stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
	}
}

func newKey(t testing.TB) (ssh.PublicKey, []byte) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return sp, pem.EncodeToMemory(block)
}

func writeFile(t testing.TB, path string, b []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, b, mode); err != nil {
		t.Fatal(err)
	}
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
