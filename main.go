// Command firmware-operator dispatches to its subcommands.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	simcli "github.com/fwops/firmware-operator/internal/simulator/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: firmware-operator simulator ilo [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "simulator":
		err = simcli.Run(ctx, os.Args[2:], os.Stdout, os.Stderr)
	default:
		err = fmt.Errorf("unknown subcommand %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
