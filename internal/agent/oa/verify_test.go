package oa

import "testing"

// The OA driver's check after a flash reads versions as the controller's skip and the agent's
// resume do (fwversion.Same): a job for "v4.85" that the resume would skip on an OA at 4.85 is
// verified by an OA at 4.85, and a different version still fails.
func TestVerifyComparesVersionsAsTheResumeDoes(t *testing.T) {
	for _, tc := range []struct {
		before, after, want string
		ok                  bool
	}{
		{"4.80", "4.85", "4.85", true},
		{"4.80", "4.85", "v4.85", true},
		{"4.80", "4.85 ", "4.85", true},
		{"4.80", "4.80", "4.85", false},
		{"4.80", "", "4.85", false},
		{"4.80", "4.85", "", true},  // no wanted version: any change
		{"4.80", "4.80", "", false}, // unchanged
		{"", "", "", false},         // nothing read before or after: unchanged
	} {
		err := verify("oa-1", "OA", tc.before, tc.after, tc.want)
		if (err == nil) != tc.ok {
			t.Errorf("verify(before %q, after %q, want %q) = %v, want ok %v", tc.before, tc.after, tc.want, err, tc.ok)
		}
	}
}
