// Package agentpod builds the pod that runs an UpdateJob's agent on a node: one long-lived
// pod per job and node, with a fixed number of slots (one rule P4 session port and one rule P5
// receive port each), that takes the targets the controller assigns on its annotation
// (config.AnnotationAssignments). Build is a pure function of its input, so the pod can be
// checked field by field and the same input always gives the same pod.
package agentpod

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
	"github.com/fwops/firmware-operator/internal/agent/config"
	"github.com/fwops/firmware-operator/internal/kname"
	"github.com/fwops/firmware-operator/internal/ports"
)

// Labels and annotations of agent pods.
const (
	LabelApp  = "app.kubernetes.io/name"
	AppName   = "firmware-operator-agent"
	LabelNode = "firmware.fwops.io/node"
	// AnnotationAssignments lists the targets assigned to the pod (config.AnnotationAssignments).
	AnnotationAssignments = config.AnnotationAssignments
	ContainerName         = "agent"
)

// StartupGrace is added to the time a pod's targets may take to make the pod's active
// deadline: the time to pull the image, bind ports and fetch the firmware.
const StartupGrace = 5 * time.Minute

// Target is one target of the batch, resolved by the controller.
type Target struct {
	Target       *fwv1.UpdateTarget
	TargetUpdate string
	// Attempt numbers this start of the target, from 1; a retry gets a new pod.
	Attempt int32
}

// Input is everything the pod depends on.
type Input struct {
	Job    *fwv1.UpdateJob
	Policy *fwv1.PortPolicy
	// Baseline is the FirmwareBaseline the job's spec.baselineRef names, as the controller
	// checked it; nil for a job with spec.firmware.
	Baseline       *fwv1.FirmwareBaseline
	Node           string
	Image          string
	ServiceAccount string
	// Targets are the pod's first assignments, in slot order.
	Targets []Target
	// Ports are the pod's ports: one session port (rule P4) and one receive port (rule P5) per
	// slot, so the number of slots is len(Ports.Sessions()).
	Ports ports.Assignment
	// Secrets are the Secrets the pod mounts besides its first targets': those of the
	// targets the controller expects to assign to it later. They are optional volumes, so that
	// a Secret deleted in the meantime does not hold the pod (the agent then says which one is
	// missing when it reaches that target).
	Secrets []string
	// Lifetime bounds the pod's life (activeDeadlineSeconds); 0 means the job's per-target
	// timeout and StartupGrace, one wave.
	Lifetime time.Duration
}

// Name is the pod's deterministic name: the job's name and a digest of the job's UID and the
// batch's claims ("targetupdate:attempt"), so that a controller that restarts mid-way
// recreates nothing twice, and a retry gets a pod of its own.
func Name(job *fwv1.UpdateJob, claims []string) string {
	sorted := append([]string(nil), claims...)
	sort.Strings(sorted)
	h := sha256.New()
	h.Write([]byte(job.UID))
	for _, t := range sorted {
		h.Write([]byte{0})
		h.Write([]byte(t))
	}
	sum := hex.EncodeToString(h.Sum(nil))[:10]
	prefix := job.Name
	if len(prefix) > 63-len("-agent-")-len(sum) {
		prefix = prefix[:63-len("-agent-")-len(sum)]
	}
	return strings.TrimRight(prefix, "-.") + "-agent-" + sum
}

// Assignments are the targets assigned to the pod, as its annotation records them.
func Assignments(pod *corev1.Pod) ([]config.Target, error) {
	return config.DecodeAssignments(pod.Annotations[AnnotationAssignments])
}

// Slots is how many targets the pod's agent runs at once: one per declared session port
// (rule P4), at least one.
func Slots(pod *corev1.Pod) int {
	return max(len(DeclaredPorts(pod).Sessions()), 1)
}

// MountedSecrets are the names of the Secrets the pod mounts for its targets.
func MountedSecrets(pod *corev1.Pod) map[string]bool {
	byVolume := map[string]string{}
	for _, v := range pod.Spec.Volumes {
		if v.Secret != nil {
			byVolume[v.Name] = v.Secret.SecretName
		}
	}
	out := map[string]bool{}
	for _, c := range pod.Spec.Containers {
		if c.Name != ContainerName {
			continue
		}
		for _, m := range c.VolumeMounts {
			if name, ok := byVolume[m.Name]; ok && m.MountPath == path.Join(config.SecretsDir, name) {
				out[name] = true
			}
		}
	}
	return out
}

