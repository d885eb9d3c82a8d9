// Package deploy_test checks the two ways to install the operator, the Helm chart
// (charts/firmware-operator) and the kustomize bases (config/), by rendering them with the
// helm and kustomize that go.mod pins as tools, and reading the objects back.
package deploy_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
	"github.com/fwops/firmware-operator/internal/testutil/shared"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

const (
	chartDir  = "charts/firmware-operator"
	namespace = "firmware-operator-system"
	// release gives the chart the same resource names as config/default.
	release = "firmware-operator"
	// kubeVersion: helm built from source has no ldflags and would assume v1.20, below the
	// chart's kubeVersion.
	kubeVersion = "1.37.0"
)

// wantPortPolicy is docs/ports.md's defaults, P1-P5, as a PortPolicy spec.
var wantPortPolicy = map[string]any{
	"controlPort": int64(62286), // P1
	"firmwareServer": map[string]any{ // P2
		"preferredPort": int64(80),
		"fallbackRange": map[string]any{"start": int64(63000), "end": int64(63007)},
		"selection":     "Random",
		"tls":           "Preferred",
	},
	"sshPort":         int64(22),    // P3
	"sessionBasePort": int64(60000), // P4
	"reverseBasePort": int64(61000), // P5
	"singleNICIPv4":   true,         // P5
	"agents": map[string]any{
		"nodeSelector": map[string]any{"kubernetes.io/os": "linux"},
	},
}

var crdNames = []string{
	"firmwarebaselines.firmware.fwops.io",
	"portpolicies.firmware.fwops.io",
	"targetupdates.firmware.fwops.io",
	"updatejobs.firmware.fwops.io",
	"updatetargets.firmware.fwops.io",
}

func repoRoot(*testing.T) string { return shared.RepoRoot() }

