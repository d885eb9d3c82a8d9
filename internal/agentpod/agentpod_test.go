package agentpod

import (
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/ptr"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
	"github.com/fwops/firmware-operator/internal/agent/config"
	"github.com/fwops/firmware-operator/internal/ports"
)

const sha = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

func job() *fwv1.UpdateJob {
	return &fwv1.UpdateJob{
		ObjectMeta: metav1.ObjectMeta{Name: "ilo5-278", Namespace: "fleet", UID: types.UID("job-uid")},
		Spec: fwv1.UpdateJobSpec{
			Component: fwv1.ComponentILO,
			Firmware:  &fwv1.FirmwareSource{URL: "https://fw.example.net/ilo5.bin", SHA256: strings.ToUpper(sha), Version: "2.78"},
			Rollout:   fwv1.Rollout{Timeout: &metav1.Duration{Duration: 20 * time.Minute}},
		},
	}
}

func policy() *fwv1.PortPolicy {
	return &fwv1.PortPolicy{Spec: fwv1.PortPolicySpec{Agents: fwv1.AgentPlacement{
		Tolerations: []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "infra", Effect: corev1.TaintEffectNoSchedule}},
	}}}
}

func targets() []Target {
	return []Target{
		{TargetUpdate: "ilo5-278-ilo-a", Target: &fwv1.UpdateTarget{ObjectMeta: metav1.ObjectMeta{Name: "ilo-a"}, Spec: fwv1.UpdateTargetSpec{
			Type: fwv1.TargetTypeILO5, Address: "127.0.1.1", CredentialsSecretRef: fwv1.SecretReference{Name: "ilo-creds"},
			TLS: &fwv1.TLSSpec{CABundleSecretRef: &fwv1.SecretReference{Name: "ilo-ca"}},
		}}},
		{TargetUpdate: "ilo5-278-db-1", Target: &fwv1.UpdateTarget{ObjectMeta: metav1.ObjectMeta{Name: "db-1"}, Spec: fwv1.UpdateTargetSpec{
			Type: fwv1.TargetTypeLinux, Address: "127.0.3.1", CredentialsSecretRef: fwv1.SecretReference{Name: "db-creds"},
			SSH:   &fwv1.SSHSpec{KnownHostsSecretRef: &fwv1.SecretReference{Name: "db-kh"}},
			Linux: &fwv1.LinuxSpec{Sudo: true, StagingDirectory: "/var/lib/fwops/staging"},
		}}},
	}
}

