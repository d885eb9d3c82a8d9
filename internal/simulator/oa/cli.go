package oa

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"
)

// Run is the "simulator oa" command: it parses args (without the command name), starts an
// OA simulator and serves until ctx ends. --help prints the flags to stdout and returns nil.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("simulator oa", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:2222", "address to listen on (host:port; port 0 picks a free one)")
	username := fs.String("username", "Administrator", "the login name the OA accepts")
	password := fs.String("password", "password", "the password the OA accepts (password and keyboard-interactive)")
	version := fs.String("version", "4.97", "OA firmware version reported before any flash")
	hostKeyOut := fs.String("host-key-out", "", "write the generated ed25519 host private key (OpenSSH PEM) to this file")
	knownHostsOut := fs.String("known-hosts-out", "", "write the known_hosts line for the host key to this file")
	restartDelay := fs.Duration("restart-delay", 5*time.Second, "how long the OA refuses connections while it restarts after a flash")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: simulator oa [flags]\n\n"+
			"Simulates an HPE C-Class Onboard Administrator's SSH command line: SHOW OA INFO,\n"+
			"UPDATE IMAGE <url>, UPDATE ILO <bay> <url>, SHOW SERVER INFO <bay> (exec requests).\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stdout)
			fs.Usage()
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	s, err := New(Config{Listen: *listen, Username: *username, Password: *password,
		Version: *version, RestartDelay: *restartDelay})
	if err != nil {
		return err
	}
	if *hostKeyOut != "" {
		pemBytes, err := s.HostKeyPEM()
		if err == nil {
			err = os.WriteFile(*hostKeyOut, pemBytes, 0o600)
		}
		if err != nil {
			s.Close()
			return fmt.Errorf("write host key: %w", err)
		}
	}
	if *knownHostsOut != "" {
		if err := os.WriteFile(*knownHostsOut, []byte(s.KnownHostsLine()+"\n"), 0o644); err != nil {
			s.Close()
			return fmt.Errorf("write known_hosts: %w", err)
		}
	}
	fmt.Fprintf(stdout, "OA simulator listening on %s (firmware %s)\n", s.Addr(), *version)
	return s.Run(ctx)
}
