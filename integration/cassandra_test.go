//go:build integration

package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gocql/gocql"
	"golang.org/x/sync/errgroup"

	"github.com/acu-patrol/acu/ingest"
	"github.com/acu-patrol/acu/internal/event"
	"github.com/acu-patrol/acu/internal/metrics"
	"github.com/acu-patrol/acu/internal/store/cassandra"
	"github.com/acu-patrol/acu/internal/store/cassandra/cassandratest"
	"github.com/acu-patrol/acu/internal/testkit"
)

// checkArchivedOnce checks that every valid identity of d, and nothing
// else, is read back once from st by the analytics' arrival reads, once
// what was committed has settled.
func checkArchivedOnce(t *testing.T, st *cassandra.Store, d *dataset) {
	t.Helper()
	cassandratest.WaitSettled(t, st)
	rows := map[string]int{}
	for _, r := range testkit.Archived(t, st) {
		rows[r.ID]++
	}
	for id := range d.valid {
		if rows[id] != 1 {
			t.Errorf("result %s archived %d times", id, rows[id])
		}
	}
	for id := range rows {
		if !d.valid[id] {
			t.Errorf("row %s archived for no valid result", id)
		}
	}
}

// Test 5: the archiver from a real Kafka into a real Cassandra: every
// valid identity archived once (duplicates on other partitions included),
// malformed records on the DLQ once, offsets at the end.
func TestArchiveIntoRealCassandra(t *testing.T) {
	e := newKenv(t)
	st := cassandratest.Open(t)
	d := newDataset(t, "t5", 400, 5, 40)
	group := e.group(t)
	var m *metrics.Metrics
	e.run(t, group, "it-archive-cassandra", func(mm *metrics.Metrics) ingest.Handler {
		m = mm
		return ingest.NewArchive(st, mm)
	})
	e.produce(t, d.recs)
	e.waitCommittedAtEnd(t, group, 60*time.Second)

	// Committed means written.
	checkArchivedOnce(t, st, d)
	if got, want := testkit.CounterValue(m.Archived.WithLabelValues("written")), float64(len(d.valid)+d.dups); got != want {
		t.Errorf("Archived{written} = %v, want %v (every valid record)", got, want)
	}
	checkDLQ(t, e, d, true)
}

// TestArchiveThroughputRealServers measures the archiver (real Kafka to
// real Cassandra, through ingest.Consumer and the Cassandra store) against
// a bare gocql loop writing the same rows, in one run, and checks that the
// archiver stored every result once. The suite runs it on 2,000 results, so
// that the measurement keeps working; the figures of the README come from
//
//	ACU_ARCHIVE_SPEED=100000 scripts/integration.sh -run ArchiveThroughput
func TestArchiveThroughputRealServers(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("ACU_ARCHIVE_SPEED"))
	if n <= 0 {
		n = 2000
	}
	e := newKenv(t)
	d := newDataset(t, "speed", n, 0, 0)
	var results []event.Result
	for _, r := range d.recs {
		res, err := event.Parse(r.Value)
		if err != nil {
			t.Fatal(err)
		}
		results = append(results, res)
	}
	e.produce(t, d.recs)

	// The bare loop first (the practical limit): 64 goroutines, one
	// prepared INSERT per row, the rows the store writes per result.
	bare := cassandratest.Open(t)
	began := time.Now()
	bareLoop(t, bare.Session(), results)
	bareTook := time.Since(began)

	// The store's own batched writes with no Kafka: 3 writers (one per
	// partition) of 1,666-result batches, as the archiver's polls cut them.
	direct := cassandratest.Open(t)
	began = time.Now()
	g, ctx := errgroup.WithContext(context.Background())
	g.SetLimit(partitions)
	for b := range slices.Chunk(results, 1666) {
		g.Go(func() error { _, err := direct.PutResults(ctx, b); return err })
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	directTook := time.Since(began)

	st := cassandratest.Open(t)
	group := e.group(t)
	began = time.Now()
	e.run(t, group, "it-archive-speed", func(mm *metrics.Metrics) ingest.Handler { return ingest.NewArchive(st, mm) })
	e.waitCommittedAtEnd(t, group, 30*time.Minute)
	archTook := time.Since(began)
	checkArchivedOnce(t, st, d)

	rate := func(d time.Duration) float64 { return float64(n) / d.Seconds() }
	t.Logf("%d results: bare gocql loop (a prepared INSERT per row) %.0f results/s (%s); store batches without Kafka %.0f results/s (%s); archiver from Kafka %.0f results/s (%s) = %.0f %% of the bare loop, %.0f %% of the store's batches",
		n, rate(bareTook), bareTook.Round(time.Millisecond), rate(directTook), directTook.Round(time.Millisecond),
		rate(archTook), archTook.Round(time.Millisecond), 100*rate(archTook)/rate(bareTook), 100*rate(archTook)/rate(directTook))
}