func assignment(t *testing.T, firmwareBusy bool) ports.Assignment {
	t.Helper()
	taken := map[int]bool{}
	if firmwareBusy {
		taken[80] = true
	}
	a, err := ports.AssignForNode(ports.DefaultPolicy(), taken, 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func build(t *testing.T, firmwareBusy bool) *corev1.Pod {
	return Build(Input{Job: job(), Policy: policy(), Node: "node-a", Image: "fwops:test", ServiceAccount: "ilo5-278-agent",
		Targets: targets(), Ports: assignment(t, firmwareBusy)})
}

func TestBuild(t *testing.T) {
	pod := build(t, false)
	c := pod.Spec.Containers[0]
	for _, tc := range []struct {
		field     string
		got, want any
	}{
		{"name is deterministic", pod.Name, Name(job(), []string{"ilo5-278-db-1:1", "ilo5-278-ilo-a:1"})},
		{"namespace", pod.Namespace, "fleet"},
		{"labels", pod.Labels, map[string]string{LabelApp: AppName, fwv1.LabelJob: "ilo5-278", LabelNode: "node-a"}},
		{"assignments annotation, in slot order", keysAndSlots(t, pod), []string{"ilo5-278-ilo-a:1@0", "ilo5-278-db-1:1@1"}},
		{"slots: one per session port", Slots(pod), 2},
		{"the agent follows its pod's assignments", slices.Contains(c.Args, "--follow"), true},
		{"no target in the arguments: they are on the annotation", slices.ContainsFunc(c.Args, func(a string) bool { return strings.HasPrefix(a, "--target") }), false},
		{"node", Node(pod), "node-a"},
		{"hostNetwork", pod.Spec.HostNetwork, true},
		{"dnsPolicy", pod.Spec.DNSPolicy, corev1.DNSClusterFirstWithHostNet},
		{"restartPolicy", pod.Spec.RestartPolicy, corev1.RestartPolicyNever},
		{"service account", pod.Spec.ServiceAccountName, "ilo5-278-agent"},
		{"active deadline is the job timeout plus startup grace", *pod.Spec.ActiveDeadlineSeconds, int64((20*time.Minute + StartupGrace).Seconds())},
		{"node affinity pins the node", pod.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms[0].MatchFields[0].Values, []string{"node-a"}},
		{"tolerations from the policy", pod.Spec.Tolerations, policy().Spec.Agents.Tolerations},
		{"one container", len(pod.Spec.Containers), 1},
		{"image", c.Image, "fwops:test"},
		{"first arg is the agent verb", c.Args[0], "agent"},
		{"no environment", len(c.Env), 0},
		{"P2 port 80 needs NET_BIND_SERVICE only", c.SecurityContext.Capabilities.Add, []corev1.Capability{"NET_BIND_SERVICE"}},
		{"every other capability dropped", c.SecurityContext.Capabilities.Drop, []corev1.Capability{"ALL"}},
		{"no privilege escalation", *c.SecurityContext.AllowPrivilegeEscalation, false},
		{"read-only root", *c.SecurityContext.ReadOnlyRootFilesystem, true},
		{"the cache is handed to the agents' group as root too (a non-root agent may have written it)", pod.Spec.InitContainers[0].Args[0], CacheInitCommand},
		{"liveness asks the agent over its probe socket, wherever its P1 port went", c.LivenessProbe.Exec.Command,
			[]string{"/firmware-operator", "agent", "probe", "--namespace=" + pod.Namespace, "--pod=" + pod.Name, "--path=/healthz"}},
		{"readiness on /readyz", c.ReadinessProbe.Exec.Command[len(c.ReadinessProbe.Exec.Command)-1], "--path=/readyz"},
		{"no HTTP probe on a fixed port", c.LivenessProbe.HTTPGet == nil && c.ReadinessProbe.HTTPGet == nil, true},
	} {
		if !reflect.DeepEqual(tc.got, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.field, tc.got, tc.want)
		}
	}
}

func TestBuildDeclaresEveryAssignedPortAsAHostPort(t *testing.T) {
	pod := build(t, false)
	got := map[string]int32{}
	for _, p := range pod.Spec.Containers[0].Ports {
		if p.HostPort != p.ContainerPort || p.Protocol != corev1.ProtocolTCP {
			t.Errorf("port %s: hostPort %d containerPort %d protocol %s", p.Name, p.HostPort, p.ContainerPort, p.Protocol)
		}
		got[p.Name] = p.HostPort
	}
	want := map[string]int32{
		"control":  62286,              // P1
		"firmware": 80,                 // P2
		"s0":       60000, "s1": 60001, // P4
		"ipc": 61000, // P5
		"r0":  61001, "r1": 61002,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("container ports = %v, want %v", got, want)
	}
}

func TestBuildRunsAsNonRootWithoutPort80(t *testing.T) {
	pod := build(t, true) // 80 held by another agent: rule P2 falls back to 63000-63007
	c := pod.Spec.Containers[0]
	if c.SecurityContext.Capabilities.Add != nil {
		t.Errorf("capabilities added without port 80: %v", c.SecurityContext.Capabilities.Add)
	}
	if !*c.SecurityContext.RunAsNonRoot || *c.SecurityContext.RunAsUser != AgentUID {
		t.Errorf("agent must run as non-root %d, got %v/%v", AgentUID, *c.SecurityContext.RunAsNonRoot, *c.SecurityContext.RunAsUser)
	}
	if len(pod.Spec.InitContainers) != 1 || pod.Spec.InitContainers[0].Args[0] != CacheInitCommand {
		t.Fatalf("a non-root agent needs the cache handed over: %+v", pod.Spec.InitContainers)
	}
	if add := pod.Spec.InitContainers[0].SecurityContext.Capabilities.Add; !reflect.DeepEqual(add, []corev1.Capability{"CHOWN", "FOWNER"}) {
		t.Errorf("cache-init capabilities = %v, want CHOWN and FOWNER only", add)
	}
	cfg, err := config.Parse(c.Args[1:])
	if err != nil {
		t.Fatal(err)
	}
	if p := cfg.Ports.FirmwareServer; p < 63000 || p > 63007 {
		t.Errorf("P2 fallback port %d outside 63000-63007", p)
	}
}

// keysAndSlots lists the pod's assignments as "key@slot".
func keysAndSlots(t *testing.T, pod *corev1.Pod) []string {
	t.Helper()
	ts, err := Assignments(pod)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range ts {
		out = append(out, a.Key()+"@"+strconv.Itoa(a.Slot))
	}
	return out
}

// secretMounts maps each Secret volume's mount path to its Secret and whether it is optional.
func secretMounts(pod *corev1.Pod) map[string]string {
	mounts := map[string]string{}
	for _, m := range pod.Spec.Containers[0].VolumeMounts {
		mounts[m.Name] = m.MountPath
	}
	secrets := map[string]string{}
	for _, v := range pod.Spec.Volumes {
		if v.Secret != nil {
			secrets[mounts[v.Name]] = v.Secret.SecretName
			if ptr.Deref(v.Secret.Optional, false) {
				secrets[mounts[v.Name]] += " (optional)"
			}
		}
	}
	return secrets
}

func TestBuildMountsOnlyTheTargetsSecrets(t *testing.T) {
	pod := build(t, false)
	want := map[string]string{
		config.SecretsDir + "/ilo-creds": "ilo-creds",
		config.SecretsDir + "/ilo-ca":    "ilo-ca",
		config.SecretsDir + "/db-creds":  "db-creds",
		config.SecretsDir + "/db-kh":     "db-kh",
	}
	if got := secretMounts(pod); !reflect.DeepEqual(got, want) {
		t.Fatalf("secret mounts = %v, want %v", got, want)
	}
	if got, want := MountedSecrets(pod), map[string]bool{"ilo-creds": true, "ilo-ca": true, "db-creds": true, "db-kh": true}; !reflect.DeepEqual(got, want) {
		t.Errorf("MountedSecrets = %v, want %v", got, want)
	}
	mounts := map[string]string{}
	for _, m := range pod.Spec.Containers[0].VolumeMounts {
		mounts[m.Name] = m.MountPath
	}
	if mounts["firmware-cache"] != config.CacheDir {
		t.Errorf("firmware cache mounted at %q", mounts["firmware-cache"])
	}
}

// A long-lived pod mounts, once each, the Secrets of the targets expected on it later: they
// are optional, so a Secret deleted in the meantime does not hold the pod's first targets.
func TestBuildMountsTheExpectedTargetsSecrets(t *testing.T) {
	pod := Build(Input{Job: job(), Policy: policy(), Node: "node-a", Image: "fwops:test", ServiceAccount: "ilo5-278-agent",
		Targets: targets()[:1], Ports: assignment(t, false), Secrets: []string{"db-creds", "ilo-creds", "db-kh"}, Lifetime: 90 * time.Minute})
	want := map[string]string{
		config.SecretsDir + "/ilo-creds": "ilo-creds",
		config.SecretsDir + "/ilo-ca":    "ilo-ca",
		config.SecretsDir + "/db-creds":  "db-creds (optional)",
		config.SecretsDir + "/db-kh":     "db-kh (optional)",
	}
	if got := secretMounts(pod); !reflect.DeepEqual(got, want) {
		t.Fatalf("secret mounts = %v, want %v", got, want)
	}
	if got := *pod.Spec.ActiveDeadlineSeconds; got != int64((90 * time.Minute).Seconds()) {
		t.Errorf("active deadline %ds, want the lifetime asked for, 5400s", got)
	}
	// The agent learns the same lifetime: its certificate must last as long as the pod.
	if cfg, err := config.Parse(pod.Spec.Containers[0].Args[1:]); err != nil || cfg.Lifetime != 90*time.Minute {
		t.Errorf("the agent's --lifetime = %v (%v), want the pod's 1h30m0s", cfg.Lifetime, err)
	}
}

func TestBuildArgsCarryTheJob(t *testing.T) {
	pod := build(t, false)
	cfg, err := config.Parse(pod.Spec.Containers[0].Args[1:])
	if err != nil {
		t.Fatalf("the pod's arguments do not parse: %v", err)
	}
	if cfg.Namespace != "fleet" || cfg.Job != "ilo5-278" || cfg.JobUID != "job-uid" || cfg.Node != "node-a" || cfg.Pod != pod.Name {
		t.Errorf("identity: %+v", cfg)
	}
	if cfg.Firmware.SHA256 != sha || cfg.Firmware.URL != "https://fw.example.net/ilo5.bin" || cfg.Firmware.Version != "2.78" {
		t.Errorf("firmware: %+v (the digest must be lower case)", cfg.Firmware)
	}
	if cfg.Timeout != 20*time.Minute {
		t.Errorf("timeout %v", cfg.Timeout)
	}
	if cfg.Lifetime != 20*time.Minute+StartupGrace {
		t.Errorf("lifetime %v, want one wave, the pod's active deadline", cfg.Lifetime)
	}
	if !cfg.Follow {
		t.Errorf("the agent does not follow its pod's assignments")
	}
	if !reflect.DeepEqual(cfg.Ports.Sessions, []int{60000, 60001}) {
		t.Errorf("P4 session ports, one per slot: %v", cfg.Ports.Sessions)
	}
	assigned, err := Assignments(pod)
	if err != nil || len(assigned) != 2 {
		t.Fatalf("assignments: %+v, %v", assigned, err)
	}
	ilo, db := assigned[0], assigned[1]
	if ilo.Slot != 0 || db.Slot != 1 || ilo.Attempt != 1 {
		t.Errorf("slots %d, %d, attempt %d", ilo.Slot, db.Slot, ilo.Attempt)
	}
	if ilo.CredentialsSecret != "ilo-creds" || ilo.CABundleSecret != "ilo-ca" || ilo.InsecureSkipVerify || ilo.SSHPort != 0 {
		t.Errorf("iLO target: %+v", ilo)
	}
	if db.SSHPort != 22 || db.CredentialsSecret != "db-creds" || db.KnownHostsSecret != "db-kh" || db.InsecureIgnoreHostKey {
		t.Errorf("Linux target (P3 default 22): %+v", db)
	}
	if !db.Sudo || db.StagingDirectory != "/var/lib/fwops/staging" || ilo.Sudo || ilo.StagingDirectory != "" {
		t.Errorf("spec.linux not carried to the Linux target only: %+v, %+v", db, ilo)
	}
}

func TestBuildFirmwareFromAPVC(t *testing.T) {
	j := job()
	j.Spec.Firmware.URL = ""
	j.Spec.Firmware.PersistentVolumeClaim = &fwv1.PVCSource{ClaimName: "fw-images", Path: "ilo5/ilo5_278.bin"}
	pod := Build(Input{Job: j, Policy: policy(), Node: "n", Image: "i", Targets: targets()[:1], Ports: assignment(t, false)})
	var pvc *corev1.PersistentVolumeClaimVolumeSource
	for _, v := range pod.Spec.Volumes {
		if v.PersistentVolumeClaim != nil {
			pvc = v.PersistentVolumeClaim
		}
	}
	if pvc == nil || pvc.ClaimName != "fw-images" || !pvc.ReadOnly {
		t.Fatalf("PVC volume: %+v", pvc)
	}
	cfg, _ := config.Parse(pod.Spec.Containers[0].Args[1:])
	if cfg.Firmware.Path != config.PVCDir+"/ilo5_278.bin" || cfg.Firmware.URL != "" {
		t.Errorf("firmware path %q url %q", cfg.Firmware.Path, cfg.Firmware.URL)
	}
}

// TestFirmwareSourceMountsOnlyTheFile: a nodePath or claim source reaches the agent as the one
// file, read-only (docs/security.md): never the directory above it, which for a nodePath of
// /etc/shadow was the node's /etc.
func TestFirmwareSourceMountsOnlyTheFile(t *testing.T) {
	for _, tc := range []struct {
		name    string
		source  fwv1.FirmwareSource
		want    corev1.VolumeSource
		subPath string
		at      string
	}{
		{
			name:   "nodePath",
			source: fwv1.FirmwareSource{NodePath: "/var/lib/firmware/ilo5/ilo5_278.bin"},
			want: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{
				Path: "/var/lib/firmware/ilo5/ilo5_278.bin", Type: ptr.To(corev1.HostPathFile)}},
			at: config.StagedDir + "/ilo5_278.bin",
		},
		{
			name:    "persistentVolumeClaim",
			source:  fwv1.FirmwareSource{PersistentVolumeClaim: &fwv1.PVCSource{ClaimName: "fw-images", Path: "ilo5/ilo5_278.bin"}},
			want:    corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "fw-images", ReadOnly: true}},
			subPath: "ilo5/ilo5_278.bin",
			at:      config.PVCDir + "/ilo5_278.bin",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j := job()
			tc.source.SHA256 = j.Spec.Firmware.SHA256
			j.Spec.Firmware = &tc.source
			pod := Build(Input{Job: j, Policy: policy(), Node: "n", Image: "i", Targets: targets()[:1], Ports: assignment(t, false)})
			i := slices.IndexFunc(pod.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == "firmware-source" })
			if i < 0 || !reflect.DeepEqual(pod.Spec.Volumes[i].VolumeSource, tc.want) {
				t.Fatalf("firmware-source volume %+v, want %+v", pod.Spec.Volumes, tc.want)
			}
			for _, v := range pod.Spec.Volumes {
				if hp := v.HostPath; hp != nil && v.Name != "firmware-source" && hp.Path != config.CacheDir {
					t.Errorf("hostPath %s mounted besides the cache and the source", hp.Path)
				}
			}
			var mounts []corev1.VolumeMount
			for _, c := range append(pod.Spec.InitContainers, pod.Spec.Containers...) {
				for _, m := range c.VolumeMounts {
					if m.Name == "firmware-source" {
						mounts = append(mounts, m)
					}
				}
			}
			want := []corev1.VolumeMount{{Name: "firmware-source", MountPath: tc.at, SubPath: tc.subPath, ReadOnly: true}}
			if !reflect.DeepEqual(mounts, want) {
				t.Errorf("mounts %+v, want %+v", mounts, want)
			}
			cfg, err := config.Parse(pod.Spec.Containers[0].Args[1:])
			if err != nil || cfg.Firmware.Path != tc.at {
				t.Errorf("agent reads %q (%v), want the mounted file %s", cfg.Firmware.Path, err, tc.at)
			}
		})
	}
}

