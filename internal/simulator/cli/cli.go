// Package cli is the "simulator" subcommand: it runs simulated targets from the command line
// for demos and manual testing.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/fwops/firmware-operator/internal/simulator/ilo"
	"github.com/fwops/firmware-operator/internal/simulator/oa"
)

// Run implements "simulator ilo ..." and "simulator oa ...". It blocks until ctx ends.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintln(stdout, "usage: simulator ilo|oa [flags]   (run 'simulator ilo --help' or 'simulator oa --help' for the flags)")
		if len(args) == 0 {
			return errors.New("simulator: missing kind (ilo or oa)")
		}
		return nil
	}
	switch args[0] {
	case "ilo":
		return runILO(ctx, args[1:], stdout, stderr)
	case "oa":
		return oa.Run(ctx, args[1:], stdout, stderr)
	}
	return fmt.Errorf("simulator: unknown kind %q (want ilo or oa)", args[0])
}

func runILO(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("simulator ilo", flag.ContinueOnError)
	fs.SetOutput(stdout)
	var (
		cfg      ilo.Config
		model    string
		listen   string
		certOut  string
		count    int
		perPort  bool
		password string
	)
	fs.StringVar(&cfg.MockupDir, "mockup", "", "Redfish-Mockup-Creator tree to serve (the folder that is /redfish/v1); required")
	fs.StringVar(&listen, "listen", "127.0.0.1:8443", "address to listen on (host:port; port 0 picks a free one)")
	fs.StringVar(&cfg.Username, "username", "admin", "the accepted user name")
	fs.StringVar(&password, "password", "", "the accepted password (default: read from $SIM_PASSWORD, else \"password\")")
	fs.StringVar(&model, "model", "ilo5", "iLO generation: ilo4, ilo5 or ilo6")
	fs.StringVar(&certOut, "cert-out", "", "write the served certificate (PEM) to this file; with --count, one file per instance suffixed .N")
	fs.IntVar(&count, "count", 1, "number of instances, on consecutive loopback addresses from --listen's IP (127.0.1.1, 127.0.1.2, ...)")
	fs.BoolVar(&perPort, "per-port", false, "with --count, use consecutive ports on --listen's IP instead of consecutive addresses")
	fs.DurationVar(&cfg.Timings.Upload, "upload-time", 500*time.Millisecond, "minimum time a flash spends in Uploading")
	fs.DurationVar(&cfg.Timings.Verify, "verify-time", 500*time.Millisecond, "time a flash spends in Verifying")
	fs.DurationVar(&cfg.Timings.Write, "write-time", 500*time.Millisecond, "time a flash spends in Writing")
	fs.DurationVar(&cfg.Timings.Update, "update-time", 2*time.Second, "time a flash spends in Updating (percent 0..100)")
	fs.IntVar(&cfg.Timings.Steps, "update-steps", 4, "number of percent increments while Updating")
	fs.DurationVar(&cfg.Timings.ResetDelay, "reset-delay", 0, "time in Complete before an iLO that flashed itself resets (0: 3s)")
	fs.DurationVar(&cfg.Timings.ILOReset, "reset-time", 0, "time the resetting iLO drops every connection (0: 90s)")
	fs.DurationVar(&cfg.Timings.HalfUp, "half-up-time", 0, "time after the reset when UpdateService still answers 503 (0: 20s)")
	fs.DurationVar(&cfg.Timings.POST, "post-time", 0, "time the host's POST takes after a ComputerSystem.Reset (0: 60s)")
	fs.BoolVar(&cfg.SimpleUpdateTask, "task", false, "SimpleUpdate answers 202 with a Task (iLO 5 2.30+) instead of 200 without")
	fs.BoolVar(&cfg.NoSessions, "no-sessions", false, "refuse session logins (405) so that clients use Basic auth")
	fs.BoolVar(&cfg.PlainHTTP, "http", false, "serve plain HTTP instead of HTTPS (debugging only)")
	fs.Usage = func() {
		fmt.Fprintln(stdout, "usage: simulator ilo --mockup DIR [flags]")
		fmt.Fprintln(stdout, "\nServes a simulated HPE iLO over Redfish. Faults are injected with")
		fmt.Fprintln(stdout, "POST /_sim/faults (JSON: failNext, failStatus, stallMs, dropNext, flashError,")
		fmt.Fprintln(stdout, "versionUnchanged, downloadBytesPerSec, wrongCert, retryAfterNext, retryAfterSeconds);")
		fmt.Fprintln(stdout, "GET /_sim/stats reports flashes and client source ports.\n\nflags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if cfg.MockupDir == "" {
		return errors.New("simulator ilo: --mockup is required")
	}
	if password == "" {
		// Read at run time, never at init: lets scripts keep the password off the command line.
		password = os.Getenv("SIM_PASSWORD")
	}
	if password == "" {
		password = "password"
	}
	cfg.Password = password
	cfg.Model = ilo.Model(model)
	cfg.Logf = func(format string, a ...any) {
		fmt.Fprintf(stderr, time.Now().Format("15:04:05.000 ")+format+"\n", a...)
	}
	fleet, err := ilo.StartFleet(cfg, count, listen, perPort)
	if err != nil {
		return fmt.Errorf("simulator ilo: %w", err)
	}
	defer fleet.Close()
	for i, s := range fleet.Sims {
		if certOut != "" && !cfg.PlainHTTP {
			path := certOut
			if count > 1 {
				path = fmt.Sprintf("%s.%d", certOut, i+1)
			}
			if err := s.WriteCertPEM(path); err != nil {
				return fmt.Errorf("simulator ilo: %w", err)
			}
		}
		fmt.Fprintf(stdout, "%s %s sha256=%s\n", s.URL(), model, s.CertFingerprint())
	}
	<-ctx.Done()
	return nil
}
