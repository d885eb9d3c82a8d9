// Package rollout holds the pure decisions of an UpdateJob's rollout: whether the maintenance
// window is open, how many failures the job may take, and retry backoff. The controller calls
// them with an injected clock, so tests control time.
package rollout

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/intstr"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
)

// Window answers whether w is open at now and, when it is closed, when it next opens. A nil
// window is always open. A window whose end is before its start runs over midnight and
// belongs to the day it opened on.
func Window(w *fwv1.MaintenanceWindow, now time.Time) (open bool, next time.Time, err error) {
	open, _, next, err = window(w, now)
	return open, next, err
}

// WindowCloses answers whether w is open at now and, when it is, when it closes: the time by
// which an agent must be done with what the window bounds (a reboot asked for by rollout.reboot:
// IfRequired). A nil window is always open and never closes (a zero time).
func WindowCloses(w *fwv1.MaintenanceWindow, now time.Time) (open bool, closes time.Time, err error) {
	open, closes, _, err = window(w, now)
	return open, closes, err
}

// window is Window and WindowCloses: whether w is open at now, when it closes if it is, and
// when it next opens if it is not.
func window(w *fwv1.MaintenanceWindow, now time.Time) (open bool, closes, next time.Time, err error) {
	if w == nil {
		return true, time.Time{}, time.Time{}, nil
	}
	tz := w.TimeZone
	if tz == "" {
		tz = "UTC"
	}
	loc, err := time.LoadLocation(tz)
	if err != nil {
		return false, time.Time{}, time.Time{}, fmt.Errorf("spec.rollout.window.timeZone: %w", err)
	}
	start, err := clock(w.Start)
	if err != nil {
		return false, time.Time{}, time.Time{}, fmt.Errorf("spec.rollout.window.start: %w", err)
	}
	end, err := clock(w.End)
	if err != nil {
		return false, time.Time{}, time.Time{}, fmt.Errorf("spec.rollout.window.end: %w", err)
	}
	days := map[time.Weekday]bool{}
	for _, d := range w.Days {
		wd, ok := weekdays[string(d)]
		if !ok {
			return false, time.Time{}, time.Time{}, fmt.Errorf("spec.rollout.window.days: unknown day %q", d)
		}
		days[wd] = true
	}
	dayOK := func(t time.Time) bool { return len(days) == 0 || days[t.Weekday()] }

	local := now.In(loc)
	// Times are wall-clock times of the window's zone: on a daylight-saving day a local day
	// is 23 or 25 hours long, so they are placed with time.Date, never as offsets from
	// midnight.
	wall := func(dayOffset int, at time.Duration) time.Time {
		return time.Date(local.Year(), local.Month(), local.Day()+dayOffset, 0, int(at/time.Minute), 0, 0, loc)
	}
	// A window that opened yesterday (or today) may still be open now.
	for back := 1; back >= 0; back-- {
		if !dayOK(wall(-back, 0)) {
			continue
		}
		opens := wall(-back, start)
		closes := wall(-back, end)
		if end <= start {
			closes = wall(1-back, end)
		}
		if !local.Before(opens) && local.Before(closes) {
			return true, closes, time.Time{}, nil
		}
	}
	for ahead := 0; ahead <= 7; ahead++ {
		if !dayOK(wall(ahead, 0)) {
			continue
		}
		if opens := wall(ahead, start); opens.After(local) {
			return false, time.Time{}, opens, nil
		}
	}
	return false, time.Time{}, time.Time{}, fmt.Errorf("spec.rollout.window: never opens")
}

var weekdays = map[string]time.Weekday{
	"Sunday": time.Sunday, "Monday": time.Monday, "Tuesday": time.Tuesday, "Wednesday": time.Wednesday,
	"Thursday": time.Thursday, "Friday": time.Friday, "Saturday": time.Saturday,
}

func clock(s string) (time.Duration, error) {
	t, err := time.Parse("15:04", s)
	if err != nil {
		return 0, fmt.Errorf("%q is not HH:MM", s)
	}
	return time.Duration(t.Hour())*time.Hour + time.Duration(t.Minute())*time.Minute, nil
}

// AllowedFailures is how many targets out of total may fail before the job stops starting
// new ones. A percentage rounds down, as Kubernetes does for maxUnavailable.
func AllowedFailures(maxFailures *intstr.IntOrString, total int) (int, error) {
	if maxFailures == nil {
		return 0, nil
	}
	if maxFailures.Type == intstr.Int {
		if maxFailures.IntVal < 0 {
			return 0, fmt.Errorf("spec.rollout.maxFailures: %d is negative", maxFailures.IntVal)
		}
		return int(maxFailures.IntVal), nil
	}
	s := maxFailures.StrVal
	if pct, ok := strings.CutSuffix(s, "%"); ok {
		p, err := strconv.Atoi(pct)
		if err != nil || p < 0 || p > 100 {
			return 0, fmt.Errorf("spec.rollout.maxFailures: %q is not a percentage from 0%% to 100%%", s)
		}
		return int(math.Floor(float64(p) * float64(total) / 100)), nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("spec.rollout.maxFailures: %q is not a count or a percentage", s)
	}
	return n, nil
}

// BudgetExceeded reports whether failed targets are more than the job allows.
func BudgetExceeded(failed, allowed int) bool { return failed > allowed }

// Backoff is the wait before retry number attempt (1 for the first retry): base doubled
// for each further retry, capped at an hour.
func Backoff(base time.Duration, attempt int) time.Duration {
	if base <= 0 {
		base = 30 * time.Second
	}
	d := base
	for i := 1; i < attempt && d < time.Hour; i++ {
		d *= 2
	}
	return min(d, time.Hour)
}
