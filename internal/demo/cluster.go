package demo

import (
	"fmt"
	"os"
	"path/filepath"

	"sigs.k8s.io/yaml"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
	"github.com/fwops/firmware-operator/internal/testutil/apiserver"
)

// samplePortPolicy is the sample the demo applies, relative to the repository root, so that
// the demo shows the very policy a newcomer would apply to a real cluster.
const samplePortPolicy = "config/samples/firmware_v1alpha1_portpolicy.yaml"

// loadPortPolicy reads the sample PortPolicy from the repository.
func loadPortPolicy() (*fwv1.PortPolicy, string, error) {
	path := filepath.Join(apiserver.RepoRoot(), samplePortPolicy)
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, path, err
	}
	p := &fwv1.PortPolicy{}
	if err := yaml.UnmarshalStrict(b, p); err != nil {
		return nil, path, fmt.Errorf("%s: %w", path, err)
	}
	return p, path, nil
}
