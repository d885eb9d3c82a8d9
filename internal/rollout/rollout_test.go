package rollout

import (
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
)

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestWindow(t *testing.T) {
	weeknights := &fwv1.MaintenanceWindow{
		Days:  []fwv1.Weekday{"Monday", "Tuesday", "Wednesday", "Thursday", "Friday"},
		Start: "22:00", End: "04:00", TimeZone: "Europe/Paris",
	}
	office := &fwv1.MaintenanceWindow{Start: "09:00", End: "17:00"}
	sundayDawn := &fwv1.MaintenanceWindow{Days: []fwv1.Weekday{"Sunday"}, Start: "04:00", End: "06:00", TimeZone: "Europe/Paris"}
	saturdayNight := &fwv1.MaintenanceWindow{Days: []fwv1.Weekday{"Saturday"}, Start: "23:00", End: "04:00", TimeZone: "Europe/Paris"}
	// The end WindowCloses gives for the rows where the window is open; no window never closes.
	wantCloses := map[string]string{
		"inside a same-day window":                            "2026-11-24T17:00:00Z",
		"over midnight, evening side":                         "2026-11-25T03:00:00Z",
		"over midnight, morning side":                         "2026-11-25T03:00:00Z",
		"Friday night runs into Saturday":                     "2026-11-28T03:00:00Z",
		"spring forward: opens at 04:00 local (02:00 UTC)":    "2026-03-29T04:00:00Z",
		"fall back: opens at 04:00 local (03:00 UTC)":         "2026-10-25T05:00:00Z",
		"spring forward over midnight: closes at 04:00 local": "2026-03-29T02:00:00Z",
	}
	for _, tc := range []struct {
		name     string
		w        *fwv1.MaintenanceWindow
		now      string
		wantOpen bool
		wantNext string
	}{
		{"no window is always open", nil, "2026-11-24T03:00:00Z", true, ""},
		{"inside a same-day window", office, "2026-11-24T10:00:00Z", true, ""},
		{"before a same-day window", office, "2026-11-24T08:59:00Z", false, "2026-11-24T09:00:00Z"},
		{"at its end it is closed", office, "2026-11-24T17:00:00Z", false, "2026-11-25T09:00:00Z"},
		// 2026-11-24 is a Tuesday; Paris is UTC+1 in November.
		{"over midnight, evening side", weeknights, "2026-11-24T21:30:00Z", true, ""},
		{"over midnight, morning side", weeknights, "2026-11-25T02:59:00Z", true, ""},
		{"over midnight, after close", weeknights, "2026-11-25T03:00:00Z", false, "2026-11-25T21:00:00Z"},
		{"Friday night runs into Saturday", weeknights, "2026-11-28T01:00:00Z", true, ""},
		{"Saturday night is not a window day", weeknights, "2026-11-28T22:00:00Z", false, "2026-11-30T21:00:00Z"},
		// Daylight-saving days: the window keeps its wall-clock times. In Paris the clocks go
		// from 02:00 to 03:00 on Sunday 2026-03-29 and from 03:00 back to 02:00 on 2026-10-25.
		{"spring forward: opens at 04:00 local (02:00 UTC)", sundayDawn, "2026-03-29T02:00:00Z", true, ""},
		{"spring forward: still closed at 03:59 local", sundayDawn, "2026-03-29T01:59:00Z", false, "2026-03-29T02:00:00Z"},
		{"spring forward: closed at 06:00 local", sundayDawn, "2026-03-29T04:00:00Z", false, "2026-04-05T02:00:00Z"},
		{"fall back: opens at 04:00 local (03:00 UTC)", sundayDawn, "2026-10-25T03:00:00Z", true, ""},
		{"fall back: still closed at 03:59 local", sundayDawn, "2026-10-25T02:59:00Z", false, "2026-10-25T03:00:00Z"},
		{"fall back: closed at 06:00 local", sundayDawn, "2026-10-25T05:00:00Z", false, "2026-11-01T03:00:00Z"},
		{"spring forward over midnight: closes at 04:00 local", saturdayNight, "2026-03-29T01:59:00Z", true, ""},
		{"spring forward over midnight: closed at 04:00 local", saturdayNight, "2026-03-29T02:00:00Z", false, "2026-04-04T21:00:00Z"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			open, next, err := Window(tc.w, at(tc.now))
			if err != nil {
				t.Fatal(err)
			}
			if open != tc.wantOpen {
				t.Fatalf("open = %v, want %v", open, tc.wantOpen)
			}
			if tc.wantNext != "" && !next.Equal(at(tc.wantNext)) {
				t.Fatalf("next = %v, want %v", next.UTC(), tc.wantNext)
			}
			// WindowCloses agrees, and gives the end of an open window (what bounds a reboot):
			// on the day it closes, in wall-clock time of its zone.
			open2, closes, err := WindowCloses(tc.w, at(tc.now))
			if err != nil || open2 != open {
				t.Fatalf("WindowCloses: open = %v, err %v; Window said open = %v", open2, err, open)
			}
			if want := wantCloses[tc.name]; want == "" && !closes.IsZero() || want != "" && !closes.Equal(at(want)) {
				t.Fatalf("closes = %v, want %q", closes.UTC(), want)
			}
		})
	}
}

func TestWindowBadTimeZoneNamesTheField(t *testing.T) {
	_, _, err := Window(&fwv1.MaintenanceWindow{Start: "01:00", End: "02:00", TimeZone: "Mars/Olympus"}, time.Now())
	if err == nil || err.Error()[:len("spec.rollout.window.timeZone")] != "spec.rollout.window.timeZone" {
		t.Fatalf("err = %v, want one naming spec.rollout.window.timeZone", err)
	}
}

func TestAllowedFailures(t *testing.T) {
	for _, tc := range []struct {
		v     *intstr.IntOrString
		total int
		want  int
	}{
		{nil, 100, 0},
		{ptr.To(intstr.FromInt32(3)), 100, 3},
		{ptr.To(intstr.FromString("3")), 100, 3},
		{ptr.To(intstr.FromString("2%")), 3000, 60},
		{ptr.To(intstr.FromString("2%")), 49, 0},
		{ptr.To(intstr.FromString("100%")), 7, 7},
	} {
		got, err := AllowedFailures(tc.v, tc.total)
		if err != nil || got != tc.want {
			t.Errorf("AllowedFailures(%v, %d) = %d, %v; want %d", tc.v, tc.total, got, err, tc.want)
		}
	}
	if _, err := AllowedFailures(ptr.To(intstr.FromString("lots")), 10); err == nil {
		t.Error("a word was accepted as maxFailures")
	}
	if !BudgetExceeded(61, 60) || BudgetExceeded(60, 60) {
		t.Error("the budget is exceeded only past the allowed count")
	}
}

func TestBackoffDoublesAndCaps(t *testing.T) {
	for attempt, want := range map[int]time.Duration{1: 30 * time.Second, 2: time.Minute, 3: 2 * time.Minute, 20: time.Hour} {
		if got := Backoff(30*time.Second, attempt); got != want {
			t.Errorf("Backoff(30s, %d) = %v, want %v", attempt, got, want)
		}
	}
}
