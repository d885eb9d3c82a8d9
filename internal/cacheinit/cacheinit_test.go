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