// TargetSecrets are the Secrets a target needs mounted: its credentials, CA bundle and
// known_hosts Secrets.
func TargetSecrets(t *fwv1.UpdateTarget) []string {
	out := []string{t.Spec.CredentialsSecretRef.Name}
	if tls := t.Spec.TLS; tls != nil && tls.CABundleSecretRef != nil {
		out = append(out, tls.CABundleSecretRef.Name)
	}
	if s := t.Spec.SSH; s != nil && s.KnownHostsSecretRef != nil && (t.Spec.Type == fwv1.TargetTypeOA || t.Spec.Type == fwv1.TargetTypeLinux) {
		out = append(out, s.KnownHostsSecretRef.Name)
	}
	return out
}

// Node is the node the pod was built for.
func Node(pod *corev1.Pod) string {
	if a := pod.Spec.Affinity; a != nil && a.NodeAffinity != nil && a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution != nil {
		for _, term := range a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms {
			for _, f := range term.MatchFields {
				if f.Key == "metadata.name" && len(f.Values) == 1 {
					return f.Values[0]
				}
			}
		}
	}
	return pod.Spec.NodeName
}

// firmwareTLS is the policy's spec.firmwareServer.tls, Preferred when unset (the schema's
// default, for a policy the API server did not default).
func firmwareTLS(t fwv1.FirmwareServerTLS) fwv1.FirmwareServerTLS {
	if t == "" {
		return fwv1.FirmwareServerTLSPreferred
	}
	return t
}

// Config is the agent configuration the pod passes as arguments.
func Config(in Input, podName string) config.Config {
	fw := ptr.Deref(in.Job.Spec.Firmware, fwv1.FirmwareSource{})
	policy := ports.FromSpec(in.Policy.Spec)
	cfg := config.Config{
		Namespace: in.Job.Namespace,
		Job:       in.Job.Name,
		JobUID:    string(in.Job.UID),
		Node:      in.Node,
		Pod:       podName,
		Firmware: config.Firmware{
			URL:       fw.URL,
			SHA256:    strings.ToLower(fw.SHA256),
			Version:   fw.Version,
			Component: string(in.Job.Spec.Component),
			// What the agent adds to an iLO Repository is removed once applied, unless kept.
			KeepInRepository: fw.KeepInRepository,
		},
		Ports: config.Ports{
			Control:           in.Ports.Control(),
			FirmwareServer:    in.Ports.FirmwareServer(),
			FirmwareFallback:  [2]int{policy.FirmwareServer.FallbackRange.Start, policy.FirmwareServer.FallbackRange.End},
			FirmwareSelection: string(policy.FirmwareServer.Selection),
			IPC:               in.Ports.IPC(),
			Reverse:           in.Ports.Receive(),
			Sessions:          in.Ports.Sessions(),
		},
		Timeout:          timeout(in.Job),
		Lifetime:         lifetime(in),
		Force:            in.Job.Spec.Rollout.Force,
		RebootIfRequired: in.Job.Spec.Rollout.Reboot == fwv1.RebootIfRequired,
		Window:           in.Job.Spec.Rollout.Window,
		FirmwareTLS:      firmwareTLS(in.Policy.Spec.FirmwareServer.TLS),
	}
	cfg.Firmware.Path = firmwareSourceMount(in.Job.Spec.Firmware)
	if b := in.Baseline; b != nil {
		cfg.Baseline, cfg.BaselineGeneration = b.Name, b.Generation
		cfg.InventoryOnly = in.Job.Spec.InventoryOnly
	}
	for i, t := range in.Targets {
		cfg.Targets = append(cfg.Targets, AgentTarget(t, in.Policy, i))
	}
	return cfg
}

