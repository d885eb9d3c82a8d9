package main

import "github.com/fwops/firmware-operator/internal/baselineimport"

func init() {
	subcommands["baseline"] = subcommand{
		summary: "'baseline import DIR' writes the FirmwareBaseline of a folder of .fwpkg and .bin files",
		run:     baselineimport.Run,
	}
}
