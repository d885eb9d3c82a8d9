package ports

import corev1 "k8s.io/api/core/v1"

// TakenFromPods returns the node ports that pods already declare: the host
// port of every TCP container port (with hostNetwork the container port
// itself, since Kubernetes sets the host port equal to it). Pass the pods
// bound to one node. Pods that have finished hold no port and are left out,
// as the scheduler does. UDP and SCTP ports are left out: the rules are TCP.
func TakenFromPods(pods []corev1.Pod) map[int]bool {
	taken := map[int]bool{}
	for i := range pods {
		pod := &pods[i]
		if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
			continue
		}
		for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
			for _, c := range cs {
				for _, cp := range c.Ports {
					if cp.Protocol != "" && cp.Protocol != corev1.ProtocolTCP {
						continue
					}
					p := int(cp.HostPort)
					if p == 0 && pod.Spec.HostNetwork {
						p = int(cp.ContainerPort)
					}
					if p > 0 {
						taken[p] = true
					}
				}
			}
		}
	}
	return taken
}