func TestNameIsStableAndBounded(t *testing.T) {
	a := Name(job(), []string{"x", "y"})
	if b := Name(job(), []string{"y", "x"}); a != b {
		t.Errorf("order changed the name: %s vs %s", a, b)
	}
	if c := Name(job(), []string{"x", "z"}); a == c {
		t.Errorf("another batch got the same name %s", a)
	}
	long := job()
	long.Name = strings.Repeat("a", 250)
	if n := Name(long, []string{"x"}); len(n) > 63 {
		t.Errorf("name %q is %d characters, over 63", n, len(n))
	}
	if !strings.HasPrefix(a, "ilo5-278-agent-") {
		t.Errorf("name %q does not start with the job's", a)
	}
}

func TestNodeLabelBounded(t *testing.T) {
	if got := nodeLabel(strings.Repeat("n", 100)); len(got) > 63 {
		t.Fatalf("label %d characters", len(got))
	}
}

func TestLabelsAcceptLongJobNames(t *testing.T) {
	long := job()
	long.Name = strings.Repeat("rollout-", 20) + "ilo5"
	pod := Build(Input{Job: long, Policy: policy(), Node: "node-a", Image: "fwops:test", ServiceAccount: "sa",
		Targets: targets(), Ports: assignment(t, false)})
	for k, v := range pod.Labels {
		if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
			t.Errorf("label %s=%q is refused by the API server: %v", k, v, errs)
		}
	}
}