// AgentTarget is the assignment of target t to slot of an agent: what the agent needs to know
// of it besides its mounted Secrets.
func AgentTarget(t Target, policy *fwv1.PortPolicy, slot int) config.Target {
	spec := t.Target.Spec
	ct := config.Target{
		Name:              t.Target.Name,
		TargetUpdate:      t.TargetUpdate,
		Attempt:           max(t.Attempt, 1),
		Slot:              slot,
		Type:              string(spec.Type),
		Address:           spec.Address,
		CredentialsSecret: spec.CredentialsSecretRef.Name,
	}
	if spec.Bay != nil {
		ct.Bay = int(*spec.Bay)
	}
	if tls := spec.TLS; tls != nil {
		ct.CertificateSHA256 = tls.CertificateSHA256
		if tls.CABundleSecretRef != nil {
			ct.CABundleSecret = tls.CABundleSecretRef.Name
		}
		ct.InsecureSkipVerify = tls.InsecureSkipVerify
	}
	if spec.Type == fwv1.TargetTypeOA || spec.Type == fwv1.TargetTypeLinux {
		ct.SSHPort = ports.FromSpec(policy.Spec).SSHPort // rule P3
		if s := spec.SSH; s != nil {
			if s.Port != nil {
				ct.SSHPort = int(*s.Port)
			}
			if s.KnownHostsSecretRef != nil {
				ct.KnownHostsSecret = s.KnownHostsSecretRef.Name
			}
			ct.InsecureIgnoreHostKey = s.InsecureIgnoreHostKey
		}
	}
	if l := spec.Linux; l != nil && spec.Type == fwv1.TargetTypeLinux {
		ct.Sudo, ct.StagingDirectory = l.Sudo, l.StagingDirectory
	}
	return ct
}

// firmwareSourceMount is where the agent finds a nodePath or claim source: the file alone,
// mounted under its own name; "" for a url source.
func firmwareSourceMount(fw *fwv1.FirmwareSource) string {
	switch {
	case fw == nil:
		return ""
	case fw.PersistentVolumeClaim != nil:
		return path.Join(config.PVCDir, path.Base(fw.PersistentVolumeClaim.Path))
	case fw.NodePath != "":
		return path.Join(config.StagedDir, path.Base(fw.NodePath))
	}
	return ""
}

// lifetime bounds the pod's life: its activeDeadlineSeconds, and what the agent makes to last
// as long (config.Config.Lifetime: its certificate).
func lifetime(in Input) time.Duration {
	if in.Lifetime > 0 {
		return in.Lifetime
	}
	return timeout(in.Job) + StartupGrace
}

func timeout(job *fwv1.UpdateJob) time.Duration {
	if t := job.Spec.Rollout.Timeout; t != nil && t.Duration > 0 {
		return t.Duration
	}
	return 30 * time.Minute
}

// Build returns the agent pod. The caller sets the owner reference
// (controllerutil.SetControllerReference), which needs the scheme.
func Build(in Input) *corev1.Pod {
	claims := make([]string, len(in.Targets))
	for i, t := range in.Targets {
		claims[i] = t.TargetUpdate + ":" + strconv.Itoa(int(max(t.Attempt, 1)))
	}
	name := Name(in.Job, claims)
	cfg := Config(in, name)
	// The targets are on the pod's annotation, which the controller adds to and the agent
	// follows, not in its arguments: one source for the first targets and the later ones.
	assigned := cfg.Targets
	cfg.Targets, cfg.Follow = nil, true

	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:      name,
			Namespace: in.Job.Namespace,
			Labels: map[string]string{
				LabelApp:      AppName,
				fwv1.LabelJob: kname.LabelValue(in.Job.Name),
				LabelNode:     nodeLabel(in.Node),
			},
			Annotations: map[string]string{AnnotationAssignments: config.EncodeAssignments(assigned)},
		},
		Spec: corev1.PodSpec{
			HostNetwork:                  true,
			DNSPolicy:                    corev1.DNSClusterFirstWithHostNet,
			RestartPolicy:                corev1.RestartPolicyNever,
			ServiceAccountName:           in.ServiceAccount,
			AutomountServiceAccountToken: ptr.To(true),
			ActiveDeadlineSeconds:        ptr.To(int64(cfg.Lifetime / time.Second)),
			Affinity:                     nodeAffinity(in.Node),
			Tolerations:                  in.Policy.Spec.Agents.Tolerations,
			SecurityContext: &corev1.PodSecurityContext{
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
				// Mounted Secrets are group-readable by the agent's group, root or not.
				FSGroup: ptr.To[int64](AgentUID),
			},
			Containers: []corev1.Container{{
				Name:            ContainerName,
				Image:           in.Image,
				Args:            append([]string{"agent"}, cfg.Args()...),
				Ports:           containerPorts(in.Ports),
				SecurityContext: containerSecurity(cfg.Ports.FirmwareServer),
				LivenessProbe:   probe(in.Job.Namespace, name, "/healthz"),
				ReadinessProbe:  probe(in.Job.Namespace, name, "/readyz"),
				Resources: corev1.ResourceRequirements{
					Requests: corev1.ResourceList{
						corev1.ResourceCPU:    resource.MustParse("50m"),
						corev1.ResourceMemory: resource.MustParse("64Mi"),
					},
					Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
				},
			}},
		},
	}
	addVolumes(pod, in)
	// Root agents (port 80) and non-root ones share the node's cache: every agent has it
	// handed to the agents' group first, whichever ran before.
	pod.Spec.InitContainers = []corev1.Container{cacheInit(in.Image)}
	return pod
}

