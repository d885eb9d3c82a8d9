package runner

import (
	"context"

	"github.com/fwops/firmware-operator/internal/agent/driver"
	"github.com/fwops/firmware-operator/internal/ports"
)

// receiveFor hands the target of tk its slot's rule P5 receive port (one per slot), with the
// URL the target reaches it at: the address its firmware URL uses. The driver owns the
// listener until the target ends, and the slot's next target listens on the port again; nil
// when the agent has no receive port for the slot.
func (a *agent) receiveFor(ctx context.Context, tk *task) *driver.Receive {
	if tk.slot >= len(a.bound.Reverse) {
		return nil
	}
	port := a.bound.Reverse[tk.slot]
	u, err := imageURL("https", a.cfg.Address, tk.target.Address, port, "")
	if err != nil {
		a.log.Warn("no receive port for the target: polling only", "target", tk.target.Name, "err", err)
		return nil
	}
	l := a.held.take(port)
	if l == nil {
		// The slot's earlier target had it and closed it.
		if l, err = ports.HoldListener(ctx, a.cfg.Address, port); err != nil {
			a.log.Warn("receive port busy again: polling only", "target", tk.target.Name, "port", port, "err", err)
			return nil
		}
	}
	// The certificate when the target first connects: the driver logs in while it is made.
	return &driver.Receive{Listener: l, URL: u, Certificate: a.certificate}
}
