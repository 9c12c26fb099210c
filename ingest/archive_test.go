package ingest_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/acu-patrol/acu/ingest"
	"github.com/acu-patrol/acu/internal/event"
	"github.com/acu-patrol/acu/internal/metrics"
	"github.com/acu-patrol/acu/internal/testkit"
)

func TestArchiveEveryResultOnce(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		// loseAcks is the number of store writes whose reply is lost
		// after the rows are written.
		loseAcks int
	}{
		{name: "store up"},
		{name: "store replies lost", loseAcks: 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			m := metrics.New()
			w := newWriter()
			w.loseAcks = c.loseAcks
			e.run(t, ingest.ArchiveGroup, m, ingest.NewArchive(w, m))

			noID := func(ts any) map[string]any {
				r := result("", "quentin", "c-piscine-graph", 88)
				r["timestamp"] = ts
				return r
			}
			valid := []*kgo.Record{
				record(t, result("ev-a", "rose", "c-piscine-sort", 12)),
				record(t, result("ev-a", "rose", "c-piscine-sort", 12)), // duplicate delivery
				record(t, noID(t0.Format(time.RFC3339Nano))),
				record(t, noID(t0.UnixMilli())), // the same event, epoch ms
				record(t, result("ev-c", "sam", "c-piscine-unknown", 100)),
			}
			invalid := []*kgo.Record{
				{Key: []byte("rose"), Value: []byte("not json")},
				{Key: []byte("sam"), Value: value(t, result("ev-neg", "sam", "c-piscine-sort", -1))},
			}
			recs := e.produce(t, append(valid, invalid...)...)
			e.waitCommitted(t, ingest.ArchiveGroup, recs)

			want := map[string]event.Result{}
			for _, r := range valid {
				res, err := event.Parse(r.Value)
				if err != nil {
					t.Fatal(err)
				}
				if _, dup := want[res.ID]; !dup {
					want[res.ID] = res
				}
			}
			if len(want) != 3 {
				t.Fatalf("test records hold %d events, want 3", len(want))
			}
			rows := w.snapshot()
			if len(rows) != len(want) {
				t.Errorf("%d rows archived, want %d", len(rows), len(want))
			}
			for id, res := range want {
				got, ok := rows[id]
				if !ok {
					t.Errorf("event %s not archived", id)
					continue
				}
				if !got.Timestamp.Equal(res.Timestamp) {
					t.Errorf("event %s: timestamp %v, want %v", id, got.Timestamp, res.Timestamp)
				}
				got.Timestamp, res.Timestamp = time.Time{}, time.Time{}
				if got != res {
					t.Errorf("event %s archived as %+v, want %+v", id, got, res)
				}
			}
			if c.loseAcks == 0 {
				newRows := testkit.CounterValue(m.Archived.WithLabelValues("new"))
				dups := testkit.CounterValue(m.Archived.WithLabelValues("duplicate"))
				if newRows != 3 || dups != 2 {
					t.Errorf("Archived new=%v duplicate=%v, want 3 and 2", newRows, dups)
				}
			}

			dlq := e.dlq(t)
			if len(dlq) != len(invalid) {
				t.Fatalf("%d DLQ records, want %d", len(dlq), len(invalid))
			}
			for _, orig := range invalid {
				found := false
				for _, d := range dlq {
					if bytes.Equal(d.Value, orig.Value) && bytes.Equal(d.Key, orig.Key) {
						found = true
						if g, _ := testkit.Header(d, ingest.HeaderGroup); g != ingest.ArchiveGroup {
							t.Errorf("%s = %q, want %q", ingest.HeaderGroup, g, ingest.ArchiveGroup)
						}
						if msg, _ := testkit.Header(d, ingest.HeaderError); msg == "" {
							t.Errorf("DLQ record of %q has no %s", orig.Value, ingest.HeaderError)
						}
					}
				}
				if !found {
					t.Errorf("%q not on the DLQ", orig.Value)
				}
			}
			rejected := testkit.CounterValue(m.Rejected.WithLabelValues(ingest.ArchiveGroup, string(event.ReasonMalformed))) +
				testkit.CounterValue(m.Rejected.WithLabelValues(ingest.ArchiveGroup, string(event.ReasonRange)))
			if rejected != 2 {
				t.Errorf("Rejected = %v, want 2", rejected)
			}
		})
	}
}