// AgentUID is the user a non-root agent runs as (distroless's nonroot).
const AgentUID = 65532

// CacheInitCommand is the verb of the init container that hands the node's firmware cache to
// AgentUID and its group: the hostPath is created by the kubelet as root, and root and
// non-root agents must each write what the other wrote.
const CacheInitCommand = "cache-init"

func cacheInit(image string) corev1.Container {
	return corev1.Container{
		Name:  "cache-init",
		Image: image,
		Args:  []string{CacheInitCommand, "--dir=" + config.CacheDir, "--uid=" + strconv.Itoa(AgentUID)},
		SecurityContext: &corev1.SecurityContext{
			RunAsUser:                ptr.To[int64](0),
			RunAsNonRoot:             ptr.To(false),
			AllowPrivilegeEscalation: ptr.To(false),
			ReadOnlyRootFilesystem:   ptr.To(true),
			Capabilities: &corev1.Capabilities{
				Drop: []corev1.Capability{"ALL"},
				// CHOWN and FOWNER to hand over and chmod entries other agents created.
				Add: []corev1.Capability{"CHOWN", "FOWNER"},
			},
		},
		VolumeMounts: []corev1.VolumeMount{{Name: "firmware-cache", MountPath: config.CacheDir}},
	}
}

// nodeLabel keeps a node name usable as a label value (63 characters at most).
func nodeLabel(node string) string {
	if len(node) <= 63 {
		return node
	}
	sum := sha256.Sum256([]byte(node))
	return node[:52] + "-" + hex.EncodeToString(sum[:])[:10]
}

func nodeAffinity(node string) *corev1.Affinity {
	return &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
		RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
			NodeSelectorTerms: []corev1.NodeSelectorTerm{{
				MatchFields: []corev1.NodeSelectorRequirement{{
					Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{node},
				}},
			}},
		},
	}}
}

// containerPorts declares every assigned port. With hostNetwork they are host ports, so the
// scheduler keeps a second pod that needs one of them off the node.
func containerPorts(a ports.Assignment) []corev1.ContainerPort {
	var out []corev1.ContainerPort
	for _, e := range a.Entries {
		var name string
		switch e.Purpose {
		case ports.PurposeControl:
			name = "control"
		case ports.PurposeFirmwareServer:
			name = "firmware"
		case ports.PurposeIPC:
			name = "ipc"
		case ports.PurposeSession:
			name = "s" + strconv.Itoa(e.Index)
		case ports.PurposeReceive:
			name = "r" + strconv.Itoa(e.Index)
		default:
			name = fmt.Sprintf("p%d", e.Port)
		}
		out = append(out, corev1.ContainerPort{
			Name: name, ContainerPort: int32(e.Port), HostPort: int32(e.Port), Protocol: corev1.ProtocolTCP,
		})
	}
	return out
}

