// Package fwversion is the project's one comparison of firmware versions, as targets report
// them and as jobs and baselines want them.
package fwversion

import (
	"strconv"
	"strings"
)

// Same reports whether a version read from a target is the wanted one. Targets and HPE's
// files write the same version with or without a leading "v" ("v2.78" and "2.78"); an empty
// version read is never the wanted one.
func Same(read, wanted string) bool {
	norm := func(s string) string { return strings.TrimPrefix(strings.TrimSpace(s), "v") }
	return read != "" && norm(read) == norm(wanted)
}

// Compare orders two versions: -1 when a is older than b, 0 when Same(a, b), +1 when a is
// newer. ok is false when the two cannot be ordered: either is empty or not a dotted number
// ("5.1-2.5.8.0.sles15sp2"), or they differ only in how they write a number ("08.60.12" and
// "8.60.12", which Same keeps apart). A plan never installs over a version it cannot order.
func Compare(a, b string) (order int, ok bool) {
	if Same(a, b) {
		return 0, true
	}
	na, oka := numbers(a)
	nb, okb := numbers(b)
	if !oka || !okb {
		return 0, false
	}
	for i := 0; i < max(len(na), len(nb)); i++ {
		x, y := at(na, i), at(nb, i)
		switch {
		case x < y:
			return -1, true
		case x > y:
			return 1, true
		}
	}
	return 0, false
}

// numbers splits "v2.78" into [2 78]; ok is false unless every part is a decimal number.
func numbers(v string) ([]uint64, bool) {
	v = strings.TrimPrefix(strings.TrimSpace(v), "v")
	if v == "" {
		return nil, false
	}
	parts := strings.Split(v, ".")
	out := make([]uint64, len(parts))
	for i, p := range parts {
		n, err := strconv.ParseUint(p, 10, 32)
		if err != nil {
			return nil, false
		}
		out[i] = n
	}
	return out, true
}

// at is the i-th number, 0 past the end: "2.7" is "2.7.0".
func at(n []uint64, i int) uint64 {
	if i < len(n) {
		return n[i]
	}
	return 0
}
