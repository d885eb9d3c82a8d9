package ports

import (
	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
)

// FromSpec turns a PortPolicy's spec into a Policy. Fields the API server left unset (an
// object written before a default existed, or a spec built in Go) take ports.md's defaults.
func FromSpec(spec fwv1.PortPolicySpec) Policy {
	p := DefaultPolicy()
	setIf := func(dst *int, v int32) {
		if v != 0 {
			*dst = int(v)
		}
	}
	setIf(&p.ControlPort, spec.ControlPort)
	setIf(&p.FirmwareServer.PreferredPort, spec.FirmwareServer.PreferredPort)
	if r := spec.FirmwareServer.FallbackRange; r != nil {
		p.FirmwareServer.FallbackRange = Range{Start: int(r.Start), End: int(r.End)}
	}
	if spec.FirmwareServer.Selection != "" {
		p.FirmwareServer.Selection = Selection(spec.FirmwareServer.Selection)
	}
	setIf(&p.SSHPort, spec.SSHPort)
	setIf(&p.SessionBasePort, spec.SessionBasePort)
	setIf(&p.ReverseBasePort, spec.ReverseBasePort)
	if spec.SingleNICIPv4 != nil {
		p.SingleNICIPv4 = *spec.SingleNICIPv4
	}
	return p
}
