// Package testkit holds the helpers several packages' tests share: waiting
// on a condition, logs into the test log, reading a counter or a header,
// an embedded Temporal server, fixed thresholds. Only tests import it.
package testkit

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/acu-patrol/acu/internal/event"
	"github.com/acu-patrol/acu/internal/store"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"

	"github.com/acu-patrol/acu/internal/devstack"
	"github.com/acu-patrol/acu/internal/thresholds"
)

// Eventually polls cond until it holds, failing the test after d; what
// (may be nil) describes the state for the failure message.
func Eventually(t testing.TB, d time.Duration, cond func() bool, what func() string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			msg := ""
			if what != nil {
				msg = ": " + what()
			}
			t.Fatalf("condition not met within %s%s", d, msg)
		}
		time.Sleep(10 * time.Millisecond) // polling interval, not synchronisation
	}
}

// FreeAddr returns a loopback address nothing listened on a moment ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	a, err := devstack.FreeLoopbackAddr()
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// Get fetches url and returns the status code and body (code 0 and the
// error's text when the request fails).
func Get(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err.Error()
	}
	return resp.StatusCode, string(b)
}

// Logger returns a logger writing at level and above into the test log
// until the test ends (later lines, from goroutines still stopping, are
// dropped: testing forbids logging after the end).
func Logger(t testing.TB, level slog.Level) *slog.Logger {
	w := &logWriter{t: t}
	t.Cleanup(w.close)
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

type logWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}

func (w *logWriter) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.done = true
}

// CounterValue reads a counter, as prometheus/testutil.ToFloat64 does
// (testutil needs a module go.sum does not hold).
func CounterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

// GaugeValue reads a gauge.
func GaugeValue(g prometheus.Gauge) float64 {
	var m dto.Metric
	if err := g.Write(&m); err != nil {
		panic(err)
	}
	return m.GetGauge().GetValue()
}

// Header returns a record header's value.
func Header(r *kgo.Record, key string) (string, bool) {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value), true
		}
	}
	return "", false
}

// Thresholds is a fixed set of thresholds with the etcd lister's method.
type Thresholds map[string]float64

// List implements the analytics activities' ThresholdLister.
func (th Thresholds) List(context.Context) ([]thresholds.Entry, error) {
	out := make([]thresholds.Entry, 0, len(th))
	for id, v := range th {
		out = append(out, thresholds.Entry{ExerciseID: id, Value: v})
	}
	return out, nil
}

// Temporal starts an embedded Temporal server on a free loopback port with
// the given search attributes on namespace "default", and returns a client
// of it; both are stopped when the test ends.
func Temporal(t testing.TB, searchAttributes map[string]enumspb.IndexedValueType) client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	addr, err := devstack.FreeLoopbackAddr()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := devstack.StartTemporal(ctx, devstack.TemporalOptions{
		FrontendAddr: addr, Namespace: "default", SearchAttributes: searchAttributes,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop() })
	c, err := client.DialContext(ctx, client.Options{
		HostPort: srv.FrontendAddr(), Logger: tlog.NewStructuredLogger(slog.New(slog.DiscardHandler)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// Archive is the part of a store that lists what it has archived.
type Archive interface {
	ArrivalMark(ctx context.Context) (int64, error)
	ResultsArrived(ctx context.Context, r store.ArrivalRange, fn func([]event.Result) error) error
}

// Archived returns every result archived up to the store's arrival mark.
func Archived(t testing.TB, s Archive) []event.Result {
	t.Helper()
	ctx := context.Background()
	top, err := s.ArrivalMark(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []event.Result
	if err := s.ResultsArrived(ctx, store.ArrivalRange{UpTo: top}, func(rs []event.Result) error {
		out = append(out, rs...)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// Marker is a store with an arrival mark.
type Marker interface {
	ArrivalMark(ctx context.Context) (int64, error)
}

// Settle waits, for at most within, until the arrival mark of a store whose
// positions are arrival times in µs (Cassandra's) has passed the clock at
// the call: everything archived before is then readable by the arrival
// reads. It returns the mark.
func Settle(t testing.TB, s Marker, within time.Duration) int64 {
	t.Helper()
	now := time.Now().UnixMicro()
	var mark int64
	Eventually(t, within, func() bool {
		m, err := s.ArrivalMark(context.Background())
		mark = m
		return err == nil && m >= now
	}, func() string { return "arrival mark" })
	return mark
}
