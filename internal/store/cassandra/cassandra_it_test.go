//go:build integration

package cassandra

import (
	"context"
	"errors"
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

func arrived(t *testing.T, s *Store, after, upTo int64) map[string]event.Result {
	t.Helper()
	out := map[string]event.Result{}
	if err := s.ResultsArrived(context.Background(), after, upTo, func(rs []event.Result) error {
		for _, r := range rs {
			if _, dup := out[r.ID]; dup {
				t.Errorf("%s read twice", r.ID)
			}
			out[r.ID] = r
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestMigrateConcurrentlyOnRealCassandra: acu setup from several machines
// at once creates one schema, and the services then open it; a service
// started before setup is told to run it.
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

	// Crash 1: only the index rows of a were written.
	if err := s.putIndex(ctx, []*event.Result{&a}, s.arrival()); err != nil {
		t.Fatal(err)
	}
	mark0 := waitSettled(t, s)
	if got := arrived(t, s, 0, mark0); len(got) != 0 {
		t.Errorf("an identity with index rows only is counted: %v", got)
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
	if again := arrived(t, s, 0, mark1); len(again) != 2 {
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