// spec.rollout.window (it bounds a reboot) and spec.firmware.keepInRepository reach the agent;
// no window stays none, and the repository is cleaned up unless the job says keep.
func TestConfigCarriesTheWindowAndKeepInRepository(t *testing.T) {
	w := &fwv1.MaintenanceWindow{Days: []fwv1.Weekday{"Sunday"}, Start: "01:00", End: "05:00", TimeZone: "Europe/Paris"}
	for i, want := range []*fwv1.MaintenanceWindow{nil, w} {
		j := job()
		keep := i == 1
		j.Spec.Rollout.Window, j.Spec.Firmware.KeepInRepository = want, keep
		cfg := Config(Input{Job: j, Policy: policy(), Node: "node-a", Targets: targets(), Ports: assignment(t, false)}, "pod")
		got, err := config.Parse(cfg.Args())
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got.Window, want) || got.Firmware.KeepInRepository != keep {
			t.Errorf("window %+v, keepInRepository %v reached the agent as %+v, %v", want, keep, got.Window, got.Firmware.KeepInRepository)
		}
	}
}

// rollout.reboot reaches the agent as --reboot-if-required, and only when the job says
// IfRequired.
func TestConfigCarriesTheRebootPolicy(t *testing.T) {
	for _, tc := range []struct {
		policy fwv1.RebootPolicy
		want   bool
	}{{"", false}, {fwv1.RebootNever, false}, {fwv1.RebootIfRequired, true}} {
		j := job()
		j.Spec.Component, j.Spec.Rollout.Reboot = fwv1.ComponentSystemROM, tc.policy
		cfg := Config(Input{Job: j, Policy: policy(), Node: "node-a", Targets: targets(), Ports: assignment(t, false)}, "pod")
		got, err := config.Parse(cfg.Args())
		if err != nil {
			t.Fatal(err)
		}
		if got.RebootIfRequired != tc.want {
			t.Errorf("reboot %q: RebootIfRequired = %v, want %v", tc.policy, got.RebootIfRequired, tc.want)
		}
	}
}

