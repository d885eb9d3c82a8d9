package main

import "github.com/fwops/firmware-operator/internal/demo"

func init() {
	subcommands["demo"] = subcommand{
		summary: "run a local control plane, a simulated fleet, the manager and agents, and a rollout (make demo)",
		run:     demo.Run,
	}
}
