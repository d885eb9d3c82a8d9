package main

import (
	"github.com/fwops/firmware-operator/internal/cacheinit"
	"github.com/fwops/firmware-operator/internal/manager"
	simcli "github.com/fwops/firmware-operator/internal/simulator/cli"
)

func init() {
	subcommands["manager"] = subcommand{
		summary: "run the controller manager (UpdateJob, UpdateTarget, PortPolicy, FirmwareBaseline)",
		run:     manager.Run,
	}
	subcommands["cache-init"] = subcommand{
		summary: "hand the node's firmware cache to the non-root agent (init container)",
		run:     cacheinit.Run,
	}
	subcommands["simulator"] = subcommand{
		summary: "run simulated targets: 'simulator ilo' (iLO 4/5/6 over Redfish), 'simulator oa'",
		run:     simcli.Run,
	}
}
