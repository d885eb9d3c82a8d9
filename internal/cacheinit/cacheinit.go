// Package cacheinit is the "cache-init" subcommand, run as every agent pod's init container:
// the node's firmware cache (a hostPath) is shared by agents that run as root (to bind the
// P2 port 80) and agents that run as the non-root AgentUID, and each must be able to write
// what the other wrote. The kubelet creates the hostPath as root, and fsGroup does not
// apply to hostPaths, so cache-init hands the tree to the agents' group: owner and group
// AgentUID, directories setgid and group-writable (new entries inherit the group), files
// group-writable. Agents create entries group-writable (umask 002) in turn.
package cacheinit

import (
	"context"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// Run creates the directory if needed and hands the tree to the user and group.
func Run(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fset := flag.NewFlagSet("cache-init", flag.ContinueOnError)
	fset.SetOutput(stderr)
	dir := fset.String("dir", "", "the firmware cache directory (required)")
	uid := fset.Int("uid", -1, "the agents' user and group id (required)")
	if err := fset.Parse(args); err != nil {
		return err
	}
	if *dir == "" || *uid < 0 {
		return fmt.Errorf("--dir and --uid are required")
	}
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		return err
	}
	changed := 0
	err := filepath.WalkDir(*dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		mode := fi.Mode()
		want := mode.Perm() | 0o060 // group read and write
		if d.IsDir() {
			want = 0o775 | fs.ModeSetgid
		} else if mode.Perm()&0o222 == 0 {
			want = mode.Perm() | 0o040 // verified images stay read-only
		}
		if mode&(fs.ModePerm|fs.ModeSetgid) != want {
			if err := os.Chmod(p, want); err != nil {
				return fmt.Errorf("cache-init: %s: %w", p, err)
			}
			changed++
		}
		if !ok || int(st.Uid) != *uid || int(st.Gid) != *uid {
			if err := os.Lchown(p, *uid, *uid); err != nil {
				return fmt.Errorf("handing %s to user %d: %w", p, *uid, err)
			}
			changed++
		}
		return nil
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "firmware cache %s belongs to user and group %d (%d changes)\n", *dir, *uid, changed)
	return nil
}
