package sqlite

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/acu-patrol/acu/internal/event"
	"github.com/acu-patrol/acu/internal/store"
)

func openTest(t testing.TB, path string) *Store {
	t.Helper()
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatalf("Open(%q): %v", path, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func newStore(t testing.TB) *Store {
	t.Helper()
	return openTest(t, filepath.Join(t.TempDir(), "acu.db"))
}

var t0 = time.Date(2025, 3, 14, 9, 26, 53, 589_000_000, time.UTC)

func result(id string, ts time.Time, metric float64) event.Result {
	return event.Result{
		ID: id, EventID: id, Timestamp: ts,
		StudentID: "s-1", ExerciseID: "ex-1",
		Latitude: 48.8566, Longitude: 2.3522, Metric: metric,
	}
}

func results(prefix string, n int) []event.Result {
	rs := make([]event.Result, n)
	for i := range rs {
		rs[i] = result(fmt.Sprintf("%s-%06d", prefix, i), t0.Add(time.Duration(i)*time.Millisecond), float64(i%100))
	}
	return rs
}

func mustCount(t *testing.T, s *Store) int64 {
	t.Helper()
	n, err := s.CountResults(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestPutResultsIdempotent(t *testing.T) {
	a1 := result("a", t0, 10)
	a2 := result("a", t0.Add(time.Hour), 99) // same identity, other content
	b := result("b", t0, 20)
	c := result("c", t0, 30)

	// Big batches written with several multi-row statements, with
	// duplicates in the same statement as their original and in others.
	big := results("big", 300)
	bigDup := append(append([]event.Result{}, big...), big[0], big[255], big[299])
	bigDup[5] = big[2]    // same 16-row statement
	bigDup[257] = big[3]  // a later 16-row statement
	bigDup[302] = big[10] // a single-row statement of the remainder
	wantBig := map[string]event.Result{}
	for _, r := range bigDup {
		if _, ok := wantBig[r.ID]; !ok {
			wantBig[r.ID] = r
		}
	}

	tests := []struct {
		name      string
		batches   [][]event.Result
		inserted  []int
		wantCount int64
		want      map[string]event.Result // checked with GetResult
	}{
		{
			name:      "empty batch",
			batches:   [][]event.Result{nil, {}},
			inserted:  []int{0, 0},
			wantCount: 0,
		},
		{
			name:      "duplicate within a batch, first wins",
			batches:   [][]event.Result{{a1, b, a2}},
			inserted:  []int{2},
			wantCount: 2,
			want:      map[string]event.Result{"a": a1, "b": b},
		},
		{
			name:      "duplicate across batches, first wins",
			batches:   [][]event.Result{{a1}, {a2, b}, {b, a2, c}},
			inserted:  []int{1, 1, 1},
			wantCount: 3,
			want:      map[string]event.Result{"a": a1, "b": b, "c": c},
		},
		{
			name:      "same batch twice",
			batches:   [][]event.Result{{a1, b, c}, {a1, b, c}},
			inserted:  []int{3, 0},
			wantCount: 3,
			want:      map[string]event.Result{"a": a1, "b": b, "c": c},
		},
		{
			name:      "duplicates across multi-row statements",
			batches:   [][]event.Result{bigDup, bigDup[:10], big[20:40]},
			inserted:  []int{len(wantBig), 0, 0},
			wantCount: int64(len(wantBig)),
			want:      wantBig,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			s := newStore(t)
			for i, batch := range tt.batches {
				n, err := s.PutResults(ctx, batch)
				if err != nil {
					t.Fatalf("batch %d: %v", i, err)
				}
				if n != tt.inserted[i] {
					t.Errorf("batch %d: inserted %d, want %d", i, n, tt.inserted[i])
				}
			}
			if got := mustCount(t, s); got != tt.wantCount {
				t.Errorf("CountResults = %d, want %d", got, tt.wantCount)
			}
			for id, want := range tt.want {
				got, ok, err := s.GetResult(ctx, id)
				if err != nil || !ok {
					t.Fatalf("GetResult(%q) = %v, %v", id, ok, err)
				}
				if got != want {
					t.Errorf("GetResult(%q) = %+v, want %+v", id, got, want)
				}
			}
		})
	}
}

func TestPutResultsBatchSizes(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	var total int64
	for _, n := range []int{1, 3, 4, 5, 15, 16, 17, 63, 64, 65, 255, 256, 257, 1000, 5000} {
		n, err := s.PutResults(ctx, results(fmt.Sprintf("n%d", n), n))
		if err != nil {
			t.Fatal(err)
		}
		total += int64(n)
		if got := mustCount(t, s); got != total {
			t.Fatalf("after a batch of %d: %d rows, want %d", n, got, total)
		}
	}
}

// TestArrivalSequence checks that seq numbers new rows in the order they
// were archived: batch after batch, and in batch order within one.
func TestArrivalSequence(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	b1 := results("z", 40) // ids sort the other way round from arrival below
	for i := range b1 {
		b1[i].ID = fmt.Sprintf("z-%03d", 40-i)
	}
	b2 := append(results("a", 3), b1[7])
	var want []string
	for _, r := range append(b1, b2[:3]...) {
		want = append(want, r.ID)
	}
	for _, b := range [][]event.Result{b1, b2} {
		if _, err := s.PutResults(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	rows, err := s.r.QueryContext(ctx, "SELECT id FROM results ORDER BY seq")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		got = append(got, id)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("order by seq:\n got %v\nwant %v", got, want)
	}
}

func TestPutResultsCanceled(t *testing.T) {
	s := newStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.PutResults(ctx, results("x", 10)); err == nil {
		t.Fatal("PutResults with a canceled context succeeded")
	}
	if got := mustCount(t, s); got != 0 {
		t.Errorf("%d rows archived by a canceled call", got)
	}
}

func TestGetResultRoundTrip(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	paris := time.FixedZone("CET", 3600)
	tests := []struct {
		name string
		in   event.Result
		want time.Time // timestamp read back
	}{
		{"utc ms", result("utc", t0, 42.5), t0},
		{"other zone comes back in UTC", result("zone", t0.In(paris), 0), t0},
		{"sub-ms truncated to ms", result("ns", t0.Add(999_999), 100), t0},
		{"before the epoch", result("old", time.UnixMilli(-1234).UTC(), 1), time.UnixMilli(-1234).UTC()},
		{"no event id", event.Result{ID: "h", Timestamp: t0, StudentID: "s", ExerciseID: "e",
			Latitude: -90, Longitude: 180, Metric: 0.1}, t0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := s.PutResults(ctx, []event.Result{tt.in}); err != nil {
				t.Fatal(err)
			}
			got, ok, err := s.GetResult(ctx, tt.in.ID)
			if err != nil || !ok {
				t.Fatalf("GetResult = %v, %v", ok, err)
			}
			want := tt.in
			want.Timestamp = tt.want
			if got != want { // == on time.Time also checks the location is UTC
				t.Errorf("GetResult = %+v, want %+v", got, want)
			}
			if got.Timestamp.Location() != time.UTC {
				t.Errorf("timestamp location %v, want UTC", got.Timestamp.Location())
			}
		})
	}
	if _, ok, err := s.GetResult(ctx, "missing"); ok || err != nil {
		t.Errorf("GetResult(missing) = %v, %v; want false, nil", ok, err)
	}
}

// TestDeployments checks what SQLite adds to the contract (contract_test.go):
// Deployments lists by WorkflowID, and an empty WorkflowID is refused.
func TestDeployments(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	for _, id := range []string{"patrol-b", "patrol-c", "patrol-a"} {
		if err := s.PutDeployment(ctx, store.Deployment{WorkflowID: id, FailedAt: t0, Status: "dispatched"}); err != nil {
			t.Fatal(err)
		}
	}
	ds, err := s.Deployments(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, d := range ds {
		ids = append(ids, d.WorkflowID)
	}
	if fmt.Sprint(ids) != "[patrol-a patrol-b patrol-c]" {
		t.Errorf("Deployments order = %v", ids)
	}
	if err := s.PutDeployment(ctx, store.Deployment{}); err == nil {
		t.Error("PutDeployment accepted an empty workflow ID")
	}
}

func TestReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "dir with spaces?#%", "acu.db")
	// Open does not create directories.
	if _, err := Open(ctx, path); err == nil {
		t.Fatal("Open in a missing directory succeeded")
	}
	path = filepath.Join(t.TempDir(), "odd ?#% name.db")

	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutResults(ctx, results("r", 10)); err != nil {
		t.Fatal(err)
	}
	d := store.Deployment{WorkflowID: "patrol-x", Status: "recovered", FailedAt: t0}
	if err := s.PutDeployment(ctx, d); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	for i := range 2 { // the schema is applied again each time: a no-op
		s := openTest(t, path)
		if got, want := mustCount(t, s), int64(10+i); got != want {
			t.Errorf("reopen %d: %d results, want %d", i, got, want)
		}
		if got, ok, err := s.GetDeployment(ctx, "patrol-x"); err != nil || !ok || got != d {
			t.Errorf("reopen %d: GetDeployment = %+v, %v, %v", i, got, ok, err)
		}
		if n, err := s.PutResults(ctx, results("r", 11)); err != nil || n != 1-i {
			t.Errorf("reopen %d: PutResults = %d, %v; want %d new", i, n, err, 1-i)
		}
		var v int
		var mode string
		if err := s.w.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil || v != len(migrations) {
			t.Errorf("user_version = %d, %v; want %d", v, err, len(migrations))
		}
		if err := s.r.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
			t.Errorf("journal_mode = %q, %v; want wal", mode, err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestOpenNewerSchema(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "acu.db")
	s := openTest(t, path)
	if _, err := s.w.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", len(migrations)+1)); err != nil {
		t.Fatal(err)
	}
	if s2, err := Open(ctx, path); err == nil {
		s2.Close()
		t.Fatal("Open accepted a schema newer than the program's")
	}
}

func TestReaderIsQueryOnly(t *testing.T) {
	s := newStore(t)
	if _, err := s.r.ExecContext(context.Background(), "DELETE FROM results"); err == nil {
		t.Error("the read pool accepted a write")
	}
}

// TestConcurrentStores has two handles on one file (as two processes would)
// and several goroutines per handle writing overlapping batches, while
// others read.
func TestConcurrentStores(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "acu.db")
	// Open both at once too: the schema is created by one, the other waits.
	var stores [2]*Store
	var wg sync.WaitGroup
	for i := range stores {
		wg.Go(func() {
			s, err := Open(ctx, path)
			if err != nil {
				t.Errorf("Open %d: %v", i, err)
				return
			}
			stores[i] = s
		})
	}
	wg.Wait()
	for _, s := range stores {
		if s == nil {
			t.FailNow()
		}
		t.Cleanup(func() { s.Close() })
	}

	const writers, batches, batchSize = 3, 10, 100
	distinct := results("c", batches*batchSize)
	var mu sync.Mutex
	inserted := 0
	for w := range 2 * writers {
		s := stores[w%2]
		wg.Go(func() {
			for b := range batches {
				// Every writer writes every batch: each row is contended.
				n, err := s.PutResults(ctx, distinct[b*batchSize:(b+1)*batchSize])
				if err != nil {
					t.Errorf("writer %d batch %d: %v", w, b, err)
					return
				}
				mu.Lock()
				inserted += n
				mu.Unlock()
			}
		})
		wg.Go(func() {
			err := s.PutDeployment(ctx, store.Deployment{WorkflowID: fmt.Sprintf("patrol-%d", w), Status: "dispatched"})
			if err != nil {
				t.Errorf("PutDeployment %d: %v", w, err)
			}
			for range batches {
				if _, err := s.FollowUpResults(ctx, store.FollowUpWindow{StudentID: "s-1", ExerciseID: "ex-1", Until: t0.Add(time.Hour)}); err != nil {
					t.Errorf("FollowUpResults: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	if inserted != len(distinct) {
		t.Errorf("inserted counts add up to %d, want %d", inserted, len(distinct))
	}
	for _, s := range stores {
		if got := mustCount(t, s); got != int64(len(distinct)) {
			t.Errorf("CountResults = %d, want %d", got, len(distinct))
		}
		ds, err := s.Deployments(ctx)
		if err != nil || len(ds) != 2*writers {
			t.Errorf("Deployments = %d, %v; want %d", len(ds), err, 2*writers)
		}
	}
}

// helperEnv names the database file a child process of TestMultiProcess
// writes to.
const helperEnv = "ACU_SQLITE_TEST_HELPER_DB"

// TestMultiProcess has two child processes (this test binary running
// TestMultiProcessHelper) and this one write the same rows to one file at
// once: real file locking between processes, not only between connections of
// one process.
func TestMultiProcess(t *testing.T) {
	if os.Getenv(helperEnv) != "" {
		t.Skip("in a helper process")
	}
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "acu.db")
	var cmds []*exec.Cmd
	for range 2 {
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestMultiProcessHelper$", "-test.count=1")
		cmd.Env = append(os.Environ(), helperEnv+"="+path)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	s := openTest(t, path)
	if err := multiProcessWrites(ctx, s); err != nil {
		t.Error(err)
	}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Errorf("helper %d: %v", i, err)
		}
	}
	if got := mustCount(t, s); got != 2000 {
		t.Errorf("CountResults = %d, want 2000", got)
	}
}

// TestMultiProcessHelper is the child of TestMultiProcess.
func TestMultiProcessHelper(t *testing.T) {
	path := os.Getenv(helperEnv)
	if path == "" {
		t.Skip("only run by TestMultiProcess")
	}
	if err := multiProcessWrites(context.Background(), openTest(t, path)); err != nil {
		t.Fatal(err)
	}
}

func multiProcessWrites(ctx context.Context, s *Store) error {
	rs := results("mp", 2000)
	for i := 0; i < len(rs); i += 100 {
		if _, err := s.PutResults(ctx, rs[i:i+100]); err != nil {
			return err
		}
		if err := s.PutDeployment(ctx, store.Deployment{WorkflowID: "patrol-mp", Status: "dispatched"}); err != nil {
			return err
		}
	}
	return nil
}

// BenchmarkPutResults archives batches of 1000 new results into a growing
// file database, the archiver's hot path.
func BenchmarkPutResults(b *testing.B) {
	ctx := context.Background()
	s := newStore(b)
	const batch = 1000
	rs := make([]event.Result, batch)
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	for b.Loop() {
		b.StopTimer()
		for i := range rs {
			// Random-looking identities, like the hashes of events without event_id.
			rs[i] = result(event.HashID("s", "e", time.UnixMilli(int64(n))), t0.Add(time.Duration(n)*time.Millisecond), float64(n%100))
			rs[i].StudentID = fmt.Sprintf("s-%d", n%5000)
			n++
		}
		b.StartTimer()
		got, err := s.PutResults(ctx, rs)
		if err != nil {
			b.Fatal(err)
		}
		if got != batch {
			b.Fatalf("inserted %d, want %d", got, batch)
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "rows/s")
}
