//go:build integration

package cassandra

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/acu-patrol/acu/internal/event"
	"github.com/acu-patrol/acu/internal/store"
	"github.com/acu-patrol/acu/internal/testkit"
)

// itConfig is a fresh keyspace on the real Cassandra, with a short settle.
func itConfig(t *testing.T, params string) Config {
	t.Helper()
	addr, ks := testkit.CassandraKeyspace(t)
	cfg, err := ParseURL("cassandra://" + addr + "/" + ks + "?settle=3s" + params)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func waitSettled(t *testing.T, s *Store) int64 {
	t.Helper()
	return testkit.Settle(t, s, 3*s.cfg.Settle)
}

// arrived reads (after, upTo] as the analytics do, range by range of
// SplitArrivals; fn, if set, is called after each page.
func arrived(t *testing.T, s *Store, after, upTo int64) map[string]event.Result {
	t.Helper()
	out, err := arrivedErr(t, s, after, upTo, nil)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func arrivedErr(t *testing.T, s *Store, after, upTo int64, fn func()) (map[string]event.Result, error) {
	t.Helper()
	ranges, err := s.SplitArrivals(context.Background(), after, upTo, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]event.Result{}
	for _, r := range ranges {
		if err := s.ResultsArrived(context.Background(), r, func(rs []event.Result) error {
			for _, r := range rs {
				if _, dup := out[r.ID]; dup {
					t.Errorf("%s read twice", r.ID)
				}
				out[r.ID] = r
			}
			if fn != nil {
				fn()
			}
			return nil
		}); err != nil {
			return out, err
		}
	}
	return out, nil
}

// inDoubt reads (after, upTo] and returns the InDoubtError it must end in.
func inDoubt(t *testing.T, s *Store, after, upTo int64) *store.InDoubtError {
	t.Helper()
	_, err := arrivedErr(t, s, after, upTo, nil)
	var doubt *store.InDoubtError
	if !errors.As(err, &doubt) {
		t.Fatalf("reading (%d, %d]: %v, want an InDoubtError", after, upTo, err)
	}
	return doubt
}

func TestMigrateConcurrentlyOnRealCassandra(t *testing.T) {
	cfg := itConfig(t, "")
	ctx := context.Background()
	if _, err := Open(ctx, cfg, Options{}); !errors.Is(err, ErrSchema) || !strings.Contains(err.Error(), "acu setup") {
		t.Fatalf("open before setup: %v, want ErrSchema and a hint to run acu setup", err)
	}
	// A keyspace made by hand, without acu's schema: the same.
	bare, err := cluster(cfg, nil).CreateSession()
	if err != nil {
		t.Fatal(err)
	}
	defer bare.Close()
	if err := bare.Query(`CREATE KEYSPACE ` + cfg.Keyspace + ` WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}`).Exec(); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, cfg, Options{}); !errors.Is(err, ErrSchema) || !strings.Contains(err.Error(), "acu setup") {
		t.Fatalf("open of a keyspace without acu's schema: %v, want ErrSchema and a hint to run acu setup", err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() {
			s, err := Open(ctx, cfg, Options{Migrate: true})
			if err == nil {
				err = s.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("setup %d: %v", i, err)
		}
	}
	s, err := Open(ctx, cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if v, err := readVersion(ctx, s.session, cfg.Keyspace); err != nil || v != SchemaVersion() {
		t.Errorf("version %d, %v; want %d", v, err, SchemaVersion())
	}
	// Every table exists with its fixed ID.
	iter := s.session.Query(`SELECT table_name, id FROM system_schema.tables WHERE keyspace_name = ?`, cfg.Keyspace).Iter()
	var name string
	var id [16]byte
	n := 0
	for iter.Scan(&name, &id) {
		n++
		if got, want := formatUUID(id), tableID(cfg.Keyspace, name); got != want {
			t.Errorf("%s: id %s, want %s", name, got, want)
		}
	}
	if err := iter.Close(); err != nil {
		t.Fatal(err)
	}
	if n != len(migrations[0])+1 {
		t.Errorf("%d tables", n)
	}
	// Setup again with another replication is refused, not ignored.
	other := cfg
	other.Replication, other.ReplicationSet = Replication{Strategy: "SimpleStrategy", Factor: 3}, true
	if _, err := Open(ctx, other, Options{Migrate: true}); err == nil || !strings.Contains(err.Error(), "ALTER KEYSPACE") {
		t.Errorf("setup with another replication: %v", err)
	}
}

func formatUUID(b [16]byte) string {
	const hex = "0123456789abcdef"
	var out []byte
	for i, c := range b {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			out = append(out, '-')
		}
		out = append(out, hex[c>>4], hex[c&15])
	}
	return string(out)
}

// TestHalfWrittenBatchesOnRealCassandra: an archiver that dies after the
// index rows, or between the canonical tables, and the re-delivery that
// follows: each identity is counted once, at one arrival, with the first
// content.
func TestHalfWrittenBatchesOnRealCassandra(t *testing.T) {
	cfg := itConfig(t, "")
	ctx := context.Background()
	s, err := Open(ctx, cfg, Options{Migrate: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ts := time.Now().UTC().Truncate(time.Millisecond)
	a := event.Result{ID: "a", StudentID: "s1", ExerciseID: "ex", Timestamp: ts, Metric: 10}
	b := event.Result{ID: "b", StudentID: "s2", ExerciseID: "ex", Timestamp: ts, Metric: 20}

	// Crash 1: only the index rows of a were written. a is in doubt (its
	// redelivery will place it), neither counted nor skipped.
	arrA := s.arrival()
	if err := s.putIndex(ctx, []*event.Result{&a}, arrA); err != nil {
		t.Fatal(err)
	}
	mark0 := waitSettled(t, s)
	if d := inDoubt(t, s, 0, mark0); d.ID != "a" || d.Arrival != arrA || d.Canonical != 0 {
		t.Errorf("an identity with index rows only: %+v, want in doubt at %d with no complete attempt", d, arrA)
	}
	// Crash 2: b fully written by one attempt, then a later attempt with
	// another content dies after its index rows.
	if _, err := s.PutResults(ctx, []event.Result{b}); err != nil {
		t.Fatal(err)
	}
	b2 := b
	b2.Metric = 99
	arr := s.arrival()
	if err := s.putIndex(ctx, []*event.Result{&b2}, arr); err != nil {
		t.Fatal(err)
	}
	// Redelivery of a (the archiver restarts), and of b.
	a2 := a
	if _, err := s.PutResults(ctx, []event.Result{a2, b2}); err != nil {
		t.Fatal(err)
	}
	mark1 := waitSettled(t, s)
	got := arrived(t, s, mark0, mark1)
	if len(got) != 2 || got["a"].Metric != 10 || got["b"].Metric != 20 {
		t.Errorf("after redelivery: %v", got)
	}
	if again := arrived(t, s, 0, mark1); len(again) != 2 || again["a"].Metric != 10 || again["b"].Metric != 20 {
		t.Errorf("whole range: %v", again)
	}
	var ex []event.Result
	if err := s.ExerciseResults(ctx, "ex", mark1, 10, func(rs []event.Result) error { ex = append(ex, rs...); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(ex) != 2 {
		t.Errorf("exercise results %v", ex)
	}

	// Crash 3: an attempt for c wrote its index and query rows but died
	// before the arbiter row; the redelivery says another exercise and
	// student, a day later, and completes. c is the redelivery's event, once,
	// nowhere else.
	c := event.Result{ID: "c", StudentID: "s3", ExerciseID: "ex", Timestamp: ts, Metric: 30}
	arr = s.arrival()
	if err := s.putIndex(ctx, []*event.Result{&c}, arr); err != nil {
		t.Fatal(err)
	}
	if err := s.putQueryRows(ctx, []*event.Result{&c}, arr); err != nil {
		t.Fatal(err)
	}
	c2 := event.Result{ID: "c", StudentID: "s4", ExerciseID: "ex2", Timestamp: ts.Add(25 * time.Hour), Metric: 40}
	if _, err := s.PutResults(ctx, []event.Result{c2}); err != nil {
		t.Fatal(err)
	}
	mark2 := waitSettled(t, s)
	got = arrived(t, s, mark1, mark2)
	if len(got) != 1 || got["c"].ExerciseID != "ex2" || got["c"].Metric != 40 {
		t.Errorf("after the half-written attempt and its redelivery: %v", got)
	}
	for _, e := range []struct {
		exercise string
		want     int
	}{{"ex", 2}, {"ex2", 1}} {
		var rs []event.Result
		if err := s.ExerciseResults(ctx, e.exercise, mark2, 10, func(b []event.Result) error { rs = append(rs, b...); return nil }); err != nil {
			t.Fatal(err)
		}
		if len(rs) != e.want {
			t.Errorf("ExerciseResults(%s) = %v, want %d results", e.exercise, rs, e.want)
		}
	}
	for _, w := range []struct {
		student, exercise string
		want              int
	}{{"s3", "ex", 0}, {"s4", "ex2", 1}} {
		rs, err := s.FollowUpResults(ctx, store.FollowUpWindow{StudentID: w.student, ExerciseID: w.exercise,
			After: ts.Add(-time.Hour), Until: ts.Add(48 * time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		if len(rs) != w.want {
			t.Errorf("FollowUpResults(%s, %s) = %v, want %d results", w.student, w.exercise, rs, w.want)
		}
	}
}

// landLate writes what an attempt stamped at arrival whose arbiter write
// failed for its writer and landed later (a hint replayed, a replica that
// had it read at last) leaves in the end: its results_by_id row, with the
// attempt's cell timestamp.
func landLate(t *testing.T, s *Store, r *event.Result, arrival int64) {
	t.Helper()
	if err := s.exec(context.Background(), []group{{rows: []*event.Result{r}}}, invertedBase-arrival, insertByID,
		func(r *event.Result) []any {
			return []any{bucketOf(r.ID), r.ID, r.ExerciseID, r.StudentID, r.Timestamp.UnixMilli(), arrival}
		}); err != nil {
		t.Fatal(err)
	}
}

// TestLateAttemptsOnRealCassandra: an attempt that failed for the archiver
// after its index and query rows, whose arbiter row lands later, once the
// retry has completed. Whenever it lands, the identity counts once over
// the successive reads of the analytics: before, the arrival that was not
// canonical when read was skipped and the retry's arrival, read after the
// late row landed, was skipped too (counted never).
func TestLateAttemptsOnRealCassandra(t *testing.T) {
	ctx := context.Background()
	ts := time.Now().UTC().Truncate(time.Millisecond)
	open := func(t *testing.T) (*Store, func(*event.Result, int64)) {
		s, err := Open(ctx, itConfig(t, ""), Options{Migrate: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		failed := func(r *event.Result, arrival int64) {
			t.Helper()
			if err := s.putIndex(ctx, []*event.Result{r}, arrival); err != nil {
				t.Fatal(err)
			}
			if err := s.putQueryRows(ctx, []*event.Result{r}, arrival); err != nil {
				t.Fatal(err)
			}
		}
		return s, failed
	}

	// The failed attempt's minute is read before the retry is settled, and
	// its row lands after that read.
	t.Run("between runs", func(t *testing.T) {
		s, failed := open(t)
		x := event.Result{ID: "x", StudentID: "s1", ExerciseID: "ex", Timestamp: ts, Metric: 10}
		arrX := s.arrival()
		failed(&x, arrX)
		if _, err := s.PutResults(ctx, []event.Result{x}); err != nil {
			t.Fatal(err)
		}
		mark := waitSettled(t, s)
		mid := arrX + 1 // the retry arrived after it
		if d := inDoubt(t, s, 0, mid); d.ID != "x" || d.Arrival != arrX || d.Canonical <= mid {
			t.Errorf("x read before its retry is settled: %+v, want in doubt at %d, canonical after %d", d, arrX, mid)
		}
		landLate(t, s, &x, arrX)
		first, second := arrived(t, s, 0, mid), arrived(t, s, mid, mark)
		if len(first)+len(second) != 1 {
			t.Errorf("x counted %d times over (0, %d] and (%d, %d]: %v %v", len(first)+len(second), mid, mid, mark, first, second)
		}
	})

	// The failed attempt and the retry in two minutes of one range, the late
	// row landing while the range is read, between the two minutes. z,
	// complete in the failed attempt's minute and in y's part, is read first
	// and lets the row land then.
	t.Run("within a range", func(t *testing.T) {
		s, failed := open(t)
		y := event.Result{ID: "y", StudentID: "s2", ExerciseID: "ex", Timestamp: ts, Metric: 20}
		var z event.Result
		for i := 0; ; i++ {
			z = event.Result{ID: fmt.Sprintf("z%d", i), StudentID: "s3", ExerciseID: "ex", Timestamp: ts, Metric: 30}
			if shardOf(z.ID) == shardOf(y.ID) {
				break
			}
		}
		arrY := s.arrival() - 2*minuteUS // a minute of its own, before the retry's
		failed(&y, arrY)
		failed(&z, arrY)
		landLate(t, s, &z, arrY) // z's attempt completed
		if _, err := s.PutResults(ctx, []event.Result{y}); err != nil {
			t.Fatal(err)
		}
		mark := waitSettled(t, s)
		landed := false
		got, err := arrivedErr(t, s, 0, mark, func() {
			if !landed {
				landLate(t, s, &y, arrY)
				landed = true
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		if !landed {
			t.Fatal("z's minute was not read")
		}
		if _, ok := got["y"]; !ok || len(got) != 2 {
			t.Errorf("reading y's minutes while its failed attempt landed: %v, want y and z once each", got)
		}
		// Read again now that it has landed: y counts at its first arrival.
		if again := arrived(t, s, 0, mark); len(again) != 2 {
			t.Errorf("reading them again: %v", again)
		}
	})
}

// TestInexactConsistencyRefusedOnRealCassandra: ONE reads and writes on a
// keyspace of two replicas need not meet; the store refuses to run on them
// (from the keyspace's replication as Cassandra reports it), saying to use
// quorum.
func TestInexactConsistencyRefusedOnRealCassandra(t *testing.T) {
	cfg := itConfig(t, "&consistency=one&replication=SimpleStrategy:2")
	_, err := Open(context.Background(), cfg, Options{Migrate: true})
	if !errors.Is(err, ErrInexact) || !strings.Contains(err.Error(), "quorum") {
		t.Fatalf("Open with ONE on two replicas: %v, want ErrInexact", err)
	}
}

// TestClockMeasuredOnRealCassandra: this machine's clock against the real
// node's (the same machine): the measurement works and is near zero, so
// the store stamps and marks.
func TestClockMeasuredOnRealCassandra(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, itConfig(t, ""), Options{Migrate: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	skew, err := s.measureSkew(ctx)
	if err != nil || skew > time.Second || skew < -time.Second {
		t.Fatalf("skew %s, %v; want within a second on one machine", skew, err)
	}
	if err := s.checkClock(ctx); err != nil {
		t.Fatal(err)
	}
}
