//go:build demo

// The demo links the test harness (envtest, the test cluster), whose packages write to /tmp
// when they load: in an agent pod's read-only root file system that panics ("mkdir
// /tmp/kubebuilder-envtest: read-only file system"). The image's binary leaves it out;
// make demo builds with -tags demo.

package main

import "github.com/fwops/firmware-operator/internal/demo"

func init() {
	subcommands["demo"] = subcommand{
		summary: "run a local control plane, a simulated fleet, the manager and agents, and a rollout (make demo)",
		run:     demo.Run,
	}
}
