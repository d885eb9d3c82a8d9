package linux

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fwops/firmware-operator/internal/agent/driver"
	"github.com/fwops/firmware-operator/internal/testutil/sshd"
)

// requireRoot: these tests add a user, edit sudoers or mount file systems, as only root can.
// CI runs as root, so there a missing privilege is a failure, not a skip.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("this test needs root (CI runs as root)")
	}
	t.Skip("needs root")
}

// requireSudo: the sudo tests use the real sudo (Debian package sudo, which .ci/run installs).
func requireSudo(t *testing.T) {
	t.Helper()
	if _, err := osexec.LookPath("sudo"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("sudo is not installed (Debian package sudo): ", err)
		}
		t.Skip("sudo is not installed")
	}
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := osexec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// hostUser adds a throw-away local user whom s logs in with its user key (a non-root SSH user
// of the host, as fleets use), and removes it when the test ends.
func hostUser(t *testing.T, s *sshd.Server) string {
	t.Helper()
	requireRoot(t)
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := "fwops-t" + hex.EncodeToString(b)
	// "*" is no password at all, not a locked account: sshd lets the key in.
	run(t, "useradd", "--create-home", "--shell", "/bin/sh", "--password", "*", name)
	t.Cleanup(func() {
		if out, err := osexec.Command("userdel", "--force", "--remove", name).CombinedOutput(); err != nil {
			t.Logf("userdel %s: %v\n%s", name, err, out)
		}
	})
	// sshd reads the AuthorizedKeysFile as the user who logs in: let that user reach the
	// public key file (the host key stays private).
	for _, dir := range []string{filepath.Dir(s.Dir), s.Dir} {
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(s.Dir, "authorized_keys"), 0o644); err != nil {
		t.Fatal(err)
	}
	return name
}

// allowSudo gives user password-less sudo for commands (ALL, or a list) through a sudoers
// drop-in, as fleets configure it.
func allowSudo(t *testing.T, user, commands string) {
	t.Helper()
	f := filepath.Join("/etc/sudoers.d", user)
	if err := os.WriteFile(f, []byte(user+" ALL=(ALL) NOPASSWD: "+commands+"\n"), 0o440); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Remove(f) })
	run(t, "visudo", "-c", "-q", "-f", f)
}

// sudoTarget is a target that logs in as user, with spec.linux.sudo set and the default
// staging directory (user cannot enter the test's own directories).
func sudoTarget(s *sshd.Server, user string) driver.Target {
	tg := target(s)
	tg.Credentials.Username = user
	tg.Credentials.Password = ""
	tg.Linux.Sudo = true
	tg.Linux.StagingDirectory = DefaultStagingDirectory
	return tg
}

// updateOnce opens a driver for tg, runs fw once and closes the driver, as one agent would.
func updateOnce(t *testing.T, tg driver.Target, opts Options, fw driver.Firmware) (driver.Result, error) {
	t.Helper()
	d, err := Open(context.Background(), tg, opts)
	if err != nil {
		t.Fatalf("open as %s: %v", tg.Credentials.Username, err)
	}
	defer d.Close()
	return d.Update(context.Background(), fw, nil)
}

// sudoUpdate runs a released gated component once as a fresh non-root user with
// spec.linux.sudo set, whom sudoers lets run commands without a password ("" : not at all).
func sudoUpdate(t *testing.T, commands string) (string, gated, driver.Result, error) {
	t.Helper()
	requireSudo(t)
	h := newHost(t)
	user := hostUser(t, h.s)
	if commands != "" {
		allowSudo(t, user, commands)
	}
	g := gatedComponent(t, ExitInstalled)
	g.release(t)
	res, err := updateOnce(t, sudoTarget(h.s, user), h.opts, g.firmware())
	if err != nil {
		t.Logf("Update as %s: %v\n%s", user, err, h.logs)
	}
	return user, g, res, err
}

// A non-root SSH user with password-less sudo: the component runs as root through sudo -n, and
// what it unpacked as root is removed through sudo too, once the result is read.
func TestSudoRunsComponentAsRoot(t *testing.T) {
	user, g, res, err := sudoUpdate(t, "ALL")
	if err != nil {
		t.Fatal(err)
	}
	if res.VersionAfter != "4.5.6" {
		t.Fatalf("result %+v", res)
	}
	b, err := os.ReadFile(g.runs)
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b))
	if len(f) != 4 || f[1] != "0" || f[2] != user {
		t.Fatalf("the component ran as %q, want uid 0 through sudo by %s", b, user)
	}
	if n := lines(t, g.runs); n != 1 {
		t.Fatalf("the component started %d times, want once", n)
	}
	if _, err := os.Stat(f[3]); !os.IsNotExist(err) {
		t.Fatalf("run directory %s (with root's files in it) not removed: %v", f[3], err)
	}
}

// sudo that asks for a password fails at once with a message that says what to change, and
// nothing runs.
func TestSudoAsksForPassword(t *testing.T) {
	user, g, _, err := sudoUpdate(t, "") // not in sudoers: sudo asks for a password
	if err == nil {
		t.Fatal("Update succeeded although sudo wants a password")
	}
	for _, want := range []string{"spec.linux.sudo", "asks " + user + " for a password", "NOPASSWD", "nothing was run"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q should say %q", err, want)
		}
	}
	if n := lines(t, g.runs); n != 0 {
		t.Fatalf("the component ran %d times without sudo", n)
	}
	sum := sha256File(t, g.path)
	if _, err := os.Stat(runDir(DefaultStagingDirectory, sum)); !os.IsNotExist(err) {
		t.Fatalf("run directory left behind although nothing ran: %v", err)
	}
}

// sudo that lets the user run some commands but not the component's wrapper: the run never
// begins, the message says so, and the next attempt may start it once sudoers is fixed.
func TestSudoRefusesTheComponent(t *testing.T) {
	user, g, _, err := sudoUpdate(t, "/usr/bin/true, /bin/true")
	if err == nil || !strings.Contains(err.Error(), "asks "+user+" for a password") {
		t.Fatalf("err = %v, want sudo's refusal explained", err)
	}
	if n := lines(t, g.runs); n != 0 {
		t.Fatalf("the component ran %d times", n)
	}
	if _, err := os.Stat(runDir(DefaultStagingDirectory, sha256File(t, g.path))); !os.IsNotExist(err) {
		t.Fatalf("run directory left behind although nothing ran: %v", err)
	}
}

func sha256File(t *testing.T, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sum, err := digest("", f)
	if err != nil {
		t.Fatal(err)
	}
	return sum
}
