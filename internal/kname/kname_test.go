package kname

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
)

func TestChildNamesNeverCollide(t *testing.T) {
	if a, b := Child("a-b", "c"), Child("a", "b-c"); a == b {
		t.Fatalf("Child(a-b, c) and Child(a, b-c) are both %q", a)
	}
	long := strings.Repeat("j", 200)
	for _, tc := range [][2]string{{"job", "ilo-01"}, {long, strings.Repeat("t", 200)}, {long + "x", "y"}, {"a.b", "c"}} {
		n := Child(tc[0], tc[1])
		if errs := validation.IsDNS1123Subdomain(n); len(errs) > 0 {
			t.Errorf("Child(%q, %q) = %q is not an object name: %v", tc[0], tc[1], n, errs)
		}
		if n != Child(tc[0], tc[1]) {
			t.Errorf("Child(%q, %q) is not deterministic", tc[0], tc[1])
		}
	}
	if Child(long, "a") == Child(long, "b") {
		t.Error("two long names collide")
	}
}

func TestLabelValue(t *testing.T) {
	short := "ilo5-rollout"
	if got := LabelValue(short); got != short {
		t.Errorf("LabelValue(%q) = %q, want it unchanged", short, got)
	}
	a, b := strings.Repeat("x", 63)+"-a", strings.Repeat("x", 63)+"-b"
	for _, v := range []string{a, b} {
		if errs := validation.IsValidLabelValue(LabelValue(v)); len(errs) > 0 {
			t.Errorf("LabelValue(%q) = %q: %v", v, LabelValue(v), errs)
		}
	}
	if LabelValue(a) == LabelValue(b) {
		t.Error("two long names give one label value")
	}
}
