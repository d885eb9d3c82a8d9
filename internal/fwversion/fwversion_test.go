package fwversion

import "testing"

func TestSame(t *testing.T) {
	for _, tc := range []struct {
		read, wanted string
		same         bool
	}{
		{"2.78", "2.78", true},
		{"v2.78", "2.78", true},
		{"2.78", "v2.78", true},
		{" 2.78 ", "2.78", true},
		{"2.78", "2.79", false},
		{"2.7", "2.78", false},
		{"08.60.12", "8.60.12", false}, // HPE's NIC versions keep their leading zero
		{"", "", false},                // nothing read is not a version
		{"", "2.78", false},
	} {
		if got := Same(tc.read, tc.wanted); got != tc.same {
			t.Errorf("Same(%q, %q) = %v, want %v", tc.read, tc.wanted, got, tc.same)
		}
	}
}

func TestCompare(t *testing.T) {
	for _, tc := range []struct {
		a, b  string
		order int
		ok    bool
	}{
		{"2.78", "2.78", 0, true},
		{"v2.78", "2.78", 0, true},
		{"2.46", "2.78", -1, true},
		{"2.78", "2.46", 1, true},
		{"2.9", "2.10", -1, true}, // numbers, not strings
		{"3.10", "2.78", 1, true},
		{"2.7", "2.7.1", -1, true},
		{"1.59", "v1.61", -1, true},
		{"08.50.78", "08.60.12", -1, true},
		{"2.7", "2.7.0", 0, false},        // equal numbers written apart: Same says no
		{"08.60.12", "8.60.12", 0, false}, // as Same keeps them apart
		{"5.1-2.5.8.0.sles15sp2", "5.2", 0, false},
		{"", "2.78", 0, false},
		{"2.78", "", 0, false},
	} {
		order, ok := Compare(tc.a, tc.b)
		if order != tc.order || ok != tc.ok {
			t.Errorf("Compare(%q, %q) = %d, %v, want %d, %v", tc.a, tc.b, order, ok, tc.order, tc.ok)
		}
	}
}
