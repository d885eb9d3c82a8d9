package config

import (
	"reflect"
	"strings"
	"testing"
	"time"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
)

func sample() Config {
	return Config{
		Namespace: "fleet", Job: "ilo5-278", JobUID: "uid-1", Node: "node-a", Pod: "ilo5-278-agent-0",
		Firmware: Firmware{URL: "https://fw.example.net/ilo5.bin", SHA256: strings.Repeat("a", 64), Version: "2.78", Component: "iLO", KeepInRepository: true},
		Ports: Ports{Control: 62286, FirmwareServer: 80, FirmwareFallback: [2]int{63000, 63007}, FirmwareSelection: "Random",
			IPC: 61000, Reverse: []int{61001, 61002}, Sessions: []int{60000, 60001}},
		Targets: []Target{
			{Name: "ilo-1", TargetUpdate: "ilo5-278-ilo-1", Type: "iLO5", Address: "127.0.1.1", Attempt: 1, CertificateSHA256: strings.Repeat("b", 64),
				CredentialsSecret: "ilo-creds", CABundleSecret: "ilo-ca"},
			{Name: "db-1", TargetUpdate: "ilo5-278-db-1", Type: "Linux", Address: "127.0.3.1", Attempt: 2, Slot: 1, SSHPort: 22,
				CredentialsSecret: "db-creds", KnownHostsSecret: "db-kh"},
		},
		Timeout:          30 * time.Minute,
		Lifetime:         5*time.Minute + 4*30*time.Minute,
		Force:            true,
		RebootIfRequired: true,
		FirmwareTLS:      fwv1.FirmwareServerTLSRequired,
		Window:           &fwv1.MaintenanceWindow{Days: []fwv1.Weekday{"Saturday"}, Start: "22:00", End: "04:00", TimeZone: "Europe/Paris"},
	}
}

