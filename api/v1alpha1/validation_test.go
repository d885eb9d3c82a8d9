package v1alpha1_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/gomega"
	"github.com/onsi/gomega/types"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
	"github.com/fwops/firmware-operator/internal/testutil/apiserver"
)

const goodSHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

func validTarget(name string) *fwv1.UpdateTarget {
	return &fwv1.UpdateTarget{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: fwv1.UpdateTargetSpec{
			Type:                 fwv1.TargetTypeLinux,
			Address:              "127.0.3.1:22",
			CredentialsSecretRef: fwv1.SecretReference{Name: "creds"},
			SSH:                  &fwv1.SSHSpec{KnownHostsSecretRef: &fwv1.SecretReference{Name: "kh"}},
		},
	}
}

func validPolicy(name string) *fwv1.PortPolicy {
	return &fwv1.PortPolicy{ObjectMeta: metav1.ObjectMeta{Name: name}}
}

func validJob(name string) *fwv1.UpdateJob {
	return &fwv1.UpdateJob{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: fwv1.UpdateJobSpec{
			Targets:  fwv1.TargetSelection{Names: []string{"a"}},
			Firmware: &fwv1.FirmwareSource{URL: "https://fw.example.net/ilo5.bin", SHA256: goodSHA},
			Rollout: fwv1.Rollout{
				MaxConcurrent: 2,
				Window:        &fwv1.MaintenanceWindow{Start: "22:00", End: "04:00", TimeZone: "Europe/Paris"},
			},
		},
	}
}

// stagingDirectory sets a Linux target's spec.linux.stagingDirectory.
func stagingDirectory(dir string) func(*fwv1.UpdateTarget) {
	return func(o *fwv1.UpdateTarget) { o.Spec.Linux = &fwv1.LinuxSpec{StagingDirectory: dir} }
}

// nodePathPrefix sets a PortPolicy's one allowed node path prefix.
func nodePathPrefix(p fwv1.NodePathPrefix) func(*fwv1.PortPolicy) {
	return func(o *fwv1.PortPolicy) { o.Spec.FirmwareSources.NodePathPrefixes = []fwv1.NodePathPrefix{p} }
}

// nodePath makes a job's firmware source the node path p.
func nodePath(p string) func(*fwv1.UpdateJob) {
	return func(o *fwv1.UpdateJob) { o.Spec.Firmware.URL, o.Spec.Firmware.NodePath = "", p }
}

// pvcPath makes a job's firmware source the file p of claim "fw".
func pvcPath(p string) func(*fwv1.UpdateJob) {
	return func(o *fwv1.UpdateJob) {
		o.Spec.Firmware.URL = ""
		o.Spec.Firmware.PersistentVolumeClaim = &fwv1.PVCSource{ClaimName: "fw", Path: p}
	}
}

// beInvalidOn matches an API "is invalid" error whose message names the field.
func beInvalidOn(field string) types.GomegaMatcher {
	return gomega.SatisfyAll(
		gomega.WithTransform(apierrors.IsInvalid, gomega.BeTrue()),
		gomega.WithTransform(func(err error) string { return err.Error() }, gomega.ContainSubstring(field)),
	)
}

