package ilo

import (
	"context"
	"fmt"
	"strings"

	"github.com/fwops/firmware-operator/internal/agent/driver"
)

// Inventory reads what a baseline plan needs: the server model (Systems/1), the iLO and
// system ROM versions, and every firmware inventory entry by the device Targets it lists,
// which a Smart Component's payload.json names. An entry the iLO 4 inventory lacks (no
// Targets) is simply absent.
func (d *Driver) Inventory(ctx context.Context) (driver.Inventory, error) {
	inv := driver.Inventory{Versions: map[driver.Component]string{}, Devices: map[string]string{}}
	err := d.whenUp(ctx, "reading the inventory", driver.ReporterFrom(ctx), func(ctx context.Context) error {
		sys, err := d.c.System(ctx)
		if err != nil {
			return err
		}
		inv.Model = strings.TrimSpace(sys.Model)
		for _, c := range []driver.Component{driver.ComponentILO, driver.ComponentSystemROM} {
			raw, err := d.rawVersion(ctx, c, "")
			if err != nil {
				return err
			}
			inv.Versions[c] = NormalizeVersion(raw)
		}
		if d.t.Type == driver.TypeILO4 {
			return nil // no device Targets, and no Smart Components through an iLO 4
		}
		devs, err := d.c.InventoryDevices(ctx)
		if err != nil {
			return err
		}
		for _, e := range devs {
			for _, t := range e.Oem.Hpe.Targets {
				inv.Devices[strings.ToLower(t)] = NormalizeVersion(e.Version)
			}
		}
		return nil
	})
	if err != nil {
		return driver.Inventory{}, fmt.Errorf("target %s: reading the inventory: %w", d.t.Name, err)
	}
	return inv, nil
}
