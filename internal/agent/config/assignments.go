package config

import (
	"encoding/json"
	"fmt"
)

// AnnotationAssignments, on an agent pod, lists the targets the controller assigned to it, as
// JSON ([]Target). The controller adds to it (with an optimistic lock on the pod) and the agent
// of a Follow pod watches its own pod and starts each assignment it has not started yet
// (Target.Key). The pod's annotation is the one place both read: the controller learns from it
// which slots and ports are taken, never from the agent's command line.
const AnnotationAssignments = "firmware.fwops.io/assignments"

// EncodeAssignments renders targets as the annotation's value.
func EncodeAssignments(targets []Target) string {
	if len(targets) == 0 {
		return "[]"
	}
	b, _ := json.Marshal(targets) // plain structs: cannot fail
	return string(b)
}

// DecodeAssignments reads the annotation's value; an empty one is no assignment.
func DecodeAssignments(v string) ([]Target, error) {
	if v == "" {
		return nil, nil
	}
	var out []Target
	if err := json.Unmarshal([]byte(v), &out); err != nil {
		return nil, fmt.Errorf("annotation %s: %w", AnnotationAssignments, err)
	}
	for i, t := range out {
		if err := t.Validate(); err != nil {
			return nil, fmt.Errorf("annotation %s, assignment #%d (%s): %w", AnnotationAssignments, i+1, t.Name, err)
		}
	}
	return out, nil
}
