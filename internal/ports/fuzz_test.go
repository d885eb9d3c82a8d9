package ports

import (
	"errors"
	"slices"
	"testing"
)

// FuzzAssign checks the invariants of AssignForNode on any policy, any set of
// taken ports and any number of targets:
//
//   - an invalid policy is refused with Validate's error;
//   - no port is given twice, every port is in 1-65535 and none is taken;
//   - P1 is the first untaken port from the control port;
//   - P2 is the preferred port if free, else a free port of the fallback
//     range (the lowest free one with Lowest);
//   - P4 and P5 give the asked counts, ascending from their bases, with the
//     IPC port first and only on single-NIC IPv4;
//   - the result equals the naive reference and is the same for the same seed;
//   - a failure on a valid policy wraps ErrExhausted, and the reference fails too.
//
// takenPorts is read two bytes (little endian) per taken port; blockStart and
// blockLen add a run of taken ports, to reach the exhausted paths.
func FuzzAssign(f *testing.F) {
	d := DefaultPolicy()
	f.Add(uint64(1), uint16(3), []byte{}, uint16(0), uint16(0),
		uint16(d.ControlPort), uint16(d.FirmwareServer.PreferredPort), uint16(d.FirmwareServer.FallbackRange.Start), uint16(d.FirmwareServer.FallbackRange.End),
		uint16(d.SessionBasePort), uint16(d.ReverseBasePort), false, true)
	f.Fuzz(func(t *testing.T, seed uint64, targets uint16, takenPorts []byte, blockStart, blockLen uint16,
		control, preferred, start, end, session, reverse uint16, lowest, singleNIC bool) {
		pol := Policy{
			ControlPort: int(control),
			FirmwareServer: FirmwareServer{
				PreferredPort: int(preferred),
				FallbackRange: Range{Start: int(start), End: int(end)},
				Selection:     SelectionRandom,
			},
			SSHPort:         22,
			SessionBasePort: int(session),
			ReverseBasePort: int(reverse),
			SingleNICIPv4:   singleNIC,
		}
		if lowest {
			pol.FirmwareServer.Selection = SelectionLowest
		}
		n := int(targets) % 1100 // past 1000, P4 runs into P5's base
		taken := map[int]bool{}
		for i := 0; i+1 < len(takenPorts); i += 2 {
			taken[int(takenPorts[i])|int(takenPorts[i+1])<<8] = true
		}
		for p := int(blockStart); p < int(blockStart)+int(blockLen) && p <= MaxPort; p++ {
			taken[p] = true
		}

		a, err := AssignForNode(pol, taken, n, seeded(seed))
		ref, refErr := naiveAssign(pol, taken, ForTargets(n), seeded(seed))
		if verr := pol.Validate(); verr != nil {
			if err == nil {
				t.Fatalf("invalid policy accepted: %v", verr)
			}
			return
		}
		if err != nil {
			if !errors.Is(err, ErrExhausted) {
				t.Fatalf("error without ErrExhausted: %v", err)
			}
			if refErr == nil {
				t.Fatalf("Assign failed (%v) where the reference succeeded", err)
			}
			return
		}
		if refErr != nil {
			t.Fatalf("reference failed (%v) where Assign succeeded", refErr)
		}
		if err := a.Check(); err != nil {
			t.Fatal(err)
		}
		for _, p := range a.Ports() {
			if taken[p] {
				t.Fatalf("port %d is taken", p)
			}
		}
		// P1
		wantP1 := int(control)
		for taken[wantP1] {
			wantP1++
		}
		if a.Control() != wantP1 {
			t.Fatalf("P1 = %d, want %d", a.Control(), wantP1)
		}
		// P2
		fs, r := a.FirmwareServer(), pol.FirmwareServer.FallbackRange
		if pfree := !taken[pol.FirmwareServer.PreferredPort] && pol.FirmwareServer.PreferredPort != wantP1; pfree {
			if fs != pol.FirmwareServer.PreferredPort {
				t.Fatalf("P2 = %d, preferred %d was free", fs, pol.FirmwareServer.PreferredPort)
			}
		} else {
			if !r.Contains(fs) {
				t.Fatalf("P2 = %d, not in %s", fs, r)
			}
			if lowest {
				for p := r.Start; p < fs; p++ {
					if !taken[p] && p != wantP1 {
						t.Fatalf("P2 Lowest = %d, but %d was free", fs, p)
					}
				}
			}
		}
		// P4, P5
		s, rc := a.Sessions(), a.Receive()
		if len(s) != n || len(rc) != n {
			t.Fatalf("%d sessions, %d receive, want %d", len(s), len(rc), n)
		}
		if !slices.IsSorted(s) || !slices.IsSorted(rc) || (n > 0 && (s[0] < int(session) || rc[0] < int(reverse))) {
			t.Fatalf("sessions %v / receive %v not ascending from their bases", s, rc)
		}
		if ipc := a.IPC(); singleNIC != (ipc != 0) || (ipc != 0 && (ipc < int(reverse) || (n > 0 && ipc > rc[0]))) {
			t.Fatalf("IPC %d (single NIC %v), receive %v", ipc, singleNIC, rc)
		}
		if !slices.Equal(a.Entries, ref) {
			t.Fatalf("Assign %v\nreference %v", a.Entries, ref)
		}
		again, err := AssignForNode(pol, taken, n, seeded(seed))
		if err != nil || !slices.Equal(again.Entries, a.Entries) {
			t.Fatalf("not repeatable for seed %d: %v / %v", seed, err, again.Entries)
		}
	})
}