var _ = ginkgo.Describe("CRD validation", func() {
	var seq int
	name := func() string { seq++; return "obj-" + strconv.Itoa(seq) }

	ginkgo.DescribeTable("rejects a bad UpdateTarget, naming the field",
		func(mutate func(*fwv1.UpdateTarget), field string) {
			obj := validTarget(name())
			mutate(obj)
			err := k8sClient.Create(ctx, obj)
			gomega.Expect(err).To(beInvalidOn(field))
			gomega.Expect(apierrors.IsNotFound(k8sClient.Get(ctx, client.ObjectKeyFromObject(obj), &fwv1.UpdateTarget{}))).To(gomega.BeTrue(), "a rejected object must not be stored")
		},
		ginkgo.Entry("unknown type", func(o *fwv1.UpdateTarget) { o.Spec.Type = "iLO3" }, "spec.type"),
		ginkgo.Entry("empty address", func(o *fwv1.UpdateTarget) { o.Spec.Address = "" }, "spec.address"),
		ginkgo.Entry("address with a scheme", func(o *fwv1.UpdateTarget) { o.Spec.Address = "https://10.0.0.1" }, "spec.address"),
		ginkgo.Entry("empty credentials Secret name", func(o *fwv1.UpdateTarget) { o.Spec.CredentialsSecretRef.Name = "" }, "spec.credentialsSecretRef.name"),
		ginkgo.Entry("SSH target with no known hosts and no waiver", func(o *fwv1.UpdateTarget) { o.Spec.SSH = &fwv1.SSHSpec{} }, "spec.ssh"),
		ginkgo.Entry("SSH target with no ssh section", func(o *fwv1.UpdateTarget) { o.Spec.SSH = nil }, "spec.ssh"),
		ginkgo.Entry("SSH port 0", func(o *fwv1.UpdateTarget) { o.Spec.SSH.Port = ptr.To[int32](0) }, "spec.ssh.port"),
		ginkgo.Entry("SSH port 70000", func(o *fwv1.UpdateTarget) { o.Spec.SSH.Port = ptr.To[int32](70000) }, "spec.ssh.port"),
		ginkgo.Entry("TLS on a Linux target", func(o *fwv1.UpdateTarget) { o.Spec.TLS = &fwv1.TLSSpec{InsecureSkipVerify: true} }, "spec.tls"),
		ginkgo.Entry("two TLS trust settings at once", func(o *fwv1.UpdateTarget) {
			o.Spec.Type, o.Spec.SSH = fwv1.TargetTypeILO5, nil
			o.Spec.TLS = &fwv1.TLSSpec{CertificateSHA256: goodSHA, InsecureSkipVerify: true}
		}, "spec.tls"),
		ginkgo.Entry("a fingerprint that is not SHA-256", func(o *fwv1.UpdateTarget) {
			o.Spec.Type, o.Spec.SSH = fwv1.TargetTypeILO5, nil
			o.Spec.TLS = &fwv1.TLSSpec{CertificateSHA256: "abc123"}
		}, "spec.tls.certificateSHA256"),
		ginkgo.Entry("a bay on a non-OA target", func(o *fwv1.UpdateTarget) { o.Spec.Bay = ptr.To[int32](3) }, "spec.bay"),
		ginkgo.Entry("bay 17 on an OA", func(o *fwv1.UpdateTarget) { o.Spec.Type, o.Spec.Bay = fwv1.TargetTypeOA, ptr.To[int32](17) }, "spec.bay"),
		ginkgo.Entry("spec.linux on an OA", func(o *fwv1.UpdateTarget) {
			o.Spec.Type, o.Spec.Linux = fwv1.TargetTypeOA, &fwv1.LinuxSpec{Sudo: true}
		}, "spec.linux"),
		ginkgo.Entry("spec.linux on an iLO", func(o *fwv1.UpdateTarget) {
			o.Spec.Type, o.Spec.SSH, o.Spec.Linux = fwv1.TargetTypeILO5, nil, &fwv1.LinuxSpec{StagingDirectory: "/var/lib/fwops"}
		}, "spec.linux"),
		ginkgo.Entry("a relative staging directory", stagingDirectory("var/lib/fwops"), "spec.linux.stagingDirectory"),
		ginkgo.Entry("a staging directory that climbs with '..'", stagingDirectory("/var/lib/../../tmp"), "spec.linux.stagingDirectory"),
		ginkgo.Entry("a staging directory ending in '..'", stagingDirectory("/var/lib/.."), "spec.linux.stagingDirectory"),
		ginkgo.Entry("a staging directory with a space", stagingDirectory("/var/lib/fw ops"), "spec.linux.stagingDirectory"),
	)

	ginkgo.It("accepts a Linux target with sudo and its own staging directory", func() {
		o := validTarget(name())
		// A name with dots is not a climb out of the directory.
		o.Spec.Linux = &fwv1.LinuxSpec{Sudo: true, StagingDirectory: "/var/lib/fwops..staging/run.d"}
		gomega.Expect(k8sClient.Create(ctx, o)).To(gomega.Succeed())
	})

	ginkgo.DescribeTable("rejects a bad PortPolicy, naming the field",
		func(mutate func(*fwv1.PortPolicy), field string) {
			obj := validPolicy(name())
			mutate(obj)
			err := k8sClient.Create(ctx, obj)
			gomega.Expect(err).To(beInvalidOn(field))
			gomega.Expect(apierrors.IsNotFound(k8sClient.Get(ctx, client.ObjectKeyFromObject(obj), &fwv1.PortPolicy{}))).To(gomega.BeTrue())
		},
		ginkgo.Entry("P1 control port 0", func(o *fwv1.PortPolicy) { o.Spec.ControlPort = -1 }, "spec.controlPort"),
		ginkgo.Entry("P1 control port 65536", func(o *fwv1.PortPolicy) { o.Spec.ControlPort = 65536 }, "spec.controlPort"),
		ginkgo.Entry("P2 fallback range start after end", func(o *fwv1.PortPolicy) {
			o.Spec.FirmwareServer.FallbackRange = &fwv1.PortRange{Start: 63007, End: 63000}
		}, "spec.firmwareServer.fallbackRange"),
		ginkgo.Entry("P2 preferred port inside its fallback range", func(o *fwv1.PortPolicy) {
			o.Spec.FirmwareServer.PreferredPort = 63003
		}, "spec.firmwareServer.preferredPort"),
		ginkgo.Entry("P2 fallback range end 70000", func(o *fwv1.PortPolicy) {
			o.Spec.FirmwareServer.FallbackRange = &fwv1.PortRange{Start: 63000, End: 70000}
		}, "spec.firmwareServer.fallbackRange.end"),
		ginkgo.Entry("P2 unknown selection", func(o *fwv1.PortPolicy) { o.Spec.FirmwareServer.Selection = "Highest" }, "spec.firmwareServer.selection"),
		ginkgo.Entry("P2 unknown TLS setting", func(o *fwv1.PortPolicy) { o.Spec.FirmwareServer.TLS = "Optional" }, "spec.firmwareServer.tls"),
		ginkgo.Entry("P1 control port inside the P2 fallback range", func(o *fwv1.PortPolicy) { o.Spec.ControlPort = 63001 }, "spec.controlPort"),
		ginkgo.Entry("P3 SSH port 0", func(o *fwv1.PortPolicy) { o.Spec.SSHPort = -22 }, "spec.sshPort"),
		ginkgo.Entry("P4 and P5 on the same base", func(o *fwv1.PortPolicy) {
			o.Spec.SessionBasePort, o.Spec.ReverseBasePort = 60000, 60000
		}, "spec.reverseBasePort"),
		ginkgo.Entry("a node path prefix of '/', which allows every file", nodePathPrefix("/"), "spec.firmwareSources.nodePathPrefixes[0]"),
		ginkgo.Entry("a relative node path prefix", nodePathPrefix("var/lib/firmware/"), "spec.firmwareSources.nodePathPrefixes[0]"),
		ginkgo.Entry("a node path prefix without its trailing '/', which would allow /var/lib/firmware-secrets", nodePathPrefix("/var/lib/firmware"), "spec.firmwareSources.nodePathPrefixes[0]"),
		ginkgo.Entry("a node path prefix that climbs with '..'", nodePathPrefix("/var/lib/firmware/../../"), "spec.firmwareSources.nodePathPrefixes[0]"),
		ginkgo.Entry("a node path prefix with a '.' segment", nodePathPrefix("/var/./lib/"), "spec.firmwareSources.nodePathPrefixes[0]"),
		ginkgo.Entry("a node path prefix with '//'", nodePathPrefix("/var//lib/"), "spec.firmwareSources.nodePathPrefixes[0]"),
		ginkgo.Entry("an allowed claim with no namespace", func(o *fwv1.PortPolicy) {
			o.Spec.FirmwareSources.PersistentVolumeClaims = []fwv1.ClaimReference{{ClaimName: "fw"}}
		}, "spec.firmwareSources.persistentVolumeClaims[0].namespace"),
	)

	ginkgo.It("accepts a PortPolicy that allows a node directory and claims", func() {
		o := validPolicy(name())
		o.Spec.FirmwareSources = fwv1.FirmwareSourcePolicy{
			NodePathPrefixes:       []fwv1.NodePathPrefix{"/var/lib/firmware/", "/srv/fw..images/"},
			PersistentVolumeClaims: []fwv1.ClaimReference{{Namespace: "fleet-a"}, {Namespace: "fleet-b", ClaimName: "images"}},
		}
		gomega.Expect(k8sClient.Create(ctx, o)).To(gomega.Succeed())
	})

	ginkgo.DescribeTable("rejects a bad UpdateJob, naming the field",
		func(mutate func(*fwv1.UpdateJob), field string) {
			obj := validJob(name())
			mutate(obj)
			err := k8sClient.Create(ctx, obj)
			gomega.Expect(err).To(beInvalidOn(field))
			gomega.Expect(apierrors.IsNotFound(k8sClient.Get(ctx, client.ObjectKeyFromObject(obj), &fwv1.UpdateJob{}))).To(gomega.BeTrue())
		},
		ginkgo.Entry("no targets", func(o *fwv1.UpdateJob) { o.Spec.Targets = fwv1.TargetSelection{} }, "spec.targets"),
		ginkgo.Entry("unknown component", func(o *fwv1.UpdateJob) { o.Spec.Component = "BIOS" }, "spec.component"),
		ginkgo.Entry("maxConcurrent below 1", func(o *fwv1.UpdateJob) { o.Spec.Rollout.MaxConcurrent = -1 }, "spec.rollout.maxConcurrent"),
		ginkgo.Entry("maxFailures a negative count", func(o *fwv1.UpdateJob) { o.Spec.Rollout.MaxFailures = ptr.To(intstr.FromInt32(-1)) }, "spec.rollout.maxFailures"),
		ginkgo.Entry("maxFailures 150%", func(o *fwv1.UpdateJob) { o.Spec.Rollout.MaxFailures = ptr.To(intstr.FromString("150%")) }, "spec.rollout.maxFailures"),
		ginkgo.Entry("maxFailures not a number", func(o *fwv1.UpdateJob) { o.Spec.Rollout.MaxFailures = ptr.To(intstr.FromString("a few")) }, "spec.rollout.maxFailures"),
		ginkgo.Entry("a short SHA-256", func(o *fwv1.UpdateJob) { o.Spec.Firmware.SHA256 = "9f86d081" }, "spec.firmware.sha256"),
		ginkgo.Entry("a SHA-256 that is not hex", func(o *fwv1.UpdateJob) { o.Spec.Firmware.SHA256 = strings.Repeat("z", 64) }, "spec.firmware.sha256"),
		ginkgo.Entry("no SHA-256", func(o *fwv1.UpdateJob) { o.Spec.Firmware.SHA256 = "" }, "spec.firmware.sha256"),
		ginkgo.Entry("two firmware sources", func(o *fwv1.UpdateJob) { o.Spec.Firmware.NodePath = "/var/lib/fw/ilo5.bin" }, "spec.firmware"),
		ginkgo.Entry("no firmware source", func(o *fwv1.UpdateJob) { o.Spec.Firmware.URL = "" }, "spec.firmware"),
		ginkgo.Entry("an ftp URL", func(o *fwv1.UpdateJob) { o.Spec.Firmware.URL = "ftp://fw.example.net/ilo5.bin" }, "spec.firmware.url"),
		ginkgo.Entry("a relative node path", nodePath("fw/ilo5.bin"), "spec.firmware.nodePath"),
		ginkgo.Entry("a PVC path that climbs out of the volume", pvcPath("images/../../etc/shadow"), "spec.firmware.persistentVolumeClaim.path"),
		ginkgo.Entry("an absolute PVC path", pvcPath("/images/ilo5.bin"), "spec.firmware.persistentVolumeClaim.path"),
		ginkgo.Entry("a PVC path naming a directory", pvcPath("images/"), "spec.firmware.persistentVolumeClaim.path"),
		ginkgo.Entry("a PVC path that is the volume itself", pvcPath("."), "spec.firmware.persistentVolumeClaim.path"),
		ginkgo.Entry("a PVC path with '//'", pvcPath("images//ilo5.bin"), "spec.firmware.persistentVolumeClaim.path"),
		ginkgo.Entry("a node path that climbs with '..'", nodePath("/var/lib/firmware/../../etc/shadow"), "spec.firmware.nodePath"),
		ginkgo.Entry("a node path ending in '..'", nodePath("/var/lib/firmware/.."), "spec.firmware.nodePath"),
		ginkgo.Entry("a node path naming a directory", nodePath("/var/lib/firmware/"), "spec.firmware.nodePath"),
		ginkgo.Entry("a node path of '/'", nodePath("/"), "spec.firmware.nodePath"),
		ginkgo.Entry("a node path with a '.' segment", nodePath("/var/lib/firmware/./ilo5.bin"), "spec.firmware.nodePath"),
		ginkgo.Entry("a node path with '//', which would slip past a prefix check", nodePath("/var/lib/firmware//ilo5.bin"), "spec.firmware.nodePath"),
		ginkgo.Entry("window start 25:00", func(o *fwv1.UpdateJob) { o.Spec.Rollout.Window.Start = "25:00" }, "spec.rollout.window.start"),
		ginkgo.Entry("window end 7:5", func(o *fwv1.UpdateJob) { o.Spec.Rollout.Window.End = "7:5" }, "spec.rollout.window.end"),
		ginkgo.Entry("window that opens and closes at once", func(o *fwv1.UpdateJob) { o.Spec.Rollout.Window.End = "22:00" }, "spec.rollout.window.end"),
		ginkgo.Entry("an unknown time zone", func(o *fwv1.UpdateJob) { o.Spec.Rollout.Window.TimeZone = "Mars/Olympus_Mons" }, "spec.rollout.window.timeZone"),
		ginkgo.Entry("an unknown weekday", func(o *fwv1.UpdateJob) { o.Spec.Rollout.Window.Days = []fwv1.Weekday{"Funday"} }, "spec.rollout.window.days[0]"),
		ginkgo.Entry("a 10s timeout", func(o *fwv1.UpdateJob) { o.Spec.Rollout.Timeout = &metav1.Duration{Duration: 10e9} }, "spec.rollout.timeout"),
		ginkgo.Entry("11 retries", func(o *fwv1.UpdateJob) { o.Spec.Rollout.Retries.Limit = 11 }, "spec.rollout.retries.limit"),
		ginkgo.Entry("an unknown reboot policy", func(o *fwv1.UpdateJob) { o.Spec.Rollout.Reboot = "Always" }, "spec.rollout.reboot"),
		ginkgo.Entry("a reboot for an iLO flash, which needs none", func(o *fwv1.UpdateJob) {
			o.Spec.Component, o.Spec.Rollout.Reboot = fwv1.ComponentILO, fwv1.RebootIfRequired
		}, "spec.rollout.reboot"),
		ginkgo.Entry("keepInRepository for a system ROM, which the agent never adds to the repository", func(o *fwv1.UpdateJob) {
			o.Spec.Component, o.Spec.Firmware.KeepInRepository = fwv1.ComponentSystemROM, true
		}, "spec.firmware.keepInRepository"),
	)

	ginkgo.It("defaults a PortPolicy to ports.md exactly", func() {
		p := validPolicy("defaults")
		gomega.Expect(k8sClient.Create(ctx, p)).To(gomega.Succeed())
		gomega.Expect(p.Spec.ControlPort).To(gomega.Equal(int32(62286)), "P1")
		gomega.Expect(p.Spec.FirmwareServer.PreferredPort).To(gomega.Equal(int32(80)), "P2")
		gomega.Expect(p.Spec.FirmwareServer.FallbackRange).To(gomega.Equal(&fwv1.PortRange{Start: 63000, End: 63007}), "P2")
		gomega.Expect(p.Spec.FirmwareServer.Selection).To(gomega.Equal(fwv1.PortSelectionRandom), "P2")
		gomega.Expect(p.Spec.FirmwareServer.TLS).To(gomega.Equal(fwv1.FirmwareServerTLSPreferred), "P2: HTTPS where the target can")
		gomega.Expect(p.Spec.SSHPort).To(gomega.Equal(int32(22)), "P3")
		gomega.Expect(p.Spec.SessionBasePort).To(gomega.Equal(int32(60000)), "P4")
		gomega.Expect(p.Spec.ReverseBasePort).To(gomega.Equal(int32(61000)), "P5")
		gomega.Expect(p.Spec.SingleNICIPv4).To(gomega.Equal(ptr.To(true)), "P5")
	})

	ginkgo.It("defaults an UpdateJob's rollout", func() {
		j := validJob("job-defaults")
		j.Spec.Rollout = fwv1.Rollout{}
		gomega.Expect(k8sClient.Create(ctx, j)).To(gomega.Succeed())
		gomega.Expect(j.Spec.Rollout.MaxConcurrent).To(gomega.Equal(int32(1)))
		gomega.Expect(j.Spec.Rollout.Timeout.Duration.String()).To(gomega.Equal("30m0s"))
		gomega.Expect(j.Spec.Rollout.MaxFailures).To(gomega.Equal(ptr.To(intstr.FromInt32(0))))
		gomega.Expect(j.Spec.Rollout.Reboot).To(gomega.Equal(fwv1.RebootNever))
		gomega.Expect(j.Spec.Component).To(gomega.Equal(fwv1.ComponentILO))
		gomega.Expect(j.Spec.PortPolicyName).To(gomega.Equal("default"))
	})

	ginkgo.DescribeTable("refuses changes that are unsafe mid-run",
		func(mutate func(*fwv1.UpdateJob), field string) {
			j := validJob(name())
			gomega.Expect(k8sClient.Create(ctx, j)).To(gomega.Succeed())
			mutate(j)
			gomega.Expect(k8sClient.Update(ctx, j)).To(beInvalidOn(field))
		},
		ginkgo.Entry("another image", func(o *fwv1.UpdateJob) { o.Spec.Firmware.URL = "https://fw.example.net/other.bin" }, "spec.firmware"),
		ginkgo.Entry("another digest", func(o *fwv1.UpdateJob) { o.Spec.Firmware.SHA256 = strings.Repeat("a", 64) }, "spec.firmware"),
		ginkgo.Entry("another component", func(o *fwv1.UpdateJob) { o.Spec.Component = fwv1.ComponentSystemROM }, "spec.component"),
	)

	ginkgo.It("lets a system ROM job reboot its servers", func() {
		j := validJob("job-reboot")
		j.Spec.Component, j.Spec.Rollout.Reboot = fwv1.ComponentSystemROM, fwv1.RebootIfRequired
		gomega.Expect(k8sClient.Create(ctx, j)).To(gomega.Succeed())
	})

	ginkgo.It("lets a Smart Component job keep its package in the iLO Repository", func() {
		j := validJob("job-keep")
		j.Spec.Component, j.Spec.Firmware.KeepInRepository = fwv1.ComponentSmartComponent, true
		gomega.Expect(k8sClient.Create(ctx, j)).To(gomega.Succeed())
	})

	ginkgo.It("lets the rollout of a job change", func() {
		j := validJob("job-mutable")
		gomega.Expect(k8sClient.Create(ctx, j)).To(gomega.Succeed())
		j.Spec.Rollout.Paused = true
		j.Spec.Rollout.MaxConcurrent = 10
		gomega.Expect(k8sClient.Update(ctx, j)).To(gomega.Succeed())
	})

	ginkgo.It("keeps a TargetUpdate's spec immutable", func() {
		tu := &fwv1.TargetUpdate{
			ObjectMeta: metav1.ObjectMeta{Name: "tu-immutable", Namespace: "default"},
			Spec:       fwv1.TargetUpdateSpec{JobName: "j", TargetName: "t", TargetType: fwv1.TargetTypeILO5},
		}
		gomega.Expect(k8sClient.Create(ctx, tu)).To(gomega.Succeed())
		tu.Spec.TargetName = "other"
		gomega.Expect(k8sClient.Update(ctx, tu)).To(beInvalidOn("spec"))
	})

	ginkgo.DescribeTable("checks a TargetUpdate's firmware server certificate fingerprint",
		func(fingerprint string, valid bool) {
			tu := &fwv1.TargetUpdate{
				ObjectMeta: metav1.ObjectMeta{Name: name(), Namespace: "default"},
				Spec:       fwv1.TargetUpdateSpec{JobName: "j", TargetName: "t", TargetType: fwv1.TargetTypeILO5},
			}
			gomega.Expect(k8sClient.Create(ctx, tu)).To(gomega.Succeed())
			tu.Status.FirmwareServerCertificateSHA256 = fingerprint
			err := k8sClient.Status().Update(ctx, tu)
			if valid {
				gomega.Expect(err).NotTo(gomega.HaveOccurred())
			} else {
				gomega.Expect(err).To(beInvalidOn("status.firmwareServerCertificateSHA256"))
			}
		},
		ginkgo.Entry("a SHA-256 in lower-case hex", strings.Repeat("ab", 32), true),
		ginkgo.Entry("upper-case hex", strings.Repeat("AB", 32), false),
		ginkgo.Entry("with colons, as openssl prints it", strings.TrimSuffix(strings.Repeat("ab:", 32), ":"), false),
		ginkgo.Entry("a short digest", "abcdef", false),
	)

	ginkgo.It("accepts node paths and claim paths that name a file, dots in names included", func() {
		for _, mutate := range []func(*fwv1.UpdateJob){nodePath("/var/lib/firmware/ilo5..bin"), nodePath("/var/lib/.fw/ilo5.bin"), pvcPath("images/.ilo5.bin")} {
			o := validJob(name())
			mutate(o)
			gomega.Expect(k8sClient.Create(ctx, o)).To(gomega.Succeed())
		}
	})

	ginkgo.It("accepts every sample in config/samples", func() {
		files, err := filepath.Glob(filepath.Join(apiserver.RepoRoot(), "config", "samples", "*.yaml"))
		gomega.Expect(err).NotTo(gomega.HaveOccurred())
		gomega.Expect(files).NotTo(gomega.BeEmpty())
		count := 0
		for _, f := range files {
			data, err := os.ReadFile(f)
			gomega.Expect(err).NotTo(gomega.HaveOccurred())
			for _, doc := range strings.Split(string(data), "\n---") {
				if strings.TrimSpace(doc) == "" {
					continue
				}
				u := &unstructured.Unstructured{}
				gomega.Expect(yaml.Unmarshal([]byte(doc), &u.Object)).To(gomega.Succeed(), f)
				if u.Object == nil {
					continue
				}
				if u.GetNamespace() == "" && u.GetKind() != "PortPolicy" {
					u.SetNamespace("default")
				}
				gomega.Expect(k8sClient.Create(ctx, u, client.DryRunAll)).To(gomega.Succeed(), "%s: %s/%s", f, u.GetKind(), u.GetName())
				count++
			}
		}
		gomega.Expect(count).To(gomega.BeNumerically(">=", 6))
	})
})
