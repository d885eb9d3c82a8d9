package sshconn

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/fwops/firmware-operator/internal/agent/driver"
	"github.com/fwops/firmware-operator/internal/testutil/sshd"
)

const secret = "s3cr3t-Pa55w0rd-never-shown"

func target(s *sshd.Server) driver.Target {
	return driver.Target{
		Name: "host-1", Type: driver.TypeLinux, Address: s.Host,
		Credentials: driver.Credentials{Username: s.User, PrivateKey: s.UserKey, Password: secret},
		SSH:         driver.SSH{Port: s.Port, KnownHosts: s.KnownHosts},
	}
}

func otherKnownHosts(t *testing.T, addr string) []byte {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return []byte(knownhosts.Line([]string{knownhosts.Normalize(addr)}, k) + "\n")
}

func TestDialRealSSHD(t *testing.T) {
	s := sshd.Start(t)
	var logs bytes.Buffer
	c, err := Dial(context.Background(), target(s), Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatalf("dial: %v\n%s", err, s.Logs())
	}
	defer c.Close()
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	out, err := sess.Output("id -un")
	sess.Close()
	if err != nil || strings.TrimSpace(string(out)) != s.User {
		t.Fatalf("id -un = %q, %v; want %q", out, err, s.User)
	}
	if !strings.Contains(logs.String(), "ssh connected") {
		t.Fatalf("no connection log: %q", logs.String())
	}
	if strings.Contains(logs.String(), secret) {
		t.Fatal("password in logs")
	}
}

// rule P4: the connection leaves from Target.LocalPort.
func TestDialLocalPort(t *testing.T) {
	s := sshd.Start(t)
	tg := target(s)
	tg.LocalAddress = "127.0.0.1"
	tg.LocalPort = freePort(t)
	for i := 0; i < 2; i++ { // twice: the first connection's TIME_WAIT must not block the second
		c, err := Dial(context.Background(), tg, Options{})
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		got := c.Conn.LocalAddr().(*net.TCPAddr).Port
		c.Close()
		if got != tg.LocalPort {
			t.Fatalf("source port %d, want %d", got, tg.LocalPort)
		}
	}
	if !strings.Contains(s.Logs(), "port "+strconv.Itoa(tg.LocalPort)) {
		t.Fatalf("sshd did not log a connection from port %d:\n%s", tg.LocalPort, s.Logs())
	}
}