// goTool runs `go tool <args>` from the repository root and returns its standard output.
// The first run compiles the tool (helm takes minutes on a small machine), hence the
// generous bound.
func goTool(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", append([]string{"tool"}, args...)...)
	cmd.Dir = repoRoot(t)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("go tool %s: %v\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

func helmTemplate(t *testing.T, chart string, args ...string) objects {
	t.Helper()
	base := []string{"helm", "template", release, chart, "--namespace", namespace, "--kube-version", kubeVersion}
	return parse(t, goTool(t, append(base, args...)...))
}

func kustomizeBuild(t *testing.T, dir string) objects {
	t.Helper()
	return parse(t, goTool(t, "kustomize", "build", dir))
}

// objects are rendered manifests.
type objects []unstructured.Unstructured

func parse(t *testing.T, manifests string) objects {
	t.Helper()
	var out objects
	r := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(manifests)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := utilyaml.Unmarshal(doc, &m); err != nil { // integers stay int64, as unstructured expects
			t.Fatalf("%v in:\n%s", err, doc)
		}
		if len(m) == 0 { // an empty document, e.g. a template that rendered nothing
			continue
		}
		out = append(out, unstructured.Unstructured{Object: m})
	}
}

func (o objects) find(kind, name string) *unstructured.Unstructured {
	for i := range o {
		if o[i].GetKind() == kind && o[i].GetName() == name {
			return &o[i]
		}
	}
	return nil
}

func (o objects) get(t *testing.T, kind, name string) *unstructured.Unstructured {
	t.Helper()
	u := o.find(kind, name)
	if u == nil {
		t.Fatalf("no %s %q among %v", kind, name, o.ids())
	}
	return u
}

// ids lists "Kind/name" of every object, sorted.
func (o objects) ids() []string {
	ids := make([]string, 0, len(o))
	for _, u := range o {
		ids = append(ids, u.GetKind()+"/"+u.GetName())
	}
	sort.Strings(ids)
	return ids
}

// into converts an object to a typed API struct.
func into[T any](t *testing.T, u *unstructured.Unstructured) *T {
	t.Helper()
	b, err := yaml.Marshal(u.Object)
	if err != nil {
		t.Fatal(err)
	}
	var v T
	if err := yaml.UnmarshalStrict(b, &v); err != nil {
		t.Fatalf("%s %s: %v", u.GetKind(), u.GetName(), err)
	}
	return &v
}

func TestHelmLint(t *testing.T) {
	out := goTool(t, "helm", "lint", "--strict", chartDir, "--kube-version", kubeVersion)
	if !strings.Contains(out, "0 chart(s) failed") {
		t.Fatalf("helm lint:\n%s", out)
	}
}

func TestHelmTemplate(t *testing.T) {
	objs := helmTemplate(t, chartDir, "--include-crds")
	for _, n := range crdNames {
		objs.get(t, "CustomResourceDefinition", n)
	}
	checkManager(t, objs, "ghcr.io/fwops/firmware-operator:0.1.0", "--agent-image=ghcr.io/fwops/firmware-operator:0.1.0")
	checkRBAC(t, objs)
	checkPortPolicy(t, objs)
	objs.get(t, "Service", "firmware-operator-controller-manager-metrics")
}

func TestKustomizeDefault(t *testing.T) {
	objs := kustomizeBuild(t, "config/default")
	objs.get(t, "Namespace", namespace)
	for _, n := range crdNames {
		objs.get(t, "CustomResourceDefinition", n)
	}
	// Kubelet expands $(AGENT_IMAGE) from the env var that a kustomize replacement copies
	// from the container's image.
	d := checkManager(t, objs, "ghcr.io/fwops/firmware-operator:latest", "--agent-image=$(AGENT_IMAGE)")
	env := d.Spec.Template.Spec.Containers[0].Env
	i := slices.IndexFunc(env, func(e corev1.EnvVar) bool { return e.Name == "AGENT_IMAGE" })
	if i < 0 || env[i].Value != "ghcr.io/fwops/firmware-operator:latest" {
		t.Errorf("AGENT_IMAGE env = %+v, want the manager's image", env)
	}
	checkRBAC(t, objs)
	checkPortPolicy(t, objs)
	objs.get(t, "Service", "firmware-operator-controller-manager-metrics")
	for _, u := range objs {
		cluster := u.GetKind() == "Namespace" || u.GetKind() == "CustomResourceDefinition" ||
			strings.HasPrefix(u.GetKind(), "Cluster") || u.GetKind() == "PortPolicy" ||
			strings.HasPrefix(u.GetKind(), "ValidatingAdmissionPolicy")
		if want := map[bool]string{true: "", false: namespace}[cluster]; u.GetNamespace() != want {
			t.Errorf("%s/%s: namespace %q, want %q", u.GetKind(), u.GetName(), u.GetNamespace(), want)
		}
	}
}

// TestSamples: config/samples has no kustomization.yaml on purpose, since the documented
// `kubectl apply -f config/samples/` would try to apply it; its PortPolicy is ports.md's.
func TestSamples(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(repoRoot(t), "config/samples/*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no samples: %v", err)
	}
	var objs objects
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		objs = append(objs, parse(t, string(b))...)
	}
	if slices.ContainsFunc(objs, func(u unstructured.Unstructured) bool { return u.GetKind() == "Kustomization" }) {
		t.Error("config/samples holds a Kustomization, which breaks kubectl apply -f config/samples/")
	}
	checkPortPolicy(t, objs)
	objs.get(t, "UpdateJob", "ilo5-2.78-rack1")
	objs.get(t, "UpdateTarget", "ilo-rack1-u12")
}

// TestHelmAndKustomizeInstallTheSame: both ways install the same objects under the same
// names (the Namespace aside, which Helm leaves to --create-namespace).
func TestHelmAndKustomizeInstallTheSame(t *testing.T) {
	h := helmTemplate(t, chartDir, "--include-crds").ids()
	var k []string
	for _, id := range kustomizeBuild(t, "config/default").ids() {
		if !strings.HasPrefix(id, "Namespace/") {
			k = append(k, id)
		}
	}
	if !slices.Equal(h, k) {
		t.Errorf("helm installs %v\nkustomize installs %v", h, k)
	}
}

// TestAgentWritePolicy: the chart's ValidatingAdmissionPolicy and binding, which keep each
// agent pod to its own TargetUpdates (docs/security.md), say what config/rbac's do, and both
// exempt the manager's own ServiceAccount, which assigns the TargetUpdates.
func TestAgentWritePolicy(t *testing.T) {
	h, k := helmTemplate(t, chartDir), kustomizeBuild(t, "config/default")
	const name = "firmware-operator-agent-writes"
	for _, kind := range []string{"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"} {
		hs, _, _ := unstructured.NestedMap(h.get(t, kind, name).Object, "spec")
		ks, _, _ := unstructured.NestedMap(k.get(t, kind, name).Object, "spec")
		if !reflect.DeepEqual(hs, ks) {
			t.Errorf("%s: helm renders\n%v\nkustomize\n%v", kind, hs, ks)
		}
	}
	conds, _, _ := unstructured.NestedSlice(h.get(t, "ValidatingAdmissionPolicy", name).Object, "spec", "matchConditions")
	manager := "system:serviceaccount:" + namespace + ":firmware-operator-controller-manager"
	if !slices.ContainsFunc(conds, func(c any) bool {
		return strings.Contains(c.(map[string]any)["expression"].(string), "!= '"+manager+"'")
	}) {
		t.Errorf("the policy does not exempt the manager %s: %v", manager, conds)
	}
}

