package linux

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// mountTmpfs mounts a small tmpfs with options on a fresh directory, as CIS-hardened hosts
// mount /tmp and /var/tmp, and unmounts it when the test ends.
func mountTmpfs(t *testing.T, options string) string {
	t.Helper()
	requireRoot(t)
	dir := t.TempDir()
	run(t, "mount", "-t", "tmpfs", "-o", options+",size=8m,mode=0755", "fwops-test", dir)
	t.Cleanup(func() { run(t, "umount", dir) })
	return dir
}

// A staging directory where nothing can run, or nothing can be written, fails before anything
// is copied, with a message that names the directory and what to set instead.
func TestStagingDirectoryProblems(t *testing.T) {
	h := newHost(t)
	noexec := mountTmpfs(t, "noexec")
	readOnly := mountTmpfs(t, "ro")
	for _, tc := range []struct {
		name, staging string
		want          []string
	}{
		{"noexec", noexec, []string{noexec + " does not allow running programs", "noexec", "spec.linux.stagingDirectory"}},
		{"read-only", readOnly, []string{readOnly + " is not writable by " + h.s.User, "spec.linux.stagingDirectory"}},
		{"missing and cannot be made", filepath.Join(readOnly, "staging"), []string{filepath.Join(readOnly, "staging") + " does not exist on the host and " + h.s.User + " cannot create it"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tg := h.tg
			tg.Linux.StagingDirectory = tc.staging
			g := gatedComponent(t, ExitInstalled)
			g.release(t)
			_, err := updateOnce(t, tg, h.opts, g.firmware())
			if err == nil {
				t.Fatal("Update succeeded")
			}
			t.Logf("message: %v", err)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q should say %q", err, w)
				}
			}
			if n := lines(t, g.runs); n != 0 {
				t.Fatalf("the component ran %d times", n)
			}
			assertNoRunDirs(t, tc.staging)
		})
	}
}

// A staging directory owned by root is not writable by a non-root SSH user.
func TestStagingDirectoryNotWritableByUser(t *testing.T) {
	h := newHost(t)
	user := hostUser(t, h.s)
	staging, err := os.MkdirTemp("/var/tmp", "fwops-test-root-") // 0700, root's
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(staging) })
	if err := os.Chmod(staging, 0o755); err != nil {
		t.Fatal(err)
	}
	tg := sudoTarget(h.s, user)
	tg.Linux.Sudo, tg.Linux.StagingDirectory = false, staging
	g := gatedComponent(t, ExitInstalled)
	_, err = updateOnce(t, tg, h.opts, g.firmware())
	if err == nil || !strings.Contains(err.Error(), staging+" is not writable by "+user) {
		t.Fatalf("err = %v, want %s not writable by %s", err, staging, user)
	}
}

// A run directory that is not the SSH user's (another user made it, or a symlink planted in a
// shared /var/tmp) is never used: its component could have been swapped.
func TestForeignRunDirectoryRefused(t *testing.T) {
	h := newHost(t)
	g := gatedComponent(t, ExitInstalled)
	g.release(t)
	dir := runDir(h.tg.Linux.StagingDirectory, sha256File(t, g.path))
	if err := os.Symlink(t.TempDir(), dir); err != nil {
		t.Fatal(err)
	}
	_, err := updateOnce(t, h.tg, h.opts, g.firmware())
	if err == nil || !strings.Contains(err.Error(), dir+" exists on the host but is not a directory owned by") {
		t.Fatalf("err = %v, want the run directory refused", err)
	}
	if n := lines(t, g.runs); n != 0 {
		t.Fatalf("the component ran %d times", n)
	}
}