// containerSecurity grants NET_BIND_SERVICE, and runs as root, only when the firmware server
// must bind a port below 1024 (rule P2's 80): a non-root process cannot use that capability
// without file capabilities on the binary. Otherwise the agent runs as non-root with nothing.
func containerSecurity(firmwarePort int) *corev1.SecurityContext {
	sc := &corev1.SecurityContext{
		AllowPrivilegeEscalation: ptr.To(false),
		ReadOnlyRootFilesystem:   ptr.To(true),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
	}
	if firmwarePort > 0 && firmwarePort < 1024 {
		sc.Capabilities.Add = []corev1.Capability{"NET_BIND_SERVICE"}
		sc.RunAsUser = ptr.To[int64](0)
		sc.RunAsNonRoot = ptr.To(false)
	} else {
		sc.RunAsUser = ptr.To[int64](AgentUID)
		sc.RunAsNonRoot = ptr.To(true)
	}
	return sc
}

// probe asks the agent over its probe socket (`agent probe`), not on the assigned control
// port: the agent may bind the next port when something holds that one (rule P1), and an
// HTTP probe fixed at the assigned port would then ask someone else and kill the agent.
func probe(namespace, pod, path string) *corev1.Probe {
	return &corev1.Probe{
		ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{
			Command: []string{Entrypoint, "agent", "probe", "--namespace=" + namespace, "--pod=" + pod, "--path=" + path},
		}},
		PeriodSeconds:    10,
		TimeoutSeconds:   5,
		FailureThreshold: 3,
	}
}

// Entrypoint is the binary in the image (the Dockerfile's ENTRYPOINT).
const Entrypoint = "/firmware-operator"

// addVolumes mounts the Secrets of the pod's targets, first and expected, each once at
// SecretsDir/<name>, plus the node's firmware cache and the job's firmware source when it is
// a volume.
func addVolumes(pod *corev1.Pod, in Input) {
	c := &pod.Spec.Containers[0]
	mount := func(name, at string, readOnly bool, src corev1.VolumeSource) {
		pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: name, VolumeSource: src})
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: name, MountPath: at, ReadOnly: readOnly})
	}
	secret := func(name string, optional bool) corev1.VolumeSource {
		src := &corev1.SecretVolumeSource{SecretName: name, DefaultMode: ptr.To[int32](0o440)}
		if optional {
			src.Optional = ptr.To(true)
		}
		return corev1.VolumeSource{Secret: src}
	}
	mount("firmware-cache", config.CacheDir, false, corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{
		Path: config.CacheDir, Type: ptr.To(corev1.HostPathDirectoryOrCreate),
	}})
	// A source is the one file, read-only: never the directory above it (a nodePath of
	// /etc/shadow mounted the node's /etc). The PortPolicy allowed the path (docs/security.md).
	mountSource := func(name, at string, fw *fwv1.FirmwareSource) {
		switch {
		case fw.PersistentVolumeClaim != nil:
			mount(name, at, true, corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{
				ClaimName: fw.PersistentVolumeClaim.ClaimName, ReadOnly: true,
			}})
			// The kubelet resolves a subPath inside the volume, symbolic links included.
			c.VolumeMounts[len(c.VolumeMounts)-1].SubPath = fw.PersistentVolumeClaim.Path
		case fw.NodePath != "":
			mount(name, at, true, corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{
				Path: fw.NodePath, Type: ptr.To(corev1.HostPathFile),
			}})
		}
	}
	if fw := in.Job.Spec.Firmware; fw != nil {
		mountSource("firmware-source", firmwareSourceMount(fw), fw)
	}
	if b := in.Baseline; b != nil {
		for i := range b.Spec.Components {
			comp := &b.Spec.Components[i]
			mountSource(fmt.Sprintf("component%d-source", i), config.ComponentSourceMount(comp.Name, comp.Firmware), &comp.Firmware)
		}
	}
	// The first targets' Secrets are required: the kubelet holds the pod until they exist,
	// as it always did. The expected ones are optional (Input.Secrets).
	required := map[string]bool{}
	for _, t := range in.Targets {
		for _, name := range TargetSecrets(t.Target) {
			required[name] = true
		}
	}
	names := make([]string, 0, len(required)+len(in.Secrets))
	for name := range required {
		names = append(names, name)
	}
	for _, name := range in.Secrets {
		if !required[name] && !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	for i, name := range names {
		mount(fmt.Sprintf("secret%d", i), path.Join(config.SecretsDir, name), true, secret(name, !required[name]))
	}
}