func TestHostKeyMismatch(t *testing.T) {
	s := sshd.Start(t)
	tg := target(s)
	tg.SSH.KnownHosts = otherKnownHosts(t, s.Addr)
	var logs bytes.Buffer
	_, err := Dial(context.Background(), tg, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if !errors.Is(err, ErrHostKeyMismatch) {
		t.Fatalf("err = %v, want host key mismatch", err)
	}
	msg := err.Error()
	for _, want := range []string{"host-1", ssh.FingerprintSHA256(s.HostKey), "known_hosts expects"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	if strings.Contains(msg+logs.String(), secret) {
		t.Fatal("password leaked")
	}
	// The waiver, and only the waiver, lets the same known_hosts through.
	tg.SSH.InsecureIgnoreHostKey = true
	c, err := Dial(context.Background(), tg, Options{})
	if err != nil {
		t.Fatalf("with waiver: %v", err)
	}
	c.Close()
}

func TestHostUnknown(t *testing.T) {
	s := sshd.Start(t)
	tg := target(s)
	tg.SSH.KnownHosts = otherKnownHosts(t, "192.0.2.1:22") // some other host
	_, err := Dial(context.Background(), tg, Options{})
	if !errors.Is(err, ErrHostKeyUnknown) {
		t.Fatalf("err = %v, want unknown host key", err)
	}
	if !strings.Contains(err.Error(), ssh.FingerprintSHA256(s.HostKey)) {
		t.Fatalf("error %q does not name the presented key", err)
	}
}

func TestNoKnownHosts(t *testing.T) {
	s := sshd.Start(t)
	tg := target(s)
	tg.SSH.KnownHosts = nil
	if _, err := Dial(context.Background(), tg, Options{}); !errors.Is(err, ErrNoKnownHosts) {
		t.Fatalf("err = %v, want ErrNoKnownHosts", err)
	}
}

func TestAuthFailureHidesPassword(t *testing.T) {
	s := sshd.Start(t)
	tg := target(s)
	_, otherKey := func() (ssh.PublicKey, []byte) {
		_, priv, _ := ed25519.GenerateKey(rand.Reader)
		b, err := ssh.MarshalPrivateKey(priv, "")
		if err != nil {
			t.Fatal(err)
		}
		return nil, pemEncode(b)
	}()
	tg.Credentials.PrivateKey = otherKey
	var logs bytes.Buffer
	_, err := Dial(context.Background(), tg, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err == nil {
		t.Fatal("dial with a wrong key succeeded")
	}
	if !strings.Contains(err.Error(), "unable to authenticate") {
		t.Fatalf("err = %v", err)
	}
	if strings.Contains(err.Error()+logs.String(), secret) {
		t.Fatal("password leaked")
	}
}

func TestDialContextBound(t *testing.T) {
	// A listener that accepts and never speaks: the handshake must end with the context.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	tg := driver.Target{Name: "mute", Address: l.Addr().String(),
		Credentials: driver.Credentials{Username: "u", Password: secret},
		SSH:         driver.SSH{InsecureIgnoreHostKey: true}}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = Dial(ctx, tg, Options{})
	if err == nil {
		t.Fatal("handshake with a mute server succeeded")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("dial took %v despite a 300ms context", d)
	}
}

func TestAddr(t *testing.T) {
	for _, c := range []struct {
		addr    string
		port    int
		want    string
		wantErr bool
	}{
		{"10.0.0.1", 0, "10.0.0.1:22", false},
		{"10.0.0.1", 2222, "10.0.0.1:2222", false},
		{"10.0.0.1:2200", 0, "10.0.0.1:2200", false},
		{"10.0.0.1:2200", 2200, "10.0.0.1:2200", false},
		{"10.0.0.1:2200", 22, "", true},
		{"oa.example", 0, "oa.example:22", false},
		{"fe80::1", 0, "[fe80::1]:22", false},
		{"[fe80::1]", 0, "[fe80::1]:22", false},
		{"[fe80::1]:830", 0, "[fe80::1]:830", false},
		{"", 0, "", true},
		{"h:x", 0, "", true},
	} {
		got, err := Addr(driver.Target{Name: "t", Address: c.addr, SSH: driver.SSH{Port: c.port}})
		if (err != nil) != c.wantErr || got != c.want {
			t.Errorf("Addr(%q, %d) = %q, %v; want %q, err=%v", c.addr, c.port, got, err, c.want, c.wantErr)
		}
	}
}

func TestNoCredentials(t *testing.T) {
	_, err := ClientConfig(driver.Target{Name: "t", Address: "h", SSH: driver.SSH{InsecureIgnoreHostKey: true}})
	if err == nil || !strings.Contains(err.Error(), "no ssh credentials") {
		t.Fatalf("err = %v", err)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func pemEncode(b *pem.Block) []byte { return pem.EncodeToMemory(b) }

// Hashed known_hosts entries (HashKnownHosts yes) and extra unrelated lines work too.
func TestHashedKnownHosts(t *testing.T) {
	s := sshd.Start(t)
	tg := target(s)
	hashed := knownhosts.HashHostname(knownhosts.Normalize(s.Addr))
	tg.SSH.KnownHosts = append(otherKnownHosts(t, "192.0.2.7:22"),
		[]byte("# comment\n"+hashed+" "+string(ssh.MarshalAuthorizedKey(s.HostKey)))...)
	c, err := Dial(context.Background(), tg, Options{})
	if err != nil {
		t.Fatalf("dial with hashed entry: %v", err)
	}
	c.Close()
	tg.SSH.KnownHosts = []byte("this is not known_hosts\n")
	if _, err := Dial(context.Background(), tg, Options{}); err == nil || !strings.Contains(err.Error(), "known_hosts") {
		t.Fatalf("garbage known_hosts: %v", err)
	}
}

// An agent pod has a read-only root file system and no writable /tmp: parsing known_hosts
// must not need a temp file (TMPDIR pointing nowhere stands for it).
func TestKnownHostsWithoutWritableTempDir(t *testing.T) {
	s := sshd.Start(t)
	t.Setenv("TMPDIR", t.TempDir()+"/does-not-exist")
	c, err := Dial(context.Background(), target(s), Options{})
	if err != nil {
		t.Fatalf("dial with no writable temp folder: %v", err)
	}
	_ = c.Close()
}
