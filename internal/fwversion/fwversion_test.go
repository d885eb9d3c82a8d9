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
