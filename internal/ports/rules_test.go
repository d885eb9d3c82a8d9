package ports

import (
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// seeded returns a repeatable random source.
func seeded(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, seed)) }

// busy builds a fake probe: the listed ports and inclusive ranges are taken.
func busy(ports ...int) Taken {
	t := Taken{}
	for _, p := range ports {
		t[p] = true
	}
	return t
}

func busyRange(t Taken, from, to int) Taken {
	for p := from; p <= to; p++ {
		t[p] = true
	}
	return t
}

func seq(from, n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = from + i
	}
	return out
}

func assign(t *testing.T, pol Policy, probe Probe, req Request, seed uint64) Assignment {
	t.Helper()
	a, err := Allocator{Policy: pol, Probe: probe, Rand: seeded(seed)}.Assign(req)
	if err != nil {
		t.Fatalf("Assign: %v", err)
	}
	if err := a.Check(); err != nil {
		t.Fatalf("Check: %v", err)
	}
	return a
}

func TestP1toP5_DefaultsEqualPortsMD(t *testing.T) {
	p := DefaultPolicy()
	want := Policy{
		ControlPort: 62286,
		FirmwareServer: FirmwareServer{
			PreferredPort: 80,
			FallbackRange: Range{Start: 63000, End: 63007},
			Selection:     SelectionRandom,
		},
		SSHPort:         22,
		SessionBasePort: 60000,
		ReverseBasePort: 61000,
		SingleNICIPv4:   true,
	}
	if p != want {
		t.Fatalf("DefaultPolicy() = %+v, want %+v", p, want)
	}
	if err := p.Validate(); err != nil {
		t.Fatalf("DefaultPolicy().Validate() = %v", err)
	}
}

