// Package fwversion is the project's one comparison of firmware versions, as targets report
// them and as jobs and baselines want them.
package fwversion

import "strings"

// Same reports whether a version read from a target is the wanted one. Targets and HPE's
// files write the same version with or without a leading "v" ("v2.78" and "2.78"); an empty
// version read is never the wanted one.
func Same(read, wanted string) bool {
	norm := func(s string) string { return strings.TrimPrefix(strings.TrimSpace(s), "v") }
	return read != "" && norm(read) == norm(wanted)
}
