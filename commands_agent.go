package main

import (
	"context"
	"io"
	"syscall"

	"github.com/fwops/firmware-operator/internal/agent/runner"
)

func init() {
	subcommands["agent"] = subcommand{
		summary: "run the node agent that flashes targets; 'agent status --addr HOST:PORT' shows its progress",
		run: func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
			// What the agent writes to the node's firmware cache stays group-writable for the
			// node's other agents, root or not (see internal/cacheinit).
			syscall.Umask(0o002)
			return runner.Main(ctx, args, stdout, stderr)
		},
	}
}
