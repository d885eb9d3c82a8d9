package linux

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fwops/firmware-operator/internal/testutil/syncbuf"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/fwops/firmware-operator/internal/agent/driver"
	"github.com/fwops/firmware-operator/internal/agent/sshconn"
	"github.com/fwops/firmware-operator/internal/testutil/sshd"
)

const password = "L1nux-Pa55-never-logged"

func target(s *sshd.Server) driver.Target {
	return driver.Target{Name: "host-1", Type: driver.TypeLinux, Address: s.Host,
		Credentials: driver.Credentials{Username: s.User, PrivateKey: s.UserKey, Password: password},
		SSH:         driver.SSH{Port: s.Port, KnownHosts: s.KnownHosts}}
}

func options(t *testing.T, logs *syncbuf.Buffer) Options {
	return Options{StateDir: filepath.Join(t.TempDir(), "state"), PollInterval: 50 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
}

// component writes a Smart Component stand-in: a script that records where it ran and
// with which arguments in marker, then exits with code.
func component(t *testing.T, marker string, code int) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "cp012345.scexe")
	script := fmt.Sprintf("#!/bin/sh\nprintf '%%s\\n%%s\\n' \"$PWD/${0##*/}\" \"$*\" > %s\necho 'component says hello'\nexit %d\n",
		strconv.Quote(marker), code)
	if err := os.WriteFile(p, []byte(script), 0o600); err != nil { // not executable here: the driver must chmod
		t.Fatal(err)
	}
	return p
}

func TestSmartComponentExitCodes(t *testing.T) {
	s := sshd.Start(t)
	for _, tc := range []struct {
		code       int
		wantErr    string
		reboot     bool
		notNeeded  bool
		versionSet bool
	}{
		{code: 0, versionSet: true},
		{code: 1, reboot: true, versionSet: true},
		{code: 2, notNeeded: true},
		{code: 3, wantErr: "failed (exit code 3)"},
		{code: 7, wantErr: "undocumented exit code 7"},
	} {
		t.Run(strconv.Itoa(tc.code), func(t *testing.T) {
			logs := &syncbuf.Buffer{}
			opts := options(t, logs)
			d, err := NewFactory(opts)(context.Background(), target(s))
			if err != nil {
				t.Fatalf("open: %v\n%s", err, s.Logs())
			}
			defer d.Close()
			marker := filepath.Join(t.TempDir(), "ran")
			fw := driver.Firmware{Component: driver.ComponentSmartComponent, LocalPath: component(t, marker, tc.code),
				FileName: "cp012345.scexe", Version: "1.2.3"}
			var phases []driver.Phase
			res, err := d.Update(context.Background(), fw, func(p driver.Progress) { phases = append(phases, p.Phase) })

			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				if !strings.Contains(err.Error(), "component says hello") {
					t.Errorf("error %q should quote the component's output", err)
				}
			} else if err != nil {
				t.Fatalf("Update: %v", err)
			}
			if res.RebootRequired != tc.reboot || res.NotNeeded != tc.notNeeded {
				t.Fatalf("result %+v, want reboot=%v notNeeded=%v", res, tc.reboot, tc.notNeeded)
			}
			// The script really ran, silently, from its run directory in the default staging
			// directory, which is gone now that its result is read.
			b, rerr := os.ReadFile(marker)
			if rerr != nil {
				t.Fatalf("component did not run: %v", rerr)
			}
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			if len(lines) != 2 || lines[1] != "-s" {
				t.Fatalf("marker %q: want path and -s", b)
			}
			ran := lines[0]
			if filepath.Base(ran) != "cp012345.scexe" || !strings.HasPrefix(ran, DefaultStagingDirectory+"/fwops-") {
				t.Fatalf("ran from %q", ran)
			}
			if _, err := os.Stat(ran); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("copied component %s still there: %v", ran, err)
			}
			if _, err := os.Stat(filepath.Dir(ran)); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("temp dir %s still there: %v", filepath.Dir(ran), err)
			}
			v, err := d.Version(context.Background(), driver.ComponentSmartComponent)
			if err != nil {
				t.Fatal(err)
			}
			if tc.versionSet != (v == "1.2.3") {
				t.Fatalf("Version after exit %d = %q", tc.code, v)
			}
			if tc.wantErr == "" {
				if len(phases) == 0 || phases[0] != driver.PhaseStaging || phases[len(phases)-1] != driver.PhaseVerifying {
					t.Errorf("phases %v", phases)
				}
			}
			if tc.versionSet {
				// Recorded on the host (same machine) for a later agent.
				if b, err := os.ReadFile(filepath.Join(opts.StateDir, "SmartComponent.version")); err != nil || strings.TrimSpace(string(b)) != "1.2.3" {
					t.Errorf("version file: %q, %v", b, err)
				}
			}
			if strings.Contains(logs.String(), password) {
				t.Fatal("password in logs")
			}
		})
	}
}

