package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"time"

	fwv1 "github.com/fwops/firmware-operator/api/v1alpha1"
	"github.com/fwops/firmware-operator/internal/demo"
)

// benchRollout runs the demo's rollout of n simulated iLO 5 at maxConcurrent c (control plane,
// manager, agents, fleet in this process) and compares the iLO job's wall time (status
// startTime to completionTime) with ceil(n/c) waves of the mean per-target time measured in
// the same run (each TargetUpdate's startTime to completionTime).
func benchRollout(ctx context.Context, n, c int, flash time.Duration) ([]row, error) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		return nil, errors.New("KUBEBUILDER_ASSETS is not set (make bench sets it to bin/envtest)")
	}
	dir, err := os.MkdirTemp("", "fwops-bench-rollout-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	out, err := os.Create(filepath.Join(dir, "demo.out"))
	if err != nil {
		return nil, err
	}
	defer out.Close()
	sum, err := demo.Demo(ctx, demo.Options{ILO5: n, MaxConcurrent: int32(c), FlashTime: flash, Dir: dir,
		Timeout: 30 * time.Minute, Refresh: 10 * time.Second, Out: out})
	if err != nil {
		return nil, err
	}
	var job *demo.JobLine
	for i := range sum.Jobs {
		if sum.Jobs[i].Name == "demo-ilo" {
			job = &sum.Jobs[i]
		}
	}
	if job == nil || job.Started.IsZero() || job.Completed.IsZero() {
		return nil, fmt.Errorf("the iLO job did not finish: %+v", job)
	}
	var total time.Duration
	var done int
	for _, r := range sum.Rows {
		if r.Phase == fwv1.TargetPhaseSucceeded {
			total += r.Duration
			done++
		}
	}
	if done != n {
		return nil, fmt.Errorf("%d of %d targets succeeded", done, n)
	}
	per := total / time.Duration(done)
	waves := int(math.Ceil(float64(n) / float64(c)))
	bound := time.Duration(waves) * per
	wall := job.Completed.Sub(job.Started)
	ratio := float64(wall) / float64(bound)
	return []row{{name: fmt.Sprintf("rollout of %d simulated iLO 5, maxConcurrent %d, flash time %s", n, c, flash),
		ours:      fmt.Sprintf("%s wall (job startTime → completionTime)", wall.Round(100*time.Millisecond)),
		reference: fmt.Sprintf("%d waves × %s mean per target = %s", waves, per.Round(10*time.Millisecond), bound.Round(100*time.Millisecond)),
		ratio:     fmt.Sprintf("%.2f×", ratio), goal: "≤ 1.05×", verdict: yesNo(ratio <= 1.05)}}, nil
}
