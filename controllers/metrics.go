package controllers

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// The controller's metrics, on controller-runtime's registry (served by the manager).
var (
	metricTargets = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "fwops_job_targets",
		Help: "Targets of each UpdateJob by phase.",
	}, []string{"namespace", "job", "phase"})
	metricProgress = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "fwops_job_progress_ratio",
		Help: "Finished targets (succeeded, failed or skipped) over all targets of each UpdateJob.",
	}, []string{"namespace", "job"})
	metricFlashDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "fwops_target_update_duration_seconds",
		Help:    "Time from a target's start to its end, by result.",
		Buckets: []float64{30, 60, 120, 300, 600, 900, 1200, 1800, 3600},
	}, []string{"type", "result"})
	metricBaselineTargets = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "fwops_baseline_targets",
		Help: "Targets each FirmwareBaseline applies to, by compliance (compliant, drifting, unknown).",
	}, []string{"namespace", "baseline", "compliance"})
	metricTargetCompliance = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "fwops_target_compliance",
		Help: "1 for each UpdateTarget's standing (state: compliant, drifting, unknown) against each FirmwareBaseline that applies to it; one series per target and baseline.",
	}, []string{"namespace", "target", "baseline", "state"})
	metricErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fwops_controller_errors_total",
		Help: "Errors the controller met, by reason.",
	}, []string{"reason"})
)

func init() {
	metrics.Registry.MustRegister(metricTargets, metricProgress, metricFlashDuration, metricBaselineTargets, metricTargetCompliance, metricErrors)
}
