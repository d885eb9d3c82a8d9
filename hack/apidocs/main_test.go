package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAPIDocsCurrent fails when docs/api.md no longer matches the CRDs, so that the reference
// cannot drift from what the API server enforces.
func TestAPIDocsCurrent(t *testing.T) {
	root := filepath.Join("..", "..")
	got, err := Generate(filepath.Join(root, "config", "crd", "bases"))
	if err != nil {
		t.Fatal(err)
	}
	have, err := os.ReadFile(filepath.Join(root, "docs", "api.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, have) {
		t.Fatal("docs/api.md is stale: run 'make api-docs' and commit it")
	}
	// Spot checks that the walk reaches nested fields, defaults and CEL messages.
	for _, want := range []string{
		"| `spec.rollout.maxConcurrent` | integer |  | `1` | ≥ 1; ≤ 10000 |",
		"| `spec.firmwareServer.fallbackRange.start` | integer | yes |",
		"url must be an absolute http or https URL",
		"| `status.sessionPort` | integer |",
		"## TargetUpdate",
	} {
		if !strings.Contains(string(got), want) {
			t.Errorf("reference lacks %q", want)
		}
	}
}
