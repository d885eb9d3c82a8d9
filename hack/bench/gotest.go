package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
)

// goBench runs one Go benchmark once per sub-benchmark (-benchtime=1x) and returns its
// metrics by sub-benchmark name (without the GOMAXPROCS suffix) and unit.
func goBench(ctx context.Context, pkg, pattern string, env ...string) (map[string]map[string]float64, error) {
	cmd := exec.CommandContext(ctx, "go", "test", pkg, "-run", "^$", "-bench", pattern, "-benchtime=1x", "-count=1", "-timeout=20m")
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout = io.MultiWriter(&out, os.Stderr)
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("go test %s -bench %s: %w", pkg, pattern, err)
	}
	return parseBench(out.String()), nil
}

var procSuffix = regexp.MustCompile(`-\d+$`)

// parseBench reads `go test -bench` lines: name, iterations, then value-unit pairs.
func parseBench(out string) map[string]map[string]float64 {
	res := map[string]map[string]float64{}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		m := map[string]float64{}
		for i := 2; i+1 < len(f); i += 2 {
			if v, err := strconv.ParseFloat(f[i], 64); err == nil {
				m[f[i+1]] = v
			}
		}
		res[procSuffix.ReplaceAllString(f[0], "")] = m
	}
	return res
}

func metric(res map[string]map[string]float64, name, unit string) (float64, error) {
	m, ok := res[name]
	if !ok {
		return 0, fmt.Errorf("no result for %s", name)
	}
	v, ok := m[unit]
	if !ok {
		return 0, fmt.Errorf("%s reported no %s", name, unit)
	}
	return v, nil
}

// benchRequests is Redfish requests per flash: the agent's driver against ilorest.
func benchRequests(ctx context.Context) ([]row, error) {
	res, err := goBench(ctx, "./internal/agent/ilo/", "^BenchmarkRedfishRequestsPerFlash$")
	if err != nil {
		return nil, err
	}
	const agent, ref = "BenchmarkRedfishRequestsPerFlash/impl=agent", "BenchmarkRedfishRequestsPerFlash/impl=ilorest"
	var v [4]float64
	for i, q := range []struct{ name, unit string }{{agent, "requests/flash"}, {agent, "refused/flash"}, {ref, "requests/flash"}, {ref, "refused/flash"}} {
		if v[i], err = metric(res, q.name, q.unit); err != nil {
			return nil, err
		}
	}
	ours, theirs := v[0]+v[1], v[2]+v[3]
	rows := []row{{name: "Redfish requests per iLO 5 flash (served + refused during the reset)",
		ours:      fmt.Sprintf("%.0f + %.0f (agent's driver)", v[0], v[1]),
		reference: fmt.Sprintf("%.0f + %.0f (ilorest firmwareupdate)", v[2], v[3]),
		ratio:     fmt.Sprintf("%.3f×", ours/theirs), goal: "against ilorest (no bound set)", verdict: "-"}}
	// Rule P5: the same flash with Redfish events on a receive port, beside polling only.
	const events = "BenchmarkRedfishRequestsPerFlash/impl=agent-events"
	var e [2]float64
	for i, unit := range []string{"requests/flash", "refused/flash"} {
		if e[i], err = metric(res, events, unit); err != nil {
			return nil, err
		}
	}
	return append(rows, row{name: "the same, with rule P5 Redfish events (4 s flash: see docs/ports.md for minutes-long ones)",
		ours:      fmt.Sprintf("%.0f + %.0f (events, 10 s fallback polls)", e[0], e[1]),
		reference: fmt.Sprintf("%.0f + %.0f (polling every 2 s)", v[0], v[1]),
		ratio:     fmt.Sprintf("%.3f×", (e[0]+e[1])/ours), goal: "against polling (no bound set)", verdict: "-"}), nil
}

