// Package metrics defines the Prometheus metrics of the acu services and the
// HTTP handler that serves them with /healthz and /readyz.
package metrics

import (
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics holds every collector of one process. Create it with New; all
// fields are safe for concurrent use.
type Metrics struct {
	Registry *prometheus.Registry

	// Consumed counts records read from Kafka, by consumer group.
	Consumed *prometheus.CounterVec
	// Rejected counts records sent to the DLQ, by consumer group and reason.
	Rejected *prometheus.CounterVec
	// Judged counts valid results judged by the alert service, by verdict
	// (fail, pass, unknown_exercise).
	Judged *prometheus.CounterVec
	// WorkflowStarts counts PatrolDeployment starts by result (started,
	// already_started, error).
	WorkflowStarts *prometheus.CounterVec
	// StartLatency observes the latency of acknowledged workflow starts.
	StartLatency prometheus.Histogram
	// StartsInFlight is the number of workflow start requests sent and not
	// answered yet: at --max-in-flight, the alert service waits for
	// Temporal (back-pressure, seen as consumer lag too).
	StartsInFlight prometheus.Gauge
	// Archived counts results written to the store (new rows, duplicates).
	Archived *prometheus.CounterVec
	// ConsumerLag is the number of records between the last committed
	// offset and the high watermark seen at the last fetch, by group, topic
	// and partition.
	ConsumerLag *prometheus.GaugeVec
	// BatchErrors counts failed batch attempts (retried), by group and stage.
	BatchErrors *prometheus.CounterVec
	// PatrolAttempts counts patrol notification attempts by outcome
	// (delivered, retryable, rejected).
	PatrolAttempts *prometheus.CounterVec
	// Deployments counts PatrolStatus changes recorded by workers, by status.
	Deployments *prometheus.CounterVec
	// Thresholds is the number of thresholds held, by state (valid, malformed).
	Thresholds *prometheus.GaugeVec
	// ThresholdsMalformed counts malformed threshold values seen.
	ThresholdsMalformed prometheus.Counter

	mu sync.Mutex
	// waiting holds, by component (ingest, archive, worker), what it still
	// waits for before doing its work; the process is ready when it is empty.
	waiting map[string]string
}

// New creates and registers the collectors, with Go and process metrics.
func New() *Metrics {
	r := prometheus.NewRegistry()
	f := func(c prometheus.Collector) { r.MustRegister(c) }
	m := &Metrics{
		Registry: r,
		Consumed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "acu_records_consumed_total", Help: "Records read from Kafka.",
		}, []string{"group"}),
		Rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "acu_records_rejected_total", Help: "Invalid records sent to the DLQ, by reason.",
		}, []string{"group", "reason"}),
		Judged: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "acu_results_judged_total", Help: "Valid results judged against thresholds, by verdict.",
		}, []string{"verdict"}),
		WorkflowStarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "acu_workflow_starts_total", Help: "PatrolDeployment start requests, by result.",
		}, []string{"result"}),
		StartLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "acu_workflow_start_seconds", Help: "Latency of acknowledged PatrolDeployment starts.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		StartsInFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "acu_workflow_starts_in_flight", Help: "PatrolDeployment start requests sent and not answered yet.",
		}),
		Archived: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "acu_results_archived_total", Help: "Results written to the store (new) or already there (duplicate).",
		}, []string{"result"}),
		ConsumerLag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "acu_consumer_lag_records", Help: "Records between the committed offset and the high watermark.",
		}, []string{"group", "topic", "partition"}),
		BatchErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "acu_batch_errors_total", Help: "Failed batch attempts, retried, by stage.",
		}, []string{"group", "stage"}),
		PatrolAttempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "acu_patrol_attempts_total", Help: "Patrol notification attempts, by outcome.",
		}, []string{"outcome"}),
		Deployments: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "acu_deployment_status_total", Help: "Deployment reports recorded, by PatrolStatus.",
		}, []string{"status"}),
		Thresholds: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "acu_thresholds", Help: "Thresholds held in the local copy, by state.",
		}, []string{"state"}),
		ThresholdsMalformed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "acu_thresholds_malformed_total", Help: "Malformed threshold values seen (treated as missing).",
		}),
	}
	for _, c := range []prometheus.Collector{m.Consumed, m.Rejected, m.Judged, m.WorkflowStarts, m.StartLatency, m.StartsInFlight,
		m.Archived, m.ConsumerLag, m.BatchErrors, m.PatrolAttempts, m.Deployments, m.Thresholds, m.ThresholdsMalformed,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
		f(c)
	}
	return m
}

// Waiting records that component does not do its work yet and what it
// waits for: /readyz answers 503 until every component is Ready.
func (m *Metrics) Waiting(component, what string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.waiting == nil {
		m.waiting = map[string]string{}
	}
	m.waiting[component] = what
}

// Ready records that component does its work.
func (m *Metrics) Ready(component string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.waiting, component)
}

// waitingFor describes what the components wait for ("" when none waits).
func (m *Metrics) waitingFor() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	parts := make([]string, 0, len(m.waiting))
	for c, what := range m.waiting {
		parts = append(parts, c+": "+what)
	}
	slices.Sort(parts)
	return strings.Join(parts, "; ")
}

// Malformed implements thresholds.Observer.
func (m *Metrics) Malformed(string, string) { m.ThresholdsMalformed.Inc() }

// Loaded implements thresholds.Observer.
func (m *Metrics) Loaded(valid, malformed int) {
	m.Thresholds.WithLabelValues("valid").Set(float64(valid))
	m.Thresholds.WithLabelValues("malformed").Set(float64(malformed))
}

// Handle adds /metrics, /healthz and /readyz to mux. /healthz (liveness)
// answers 200 while the process serves; /readyz (readiness) answers 503 and
// what the process waits for (its store, its thresholds) until it does its
// work.
func (m *Metrics) Handle(mux *http.ServeMux) {
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if what := m.waitingFor(); what != "" {
			http.Error(w, "waiting for "+what, http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
}
