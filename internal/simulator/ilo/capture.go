package ilo

import (
	"sync"
)

// Capture is a parsed Redfish-Mockup-Creator tree. Every simulator made from one Capture
// (Config.Capture) serves the same parsed documents, read-only, and keeps only what it changes:
// a fleet of 10,000 simulated iLOs holds one capture, not 10,000.
type Capture struct {
	docs     map[string]map[string]any
	metadata []byte

	mu sync.Mutex
	// bases are the documents as each generation serves them before any client came: the
	// capture adapted to the model (adaptTree), built once per model.
	bases map[Model]map[string]map[string]any
}

// LoadCapture parses the capture in dir, the folder that is /redfish/v1.
func LoadCapture(dir string) (*Capture, error) {
	docs, md, err := loadDocs(dir)
	if err != nil {
		return nil, err
	}
	return &Capture{docs: docs, metadata: md, bases: map[Model]map[string]map[string]any{}}, nil
}

// newTree is a fresh simulator's tree for model m: the shared base and nothing of its own.
func (c *Capture) newTree(m Model) *tree {
	c.mu.Lock()
	defer c.mu.Unlock()
	base, ok := c.bases[m]
	if !ok {
		t := newTree(c.docs, c.metadata)
		adaptTree(t, m)
		base = t.flatten()
		c.bases[m] = base
	}
	return newTree(base, c.metadata)
}