// benchFleet is the memory per simulated iLO: one shared capture against one per iLO.
func benchFleet(ctx context.Context, n int) ([]row, error) {
	res, err := goBench(ctx, "./internal/simulator/ilo/", "^BenchmarkFleetMemory$", fmt.Sprintf("FLEET_N=%d", n))
	if err != nil {
		return nil, err
	}
	var v [4]float64
	for i, q := range []struct{ name, unit string }{
		{"shared-capture/idle", "B/iLO"}, {"shared-capture/flashed", "B/iLO"}, {"capture-per-iLO/idle", "B/iLO"}, {"capture-per-iLO/idle", "iLOs"},
	} {
		if v[i], err = metric(res, "BenchmarkFleetMemory/impl="+q.name, q.unit); err != nil {
			return nil, err
		}
	}
	idle, flashed, ref, refN := v[0], v[1], v[2], v[3]
	const goal = 3 << 30
	proj := flashed * 10000
	kb := func(v float64) string { return fmt.Sprintf("%.1f KiB/iLO", v/1024) }
	return []row{
		{name: fmt.Sprintf("simulated iLO memory, idle (heap+stacks after GC, %d iLOs; reference %d)", n, int(refN)),
			ours: kb(idle) + " (one shared capture)", reference: kb(ref) + " (a capture per iLO)", ratio: fmt.Sprintf("%.4f×", idle/ref),
			goal: "-", verdict: "-"},
		{name: fmt.Sprintf("simulated iLO memory, each flashed once (%d iLOs)", n), ours: kb(flashed), reference: kb(ref) + " (idle)",
			ratio: fmt.Sprintf("%.4f×", flashed/ref), goal: "-", verdict: "-"},
		{name: "10,000 simulated iLOs, each flashed once: flashed figure × 10,000", ours: fmt.Sprintf("%.2f GiB", proj/(1<<30)),
			reference: "3 GiB (goal)", ratio: fmt.Sprintf("%.3f×", proj/goal), goal: "≤ 3 GiB", verdict: yesNo(proj <= goal)},
	}, nil
}

// benchCallback is the Linux driver's rule P5 call-back against polling the run's state,
// over a real sshd on loopback with the default intervals.
func benchCallback(ctx context.Context) ([]row, error) {
	res, err := goBench(ctx, "./internal/agent/linux/", "^BenchmarkLinuxCallBack$")
	if err != nil {
		return nil, err
	}
	const cb, poll = "BenchmarkLinuxCallBack/impl=callback", "BenchmarkLinuxCallBack/impl=poll"
	var v [4]float64
	for i, q := range []struct{ name, unit string }{{cb, "ms-exit-to-result"}, {poll, "ms-exit-to-result"}, {cb, "state-reads/run"}, {poll, "state-reads/run"}} {
		if v[i], err = metric(res, q.name, q.unit); err != nil {
			return nil, err
		}
	}
	return []row{
		{name: "Linux: Smart Component exit → Update returns (real sshd on loopback; result tail and cleanup included)",
			ours: fmt.Sprintf("%.0f ms (rule P5 call-back)", v[0]), reference: fmt.Sprintf("%.0f ms (state read every 2 s)", v[1]),
			ratio: fmt.Sprintf("%.3f×", v[0]/v[1]), goal: "against polling (no bound set)", verdict: "-"},
		{name: "Linux: reads of the run's state per run (from the launch; 10 s fallback reads with the call-back)",
			ours: fmt.Sprintf("%.1f (call-back)", v[2]), reference: fmt.Sprintf("%.1f (polling)", v[3]),
			ratio: fmt.Sprintf("%.3f×", v[2]/v[3]), goal: "-", verdict: "-"},
	}, nil
}

// benchEvents is rule P5's Redfish events end to end (an agent run through Main, a real API
// server, the iLO 5 simulator): requests per flash and the wait from the iLO's Complete to the
// final phase, with events against polling only.
func benchEvents(ctx context.Context) ([]row, error) {
	res, err := goBench(ctx, "./internal/agent/runner/", "^BenchmarkP5EventsEndToEnd$")
	if err != nil {
		return nil, err
	}
	var rows []row
	for _, poll := range []string{"20ms", "500ms"} {
		ev, pl := "BenchmarkP5EventsEndToEnd/poll="+poll+"/impl=events", "BenchmarkP5EventsEndToEnd/poll="+poll+"/impl=polling"
		var v [4]float64
		for i, q := range []struct{ name, unit string }{{ev, "requests/flash"}, {pl, "requests/flash"}, {ev, "ms-complete-to-final"}, {pl, "ms-complete-to-final"}} {
			if v[i], err = metric(res, q.name, q.unit); err != nil {
				return nil, err
			}
		}
		rows = append(rows,
			row{name: "iLO 5 system ROM flash (2.3 s), polls every " + poll + ": Redfish requests per flash, end to end",
				ours: fmt.Sprintf("%.0f (rule P5 events)", v[0]), reference: fmt.Sprintf("%.0f (polling only)", v[1]),
				ratio: fmt.Sprintf("%.3f×", v[0]/v[1]), goal: "against polling (no bound set)", verdict: "-"},
			row{name: "the same: iLO's Complete → TargetUpdate's final phase",
				ours: fmt.Sprintf("%.0f ms (rule P5 events)", v[2]), reference: fmt.Sprintf("%.0f ms (polling only)", v[3]),
				ratio: fmt.Sprintf("%.3f×", v[2]/v[3]), goal: "-", verdict: "-"})
	}
	return rows, nil
}