// The PortPolicy's firmwareServer.tls reaches the agent as --firmware-tls (rule P2), Preferred
// when the policy does not say.
func TestConfigCarriesTheFirmwareServerTLS(t *testing.T) {
	for set, want := range map[fwv1.FirmwareServerTLS]fwv1.FirmwareServerTLS{
		"":                              fwv1.FirmwareServerTLSPreferred,
		fwv1.FirmwareServerTLSDisabled:  fwv1.FirmwareServerTLSDisabled,
		fwv1.FirmwareServerTLSPreferred: fwv1.FirmwareServerTLSPreferred,
		fwv1.FirmwareServerTLSRequired:  fwv1.FirmwareServerTLSRequired,
	} {
		p := policy()
		p.Spec.FirmwareServer.TLS = set
		cfg := Config(Input{Job: job(), Policy: p, Node: "node-a", Targets: targets(), Ports: assignment(t, false)}, "pod")
		if !slices.Contains(cfg.Args(), "--firmware-tls="+string(want)) {
			t.Errorf("policy tls %q: args %q lack --firmware-tls=%s", set, cfg.Args(), want)
		}
		got, err := config.Parse(cfg.Args())
		if err != nil {
			t.Fatal(err)
		}
		if got.FirmwareTLS != want {
			t.Errorf("policy tls %q reached the agent as %q, want %q", set, got.FirmwareTLS, want)
		}
	}
}
