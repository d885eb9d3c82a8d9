// Package cacheinit is the "cache-init" subcommand, run as the agent pod's init container
// when the agent itself runs as non-root: the kubelet creates the node's firmware cache
// (a hostPath) as root, and the agent must be able to write it.
package cacheinit

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
)

// Run creates the directory if needed and gives it to the user.
func Run(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("cache-init", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "the firmware cache directory (required)")
	uid := fs.Int("uid", -1, "the agent's user id (required)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" || *uid < 0 {
		return fmt.Errorf("--dir and --uid are required")
	}
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		return err
	}
	if err := os.Chown(*dir, *uid, *uid); err != nil {
		return fmt.Errorf("handing %s to user %d: %w", *dir, *uid, err)
	}
	fmt.Fprintf(stdout, "firmware cache %s belongs to user %d\n", *dir, *uid)
	return nil
}