func TestVersionFromHostFile(t *testing.T) {
	s := sshd.Start(t)
	logs := &syncbuf.Buffer{}
	opts := options(t, logs)
	d, err := Open(context.Background(), target(s), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if v, err := d.Version(context.Background(), driver.ComponentSmartComponent); err != nil || v != "" {
		t.Fatalf("no record: Version = %q, %v; want empty, nil", v, err)
	}
	if err := os.MkdirAll(opts.StateDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(opts.StateDir, "SmartComponent.version"), []byte("2025.03.0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if v, err := d.Version(context.Background(), driver.ComponentSmartComponent); err != nil || v != "2025.03.0" {
		t.Fatalf("Version = %q, %v", v, err)
	}
	if _, err := d.Version(context.Background(), "../etc/passwd"); err == nil {
		t.Fatal("path-like component accepted")
	}
}

// rule P4, client side: the connection to sshd leaves from Target.LocalPort; sshd logs it too.
func TestLocalPort(t *testing.T) {
	s := sshd.Start(t)
	tg := target(s)
	tg.LocalAddress = "127.0.0.1"
	tg.LocalPort = freePort(t)
	d, err := Open(context.Background(), tg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if got := d.LocalAddr().(*net.TCPAddr).Port; got != tg.LocalPort {
		t.Fatalf("local port %d, want %d", got, tg.LocalPort)
	}
	if !strings.Contains(s.Logs(), "port "+strconv.Itoa(tg.LocalPort)+" ") {
		t.Fatalf("sshd did not see source port %d:\n%s", tg.LocalPort, s.Logs())
	}
}

func TestHostKeyMismatch(t *testing.T) {
	s := sshd.Start(t)
	tg := target(s)
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	k, _ := ssh.NewPublicKey(pub)
	tg.SSH.KnownHosts = []byte(knownhosts.Line([]string{knownhosts.Normalize(s.Addr)}, k) + "\n")
	logs := &syncbuf.Buffer{}
	_, err := Open(context.Background(), tg, options(t, logs))
	if !errors.Is(err, sshconn.ErrHostKeyMismatch) {
		t.Fatalf("err = %v, want mismatch", err)
	}
	if !strings.Contains(err.Error(), "host-1") || !strings.Contains(err.Error(), ssh.FingerprintSHA256(s.HostKey)) {
		t.Fatalf("error %q should name the target and presented key", err)
	}
	if strings.Contains(err.Error()+logs.String(), password) {
		t.Fatal("password leaked")
	}
}

func TestBadFirmware(t *testing.T) {
	s := sshd.Start(t)
	d, err := Open(context.Background(), target(s), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := d.Update(context.Background(), driver.Firmware{LocalPath: "/nonexistent/cp1.scexe"}, nil); err == nil {
		t.Fatal("missing file accepted")
	}
	p := component(t, filepath.Join(t.TempDir(), "m"), 0)
	if _, err := d.Update(context.Background(), driver.Firmware{LocalPath: p, FileName: "../evil"}, nil); err == nil {
		t.Fatal("path-like file name accepted")
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
