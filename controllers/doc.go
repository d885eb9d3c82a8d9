// Package controllers holds the thin reconcilers of firmware-operator: UpdateJob, UpdateTarget
// and PortPolicy. The work they start happens in agent pods (internal/agent).
package controllers
