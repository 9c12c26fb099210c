package ingest_test

import (
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/acu-patrol/acu/ingest"
	"github.com/acu-patrol/acu/internal/event"
	"github.com/acu-patrol/acu/internal/metrics"
)

// BenchmarkJudgePath measures the alert service's per-record work before
// any I/O: decode and validate the value, compute the event identity, judge
// it against the thresholds copy.
func BenchmarkJudgePath(b *testing.B) {
	const n = 1000
	exercises := make([]string, 40)
	th := map[string]float64{}
	for i := range exercises {
		exercises[i] = fmt.Sprintf("c-piscine-go-%02d:ex%02d", i/8, i%8)
		if i%10 != 9 { // a few exercises have no threshold
			th[exercises[i]] = float64(40 + i)
		}
	}
	values := make([][]byte, n)
	size := 0
	for i := range values {
		ts := t0.Add(time.Duration(i) * 1733 * time.Millisecond)
		var v string
		// Half carry an event_id, half are identified by hash; half the
		// timestamps are RFC 3339 with an offset, half epoch ms.
		common := fmt.Sprintf(`"student_id":"stud-%05d.login","latitude":%.6f,"longitude":%.6f,"exercise_id":%q,"metric":%.2f,"grader":"moulinette-v3"`,
			i*37%10000, 48.896+float64(i%100)/1e4, 2.318+float64(i%97)/1e4, exercises[i%len(exercises)], float64(i*7919%10001)/100)
		if i%2 == 0 {
			v = fmt.Sprintf(`{"event_id":"res-2025-11-24-%08d-%04x","timestamp":%q,%s}`,
				i, i*2654435761%65536, ts.In(time.FixedZone("", 3600)).Format(time.RFC3339Nano), common)
		} else {
			v = fmt.Sprintf(`{"timestamp":%d,%s,"attempt":%d}`, ts.UnixMilli(), common, 1+i%5)
		}
		if _, err := event.Parse([]byte(v)); err != nil {
			b.Fatalf("benchmark value %s: %v", v, err)
		}
		values[i] = []byte(v)
		size += len(v)
	}
	a := ingest.NewAlerts(ingest.AlertConfig{}, newJudge(th), nil, slog.New(slog.NewTextHandler(io.Discard, nil)), metrics.New())
	one := make([]event.Result, 1)
	var failing, pass, unknown int

	b.SetBytes(int64(size / n))
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		r, err := event.Parse(values[i%n])
		if err != nil {
			b.Fatal(err)
		}
		if r.ID == "" {
			b.Fatal("no identity")
		}
		one[0] = r
		f, p, u := a.JudgeBatch(one)
		failing += len(f)
		pass += p
		unknown += u
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	if failing+pass+unknown != b.N {
		b.Fatalf("%d verdicts for %d records", failing+pass+unknown, b.N)
	}
}
