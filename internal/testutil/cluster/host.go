package cluster

import (
	"os"
	"path/filepath"

	"github.com/fwops/firmware-operator/internal/agent/config"
	"github.com/fwops/firmware-operator/internal/agent/linux"
)

// PrepareHost readies this machine for a run whose agent pods write to it through the node:
// the firmware cache (a hostPath) and, the simulated Linux host being this machine, the
// Linux driver's record of the versions it installed. A version recorded by an earlier run
// would make the rollout skip the Linux host as already current, so the record goes first.
// The returned function removes, after the run, what was not there before.
func PrepareHost() (restore func()) {
	_, cacheErr := os.Stat(config.CacheDir)
	_, stateErr := os.Stat(linux.DefaultStateDir)
	_ = os.RemoveAll(linux.DefaultStateDir)
	return func() {
		if os.IsNotExist(cacheErr) {
			_ = os.RemoveAll(config.CacheDir)
		}
		if os.IsNotExist(stateErr) {
			_ = os.RemoveAll(linux.DefaultStateDir)
		}
	}
}

// StopAndMoveLogs stops the cluster as Stop(true) does, once every component and pod has
// written its last line, and moves its logs, the pods' included, to dir (replaced), across
// file systems too: the cluster's folder is under the system's temporary folder, often a
// tmpfs. Nothing else of the cluster stays behind.
func (c *Cluster) StopAndMoveLogs(dir string) error {
	c.Stop(true)
	defer func() { _ = os.RemoveAll(c.Dir) }()
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	if os.Rename(c.LogDir, dir) == nil {
		return nil
	}
	return copyDir(c.LogDir, dir)
}
