package main

import (
	"context"
	"io"

	"github.com/fwops/firmware-operator/internal/agent/runner"
)

func init() {
	subcommands["agent"] = subcommand{
		summary: "run the node agent that flashes targets; 'agent status --addr HOST:PORT' shows its progress",
		run: func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
			return runner.Main(ctx, args, stdout, stderr)
		},
	}
}
