package driver

import "context"

// Inventory is what a server's inventory says before a baseline is planned for it.
type Inventory struct {
	// Model is the server model as Systems/1 names it ("ProLiant DL325 Gen10 Plus").
	Model string
	// Versions are the normalised versions of the components with one entry per server.
	Versions map[Component]string
	// Devices are the firmware inventory entries by the device Target GUIDs they list
	// (Oem.Hpe.Targets, lower-case), to their normalised version: what a Smart Component's
	// payload.json Devices.Device[].Target matches.
	Devices map[string]string
}

// Inventorier is a Driver that reads a server's whole inventory in one go (iLO). Drivers
// without one are asked Version component by component.
type Inventorier interface {
	Inventory(ctx context.Context) (Inventory, error)
}
