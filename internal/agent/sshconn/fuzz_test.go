package sshconn

import (
	"net"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/fwops/firmware-operator/internal/agent/driver"
)

// FuzzAddr feeds Addr the UpdateTarget addresses and ssh ports a user may write. What it
// returns is what the agent dials, so an accepted address must name a host (never the empty
// host, which dials the node itself) and a port in range, and say the same when split again.
func FuzzAddr(f *testing.F) {
	// Seeds: the address forms of config/samples, the README and TestAddr.
	for _, s := range []struct {
		addr string
		port int
	}{
		{"127.0.1.12", 0}, {"127.0.2.1:2222", 0}, {"127.0.3.1", 22}, {"oa1.example.com", 0},
		{"oa1.example.com:2222", 2222}, {"fe80::1", 0}, {"[fe80::1]", 0}, {"[fe80::1]:830", 0},
		{"[2001:db8::5]:22", 22}, {" 10.0.0.1 ", 0}, {"", 0}, {"h:x", 0}, {"[]", 0}, {":22", 0},
		{"host:0", 0}, {"host:+22", 0}, {"10.0.0.1:2200", 22},
	} {
		f.Add(s.addr, s.port)
	}
	f.Fuzz(func(t *testing.T, address string, port int) {
		got, err := Addr(driver.Target{Name: "t", Address: address, SSH: driver.SSH{Port: port}})
		if err != nil {
			if got != "" {
				t.Fatalf("Addr(%q, %d) = %q with error %v", address, port, got, err)
			}
			return
		}
		host, p, err := net.SplitHostPort(got)
		if err != nil {
			t.Fatalf("Addr(%q, %d) = %q, which does not split: %v", address, port, got, err)
		}
		n, err := strconv.Atoi(p)
		switch {
		case strings.TrimSpace(host) == "":
			t.Fatalf("Addr(%q, %d) = %q: no host", address, port, got)
		case err != nil || n < 1 || n > 65535 || p != strconv.Itoa(n):
			t.Fatalf("Addr(%q, %d) = %q: port %q", address, port, got, p)
		case !strings.Contains(address, host):
			t.Fatalf("Addr(%q, %d) = %q: host %q is not in the address", address, port, got, host)
		}
	})
}

// knownHostsLines are known_hosts lines as ssh-keyscan and OpenSSH write them: plain, hashed
// (HashKnownHosts yes), with a port, with markers, a comment and a blank line.
const knownHostsLines = `# ssh-keyscan -p 2222 127.0.2.1
[127.0.2.1]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl
127.0.3.1,host1.example.com ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBEmKSENjQEezOmxkZMy7opKgwFB9nkt5YRrYMjNuG5N87uRgg6CLrbo5wAdT/y6v0mKV9U2nhGpdkmnLcdTOu8=

|1|JfKTdBh7rNbXkVAQCRp4OQoPfmI=|USECr3SWf1JUPsms5AqfD5QfxkM= ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl
@revoked oa2.example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl
@cert-authority *.example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl
`

// FuzzKnownHosts feeds the known_hosts handling what a user may put in the known_hosts
// Secret: it never panics, its errors never name the in-memory file's /proc path, and the
// host key algorithms it offers are ones the ssh package knows.
func FuzzKnownHosts(f *testing.F) {
	f.Add(knownHostsLines, "127.0.2.1:2222")
	f.Add(knownHostsLines, "127.0.3.1:22")
	f.Add(knownHostsLines, "oa2.example.com:22")
	for _, l := range strings.Split(knownHostsLines, "\n") {
		f.Add(l, "127.0.0.1:22")
	}
	f.Add("[127.0.2.1]:2222 ssh-rsa AAAA\n", "127.0.2.1:2222")
	f.Add("|1|bad|hash ssh-ed25519 AAAA\n", "h:22")
	known := map[string]bool{}
	for _, a := range append(ssh.SupportedAlgorithms().HostKeys, ssh.InsecureAlgorithms().HostKeys...) {
		known[a] = true
	}
	f.Fuzz(func(t *testing.T, content, addr string) {
		cb, err := knownHostsCallback([]byte(content))
		if err != nil {
			if strings.Contains(err.Error(), "/proc/self/fd") {
				t.Fatalf("error names the in-memory file: %v", err)
			}
			return
		}
		for _, a := range knownAlgorithms(cb, addr) {
			if !known[a] {
				t.Fatalf("offers host key algorithm %q for %q", a, addr)
			}
		}
	})
}
