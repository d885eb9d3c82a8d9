// Package kname makes Kubernetes names and label values from the names users choose, within
// the API server's limits and without two inputs ever giving the same result.
package kname

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// Object-name and label-value limits of the API server.
const (
	MaxObjectName = 253
	MaxLabelValue = 63
)

// LabelValue keeps a name usable as a label value: unchanged up to 63 characters, else
// shortened with a digest of the whole name so that two long names stay apart.
func LabelValue(name string) string {
	if len(name) <= MaxLabelValue {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	return strings.TrimRight(name[:MaxLabelValue-11], "-._") + "-" + hex.EncodeToString(sum[:])[:10]
}

// Child names the object that belongs to (parent, child), such as a job's TargetUpdate for a
// target. Joining the two with "-" alone is ambiguous ("a-b"+"c" and "a"+"b-c"), so the name
// ends with a digest of the pair, joined with "/", which no object name contains.
func Child(parent, child string) string {
	sum := sha256.Sum256([]byte(parent + "/" + child))
	suffix := "-" + hex.EncodeToString(sum[:])[:10]
	name := parent + "-" + child
	if len(name)+len(suffix) > MaxObjectName {
		name = strings.TrimRight(name[:MaxObjectName-len(suffix)], "-.")
	}
	return name + suffix
}
