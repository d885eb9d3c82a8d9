package cacheinit

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

func TestRunHandsTheCacheOver(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cache")
	uid := os.Getuid() // chown to oneself works without privileges
	if err := Run(context.Background(), []string{"--dir=" + dir, "--uid=" + strconv.Itoa(uid)}, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := int(fi.Sys().(*syscall.Stat_t).Uid); got != uid {
		t.Fatalf("owner %d, want %d", got, uid)
	}
}

func TestRunNeedsBothFlags(t *testing.T) {
	err := Run(context.Background(), []string{"--dir=/tmp/x"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--uid") {
		t.Fatalf("err = %v, want one naming --uid", err)
	}
}

// A root agent (port 80) wrote the cache, then a non-root one comes, or the other way round:
// cache-init hands every entry to the agents' group, directories setgid and group-writable.
func TestRunHandsOverWhatAnotherAgentWrote(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("needs root (CI runs as root)")
		}
		t.Skip("needs root to chown")
	}
	dir := filepath.Join(t.TempDir(), "cache")
	sub := filepath.Join(dir, "sha256")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	partial := filepath.Join(sub, "abc.partial")
	if err := os.WriteFile(partial, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	image := filepath.Join(sub, "def")
	if err := os.WriteFile(image, []byte("y"), 0o444); err != nil {
		t.Fatal(err)
	}
	const uid = 65532
	if err := Run(context.Background(), []string{"--dir=" + dir, "--uid=" + strconv.Itoa(uid)}, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]os.FileMode{dir: 0o775 | os.ModeSetgid | os.ModeDir, sub: 0o775 | os.ModeSetgid | os.ModeDir, partial: 0o664, image: 0o444} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if int(st.Uid) != uid || int(st.Gid) != uid {
			t.Errorf("%s: owner %d:%d, want %d:%d", p, st.Uid, st.Gid, uid, uid)
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode(), want)
		}
	}
}
