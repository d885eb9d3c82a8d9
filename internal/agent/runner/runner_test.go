package runner

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
	"github.com/fwops/firmware-operator/internal/agent/config"
	"github.com/fwops/firmware-operator/internal/agent/control"
	"github.com/fwops/firmware-operator/internal/agent/driver"
	"github.com/fwops/firmware-operator/internal/testutil/syncbuf"
)

const (
	testNS       = "fw"
	testJob      = "job1"
	testPassword = "s3cret-Pa55word!"
)

// freePorts returns n distinct free ports, all held together while choosing.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var ls []net.Listener
	var out []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return out
}

func writeFile(t testing.TB, p string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// mountCredentials lays out a target's Secret as the pod mounts it.
func mountCredentials(t testing.TB, cfg config.Config, target, user, password string) {
	dir := cfg.SecretDir(target + "-" + credentialsSub)
	writeFile(t, filepath.Join(dir, fwv1.SecretKeyUsername), []byte(user))
	writeFile(t, filepath.Join(dir, fwv1.SecretKeyPassword), []byte(password))
}

func newTU(job, target string) *fwv1.TargetUpdate {
	return &fwv1.TargetUpdate{
		ObjectMeta: metav1.ObjectMeta{Namespace: testNS, Name: job + "-" + target,
			Labels: map[string]string{fwv1.LabelJob: job, fwv1.LabelTarget: target}},
		Spec: fwv1.TargetUpdateSpec{JobName: job, TargetName: target, TargetType: fwv1.TargetType("iLO5")},
	}
}

type fixture struct {
	cfg    config.Config
	fake   *driver.Fake
	c      client.Client
	writes atomic.Int32
	logs   *syncbuf.Buffer

	// written is each TargetUpdate's status after each of the agent's writes, by name.
	mu      sync.Mutex
	written map[string][]fwv1.TargetUpdateStatus
}

// statusWrites is the status after each write of TargetUpdate name, in order.
func (f *fixture) statusWrites(name string) []fwv1.TargetUpdateStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fwv1.TargetUpdateStatus(nil), f.written[name]...)
}

// newFixture prepares an agent config over n fake targets, with an image staged under the
// mount root, TargetUpdates in a fake API and credentials mounted.
func newFixture(t *testing.T, n int, def driver.FakeBehavior, objs ...client.Object) *fixture {
	t.Helper()
	root := t.TempDir()
	image := []byte("FWOPS-IMAGE component=iLO version=2.0\npayload")
	sum := sha256.Sum256(image)
	writeFile(t, filepath.Join(root, config.StagedDir, "fw.bin"), image)
	ps := freePorts(t, 3+n)
	cfg := config.Config{
		Namespace: testNS, Job: testJob, JobUID: "uid-1", Node: "node-a", Pod: "agent-pod",
		Firmware: config.Firmware{Path: config.StagedDir + "/fw.bin", SHA256: hex.EncodeToString(sum[:]), Version: "2.0", Component: "iLO"},
		Ports: config.Ports{Control: ps[0], FirmwareServer: ps[1], FirmwareFallback: [2]int{ps[1] + 1, ps[1] + 1},
			FirmwareSelection: "Lowest", IPC: ps[2]},
		Timeout: 10 * time.Second, Address: "127.0.0.1", MountRoot: root,
	}
	s := runtime.NewScheme()
	if err := fwv1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	f := &fixture{fake: driver.NewFake(def), logs: &syncbuf.Buffer{}, written: map[string][]fwv1.TargetUpdateStatus{}}
	var all []client.Object
	for i := range n {
		name := fmt.Sprintf("t%d", i)
		cfg.Targets = append(cfg.Targets, config.Target{Name: name, TargetUpdate: testJob + "-" + name, Type: "iLO5",
			Address: "127.0.0.1:1", Slot: i, CredentialsSecret: name + "-" + credentialsSub})
		cfg.Ports.Sessions = append(cfg.Ports.Sessions, ps[3+i])
		all = append(all, newTU(testJob, name))
		mountCredentials(t, cfg, name, "admin", testPassword)
	}
	// Objects passed in replace the defaults of the same name.
	for _, o := range objs {
		for i, a := range all {
			if a.GetName() == o.GetName() {
				all[i] = o
			}
		}
	}
	f.c = fake.NewClientBuilder().WithScheme(s).WithStatusSubresource(&fwv1.TargetUpdate{}).WithObjects(all...).
		WithInterceptorFuncs(interceptor.Funcs{
			SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, p client.Patch, o ...client.SubResourcePatchOption) error {
				// An empty patch is the agent's read (ReadTargetUpdate), not a write.
				data, err := p.Data(obj)
				write := err != nil || string(data) != "{}"
				if write {
					f.writes.Add(1)
				}
				if err := c.SubResource(sub).Patch(ctx, obj, p, o...); err != nil {
					return err
				}
				if tu, ok := obj.(*fwv1.TargetUpdate); ok && write {
					f.mu.Lock()
					f.written[tu.Name] = append(f.written[tu.Name], *tu.Status.DeepCopy())
					f.mu.Unlock()
				}
				return nil
			},
		}).Build()
	f.cfg = cfg
	return f
}

