package bench

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
)

// Dist summarises a set of durations.
type Dist struct {
	N   int           `json:"n"`
	P50 time.Duration `json:"p50"`
	P90 time.Duration `json:"p90"`
	P99 time.Duration `json:"p99"`
	Max time.Duration `json:"max"`
}

// dist computes the nearest-rank percentiles of ds.
func dist(ds []time.Duration) Dist {
	if len(ds) == 0 {
		return Dist{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := func(p float64) time.Duration {
		i := int(math.Ceil(p*float64(len(s)))) - 1
		return s[min(max(i, 0), len(s)-1)]
	}
	return Dist{N: len(s), P50: rank(0.50), P90: rank(0.90), P99: rank(0.99), Max: s[len(s)-1]}
}

func (d Dist) String() string {
	if d.N == 0 {
		return "no samples"
	}
	r := func(x time.Duration) string { return x.Round(100 * time.Microsecond).String() }
	return fmt.Sprintf("p50 %s  p90 %s  p99 %s  max %s  (n=%d)", r(d.P50), r(d.P90), r(d.P99), r(d.Max), d.N)
}

// Stages is where the time between the producer and the patrol goes,
// measured on a sample of the deployments' histories (the server's event
// times; every process runs on one machine, so one clock).
type Stages struct {
	// ToStarted: the record handed to the producer → the workflow started
	// (Kafka, the alert service's poll, judge and start request).
	ToStarted Dist `json:"to_started"`
	// ToFirstTask: started → its first workflow task picked by a worker.
	ToFirstTask Dist `json:"to_first_task"`
	// ToArrival: the first workflow task started → the patrol endpoint
	// received the notification (the workflow code, the notification's
	// dispatch as a local activity or as an activity task, the POST).
	ToArrival Dist `json:"to_arrival"`
}

// stages reads the histories of up to n deployments spread evenly over
// keys, sorted, and splits their latency.
func stages(ctx context.Context, tc client.Client, l *load, rcv *receiver, n int) (Stages, error) {
	keys := make([]string, 0, len(l.handoff))
	for k := range l.handoff {
		if _, ok := rcv.arrival(k); ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	if n <= 0 || len(keys) == 0 {
		return Stages{}, nil
	}
	step := max(len(keys)/n, 1)
	var sample []string
	for i := 0; i < len(keys) && len(sample) < n; i += step {
		sample = append(sample, keys[i])
	}
	var (
		mu         sync.Mutex
		st, ft, ar []time.Duration
		firstErr   error
		wg         sync.WaitGroup
		sem        = make(chan struct{}, 8)
	)
	for _, id := range sample {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			started, task, err := historyTimes(ctx, tc, id)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = err
				}
				return
			}
			arrived, _ := rcv.arrival(id)
			st = append(st, started.Sub(l.handoff[id]))
			ft = append(ft, task.Sub(started))
			ar = append(ar, arrived.Sub(task))
		}()
	}
	wg.Wait()
	return Stages{ToStarted: dist(st), ToFirstTask: dist(ft), ToArrival: dist(ar)}, firstErr
}

// historyTimes returns when the workflow started and when its first
// workflow task started.
func historyTimes(ctx context.Context, tc client.Client, workflowID string) (started, task time.Time, err error) {
	it := tc.GetWorkflowHistory(ctx, workflowID, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			return started, task, fmt.Errorf("history of %s: %w", workflowID, err)
		}
		switch ev.GetEventType() {
		case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
			started = ev.GetEventTime().AsTime()
		case enumspb.EVENT_TYPE_WORKFLOW_TASK_STARTED:
			return started, ev.GetEventTime().AsTime(), nil
		}
	}
	return started, task, fmt.Errorf("history of %s: no workflow task started", workflowID)
}

