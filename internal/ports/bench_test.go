package ports

import (
	"fmt"
	"testing"
)

// capacity is the most targets one agent can serve with the default policy on
// an empty node where port 80 is free: P4 and P5 share 60000-65535 with P1's
// 62286, one session and one receive port per target plus the IPC port.
const capacity = (MaxPort - 60000 + 1 - 1 - 1) / 2

func TestP4P5_CapacityOfOneAgent(t *testing.T) {
	if _, err := AssignForNode(DefaultPolicy(), nil, capacity, seeded(1)); err != nil {
		t.Fatalf("%d targets: %v", capacity, err)
	}
	if _, err := AssignForNode(DefaultPolicy(), nil, capacity+1, seeded(1)); err == nil {
		t.Fatalf("%d targets fit, more than the rules allow", capacity+1)
	}
}

// BenchmarkAssignForNode measures the node-level assignment against the naive
// reference. 10,000 targets cannot fit on one node (see capacity): that case
// measures how fast the allocator says so. The "busy node" case has five
// agents of 200 targets already declared.
func BenchmarkAssignForNode(b *testing.B) {
	busyNode := map[int]bool{}
	for range 5 {
		a, err := AssignForNode(DefaultPolicy(), busyNode, 200, seeded(1))
		if err != nil {
			b.Fatal(err)
		}
		for _, p := range a.Ports() {
			busyNode[p] = true
		}
	}
	cases := []struct {
		name    string
		taken   map[int]bool
		targets int
		fails   bool
	}{
		{"targets=10", nil, 10, false},
		{"targets=1000", nil, 1000, false},
		{fmt.Sprintf("targets=%d(capacity)", capacity), nil, capacity, false},
		{"targets=10000(exhausts)", nil, 10000, true},
		{"busy-node/targets=1000", busyNode, 1000, false},
	}
	for _, tc := range cases {
		b.Run("impl=allocator/"+tc.name, func(b *testing.B) {
			r := seeded(1)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := AssignForNode(DefaultPolicy(), tc.taken, tc.targets, r); (err != nil) != tc.fails {
					b.Fatal(err)
				}
			}
		})
		b.Run("impl=naive/"+tc.name, func(b *testing.B) {
			r := seeded(1)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := naiveAssign(DefaultPolicy(), tc.taken, ForTargets(tc.targets), r); (err != nil) != tc.fails {
					b.Fatal(err)
				}
			}
		})
	}
}