func TestP1_ControlPortNextFreeOnConflict(t *testing.T) {
	for _, tc := range []struct {
		name    string
		control int
		busy    Taken
		want    int
		wantErr string
	}{
		{"P1/62286 free, 62286", 62286, busy(), 62286, ""},
		{"P1/62286 busy, next free 62287", 62286, busy(62286), 62287, ""},
		{"P1/62286-62290 busy, 62291", 62286, busyRange(busy(), 62286, 62290), 62291, ""},
		{"P1/busy up to 65535, error", 65530, busyRange(busy(), 65530, 65535), 0, "rule P1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pol := DefaultPolicy()
			pol.ControlPort = tc.control
			a, err := Allocator{Policy: pol, Probe: tc.busy, Rand: seeded(1)}.Assign(Request{})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, ErrExhausted) {
					t.Fatalf("err = %v, want one naming %q and wrapping ErrExhausted", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := a.Control(); got != tc.want {
				t.Fatalf("control port = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestP2_FirmwareServerPreferredElseFallback(t *testing.T) {
	narrow := DefaultPolicy()
	narrow.FirmwareServer.FallbackRange = Range{Start: 63000, End: 63005}
	lowest := DefaultPolicy()
	lowest.FirmwareServer.Selection = SelectionLowest
	for _, tc := range []struct {
		name    string
		pol     Policy
		busy    Taken
		in      Range // the port must be in here
		wantErr string
	}{
		{"P2/port 80 free, 80", DefaultPolicy(), busy(), Range{80, 80}, ""},
		{"P2/port 80 busy, random in 63000-63007", DefaultPolicy(), busy(80), Range{63000, 63007}, ""},
		{"P2/port 80 and 63000-63006 busy, random lands on 63007", DefaultPolicy(), busyRange(busy(80), 63000, 63006), Range{63007, 63007}, ""},
		{"P2/port 80 busy, Lowest takes 63000", lowest, busy(80), Range{63000, 63000}, ""},
		{"P2/port 80 and 63000-63002 busy, Lowest takes 63003", lowest, busyRange(busy(80), 63000, 63002), Range{63003, 63003}, ""},
		{"P2/narrowed range 63000-63005, never 63006 or 63007", narrow, busy(80), Range{63000, 63005}, ""},
		{"P2/narrowed range, 63000-63004 busy, 63005", narrow, busyRange(busy(80), 63000, 63004), Range{63005, 63005}, ""},
		{"P2/whole range taken, error names the range", DefaultPolicy(), busyRange(busy(80), 63000, 63007), Range{}, "63000-63007"},
		{"P2/whole narrowed range taken, error names it", narrow, busyRange(busy(80), 63000, 63005), Range{}, "63000-63005"},
		{"P2/Lowest, whole range taken, error", lowest, busyRange(busy(80), 63000, 63007), Range{}, "63000-63007"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for seed := range uint64(20) {
				a, err := Allocator{Policy: tc.pol, Probe: tc.busy, Rand: seeded(seed)}.Assign(Request{})
				if tc.wantErr != "" {
					if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "rule P2") || !errors.Is(err, ErrExhausted) {
						t.Fatalf("err = %v, want rule P2 naming %q", err, tc.wantErr)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if got := a.FirmwareServer(); !tc.in.Contains(got) {
					t.Fatalf("seed %d: firmware server port = %d, want in %s", seed, got, tc.in)
				}
			}
		})
	}
}

func TestP2_RandomIsRepeatablePerSeedAndSpreads(t *testing.T) {
	pol := DefaultPolicy()
	seen := map[int]int{}
	for seed := range uint64(200) {
		a := assign(t, pol, busy(80), Request{}, seed)
		b := assign(t, pol, busy(80), Request{}, seed)
		if a.FirmwareServer() != b.FirmwareServer() {
			t.Fatalf("seed %d: %d then %d", seed, a.FirmwareServer(), b.FirmwareServer())
		}
		seen[a.FirmwareServer()]++
	}
	if len(seen) < 2 {
		t.Fatalf("200 seeds chose only %v: not random", seen)
	}
	// With 200 draws over 8 ports, missing one has probability ~8*(7/8)^200.
	for p := 63000; p <= 63007; p++ {
		if seen[p] == 0 {
			t.Errorf("port %d never chosen over 200 seeds: %v", p, seen)
		}
	}
}

func TestP2_PreferredPortTakenByP1FallsBack(t *testing.T) {
	// rule P2 skips a port that rule P1 of the same agent already took.
	pol := DefaultPolicy()
	pol.ControlPort = 80
	pol.FirmwareServer.Selection = SelectionLowest
	a := assign(t, pol, busy(), Request{}, 1)
	if a.Control() != 80 || a.FirmwareServer() != 63000 {
		t.Fatalf("control %d, firmware server %d; want 80 and 63000", a.Control(), a.FirmwareServer())
	}
}

func TestP3_SSHPortDefaultAndOverride(t *testing.T) {
	pol := DefaultPolicy()
	for _, tc := range []struct {
		name     string
		override int
		want     int
	}{
		{"P3/no override, policy default 22", 0, 22},
		{"P3/target override 2222", 2222, 2222},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := pol.SSHPortFor(tc.override); got != tc.want {
				t.Fatalf("SSHPortFor(%d) = %d, want %d", tc.override, got, tc.want)
			}
		})
	}
	pol.SSHPort = 2022
	if got := pol.SSHPortFor(0); got != 2022 {
		t.Fatalf("P3/policy 2022: got %d", got)
	}
}

func TestP4_SessionPortPerTargetNextFree(t *testing.T) {
	for _, tc := range []struct {
		name    string
		busy    Taken
		targets int
		want    []int
	}{
		{"P4/no targets, no session port", busy(), 0, nil},
		{"P4/3 targets, 60000-60002", busy(), 3, seq(60000, 3)},
		{"P4/60001 busy, skipped", busy(60001), 3, []int{60000, 60002, 60003}},
		{"P4/60000 busy, starts at 60001", busy(60000), 2, []int{60001, 60002}},
		{"P4/20 targets grow past 60007", busy(), 20, seq(60000, 20)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := assign(t, DefaultPolicy(), tc.busy, ForTargets(tc.targets), 1)
			if got := a.Sessions(); !slices.Equal(got, tc.want) {
				t.Fatalf("sessions = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestP4P5_GrowingRangesNeverShareAPort(t *testing.T) {
	// rule P4 with 1500 targets runs from 60000 into P5's 61000: the session
	// ports keep 61000-61499 and rule P5 starts after them.
	a := assign(t, DefaultPolicy(), busy(), ForTargets(1500), 1)
	s := a.Sessions()
	if len(s) != 1500 || s[0] != 60000 || s[1499] != 61499 {
		t.Fatalf("sessions %d..%d (%d)", s[0], s[len(s)-1], len(s))
	}
	if a.IPC() != 61500 {
		t.Fatalf("P5 IPC = %d, want 61500", a.IPC())
	}
	r := a.Receive()
	if len(r) != 1500 || r[0] != 61501 {
		t.Fatalf("receive from %d (%d ports)", r[0], len(r))
	}
	// and rule P1's 62286 lies in P5's way: it is skipped.
	if slices.Contains(r, 62286) || !slices.Contains(a.Ports(), 62286) {
		t.Fatalf("62286 should be P1's only")
	}
}

func TestP4_ExhaustedNamesRule(t *testing.T) {
	_, err := AssignForNode(DefaultPolicy(), nil, 10000, seeded(1))
	if err == nil || !strings.Contains(err.Error(), "rule P4") || !errors.Is(err, ErrExhausted) {
		t.Fatalf("err = %v, want rule P4 exhausted", err)
	}
}

func TestP5_ReversePorts(t *testing.T) {
	noNIC := DefaultPolicy()
	noNIC.SingleNICIPv4 = false
	for _, tc := range []struct {
		name        string
		pol         Policy
		busy        Taken
		req         Request
		wantIPC     int
		wantReceive []int
	}{
		{"P5/single-NIC, lowest 61000 is IPC, following receive", DefaultPolicy(), busy(), ForTargets(3), 61000, seq(61001, 3)},
		{"P5/single-NIC, 61000 busy, IPC 61001", DefaultPolicy(), busy(61000), ForTargets(2), 61001, []int{61002, 61003}},
		{"P5/single-NIC, 61002 busy, skipped by receive", DefaultPolicy(), busy(61002), ForTargets(3), 61000, []int{61001, 61003, 61004}},
		{"P5/single-NIC, no targets, IPC only", DefaultPolicy(), busy(), ForTargets(0), 61000, nil},
		{"P5/receive count from caller", DefaultPolicy(), busy(), Request{Sessions: 1, Receive: 4}, 61000, seq(61001, 4)},
		{"P5/not single-NIC, all receive from 61000", noNIC, busy(), ForTargets(3), 0, seq(61000, 3)},
		{"P5/not single-NIC, 61000 busy", noNIC, busy(61000), ForTargets(2), 0, []int{61001, 61002}},
		{"P5/grows past 61007 with 10 targets", DefaultPolicy(), busy(), ForTargets(10), 61000, seq(61001, 10)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := assign(t, tc.pol, tc.busy, tc.req, 1)
			if a.IPC() != tc.wantIPC {
				t.Fatalf("IPC = %d, want %d", a.IPC(), tc.wantIPC)
			}
			if got := a.Receive(); !slices.Equal(got, tc.wantReceive) {
				t.Fatalf("receive = %v, want %v", got, tc.wantReceive)
			}
		})
	}
}

func TestValidate_NamesTheField(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*Policy)
		want   string
	}{
		{"P1/port 0", func(p *Policy) { p.ControlPort = 0 }, "controlPort: port 0 is outside 1-65535"},
		{"P1/port 70000", func(p *Policy) { p.ControlPort = 70000 }, "controlPort: port 70000"},
		{"P2/preferred port inside fallback range", func(p *Policy) { p.FirmwareServer.PreferredPort = 63002 }, "firmwareServer.preferredPort: port 63002 is inside fallbackRange 63000-63007"},
		{"P2/start after end", func(p *Policy) { p.FirmwareServer.FallbackRange = Range{63010, 63000} }, "firmwareServer.fallbackRange: start 63010 is after end 63000"},
		{"P2/range end 70000", func(p *Policy) { p.FirmwareServer.FallbackRange.End = 70000 }, "firmwareServer.fallbackRange.end: port 70000"},
		{"P2/preferred 0", func(p *Policy) { p.FirmwareServer.PreferredPort = 0 }, "firmwareServer.preferredPort: port 0"},
		{"P2/unknown selection", func(p *Policy) { p.FirmwareServer.Selection = "Highest" }, "firmwareServer.selection"},
		{"P3/ssh port 0", func(p *Policy) { p.SSHPort = 0 }, "sshPort: port 0"},
		{"P4/session base 70000", func(p *Policy) { p.SessionBasePort = 70000 }, "sessionBasePort: port 70000"},
		{"P5/reverse base -1", func(p *Policy) { p.ReverseBasePort = -1 }, "reverseBasePort: port -1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := DefaultPolicy()
			tc.mutate(&p)
			err := p.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want it to contain %q", err, tc.want)
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("Validate() = %T, want a *FieldError inside", err)
			}
			if _, err := (Allocator{Policy: p, Probe: busy()}).Assign(Request{}); err == nil {
				t.Fatalf("Assign accepted an invalid policy")
			}
		})
	}
	// Several problems are all reported.
	p := DefaultPolicy()
	p.ControlPort, p.SSHPort = 0, 70000
	err := p.Validate()
	if err == nil || !strings.Contains(err.Error(), "controlPort") || !strings.Contains(err.Error(), "sshPort") {
		t.Fatalf("Validate() = %v, want both fields", err)
	}
}

func TestAssignment_PortsCheckAndDirections(t *testing.T) {
	a := assign(t, DefaultPolicy(), busy(), ForTargets(2), 1)
	want := []Entry{
		{Port: 62286, Rule: RuleP1, Purpose: PurposeControl},
		{Port: 80, Rule: RuleP2, Purpose: PurposeFirmwareServer},
		{Port: 60000, Rule: RuleP4, Purpose: PurposeSession},
		{Port: 60001, Rule: RuleP4, Purpose: PurposeSession, Index: 1},
		{Port: 61000, Rule: RuleP5, Purpose: PurposeIPC},
		{Port: 61001, Rule: RuleP5, Purpose: PurposeReceive},
		{Port: 61002, Rule: RuleP5, Purpose: PurposeReceive, Index: 1},
	}
	if !slices.Equal(a.Entries, want) {
		t.Fatalf("entries = %+v\nwant %+v", a.Entries, want)
	}
	if got := a.Ports(); !slices.Equal(got, []int{62286, 80, 60000, 60001, 61000, 61001, 61002}) {
		t.Fatalf("Ports() = %v", got)
	}
	dirs := map[Purpose]Direction{}
	for _, e := range a.Entries {
		dirs[e.Purpose] = e.Direction()
	}
	if dirs[PurposeControl] != Inbound || dirs[PurposeFirmwareServer] != Inbound || dirs[PurposeSession] != Outbound || dirs[PurposeIPC] != Local || dirs[PurposeReceive] != Inbound {
		t.Fatalf("directions %v", dirs)
	}
	dup := Assignment{Entries: []Entry{{Port: 80, Rule: RuleP2, Purpose: PurposeFirmwareServer}, {Port: 80, Rule: RuleP4, Purpose: PurposeSession}}}
	if err := dup.Check(); err == nil || !strings.Contains(err.Error(), "port 80 given twice") {
		t.Fatalf("Check() = %v", err)
	}
	if err := (Assignment{Entries: []Entry{{Port: 0, Rule: RuleP1}}}).Check(); err == nil {
		t.Fatalf("Check() accepted port 0")
	}
}

func TestAssignForNode_SecondAgentAvoidsTheFirst(t *testing.T) {
	first, err := AssignForNode(DefaultPolicy(), nil, 3, seeded(1))
	if err != nil {
		t.Fatal(err)
	}
	taken := map[int]bool{}
	for _, p := range first.Ports() {
		taken[p] = true
	}
	second, err := AssignForNode(DefaultPolicy(), taken, 3, seeded(1))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range second.Ports() {
		if taken[p] {
			t.Fatalf("second agent got %d, declared by the first", p)
		}
	}
	if second.Control() != 62287 { // rule P1: next free
		t.Errorf("control = %d", second.Control())
	}
	if fs := second.FirmwareServer(); fs < 63000 || fs > 63007 { // rule P2: 80 is the first's
		t.Errorf("firmware server = %d", fs)
	}
	if !slices.Equal(second.Sessions(), seq(60003, 3)) { // rule P4
		t.Errorf("sessions = %v", second.Sessions())
	}
	if second.IPC() != 61004 || !slices.Equal(second.Receive(), seq(61005, 3)) { // rule P5
		t.Errorf("IPC %d receive %v", second.IPC(), second.Receive())
	}
}

func TestP5_ExhaustedNamesRule(t *testing.T) {
	for _, tc := range []struct {
		name string
		base int
		req  Request
		want string
	}{
		// 65535 is busy in both cases.
		{"P5/IPC port past 65535", 65535, Request{}, "rule P5: inter-process port"},
		{"P5/receive ports past 65535", 65530, Request{Receive: 6}, "rule P5: receive port 5 of 6"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pol := DefaultPolicy()
			pol.ReverseBasePort = tc.base
			_, err := Allocator{Policy: pol, Probe: busy(65535)}.Assign(tc.req)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrExhausted) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestAssign_NegativeCountsAndNilRand(t *testing.T) {
	if _, err := (Allocator{Policy: DefaultPolicy(), Probe: busy()}).Assign(Request{Sessions: -1}); err == nil {
		t.Fatal("negative session count accepted")
	}
	// A nil Probe sees every port free.
	if a, err := (Allocator{Policy: DefaultPolicy()}).Assign(ForTargets(1)); err != nil || a.Control() != 62286 || a.FirmwareServer() != 80 {
		t.Fatalf("nil Probe: %v %v", err, a.Entries)
	}
	// rule P2: without a Rand the process-wide source still draws in range.
	a, err := Allocator{Policy: DefaultPolicy(), Probe: busy(80)}.Assign(Request{})
	if err != nil || !DefaultPolicy().FirmwareServer.FallbackRange.Contains(a.FirmwareServer()) {
		t.Fatalf("nil Rand: %v, port %d", err, a.FirmwareServer())
	}
}