// TestGeneratedChartFiles: the chart's crds/ and files/role.yaml are copies that
// `make manifests` writes; a stale copy fails here, not only in `make verify`.
func TestGeneratedChartFiles(t *testing.T) {
	root := repoRoot(t)
	same := func(src, dst string) {
		a, err := os.ReadFile(filepath.Join(root, src))
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(root, dst))
		if err != nil || !bytes.Equal(a, b) {
			t.Errorf("%s differs from %s (err %v): run 'make manifests'", dst, src, err)
		}
	}
	same("config/rbac/role.yaml", chartDir+"/files/role.yaml")
	srcs, _ := filepath.Glob(filepath.Join(root, "config/crd/bases/*.yaml"))
	dsts, _ := filepath.Glob(filepath.Join(root, chartDir, "crds/*.yaml"))
	if len(srcs) == 0 || len(srcs) != len(dsts) {
		t.Errorf("config/crd/bases has %d CRDs, %s/crds has %d: run 'make manifests'", len(srcs), chartDir, len(dsts))
	}
	for _, s := range srcs {
		same(filepath.Join("config/crd/bases", filepath.Base(s)), filepath.Join(chartDir, "crds", filepath.Base(s)))
	}
}

// TestClusterRoleRulesMatchControllerGen: the chart's and kustomize's manager ClusterRole
// grant exactly the rules of config/rbac/role.yaml, which controller-gen writes from the
// +kubebuilder:rbac markers.
func TestClusterRoleRulesMatchControllerGen(t *testing.T) {
	root := repoRoot(t)
	want := readRules(t, filepath.Join(root, "config/rbac/role.yaml"))
	for name, objs := range map[string]objects{
		"helm":      helmTemplate(t, chartDir),
		"kustomize": kustomizeBuild(t, "config/default"),
	} {
		got := into[rbacv1.ClusterRole](t, objs.get(t, "ClusterRole", "firmware-operator-manager")).Rules
		if !equalRules(got, want) {
			t.Errorf("%s: ClusterRole rules\n%v\nwant (config/rbac/role.yaml)\n%v", name, got, want)
		}
	}
}

// TestChartCarriesRoleRules: while the controllers have no markers role.yaml has no rules,
// so prove with a copy of the chart and a role.yaml with rules that the template passes
// them through unchanged.
func TestChartCarriesRoleRules(t *testing.T) {
	role := `---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: firmware-operator-manager
rules:
- apiGroups:
  - ""
  resources:
  - pods
  verbs:
  - create
  - delete
  - get
- apiGroups:
  - firmware.fwops.io
  resources:
  - updatejobs/status
  verbs:
  - patch
  - update
`
	dir := filepath.Join(t.TempDir(), "firmware-operator")
	if err := os.CopyFS(dir, os.DirFS(filepath.Join(repoRoot(t), chartDir))); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "files/role.yaml")
	if err := os.WriteFile(path, []byte(role), 0o644); err != nil {
		t.Fatal(err)
	}
	got := into[rbacv1.ClusterRole](t, helmTemplate(t, dir).get(t, "ClusterRole", "firmware-operator-manager")).Rules
	if want := readRules(t, path); len(want) != 2 || !equalRules(got, want) {
		t.Errorf("rendered rules %v, want %v", got, want)
	}
}

