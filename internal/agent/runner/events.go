package runner

import (
	"crypto/tls"

	"github.com/fwops/firmware-operator/internal/agent/driver"
)

// receiveFor hands target i its rule P5 receive port (one per target, in the order of the
// targets), with the URL the target reaches it at: the address its firmware URL uses. The
// driver owns the listener from then on; nil when the agent has no receive port for it.
func (a *agent) receiveFor(i int, targetAddress string) *driver.Receive {
	if i >= len(a.bound.Reverse) {
		return nil
	}
	port := a.bound.Reverse[i]
	u, err := imageURL("https", a.cfg.Address, targetAddress, port, "")
	var cert *tls.Certificate
	if err == nil {
		cert, err = a.certificate()
	}
	if err != nil {
		a.log.Warn("no receive port for the target: polling only", "target", a.targets[i].Name, "err", err)
		return nil
	}
	l := a.held.take(port)
	if l == nil {
		return nil
	}
	return &driver.Receive{Listener: l, URL: u, Certificate: cert}
}
