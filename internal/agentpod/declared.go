package agentpod

import (
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/fwops/firmware-operator/internal/ports"
)

// DeclaredPorts reads back the ports assigned to an agent pod from its agent container's
// declared ports, the inverse of containerPorts. It is what the controller itself wrote in
// the pod spec: the controller learns the assigned ports from there, and the bound ones from
// what the agent reports through the API, never from the agent's arguments.
func DeclaredPorts(pod *corev1.Pod) ports.Assignment {
	var out ports.Assignment
	for _, c := range pod.Spec.Containers {
		if c.Name != ContainerName {
			continue
		}
		for _, cp := range c.Ports {
			e, ok := declaredEntry(cp)
			if ok {
				out.Entries = append(out.Entries, e)
			}
		}
	}
	return out
}

// declaredEntry maps a container port's name, as containerPorts gives it, back to its rule.
func declaredEntry(cp corev1.ContainerPort) (ports.Entry, bool) {
	e := ports.Entry{Port: int(cp.ContainerPort)}
	switch cp.Name {
	case "control":
		e.Rule, e.Purpose = ports.RuleP1, ports.PurposeControl
		return e, true
	case "firmware":
		e.Rule, e.Purpose = ports.RuleP2, ports.PurposeFirmwareServer
		return e, true
	case "ipc":
		e.Rule, e.Purpose = ports.RuleP5, ports.PurposeIPC
		return e, true
	}
	var index string
	switch {
	case strings.HasPrefix(cp.Name, "s"):
		e.Rule, e.Purpose, index = ports.RuleP4, ports.PurposeSession, cp.Name[1:]
	case strings.HasPrefix(cp.Name, "r"):
		e.Rule, e.Purpose, index = ports.RuleP5, ports.PurposeReceive, cp.Name[1:]
	default:
		return e, false
	}
	i, err := strconv.Atoi(index)
	if err != nil || i < 0 {
		return e, false
	}
	e.Index = i
	return e, true
}
