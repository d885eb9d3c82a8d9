// Command bench is `make bench`: it runs each benchmark of issue 13 side by side with its
// reference in the same run and prints one table of ratios, with the machine it ran on.
// Figures, not assertions: it fails only when a benchmark could not run.
//
//	go run ./hack/bench [-only fwserver,requests,events,callback,fleet,rollout,scale] [-fleet 1000] [-wrk 5s]
//
// Sections: fwserver (the agent's firmware server against nginx, wrk on loopback), requests
// (Redfish requests per flash, the agent's driver against ilorest), fleet (memory per
// simulated iLO against one capture per iLO), events (rule P5 Redfish events end to end against
// polling only; real API server), callback (the Linux driver's rule P5 call-back
// against polling the run's state, over a real sshd), rollout (the demo's rollout against
// ceil(N/C) × the per-target time; needs KUBEBUILDER_ASSETS), scale (a full rollout of
// 10,000 targets in one job against a real API server with an audit log, the manager as a
// process of its own: its peak RSS, API requests per target by client and verb, reconcile
// passes, time to the first flash; needs KUBEBUILDER_ASSETS).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strings"
	"time"
)

// row is one line of the table.
type row struct {
	name, ours, reference, ratio, goal, verdict string
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == fwserveCommand {
		if err := fwserve(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "fwserve:", err)
			os.Exit(1)
		}
		return
	}
	only := flag.String("only", "", "comma-separated sections to run (fwserver, requests, events, callback, fleet, rollout, scale); empty runs all")
	fleetN := flag.Int("fleet", 1000, "simulated iLOs in the fleet-memory benchmark")
	wrkFor := flag.Duration("wrk", 5*time.Second, "duration of each wrk run (each server runs twice per client count, interleaved)")
	rolloutN := flag.Int("rollout-ilos", 1000, "simulated iLO 5 in the rollout")
	rolloutC := flag.Int("rollout-max-concurrent", 50, "the rollout's maxConcurrent")
	flashTime := flag.Duration("rollout-flash-time", 5*time.Second, "the rollout's simulated flash time")
	var scale scaleOptions
	flag.IntVar(&scale.targets, "scale-targets", 10000, "simulated iLO 5 in the scale section's one job")
	flag.IntVar(&scale.maxConcurrent, "scale-max-concurrent", 200, "the scale job's maxConcurrent")
	flag.DurationVar(&scale.flash, "scale-flash-time", time.Second, "the scale section's simulated flash time")
	flag.IntVar(&scale.managerQPS, "scale-manager-qps", 500, "the manager's --kube-api-qps in the scale section (burst twice that)")
	flag.DurationVar(&scale.timeout, "scale-timeout", time.Hour, "give up on the scale section's rollout after this long")
	flag.StringVar(&scale.managerBinary, "scale-manager", "", "firmware-operator binary to run as the scale section's manager (default: built from this checkout)")
	flag.StringVar(&scale.keep, "scale-keep", "", "directory to leave the scale section's logs in (manager.log, agents.log, audit.log; default: a temporary one, removed)")
	cpuProfile := flag.String("cpuprofile", "", "write this process's CPU profile (the in-process agents, fleet and simulated kubelet; not the manager's) to this file")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	want := func(s string) bool { return *only == "" || strings.Contains(","+*only+",", ","+s+",") }
	loadBefore := loadAvg()
	started := time.Now()
	var rows []row
	var errs []string
	run := func(name string, f func() ([]row, error)) {
		if !want(name) {
			return
		}
		fmt.Fprintf(os.Stderr, "== %s\n", name)
		rs, err := f()
		rows = append(rows, rs...)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", name, err))
			rows = append(rows, row{name: name, ours: "failed: " + err.Error()})
		}
	}
	run("fwserver", func() ([]row, error) { return benchFirmwareServer(ctx, *wrkFor) })
	run("requests", func() ([]row, error) { return benchRequests(ctx) })
	run("events", func() ([]row, error) { return benchEvents(ctx) })
	run("callback", func() ([]row, error) { return benchCallback(ctx) })
	run("fleet", func() ([]row, error) { return benchFleet(ctx, *fleetN) })
	run("rollout", func() ([]row, error) { return benchRollout(ctx, *rolloutN, *rolloutC, *flashTime) })
	run("scale", func() ([]row, error) { return benchScale(ctx, scale) })

	pprof.StopCPUProfile() // nothing when not started
	printTable(os.Stdout, rows, loadBefore, loadAvg(), time.Since(started))
	if len(errs) > 0 {
		fmt.Fprintln(os.Stderr, "bench: "+strings.Join(errs, "; "))
		os.Exit(1)
	}
}

func printTable(w io.Writer, rows []row, loadBefore, loadAfter string, took time.Duration) {
	fmt.Fprintf(w, "machine: %d CPUs (nproc), %s memory, Linux %s, %s; load average %s before, %s after; %s in all\n\n",
		runtime.NumCPU(), memTotal(), kernel(), runtime.Version(), loadBefore, loadAfter, took.Round(time.Second))
	fmt.Fprintln(w, "| benchmark | ours | reference | ratio | goal (issue 13) | meets |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- |")
	for _, r := range rows {
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s |\n", r.name, r.ours, r.reference, r.ratio, r.goal, r.verdict)
	}
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func kernel() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}

func memTotal() string {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return "?"
	}
	for _, l := range strings.Split(string(b), "\n") {
		var kb int64
		if _, err := fmt.Sscanf(l, "MemTotal: %d kB", &kb); err == nil {
			return fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
		}
	}
	return "?"
}

func yesNo(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}
