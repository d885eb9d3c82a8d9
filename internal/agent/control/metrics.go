package control

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metric names, exported so that tests and dashboards refer to one spelling.
const (
	MetricTargets        = "fwops_agent_targets"
	MetricBytesServed    = "fwops_agent_firmware_served_bytes_total"
	MetricFlashDuration  = "fwops_agent_flash_duration_seconds"
	MetricRedfishEvents  = "fwops_agent_redfish_events_total"
	MetricLinuxCallbacks = "fwops_agent_linux_callbacks_total"
)

// Metrics holds the agent's Prometheus metrics in a private registry: the agent may share a
// process with tests or other components, and the global registry would mix them up.
type Metrics struct {
	reg           *prometheus.Registry
	bytesServed   prometheus.Counter
	flashDuration *prometheus.HistogramVec
}

// NewMetrics builds the registry. Targets by phase are read from src at each scrape, so the
// gauge always agrees with /status and the agent has nothing to keep in step; src may be nil.
func NewMetrics(src StatusSource) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		bytesServed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: MetricBytesServed,
			Help: "Firmware image bytes sent to targets by the firmware server (rule P2).",
		}),
		flashDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: MetricFlashDuration,
			Help: "Time from the start of a target's flash to its verified result.",
			// A flash takes minutes: 15 s to about 2 h.
			Buckets: prometheus.ExponentialBuckets(15, 2, 10),
		}, []string{"result"}),
	}
	m.reg.MustRegister(
		m.bytesServed,
		m.flashDuration,
		&phaseCollector{src: src, desc: prometheus.NewDesc(MetricTargets,
			"Targets of this agent by update phase.", []string{"phase"}, nil)},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// CountRedfishEvents reports the Redfish events received on the rule P5 receive ports, read at
// each scrape from accepted and dropped (events from another address or with the wrong
// context).
func (m *Metrics) CountRedfishEvents(accepted, dropped func() int64) {
	m.countReceived(MetricRedfishEvents, "Redfish events received from targets on the receive ports (rule P5), by result.",
		map[string]func() int64{"accepted": accepted, "dropped": dropped})
}

// CountLinuxCallbacks reports the Linux hosts' reports of a run's end received on the rule P5
// receive ports through the SSH sessions, read at each scrape from accepted and refused (not
// through the target's session, a wrong token, or malformed).
func (m *Metrics) CountLinuxCallbacks(accepted, refused func() int64) {
	m.countReceived(MetricLinuxCallbacks, "Linux hosts' call-backs received on the receive ports (rule P5), by result.",
		map[string]func() int64{"accepted": accepted, "refused": refused})
}

func (m *Metrics) countReceived(name, help string, byResult map[string]func() int64) {
	for result, f := range byResult {
		m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: name, ConstLabels: prometheus.Labels{"result": result}, Help: help,
		}, func() float64 { return float64(f()) }))
	}
}

// Registry is the private registry, for callers that add their own collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// AddBytesServed counts image bytes sent; it fits fwserver.Server.OnServed.
func (m *Metrics) AddBytesServed(n int64) {
	if n > 0 {
		m.bytesServed.Add(float64(n))
	}
}

// ObserveFlash records one finished flash; result is "succeeded" or "failed".
func (m *Metrics) ObserveFlash(d time.Duration, result string) {
	m.flashDuration.WithLabelValues(result).Observe(d.Seconds())
}

// Handler serves the registry in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// phaseCollector reports the targets-by-phase gauge from a status snapshot.
type phaseCollector struct {
	src  StatusSource
	desc *prometheus.Desc
}

func (c *phaseCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *phaseCollector) Collect(ch chan<- prometheus.Metric) {
	counts := make(map[string]int, len(Phases))
	for _, p := range Phases {
		counts[p] = 0
	}
	if c.src != nil {
		for _, t := range c.src.Status().Targets {
			counts[t.Phase]++
		}
	}
	for phase, n := range counts {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), phase)
	}
}