func TestHelmValues(t *testing.T) {
	t.Run("portPolicy.create=false", func(t *testing.T) {
		if objs := helmTemplate(t, chartDir, "--set", "portPolicy.create=false"); objs.find("PortPolicy", "default") != nil {
			t.Error("PortPolicy rendered although portPolicy.create=false")
		}
	})
	t.Run("agent.image and image.tag", func(t *testing.T) {
		objs := helmTemplate(t, chartDir, "--set", "agent.image=registry.local/agent:dev", "--set", "image.tag=v9")
		d := into[appsv1.Deployment](t, objs.get(t, "Deployment", "firmware-operator-controller-manager"))
		c := d.Spec.Template.Spec.Containers[0]
		if c.Image != "ghcr.io/fwops/firmware-operator:v9" || !slices.Contains(c.Args, "--agent-image=registry.local/agent:dev") {
			t.Errorf("image %q args %v", c.Image, c.Args)
		}
	})
	t.Run("portPolicy.firmwareSources", func(t *testing.T) {
		if _, found, _ := unstructured.NestedMap(helmTemplate(t, chartDir).get(t, "PortPolicy", "default").Object, "spec", "firmwareSources"); found {
			t.Error("the default PortPolicy allows node paths or claims; it must allow url sources only")
		}
		objs := helmTemplate(t, chartDir, "--set", "portPolicy.firmwareSources.nodePathPrefixes={/var/lib/firmware/}",
			"--set", "portPolicy.firmwareSources.persistentVolumeClaims[0].namespace=fleet-a")
		p := into[fwv1.PortPolicy](t, objs.get(t, "PortPolicy", "default"))
		want := fwv1.FirmwareSourcePolicy{
			NodePathPrefixes:       []fwv1.NodePathPrefix{"/var/lib/firmware/"},
			PersistentVolumeClaims: []fwv1.ClaimReference{{Namespace: "fleet-a"}},
		}
		if !reflect.DeepEqual(p.Spec.FirmwareSources, want) {
			t.Errorf("firmwareSources = %+v, want %+v", p.Spec.FirmwareSources, want)
		}
	})
	t.Run("fleetNamespace", func(t *testing.T) {
		for _, u := range helmTemplate(t, chartDir) {
			if u.GetKind() == "Namespace" {
				t.Errorf("Namespace %s rendered although fleetNamespace.create is false by default", u.GetName())
			}
		}
		objs := helmTemplate(t, chartDir, "--set", "fleetNamespace.create=true", "--set", "fleetNamespace.labels.team=storage",
			"--set", "fleetNamespace.labels.pod-security\\.kubernetes\\.io/enforce=baseline")
		ns := into[corev1.Namespace](t, objs.get(t, "Namespace", "firmware-fleets"))
		// The level the controller's AgentPodRejected message tells people to set; a user's
		// label cannot lower it, since agent pods would then be refused.
		for _, mode := range []string{"enforce", "audit", "warn"} {
			if got := ns.Labels["pod-security.kubernetes.io/"+mode]; got != "privileged" {
				t.Errorf("label pod-security.kubernetes.io/%s = %q, want privileged", mode, got)
			}
		}
		if ns.Labels["team"] != "storage" || ns.Labels["app.kubernetes.io/name"] != "firmware-operator" {
			t.Errorf("labels %v: want the user's and the chart's", ns.Labels)
		}
		if ns.Annotations["helm.sh/resource-policy"] != "keep" {
			t.Errorf("annotations %v: uninstalling would delete the fleet's targets and Secrets", ns.Annotations)
		}
	})
	t.Run("narrow fallback range", func(t *testing.T) {
		objs := helmTemplate(t, chartDir, "--set", "portPolicy.firmwareServer.fallbackRange.end=63005")
		got, _, _ := unstructured.NestedInt64(objs.get(t, "PortPolicy", "default").Object, "spec", "firmwareServer", "fallbackRange", "end")
		if got != 63005 {
			t.Errorf("fallbackRange.end = %d, want 63005", got)
		}
	})
}

// checkManager checks the manager Deployment both ways share and returns it.
func checkManager(t *testing.T, objs objects, image, agentImageArg string) *appsv1.Deployment {
	t.Helper()
	d := into[appsv1.Deployment](t, objs.get(t, "Deployment", "firmware-operator-controller-manager"))
	if d.Namespace != namespace {
		t.Errorf("Deployment namespace %q", d.Namespace)
	}
	spec := d.Spec.Template.Spec
	if spec.ServiceAccountName != "firmware-operator-controller-manager" {
		t.Errorf("serviceAccountName %q", spec.ServiceAccountName)
	}
	if len(spec.Containers) != 1 {
		t.Fatalf("%d containers", len(spec.Containers))
	}
	c := spec.Containers[0]
	if c.Image != image {
		t.Errorf("image %q, want %q", c.Image, image)
	}
	wantArgs := []string{"manager", "--leader-elect", "--metrics-bind-address=:8443", "--health-probe-bind-address=:8081", agentImageArg}
	if !slices.Equal(c.Args, wantArgs) || !slices.Equal(c.Command, []string{"/firmware-operator"}) {
		t.Errorf("command %v args %v, want [/firmware-operator] %v", c.Command, c.Args, wantArgs)
	}
	ps, sc := spec.SecurityContext, c.SecurityContext
	switch {
	case ps == nil || ps.RunAsNonRoot == nil || !*ps.RunAsNonRoot:
		t.Error("pod is not runAsNonRoot")
	case ps.SeccompProfile == nil || ps.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
		t.Error("pod seccomp is not RuntimeDefault")
	case sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Error("root filesystem is not read-only")
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Error("privilege escalation is allowed")
	case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0:
		t.Errorf("capabilities %+v, want drop ALL and nothing added", sc.Capabilities)
	}
	health := slices.IndexFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.Name == "health" && p.ContainerPort == 8081 })
	if health < 0 {
		t.Errorf("no health port 8081 in %v", c.Ports)
	}
	for probe, path := range map[*corev1.Probe]string{c.LivenessProbe: "/healthz", c.ReadinessProbe: "/readyz"} {
		if probe == nil || probe.HTTPGet == nil || probe.HTTPGet.Path != path || probe.HTTPGet.Port.String() != "health" {
			t.Errorf("probe for %s: %+v", path, probe)
		}
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources %+v", c.Resources)
	}
	return d
}

