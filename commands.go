package main

import (
	simcli "github.com/fwops/firmware-operator/internal/simulator/cli"
)

func init() {
	subcommands["simulator"] = subcommand{
		summary: "run simulated targets: 'simulator ilo' (iLO 4/5/6 over Redfish), 'simulator oa'",
		run:     simcli.Run,
	}
}