func TestArgsRoundTrip(t *testing.T) {
	want := sample()
	got, err := Parse(want.Args())
	if err != nil {
		t.Fatalf("Parse(Args()): %v", err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip changed the config:\n got %+v\nwant %+v", got, want)
	}
}

// baselineSample is the configuration of an agent of a job with spec.baselineRef.
func baselineSample() Config {
	c := sample()
	c.Firmware = Firmware{Component: "iLO"}
	c.Baseline, c.BaselineGeneration = "spp-2026-09", 3
	return c
}

func TestBaselineArgsRoundTrip(t *testing.T) {
	want := baselineSample()
	got, err := Parse(want.Args())
	if err != nil {
		t.Fatalf("Parse(Args()): %v", err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip changed the config:\n got %+v\nwant %+v", got, want)
	}
}

// TestInventoryOnlyArgs: a read-only job's flag survives the round trip, and means nothing
// without a baseline, whose plan it reads.
func TestInventoryOnlyArgs(t *testing.T) {
	want := baselineSample()
	want.InventoryOnly = true
	got, err := Parse(want.Args())
	if err != nil || !got.InventoryOnly {
		t.Fatalf("Parse(Args()) = inventoryOnly %v, %v; want true", got.InventoryOnly, err)
	}
	image := sample()
	image.InventoryOnly = true
	if _, err := Parse(image.Args()); err == nil || !strings.Contains(err.Error(), "--inventory-only needs --baseline") {
		t.Fatalf("Parse error = %v, want --inventory-only needs --baseline", err)
	}
}

func TestParseBaselineNamesTheBadFlag(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"no generation", func(c *Config) { c.BaselineGeneration = 0 }, "--baseline-generation is required"},
		{"an image too", func(c *Config) { c.Firmware.URL = "https://fw.example.net/ilo5.bin" }, "--baseline excludes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := baselineSample()
			tc.mutate(&c)
			_, err := Parse(c.Args())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Parse error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestComponentSourceMount(t *testing.T) {
	for _, tc := range []struct {
		fw   fwv1.FirmwareSource
		want string
	}{
		{fwv1.FirmwareSource{URL: "https://fw.example.net/a.bin"}, ""},
		{fwv1.FirmwareSource{NodePath: "/var/lib/firmware/ilo5/ilo5_310.bin"}, StagedDir + "/ilo5/ilo5_310.bin"},
		{fwv1.FirmwareSource{PersistentVolumeClaim: &fwv1.PVCSource{ClaimName: "spp", Path: "2026.09/ilo5_310.bin"}}, PVCDir + "/ilo5/ilo5_310.bin"},
	} {
		if got := ComponentSourceMount("ilo5", tc.fw); got != tc.want {
			t.Errorf("ComponentSourceMount(%+v) = %q, want %q", tc.fw, got, tc.want)
		}
	}
}

func TestArgsDeterministic(t *testing.T) {
	if a, b := sample().Args(), sample().Args(); !reflect.DeepEqual(a, b) {
		t.Fatalf("Args is not deterministic:\n%v\n%v", a, b)
	}
}

func TestParseNamesTheBadFlag(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"no job", func(c *Config) { c.Job = "" }, "--job is required"},
		{"no digest", func(c *Config) { c.Firmware.SHA256 = "" }, "--sha256 is required"},
		{"two sources", func(c *Config) { c.Firmware.Path = "/var/run/fwops/staged/x.bin" }, "exactly one of --firmware-url"},
		{"no targets", func(c *Config) { c.Targets = nil }, "at least one --target"},
		{"duplicate target", func(c *Config) { c.Targets[1].Name = "ilo-1" }, "--target ilo-1: given twice"},
		{"target without address", func(c *Config) { c.Targets[0].Address = "" }, "--target ilo-1: address is required"},
		{"unknown firmware TLS", func(c *Config) { c.FirmwareTLS = "Sometimes" }, `--firmware-tls: "Sometimes" is not Disabled, Preferred or Required`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := sample()
			tc.mutate(&c)
			_, err := Parse(c.Args())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Parse error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestParseRejectsUnknownTargetFields(t *testing.T) {
	args := append(sample().Args(), `--target={"name":"x","targetUpdate":"y","address":"z","password":"hunter2"}`)
	if _, err := Parse(args); err == nil || !strings.Contains(err.Error(), "unknown field") {
		t.Fatalf("Parse accepted an unknown target field: %v", err)
	}
}

func TestParseBadPorts(t *testing.T) {
	args := append(sample().Args(), "--firmware-fallback=63007-63000")
	if _, err := Parse(args); err == nil || !strings.Contains(err.Error(), "--firmware-fallback") {
		t.Fatalf("got %v, want an error naming --firmware-fallback", err)
	}
	args = append(sample().Args(), "--reverse-ports=61001,70000")
	if _, err := Parse(args); err == nil || !strings.Contains(err.Error(), "--reverse-ports") {
		t.Fatalf("got %v, want an error naming --reverse-ports", err)
	}
}

func TestMountPaths(t *testing.T) {
	c := sample()
	c.MountRoot = "/tmp/kubelet/pod1"
	if got, want := c.SecretDir("ilo-creds"), "/tmp/kubelet/pod1/var/run/fwops/secrets/ilo-creds"; got != want {
		t.Errorf("SecretDir = %q, want %q", got, want)
	}
	if got, want := c.CachePath(), "/tmp/kubelet/pod1/var/cache/fwops"; got != want {
		t.Errorf("CachePath = %q, want %q", got, want)
	}
}

func TestServesHTTPS(t *testing.T) {
	for tls, want := range map[fwv1.FirmwareServerTLS]bool{"": false, fwv1.FirmwareServerTLSDisabled: false,
		fwv1.FirmwareServerTLSPreferred: true, fwv1.FirmwareServerTLSRequired: true} {
		if got := (Config{FirmwareTLS: tls}).ServesHTTPS(); got != want {
			t.Errorf("FirmwareTLS %q: ServesHTTPS() = %v, want %v", tls, got, want)
		}
	}
}

func TestFollowArgsRoundTrip(t *testing.T) {
	want := sample()
	want.Follow = true
	got, err := Parse(want.Args())
	if err != nil {
		t.Fatalf("Parse(Args()): %v", err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip changed the config:\n got %+v\nwant %+v", got, want)
	}
	if got.Slots() != 2 {
		t.Errorf("Slots() = %d, want one per session port, 2", got.Slots())
	}
}

func TestFollowNeedsPod(t *testing.T) {
	c := sample()
	c.Follow, c.Pod, c.Targets = true, "", nil
	if _, err := Parse(c.Args()); err == nil || !strings.Contains(err.Error(), "--follow requires --pod") {
		t.Fatalf("got %v, want an error saying --follow requires --pod", err)
	}
	c.Pod = "ilo5-278-agent-0"
	if _, err := Parse(c.Args()); err != nil {
		t.Fatalf("a follow agent with a pod and no target yet: %v", err)
	}
	c.Follow = false
	if _, err := Parse(c.Args()); err == nil || !strings.Contains(err.Error(), "--target") {
		t.Fatalf("got %v, want an error asking for a --target", err)
	}
}

func TestTargetNeedsCredentialsSecret(t *testing.T) {
	c := sample()
	c.Targets[1].CredentialsSecret = ""
	if _, err := Parse(c.Args()); err == nil || !strings.Contains(err.Error(), "db-1: credentialsSecret is required") {
		t.Fatalf("got %v, want an error naming db-1's credentialsSecret", err)
	}
}

func TestAssignmentsRoundTrip(t *testing.T) {
	want := sample().Targets
	got, err := DecodeAssignments(EncodeAssignments(want))
	if err != nil {
		t.Fatalf("DecodeAssignments(EncodeAssignments()): %v", err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip changed the assignments:\n got %+v\nwant %+v", got, want)
	}
	if got, err := DecodeAssignments(""); err != nil || got != nil {
		t.Errorf("empty annotation: %v, %v; want none and no error", got, err)
	}
	if _, err := DecodeAssignments(`[{"name":"x"}]`); err == nil || !strings.Contains(err.Error(), "assignment #1") {
		t.Errorf("bad assignment: got %v, want an error naming assignment #1", err)
	}
	if k := want[1].Key(); k != "ilo5-278-db-1:2" {
		t.Errorf("Key() = %q, want targetupdate:attempt", k)
	}
}