// Process is the CPU and memory of the system under test, from its
// /metrics (process_cpu_seconds_total, process_resident_memory_bytes).
type Process struct {
	// CPU is the cores used on average over the phase (1 = one core).
	CPU float64 `json:"cpu_cores"`
	// RSS of the process at the start, at its highest and at the end of
	// the phase, in bytes.
	RSSStart uint64 `json:"rss_start_bytes"`
	RSSMax   uint64 `json:"rss_max_bytes"`
	RSSEnd   uint64 `json:"rss_end_bytes"`
	// Counters are the named acu counters' increase over the phase.
	Counters map[string]float64 `json:"counters,omitempty"`
}

// sampler scrapes a /metrics URL every second.
type sampler struct {
	url    string
	http   *http.Client
	stop   chan struct{}
	done   chan struct{}
	mu     sync.Mutex
	first  scrape
	last   scrape
	rssMax float64
	err    error
}

type scrape struct {
	at     time.Time
	values map[string]float64
}

// counters whose increase a phase reports (summed over their labels).
var watched = []string{
	"process_cpu_seconds_total",
	"process_resident_memory_bytes",
	`acu_workflow_starts_total{result="started"}`,
	`acu_workflow_starts_total{result="already_started"}`,
	`acu_workflow_starts_total{result="error"}`,
	`acu_batch_errors_total`,
	`acu_patrol_attempts_total`,
}

func startSampler(url string) (*sampler, error) {
	s := &sampler{url: url, http: &http.Client{Timeout: 5 * time.Second}, stop: make(chan struct{}), done: make(chan struct{})}
	first, err := s.scrape()
	if err != nil {
		return nil, err
	}
	s.first, s.last, s.rssMax = first, first, first.values["process_resident_memory_bytes"]
	go s.loop()
	return s, nil
}

func (s *sampler) loop() {
	defer close(s.done)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			sc, err := s.scrape()
			s.mu.Lock()
			if err != nil {
				s.err = err
			} else {
				s.last = sc
				s.rssMax = max(s.rssMax, sc.values["process_resident_memory_bytes"])
			}
			s.mu.Unlock()
		}
	}
}

// finish takes a last scrape and returns the phase's figures.
func (s *sampler) finish() (Process, error) {
	close(s.stop)
	<-s.done
	sc, err := s.scrape()
	if err != nil {
		return Process{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rssMax = max(s.rssMax, sc.values["process_resident_memory_bytes"])
	p := Process{
		CPU:      (sc.values["process_cpu_seconds_total"] - s.first.values["process_cpu_seconds_total"]) / sc.at.Sub(s.first.at).Seconds(),
		RSSStart: uint64(s.first.values["process_resident_memory_bytes"]),
		RSSMax:   uint64(s.rssMax),
		RSSEnd:   uint64(sc.values["process_resident_memory_bytes"]),
		Counters: map[string]float64{},
	}
	for _, k := range watched[2:] {
		p.Counters[k] = sc.values[k] - s.first.values[k]
	}
	return p, nil
}

func (s *sampler) scrape() (scrape, error) {
	resp, err := s.http.Get(s.url)
	if err != nil {
		return scrape{}, fmt.Errorf("reading the system's metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return scrape{}, fmt.Errorf("reading the system's metrics: GET %s: %s", s.url, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return scrape{}, fmt.Errorf("parsing the system's metrics: %w", err)
	}
	sc := scrape{at: time.Now(), values: map[string]float64{}}
	for _, w := range watched {
		name, label, _ := strings.Cut(strings.TrimSuffix(w, "}"), "{")
		f := families[name]
		if f == nil {
			continue
		}
		for _, m := range f.GetMetric() {
			if label != "" {
				lname, lval, _ := strings.Cut(label, "=")
				match := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == lname && `"`+lp.GetValue()+`"` == lval {
						match = true
					}
				}
				if !match {
					continue
				}
			}
			switch {
			case m.GetCounter() != nil:
				sc.values[w] += m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				sc.values[w] += m.GetGauge().GetValue()
			}
		}
	}
	return sc, nil
}
