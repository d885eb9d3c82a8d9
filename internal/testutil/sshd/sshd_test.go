package sshd

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// TestStart logs in with the generated user key, checking the host key against the generated
// known_hosts line, and runs a command.
func TestStart(t *testing.T) {
	s := Start(t)
	signer, err := ssh.ParsePrivateKey(s.UserKey)
	if err != nil {
		t.Fatal(err)
	}
	khPath := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(khPath, s.KnownHosts, 0o600); err != nil {
		t.Fatal(err)
	}
	cb, err := knownhosts.New(khPath)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ssh.Dial("tcp", s.Addr, &ssh.ClientConfig{
		User: s.User, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: cb, HostKeyAlgorithms: []string{ssh.KeyAlgoED25519}, Timeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatalf("dial: %v\nsshd log:\n%s", err, s.Logs())
	}
	defer c.Close()
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	out, err := sess.Output("echo hello-$((40+2))")
	if err != nil {
		t.Fatalf("exec: %v", err)
	}
	if got := strings.TrimSpace(string(out)); got != "hello-42" {
		t.Fatalf("output %q, want hello-42", got)
	}
}
