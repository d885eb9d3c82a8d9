// Package shared locates the repository and the ../shared folder beside it (specs and the
// Redfish captures), for tests wherever they run from.
package shared

import (
	"path/filepath"
	"runtime"
)

// DL325 is the iLO 5 v2.46 capture most tests serve.
const DL325 = "ilo5-dl325-gen10plus-v2.46"

// RepoRoot is the module root, found from this file's location.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", "..", ".."))
}

// Dir is ../shared beside the repository root.
func Dir() string { return filepath.Join(RepoRoot(), "..", "shared") }

// Mockup is the Redfish-Mockup-Creator tree of the named capture.
func Mockup(name string) string { return filepath.Join(Dir(), "testdata", "redfish-mockups", name) }