// bareLoop writes each result's rows (arrival index, by exercise, by
// student, by identity) with single-row INSERTs from 64 goroutines.
func bareLoop(t *testing.T, s *gocql.Session, rs []event.Result) {
	t.Helper()
	const workers = 64
	var next atomic.Int64
	g, ctx := errgroup.WithContext(context.Background())
	for range workers {
		g.Go(func() error {
			for {
				i := next.Add(1) - 1
				if i >= int64(len(rs)) {
					return nil
				}
				r := &rs[i]
				arrival := time.Now().UnixMicro()
				minute := arrival / 60_000_000
				day := int32(r.Timestamp.UnixMilli() / 86_400_000)
				for _, q := range []*gocql.Query{
					s.Query(`INSERT INTO results_by_arrival (minute, shard, arrival, id, exercise_id, ts) VALUES (?, ?, ?, ?, ?, ?)`,
						minute, int8(i%8), arrival, r.ID, r.ExerciseID, r.Timestamp.UnixMilli()),
					s.Query(`INSERT INTO results_by_exercise (exercise_id, day, id, event_id, ts, student_id, latitude, longitude, metric, arrival)
						VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, r.ExerciseID, day, r.ID, r.EventID, r.Timestamp.UnixMilli(), r.StudentID, r.Latitude, r.Longitude, r.Metric, arrival),
					s.Query(`INSERT INTO results_by_student (student_id, exercise_id, ts, id, event_id, latitude, longitude, metric, arrival)
						VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, r.StudentID, r.ExerciseID, r.Timestamp.UnixMilli(), r.ID, r.EventID, r.Latitude, r.Longitude, r.Metric, arrival),
					s.Query(`INSERT INTO results_by_id (bucket, id, exercise_id, student_id, ts, arrival) VALUES (?, ?, ?, ?, ?, ?)`,
						int16(i%1024), r.ID, r.ExerciseID, r.StudentID, r.Timestamp.UnixMilli(), arrival),
				} {
					if err := q.WithContext(ctx).Exec(); err != nil {
						return fmt.Errorf("bare loop: %w", err)
					}
				}
			}
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
}

// TestArchiveSurvivesCassandraRestartReal stops the real Cassandra while
// the archiver runs and starts it again: the archiver retries without
// committing, resumes by itself, and every valid identity is archived once.
// It restarts the shared server, so scripts/integration.sh runs it alone,
// after the rest (ACU_IT_SERVERS is the servers.sh to drive).
func TestArchiveSurvivesCassandraRestartReal(t *testing.T) {
	ctl := os.Getenv("ACU_IT_SERVERS")
	if ctl == "" {
		t.Skip("restarts the shared Cassandra: scripts/integration.sh runs it alone with ACU_IT_SERVERS set")
	}
	servers := func(args ...string) {
		t.Helper()
		cmd := exec.Command("bash", append([]string{ctl}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("servers.sh %v: %v\n%s", args, err, out)
		}
	}
	e := newKenv(t)
	st := cassandratest.Open(t)
	d := newDataset(t, "t6", 600, 0, 30)
	group := e.group(t)
	var m *metrics.Metrics
	e.run(t, group, "it-archive-outage", func(mm *metrics.Metrics) ingest.Handler {
		m = mm
		return ingest.NewArchive(st, mm)
	})
	half := len(d.recs) / 2
	e.produce(t, d.recs[:half])
	e.waitCommittedAtEnd(t, group, 60*time.Second)

	servers("stop", "cassandra")
	before, err := e.committed(group)
	if err != nil {
		t.Fatal(err)
	}
	e.produce(t, d.recs[half:])
	// The archiver fails to write and retries: nothing more is committed.
	testkit.Eventually(t, 60*time.Second, func() bool {
		return testkit.CounterValue(m.BatchErrors.WithLabelValues(group, "handle")) >= 2
	}, func() string { return "failed archive attempts while Cassandra is down" })
	after, err := e.committed(group)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("offsets moved while Cassandra was down: %v -> %v", before, after)
	}
	servers("start", "cassandra")
	e.waitCommittedAtEnd(t, group, 120*time.Second)

	checkArchivedOnce(t, st, d)
	t.Logf("%v failed attempts while Cassandra was down", testkit.CounterValue(m.BatchErrors.WithLabelValues(group, "handle")))
}