// checkRBAC checks the ServiceAccount, the manager's ClusterRole and binding, and leader
// election's Role and binding.
func checkRBAC(t *testing.T, objs objects) {
	t.Helper()
	sa := objs.get(t, "ServiceAccount", "firmware-operator-controller-manager")
	if sa.GetNamespace() != namespace {
		t.Errorf("ServiceAccount namespace %q", sa.GetNamespace())
	}
	objs.get(t, "ClusterRole", "firmware-operator-manager")
	wantSubject := rbacv1.Subject{Kind: "ServiceAccount", Name: "firmware-operator-controller-manager", Namespace: namespace}
	crb := into[rbacv1.ClusterRoleBinding](t, objs.get(t, "ClusterRoleBinding", "firmware-operator-manager"))
	if crb.RoleRef.Name != "firmware-operator-manager" || crb.RoleRef.Kind != "ClusterRole" || !slices.Equal(crb.Subjects, []rbacv1.Subject{wantSubject}) {
		t.Errorf("ClusterRoleBinding %+v %+v", crb.RoleRef, crb.Subjects)
	}
	role := into[rbacv1.Role](t, objs.get(t, "Role", "firmware-operator-leader-election"))
	if role.Namespace != namespace || !slices.ContainsFunc(role.Rules, func(r rbacv1.PolicyRule) bool {
		return slices.Contains(r.APIGroups, "coordination.k8s.io") && slices.Contains(r.Resources, "leases") &&
			slices.Contains(r.Verbs, "create") && slices.Contains(r.Verbs, "update")
	}) {
		t.Errorf("leader election Role in %q: %+v", role.Namespace, role.Rules)
	}
	rb := into[rbacv1.RoleBinding](t, objs.get(t, "RoleBinding", "firmware-operator-leader-election"))
	if rb.RoleRef.Name != role.Name || !slices.Equal(rb.Subjects, []rbacv1.Subject{wantSubject}) {
		t.Errorf("leader election RoleBinding %+v %+v", rb.RoleRef, rb.Subjects)
	}
}

// checkPortPolicy checks the default PortPolicy against docs/ports.md.
func checkPortPolicy(t *testing.T, objs objects) {
	t.Helper()
	pp := objs.get(t, "PortPolicy", "default")
	if pp.GetAPIVersion() != "firmware.fwops.io/v1alpha1" || pp.GetNamespace() != "" {
		t.Errorf("PortPolicy %s in namespace %q: want firmware.fwops.io/v1alpha1, cluster-scoped", pp.GetAPIVersion(), pp.GetNamespace())
	}
	if got := pp.Object["spec"]; !reflect.DeepEqual(got, wantPortPolicy) {
		t.Errorf("PortPolicy spec\n%v\nwant (docs/ports.md)\n%v", got, wantPortPolicy)
	}
}

func readRules(t *testing.T, path string) []rbacv1.PolicyRule {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var role rbacv1.ClusterRole
	if err := yaml.UnmarshalStrict(b, &role); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if role.Kind != "ClusterRole" || role.Name != "firmware-operator-manager" {
		t.Fatalf("%s: %s %q, want ClusterRole firmware-operator-manager", path, role.Kind, role.Name)
	}
	return role.Rules
}

// equalRules compares rule lists, treating nil and empty alike.
func equalRules(a, b []rbacv1.PolicyRule) bool {
	if len(a) == 0 && len(b) == 0 {
		return true
	}
	return reflect.DeepEqual(a, b)
}