func (f *fixture) run(t *testing.T, mod func(*Deps)) error {
	t.Helper()
	d := Deps{Client: f.c, Drivers: f.fake.Registry(), Log: slog.New(slog.NewJSONHandler(f.logs, nil)),
		MinWriteInterval: time.Hour}
	if mod != nil {
		mod(&d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return Run(ctx, f.cfg, d)
}

func (f *fixture) tu(t *testing.T, target string) *fwv1.TargetUpdate {
	t.Helper()
	tu := &fwv1.TargetUpdate{}
	if err := f.c.Get(context.Background(), types.NamespacedName{Namespace: testNS, Name: testJob + "-" + target}, tu); err != nil {
		t.Fatal(err)
	}
	return tu
}

func TestShouldWrite(t *testing.T) {
	t0 := time.Unix(1000, 0)
	st := func(ph fwv1.TargetPhase, pct int32, msg string) fwv1.TargetUpdateStatus {
		return fwv1.TargetUpdateStatus{Phase: ph, Percent: pct, Message: msg}
	}
	for _, tc := range []struct {
		name       string
		last, next fwv1.TargetUpdateStatus
		after      time.Duration
		want       bool
	}{
		{"phase change", st("Staging", 0, ""), st("Flashing", 0, ""), 0, true},
		{"final", st("Succeeded", 100, "a"), st("Succeeded", 100, "a"), 0, true},
		{"same step of 10", st("Flashing", 11, ""), st("Flashing", 19, ""), time.Second, false},
		{"next step of 10", st("Flashing", 19, ""), st("Flashing", 20, ""), time.Second, true},
		{"message only, soon", st("Flashing", 20, "a"), st("Flashing", 20, "b"), time.Second, false},
		{"message only, 5s later", st("Flashing", 20, "a"), st("Flashing", 20, "b"), 5 * time.Second, true},
		{"nothing changed, 5s later", st("Flashing", 20, "a"), st("Flashing", 20, "a"), time.Minute, false},
		{"percent +1, 5s later", st("Flashing", 21, "a"), st("Flashing", 22, "a"), 5 * time.Second, true},
	} {
		if got := shouldWrite(tc.last, tc.next, t0, t0.Add(tc.after), 5*time.Second); got != tc.want {
			t.Errorf("%s: shouldWrite = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestRunSucceedsThenRerunFlashesNothing(t *testing.T) {
	f := newFixture(t, 3, driver.FakeBehavior{Version: "1.0", Delay: 20 * time.Millisecond})
	if err := f.run(t, nil); err != nil {
		t.Fatalf("Run: %v", err)
	}
	for i, tt := range f.cfg.Targets {
		tu := f.tu(t, tt.Name)
		s := tu.Status
		if s.Phase != fwv1.TargetPhaseSucceeded || s.VersionBefore != "1.0" || s.VersionAfter != "2.0" || s.Percent != 100 {
			t.Errorf("%s: status %+v", tt.Name, s)
		}
		if s.Node != "node-a" || s.AgentPod != "agent-pod" || int(s.SessionPort) != f.cfg.Ports.Sessions[tt.Slot] ||
			int(s.FirmwareServerPort) != f.cfg.Ports.FirmwareServer || s.StartTime == nil || s.CompletionTime == nil {
			t.Errorf("%s: placement fields %+v", tt.Name, s)
		}
		if len(s.Conditions) != 1 || s.Conditions[0].Status != metav1.ConditionTrue || s.Conditions[0].Reason != "Succeeded" {
			t.Errorf("%s: conditions %+v", tt.Name, s.Conditions)
		}
		if got := f.fake.Flashes(tt.Name); got != 1 {
			t.Errorf("%s: %d flashes, want 1", tt.Name, got)
		}
		if got := f.fake.LocalPorts(tt.Name); len(got) != 1 || got[0] != f.cfg.Ports.Sessions[tt.Slot] { // rule P4
			t.Errorf("%s: local ports %v, want [%d]", tt.Name, got, f.cfg.Ports.Sessions[tt.Slot])
		}
		want := fmt.Sprintf("http://127.0.0.1:%d/fw/", f.cfg.Ports.FirmwareServer)
		if u := f.fake.LastFirmware(tt.Name).URL; !strings.HasPrefix(u, want) || !strings.HasSuffix(u, "/fw.bin") {
			t.Errorf("%s: image URL %q, want %s...", tt.Name, u, want)
		}
		_ = i
	}
	// Few writes: Downloading, Staging, Flashing 0..100 in steps of 10, Verifying, Succeeded.
	if w := f.writes.Load(); w > int32(3*16) {
		t.Errorf("%d status writes for 3 targets: the throttle is not working", w)
	}

	// The same agent again: every target is finished, nothing is flashed or written.
	before := f.writes.Load()
	if err := f.run(t, nil); err != nil {
		t.Fatalf("second Run: %v", err)
	}
	if n := f.fake.TotalFlashes(); n != 3 {
		t.Errorf("second run flashed: %d flashes in all, want 3", n)
	}
	if w := f.writes.Load(); w != before {
		t.Errorf("second run wrote %d statuses", w-before)
	}
}

func TestSkipWhenAlreadyAtVersion(t *testing.T) {
	f := newFixture(t, 1, driver.FakeBehavior{Version: "2.0"})
	if err := f.run(t, nil); err != nil {
		t.Fatalf("Run: %v", err)
	}
	s := f.tu(t, "t0").Status
	if s.Phase != fwv1.TargetPhaseSkipped || s.Message != "already at version 2.0" || s.Conditions[0].Reason != "Skipped" {
		t.Errorf("status %+v", s)
	}
	if f.fake.Flashes("t0") != 0 {
		t.Error("flashed a target already at the wanted version")
	}

	// --force flashes it anyway.
	f2 := newFixture(t, 1, driver.FakeBehavior{Version: "2.0"})
	f2.cfg.Force = true
	if err := f2.run(t, nil); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if f2.fake.Flashes("t0") != 1 || f2.tu(t, "t0").Status.Phase != fwv1.TargetPhaseSucceeded {
		t.Errorf("forced run: %d flashes, status %+v", f2.fake.Flashes("t0"), f2.tu(t, "t0").Status)
	}
}

func TestResumeFlashingNowAtVersionSucceeds(t *testing.T) {
	tu := newTU(testJob, "t0")
	tu.Status = fwv1.TargetUpdateStatus{Phase: fwv1.TargetPhaseFlashing, Percent: 40, VersionBefore: "1.0"}
	done := newTU(testJob, "t1")
	done.Status = fwv1.TargetUpdateStatus{Phase: fwv1.TargetPhaseSucceeded, VersionBefore: "1.0", VersionAfter: "2.0"}
	f := newFixture(t, 3, driver.FakeBehavior{Version: "1.0"}, tu, done)
	f.fake.Set("t0", driver.FakeBehavior{Version: "2.0"}) // the flash finished while no agent watched
	f.fake.Set("t1", driver.FakeBehavior{Version: "1.0"}) // would be flashed if not left alone
	if err := f.run(t, nil); err != nil {
		t.Fatalf("Run: %v", err)
	}
	s := f.tu(t, "t0").Status
	if s.Phase != fwv1.TargetPhaseSucceeded || s.VersionBefore != "1.0" || s.VersionAfter != "2.0" {
		t.Errorf("t0: %+v", s)
	}
	if f.fake.Flashes("t0") != 0 || f.fake.Flashes("t1") != 0 || f.fake.Opens("t1") != 0 {
		t.Errorf("flashes t0=%d t1=%d, opens t1=%d; want none", f.fake.Flashes("t0"), f.fake.Flashes("t1"), f.fake.Opens("t1"))
	}
	if f.fake.Flashes("t2") != 1 {
		t.Errorf("t2: %d flashes, want 1", f.fake.Flashes("t2"))
	}
}

// A retry after an agent was killed mid-flash starts Downloading again (the controller
// re-claims it); what tells it that the earlier attempt flashed is the version that attempt
// recorded before the flash. Before, the retry reported "already at version 2.0" (Skipped):
// the chaos suite's agent killed in Verifying ended Skipped although the job flashed it.
func TestRetryAfterInterruptedFlashSucceeds(t *testing.T) {
	tu := newTU(testJob, "t0")
	tu.Status = fwv1.TargetUpdateStatus{Phase: fwv1.TargetPhaseDownloading, Attempts: 2, VersionBefore: "1.0",
		Message: "agent pod x is fetching the firmware"}
	untouched := newTU(testJob, "t1")
	untouched.Status = fwv1.TargetUpdateStatus{Phase: fwv1.TargetPhaseDownloading, Attempts: 2, VersionBefore: "2.0"}
	f := newFixture(t, 2, driver.FakeBehavior{Version: "2.0"}, tu, untouched)
	if err := f.run(t, nil); err != nil {
		t.Fatalf("Run: %v", err)
	}
	s := f.tu(t, "t0").Status
	if s.Phase != fwv1.TargetPhaseSucceeded || s.VersionBefore != "1.0" || s.VersionAfter != "2.0" ||
		!strings.Contains(s.Message, "the flash of an earlier attempt took effect") {
		t.Errorf("t0: %+v", s)
	}
	// An earlier attempt that found the wanted version already flashed nothing: Skipped.
	if s := f.tu(t, "t1").Status; s.Phase != fwv1.TargetPhaseSkipped {
		t.Errorf("t1: %+v", s)
	}
	if f.fake.Flashes("t0") != 0 || f.fake.Flashes("t1") != 0 {
		t.Errorf("flashes t0=%d t1=%d; want none", f.fake.Flashes("t0"), f.fake.Flashes("t1"))
	}
}

func TestDigestMismatchFailsEveryTarget(t *testing.T) {
	f := newFixture(t, 2, driver.FakeBehavior{Version: "1.0"})
	good := f.cfg.Firmware.SHA256
	bad := strings.Repeat("ab", 32)
	f.cfg.Firmware.SHA256 = bad
	err := f.run(t, nil)
	if err == nil || !strings.Contains(err.Error(), "t0") || !strings.Contains(err.Error(), "t1") {
		t.Fatalf("Run = %v, want an error naming t0 and t1", err)
	}
	for _, n := range []string{"t0", "t1"} {
		s := f.tu(t, n).Status
		// The expected digest is named; the file's real one never is, in status or logs
		// (docs/security.md: a nodePath job must not learn a node file's digest).
		if s.Phase != fwv1.TargetPhaseFailed || !strings.Contains(s.Message, bad) || strings.Contains(s.Message, good) {
			t.Errorf("%s: %+v, want Failed naming the expected digest and not the file's", n, s)
		}
		if c := s.Conditions; len(c) != 1 || c[0].Status != metav1.ConditionFalse || c[0].Reason != "Failed" {
			t.Errorf("%s: conditions %+v", n, c)
		}
	}
	if f.fake.TotalFlashes() != 0 || f.fake.Opens("t0") != 0 {
		t.Error("a target was contacted with an unverified image")
	}
	if logs := f.logs.String(); strings.Contains(logs, good) {
		t.Errorf("the agent's log reveals the file's digest %s:\n%s", good, logs)
	}
}

func TestFailureIsReportedAndPasswordNeverShows(t *testing.T) {
	f := newFixture(t, 2, driver.FakeBehavior{Version: "1.0"})
	// A careless library quoting the password in its error: the agent must not repeat it.
	f.fake.Set("t1", driver.FakeBehavior{Version: "1.0", OpenErr: errors.New("login refused for admin/" + testPassword)})
	err := f.run(t, nil)
	if err == nil || !strings.Contains(err.Error(), "t1") || strings.Contains(err.Error(), "t0") {
		t.Fatalf("Run = %v, want an error naming t1 only", err)
	}
	s := f.tu(t, "t1").Status
	if s.Phase != fwv1.TargetPhaseFailed || !strings.Contains(s.Message, "connecting to 127.0.0.1:1") {
		t.Errorf("t1: %+v", s)
	}
	if strings.Contains(s.Message, testPassword) || strings.Contains(s.Conditions[0].Message, testPassword) {
		t.Errorf("password in status: %q", s.Message)
	}
	if logs := f.logs.String(); strings.Contains(logs, testPassword) || !strings.Contains(logs, "[REDACTED]") {
		t.Errorf("logs hold the password, or redaction did not run:\n%s", logs)
	}
	if f.tu(t, "t0").Status.Phase != fwv1.TargetPhaseSucceeded {
		t.Errorf("t0: %+v", f.tu(t, "t0").Status)
	}
}

func TestRefusesTargetUpdateOfAnotherJob(t *testing.T) {
	other := newTU(testJob, "t0")
	other.Labels[fwv1.LabelJob] = "other-job"
	f := newFixture(t, 1, driver.FakeBehavior{Version: "1.0"}, other)
	if err := f.run(t, nil); err == nil {
		t.Fatal("Run succeeded with a TargetUpdate of another job")
	}
	if f.writes.Load() != 0 || f.fake.Opens("t0") != 0 {
		t.Errorf("%d writes, %d opens: the agent touched another job's target", f.writes.Load(), f.fake.Opens("t0"))
	}
}

func TestPortsStepPastHeldPorts(t *testing.T) {
	f := newFixture(t, 1, driver.FakeBehavior{Version: "1.0", Delay: 300 * time.Millisecond})
	f.cfg.Ports.Reverse = freePorts(t, 1)
	// Something outside Kubernetes holds every assigned port: control, firmware, session,
	// inter-process and receive.
	var hold []net.Listener
	for _, p := range []int{f.cfg.Ports.Control, f.cfg.Ports.FirmwareServer, f.cfg.Ports.Sessions[0], f.cfg.Ports.IPC, f.cfg.Ports.Reverse[0]} {
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			t.Skipf("port %d taken meanwhile: %v", p, err)
		}
		hold = append(hold, l)
	}
	defer func() {
		for _, l := range hold {
			l.Close()
		}
	}()
	boundCh := make(chan Bound, 1)
	snapCh := make(chan control.Snapshot, 2)
	errCh := make(chan error, 1)
	go func() {
		errCh <- f.run(t, func(d *Deps) {
			d.OnBound = func(b Bound) { boundCh <- b }
		})
	}()
	var b Bound
	select {
	case b = <-boundCh:
	case err := <-errCh:
		// The fixture's ports are free ports picked before the run; on a busy machine another
		// process can take one meanwhile. Fail with why, instead of waiting for a bind forever.
		t.Fatalf("the agent stopped before binding its ports: %v", err)
	}
	// rule P1: the next free port upward; rule P2: the fallback range.
	if b.Control <= f.cfg.Ports.Control {
		t.Errorf("control bound %d, assigned %d (held): want a higher port", b.Control, f.cfg.Ports.Control)
	}
	if b.Firmware != f.cfg.Ports.FirmwareFallback[0] {
		t.Errorf("firmware bound %d, want the fallback %d", b.Firmware, f.cfg.Ports.FirmwareFallback[0])
	}
	sp := f.cfg.Ports.Sessions[0]
	if b.Sessions[0] <= sp {
		t.Errorf("session bound %d, assigned %d (held)", b.Sessions[0], sp)
	}
	// /status on both the control listener (P1) and the inter-process channel (P5).
	for _, addr := range []string{fmt.Sprintf("127.0.0.1:%d", b.Control), fmt.Sprintf("127.0.0.1:%d", b.IPC)} {
		var snap control.Snapshot
		gomega.NewWithT(t).Eventually(func() (err error) {
			snap, err = control.FetchStatus(context.Background(), addr)
			return err
		}).WithTimeout(time.Minute).Should(gomega.Succeed(), "status from %s", addr)
		snapCh <- snap
	}
	if err := <-errCh; err != nil {
		t.Fatalf("Run: %v", err)
	}
	for range 2 {
		snap := <-snapCh
		got := map[string]int{}
		for _, p := range snap.Agent.Ports {
			got[p.Name] = p.Port
		}
		if got["control"] != b.Control || got["firmware"] != b.Firmware || got["session/0"] != b.Sessions[0] || got["ipc"] != b.IPC {
			t.Errorf("/status ports %v, bound %+v", got, b)
		}
	}
	if b.IPC <= f.cfg.Ports.IPC || len(b.Reverse) != 1 || b.Reverse[0] <= f.cfg.Ports.Reverse[0] {
		t.Errorf("ipc bound %d, receive %v; assigned %d, %v (held): want higher ports (rule P5)", b.IPC, b.Reverse, f.cfg.Ports.IPC, f.cfg.Ports.Reverse)
	}
	// The TargetUpdate carries every port really bound, where the controller reads them.
	s := f.tu(t, "t0").Status
	got := []int{int(s.ControlPort), int(s.FirmwareServerPort), int(s.SessionPort), int(s.IPCPort)}
	for _, p := range s.ReceivePorts {
		got = append(got, int(p))
	}
	want := append([]int{b.Control, b.Firmware, b.Sessions[0], b.IPC}, b.Reverse...)
	if !slices.Equal(got, want) {
		t.Errorf("TargetUpdate reports control, firmware, session, ipc, receive ports %v; bound %v", got, want)
	}
	if lp := f.fake.LocalPorts("t0"); len(lp) != 1 || lp[0] != b.Sessions[0] {
		t.Errorf("driver dialled from %v, bound %d", lp, b.Sessions[0])
	}
	if !strings.Contains(f.logs.String(), fmt.Sprintf(`"control":%d`, b.Control)) {
		t.Errorf("no log line with the bound control port:\n%s", f.logs.String())
	}
}

func TestTargetHostAndImageURL(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1": "127.0.0.1", "127.0.0.1:8443": "127.0.0.1", "https://127.0.0.1:8443/": "127.0.0.1",
		"[::1]:22": "::1", "::1": "::1", "ilo-1.example": "ilo-1.example",
	} {
		if got := targetHost(in); got != want {
			t.Errorf("targetHost(%q) = %q, want %q", in, got, want)
		}
	}
	u, err := imageURL("http", "", "127.0.0.1:443", 63001, "/fw/tok/a.bin")
	if err != nil || u != "http://127.0.0.1:63001/fw/tok/a.bin" {
		t.Errorf("imageURL = %q, %v", u, err)
	}
}

// TestMainAndStatusCommand runs the agent through Main with the pod's arguments and reads its
// progress with `agent status` over the inter-process channel (rule P5).
func TestMainAndStatusCommand(t *testing.T) {
	f := newFixture(t, 2, driver.FakeBehavior{Version: "1.0", Delay: 400 * time.Millisecond})
	args := append(f.cfg.Args(), "--mount-root="+f.cfg.MountRoot)
	boundCh := make(chan Bound, 1)
	errCh := make(chan error, 1)
	go func() {
		errCh <- Main(context.Background(), args, f.logs, f.logs, WithClient(f.c), WithDrivers(f.fake.Registry()),
			WithOnBound(func(b Bound) { boundCh <- b }))
	}()
	b := <-boundCh
	var out bytes.Buffer
	gomega.NewWithT(t).Eventually(func() error {
		out.Reset()
		return Main(context.Background(), []string{"status", "--addr", fmt.Sprintf("127.0.0.1:%d", b.IPC)}, &out, &out)
	}).WithTimeout(time.Minute).Should(gomega.Succeed(), "agent status")
	for _, want := range []string{"job job1 on node node-a", "TARGET", "t0", "t1", fmt.Sprintf("P1 control=%d", b.Control)} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("agent status output lacks %q:\n%s", want, out.String())
		}
	}
	// /readyz: ready once the image is verified and the firmware server listens, asked until
	// the agent ends (a loaded machine may take longer than any fixed number of tries).
	ready, ended := false, false
	var agentErr error
	for !ready && !ended {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", b.Control))
		if err == nil {
			resp.Body.Close()
			ready = resp.StatusCode == http.StatusOK
		}
		select {
		case agentErr = <-errCh:
			ended = true
		case <-time.After(10 * time.Millisecond):
		}
	}
	if !ready {
		t.Error("/readyz never answered 200 while the agent was flashing")
	}
	if !ended {
		agentErr = <-errCh
	}
	if agentErr != nil {
		t.Fatalf("agent: %v", agentErr)
	}
	if err := Main(context.Background(), []string{"status"}, &out, &out); err == nil {
		t.Error("agent status without --addr succeeded")
	}
	if err := Main(context.Background(), []string{"--job=x"}, &out, &out); err == nil {
		t.Error("agent with bad flags succeeded")
	}
}

func TestPerTargetTimeout(t *testing.T) {
	f := newFixture(t, 2, driver.FakeBehavior{Version: "1.0"})
	f.fake.Set("t1", driver.FakeBehavior{Version: "1.0", Delay: 5 * time.Second})
	f.cfg.Timeout = 300 * time.Millisecond
	if err := f.run(t, nil); err == nil || !strings.Contains(err.Error(), "t1") {
		t.Fatalf("Run = %v, want an error naming t1", err)
	}
	if s := f.tu(t, "t1").Status; s.Phase != fwv1.TargetPhaseFailed || !strings.Contains(s.Message, "timed out after 300ms") {
		t.Errorf("t1: %s %q", s.Phase, s.Message)
	}
	if s := f.tu(t, "t0").Status; s.Phase != fwv1.TargetPhaseSucceeded {
		t.Errorf("t0: %+v", s)
	}
}

// With rollout.reboot: IfRequired, the driver learns when the job's maintenance window ends, so
// that it never reboots a server past it: the window's end while it is open, now when it is
// over, no bound without a window or without reboots.
func TestRebootByIsTheWindowsEnd(t *testing.T) {
	office := &fwv1.MaintenanceWindow{Start: "09:00", End: "17:00"}
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, tc := range []struct {
		name   string
		reboot bool
		window *fwv1.MaintenanceWindow
		now    string
		want   string // "" for the zero time
	}{
		{"inside the window", true, office, "2026-11-24T10:00:00Z", "2026-11-24T17:00:00Z"},
		{"after the window", true, office, "2026-11-24T18:00:00Z", "2026-11-24T18:00:00Z"},
		{"no window", true, nil, "2026-11-24T10:00:00Z", ""},
		{"no reboot", false, office, "2026-11-24T10:00:00Z", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, 1, driver.FakeBehavior{Version: "1.0"})
			f.cfg.RebootIfRequired, f.cfg.Window = tc.reboot, tc.window
			now := at(tc.now)
			if err := f.run(t, func(d *Deps) { d.Now = func() time.Time { return now } }); err != nil {
				t.Fatalf("Run: %v", err)
			}
			got := f.fake.LastFirmware("t0").RebootBy
			if tc.want == "" && !got.IsZero() || tc.want != "" && !got.Equal(at(tc.want)) {
				t.Fatalf("RebootBy = %v, want %q", got, tc.want)
			}
		})
	}
}
