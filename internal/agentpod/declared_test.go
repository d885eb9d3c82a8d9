package agentpod

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// The pod's declared ports read back as the assignment it was built from, every rule's
// purpose and slot included (P1, P2, P4, P5), with 80 free and with 80 busy.
func TestDeclaredPortsReadBackTheAssignment(t *testing.T) {
	for _, busy := range []bool{false, true} {
		a := assignment(t, busy)
		pod := Build(Input{Job: job(), Policy: policy(), Node: "node-a", Image: "fwops:test", Targets: targets(), Ports: a})
		if got := DeclaredPorts(pod); !reflect.DeepEqual(got, a) {
			t.Errorf("port 80 busy %v: DeclaredPorts = %+v, built from %+v", busy, got, a)
		}
	}
	// Ports of other containers, or that containerPorts never names, are not the agent's.
	pod := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{
		{Name: "sidecar", Ports: []corev1.ContainerPort{{Name: "control", ContainerPort: 9000}}},
		{Name: ContainerName, Ports: []corev1.ContainerPort{{Name: "p8080", ContainerPort: 8080}, {Name: "sx", ContainerPort: 8081}, {Name: "metrics", ContainerPort: 8082}}},
	}}}
	if got := DeclaredPorts(pod); len(got.Entries) != 0 {
		t.Errorf("DeclaredPorts = %+v, want none", got)
	}
}
