package ports

import (
	"maps"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestTakenFromPods(t *testing.T) {
	port := func(container, host int32, proto corev1.Protocol) corev1.ContainerPort {
		return corev1.ContainerPort{ContainerPort: container, HostPort: host, Protocol: proto}
	}
	pods := []corev1.Pod{
		{ // an agent: hostNetwork, container ports only
			Spec: corev1.PodSpec{HostNetwork: true, Containers: []corev1.Container{{Ports: []corev1.ContainerPort{
				port(62286, 0, ""), port(80, 80, corev1.ProtocolTCP), port(60000, 0, corev1.ProtocolTCP),
			}}}},
		},
		{ // a pod network pod with a hostPort, and a UDP one
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Ports: []corev1.ContainerPort{
				port(8080, 61000, corev1.ProtocolTCP), port(53, 0, ""), port(5353, 5353, corev1.ProtocolUDP),
			}}}},
		},
		{ // an init container's host port counts
			Spec: corev1.PodSpec{HostNetwork: true, InitContainers: []corev1.Container{{Ports: []corev1.ContainerPort{port(63001, 0, "")}}}},
		},
		{ // finished: frees its ports
			Spec:   corev1.PodSpec{HostNetwork: true, Containers: []corev1.Container{{Ports: []corev1.ContainerPort{port(62287, 0, "")}}}},
			Status: corev1.PodStatus{Phase: corev1.PodSucceeded},
		},
	}
	want := map[int]bool{62286: true, 80: true, 60000: true, 61000: true, 63001: true}
	if got := TakenFromPods(pods); !maps.Equal(got, want) {
		t.Fatalf("TakenFromPods = %v, want %v", got, want)
	}
	// P1/P2/P4/P5 at node level: a new agent avoids them.
	a, err := AssignForNode(DefaultPolicy(), TakenFromPods(pods), 1, seeded(1))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range a.Ports() {
		if want[p] {
			t.Fatalf("assigned %d, declared by a pod", p)
		}
	}
}
