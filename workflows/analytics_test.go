package workflows_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/testsuite"

	"github.com/acu-patrol/acu/activities"
	"github.com/acu-patrol/acu/internal/analytics"
	"github.com/acu-patrol/acu/internal/event"
	"github.com/acu-patrol/acu/internal/store"
	"github.com/acu-patrol/acu/internal/store/sqlite"
	"github.com/acu-patrol/acu/internal/testkit"
	"github.com/acu-patrol/acu/workflows"
)

var runs int

var analyticsNow = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

func runAnalytics(t *testing.T, st store.Store, th testkit.Thresholds, in workflows.AnalyticsInput) workflows.AnalyticsResult {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.SetStartTime(analyticsNow)
	runs++
	env.SetStartWorkflowOptions(client.StartWorkflowOptions{ID: fmt.Sprintf("analytics-test-%d", runs)})
	env.RegisterWorkflow(workflows.Analytics)
	env.RegisterActivity(&activities.Analytics{Store: st, Thresholds: th})
	env.ExecuteWorkflow(workflows.Analytics, in)
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	var res workflows.AnalyticsResult
	if err := env.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	return res
}

// full recomputes the report from everything stored, for comparison.
func full(t *testing.T, st store.Store, th testkit.Thresholds, precision int) []byte {
	t.Helper()
	ctx := context.Background()
	rs := testkit.Archived(t, st)
	deps, err := st.Deployments(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := analytics.FullRecompute(rs, analytics.Thresholds(th), deps, precision, 10, analyticsNow)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func randomResults(rnd *rand.Rand, n, offset int) []event.Result {
	centres := [][2]float64{{48.8566, 2.3522}, {45.764, 4.8357}, {43.2965, 5.3698}}
	out := make([]event.Result, n)
	for i := range out {
		c := centres[rnd.IntN(len(centres))]
		out[i] = event.Result{
			ID:         fmt.Sprintf("r%06d", offset+i),
			StudentID:  fmt.Sprintf("s%03d", rnd.IntN(200)),
			ExerciseID: fmt.Sprintf("ex%d", rnd.IntN(4)),
			Latitude:   c[0] + rnd.Float64()*0.1 - 0.05, Longitude: c[1] + rnd.Float64()*0.1 - 0.05,
			Metric: float64(rnd.IntN(10001)) / 100,
			// Late data too: timestamps anywhere in the last days.
			Timestamp: analyticsNow.Add(-time.Duration(rnd.IntN(72*3600)) * time.Second),
		}
	}
	return out
}

// TestAnalyticsIncrementalEqualsFull: after each incremental run (new
// results, late results, duplicates re-archived, a threshold change, new
// deployments), the stored report equals a full recomputation.
func TestAnalyticsIncrementalEqualsFull(t *testing.T) {
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "acu.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	analyticsIncrementalEqualsFull(t, st, nil)
}

// analyticsIncrementalEqualsFull is the scenario on st; settle, if set,
// waits until what was just archived is below the store's arrival mark.
func analyticsIncrementalEqualsFull(t *testing.T, st store.Store, settle func()) {
	ctx := context.Background()
	_, seqs := st.(*sqlite.Store) // positions count results
	rnd := rand.New(rand.NewPCG(1, 2))
	th := testkit.Thresholds{"ex0": 50, "ex1": 62.5, "ex2": 70} // ex3 has none
	in := workflows.AnalyticsInput{ChunkSize: 700}

	check := func(step string, res workflows.AnalyticsResult) {
		t.Helper()
		want := full(t, st, th, 5)
		if string(res.Report) != string(want) {
			t.Fatalf("%s: incremental report\n%s\nfull recomputation\n%s", step, res.Report, want)
		}
		stored, ok, err := st.LatestReport(ctx)
		if err != nil || !ok || string(stored) != string(res.Report) {
			t.Fatalf("%s: stored report differs (%v %v)", step, ok, err)
		}
	}
	// Empty store.
	res := runAnalytics(t, st, th, in)
	check("empty", res)
	prev := res.To // 0 in SQLite; Cassandra's positions are times

	put := func(rs []event.Result) {
		t.Helper()
		if _, err := st.PutResults(ctx, rs); err != nil {
			t.Fatal(err)
		}
		if settle != nil {
			settle()
		}
	}
	first := randomResults(rnd, 5000, 0)
	put(first)
	res = runAnalytics(t, st, th, in)
	if res.From != prev || res.To <= prev || (seqs && res.To != 5000) {
		t.Fatalf("first run covered %d..%d", res.From, res.To)
	}
	check("first", res)

	// New and late results, and already archived ones again (no new rows).
	prev = res.To
	put(append(randomResults(rnd, 1234, 5000), first[:100]...))
	res = runAnalytics(t, st, th, in)
	if res.From != prev || res.To <= prev || (seqs && res.To != 6234) || len(res.Rebuilt) != 0 {
		t.Fatalf("second run covered %d..%d, rebuilt %v", res.From, res.To, res.Rebuilt)
	}
	check("incremental", res)

	// A threshold change (and a threshold set on ex3): those exercises are
	// recomputed, the others not.
	th["ex1"] = 40
	th["ex3"] = 55
	put(randomResults(rnd, 321, 6234))
	res = runAnalytics(t, st, th, in)
	if fmt.Sprint(res.Rebuilt) != "[ex1 ex3]" {
		t.Fatalf("rebuilt %v, want [ex1 ex3]", res.Rebuilt)
	}
	check("threshold change", res)

	// Deployments change the recovery part only.
	for i, status := range []string{workflows.StatusRecovered, workflows.StatusStillFailing, workflows.StatusNoAttempt,
		workflows.StatusFollowingUp, workflows.StatusNotifyRejected} {
		if err := st.PutDeployment(ctx, store.Deployment{WorkflowID: fmt.Sprintf("patrol-%d", i), ExerciseID: "ex0", Status: status}); err != nil {
			t.Fatal(err)
		}
	}
	res = runAnalytics(t, st, th, in)
	check("deployments", res)
	var doc struct {
		Recovery struct {
			Deployments, Recovered, Pending int
			Rate                            *float64
		}
	}
	if err := json.Unmarshal(res.Report, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Recovery.Deployments != 4 || doc.Recovery.Pending != 1 || doc.Recovery.Rate == nil || *doc.Recovery.Rate != 0.5 {
		t.Fatalf("recovery %+v", doc.Recovery)
	}

	// A precision change recomputes everything.
	in.Precision = 4
	res = runAnalytics(t, st, th, in)
	if want := full(t, st, th, 4); string(res.Report) != string(want) {
		t.Fatalf("precision change: got\n%s\nwant\n%s", res.Report, want)
	}
}

// archiveOf returns a SQLite store holding rs, closed with the test.
func archiveOf(t *testing.T, rs []event.Result) *sqlite.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "acu.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := st.PutResults(context.Background(), rs); err != nil {
		t.Fatal(err)
	}
	return st
}

// settlingStore is a store whose arrival mark lags: it covers nothing until
// MarkWait has answered 0 once, after the waits queued in it.
type settlingStore struct {
	store.Store
	waits   []time.Duration
	asked   []time.Time
	settled bool
}

func (s *settlingStore) MarkWait(_ context.Context, t time.Time) (time.Duration, error) {
	s.asked = append(s.asked, t)
	if len(s.waits) == 0 {
		s.settled = true
		return 0, nil
	}
	w := s.waits[0]
	s.waits = s.waits[1:]
	return w, nil
}

func (s *settlingStore) ArrivalMark(ctx context.Context) (int64, error) {
	if !s.settled {
		return 0, nil
	}
	return s.Store.ArrivalMark(ctx)
}

// TestAnalyticsCatchUpCountsWhatWasArchivedBefore: a run asked to catch up
// (acu analytics run) waits, on a durable timer, until the archive's mark
// covers its start, and then counts what was archived before it; a
// scheduled run does not wait and counts what the mark covers.
func TestAnalyticsCatchUpCountsWhatWasArchivedBefore(t *testing.T) {
	inner := archiveOf(t, randomResults(rand.New(rand.NewPCG(3, 4)), 300, 0))
	th := testkit.Thresholds{"ex0": 50}
	counted := func(res workflows.AnalyticsResult) int {
		t.Helper()
		var doc struct{ Exercises []struct{ Results int } }
		if err := json.Unmarshal(res.Report, &doc); err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, e := range doc.Exercises {
			n += e.Results
		}
		return n
	}

	st := &settlingStore{Store: inner, waits: []time.Duration{20 * time.Second, 7 * time.Second}}
	if n := counted(runAnalytics(t, st, th, workflows.AnalyticsInput{})); n != 0 || len(st.asked) != 0 {
		t.Fatalf("scheduled run: counted %d results and asked MarkWait %d times; want 0 and 0 (no wait)", n, len(st.asked))
	}
	res := runAnalytics(t, st, th, workflows.AnalyticsInput{CatchUp: true})
	if n := counted(res); n != 300 {
		t.Fatalf("catch-up run counted %d results, want the 300 archived before it", n)
	}
	if len(st.asked) != 3 {
		t.Fatalf("MarkWait asked %d times, want 3 (two waits, then covered)", len(st.asked))
	}
	for _, at := range st.asked {
		if !at.Equal(analyticsNow) {
			t.Errorf("MarkWait asked for %s, want the run's start %s", at, analyticsNow)
		}
	}
	var doc struct {
		GeneratedAt time.Time `json:"generated_at"`
	}
	if err := json.Unmarshal(res.Report, &doc); err != nil {
		t.Fatal(err)
	}
	if want := analyticsNow.Add(27 * time.Second); doc.GeneratedAt.Before(want) {
		t.Errorf("report generated at %s, before the waits ended (%s): the run did not sleep them", doc.GeneratedAt, want)
	}
}

// doubtingStore is a store whose first reads of ranges find a result in
// doubt (an archive attempt not settled yet).
type doubtingStore struct {
	store.Store
	mu     sync.Mutex // ranges are read in parallel
	doubts int
	reads  int
}

func (s *doubtingStore) ResultsArrived(ctx context.Context, r store.ArrivalRange, fn func([]event.Result) error) error {
	s.mu.Lock()
	s.reads++
	doubt := s.doubts > 0
	if doubt {
		s.doubts--
	}
	s.mu.Unlock()
	if doubt {
		// Part of the range was passed on before the doubt was found.
		if err := s.Store.ResultsArrived(ctx, r, fn); err != nil {
			return err
		}
		return &store.InDoubtError{ID: "r000001", Arrival: r.UpTo}
	}
	return s.Store.ResultsArrived(ctx, r, fn)
}

// TestAnalyticsWaitsOutResultsInDoubt: a range that finds a result in
// doubt makes the run wait, on a durable timer, and plan again; what the
// doubting reads passed on is not counted, and the report in the end is
// the full recomputation.
func TestAnalyticsWaitsOutResultsInDoubt(t *testing.T) {
	inner := archiveOf(t, randomResults(rand.New(rand.NewPCG(5, 6)), 1000, 0))
	th := testkit.Thresholds{"ex0": 50, "ex1": 70}
	st := &doubtingStore{Store: inner, doubts: 2}
	res := runAnalytics(t, st, th, workflows.AnalyticsInput{ChunkSize: 400})
	// The same document but for generated_at, which the waits moved.
	got := bytes.Replace(res.Report, []byte(`"generated_at":"2026-11-28T12:00:05Z"`), []byte(`"generated_at":"2026-11-28T12:00:00Z"`), 1)
	if want := full(t, inner, th, 5); string(got) != string(want) {
		t.Fatalf("report after the doubts\n%s\nfull recomputation\n%s", res.Report, want)
	}
	if st.doubts != 0 || st.reads < 3+2 {
		t.Fatalf("%d doubts left, %d range reads: the run did not plan again", st.doubts, st.reads)
	}
	var doc struct {
		GeneratedAt time.Time `json:"generated_at"`
	}
	if err := json.Unmarshal(res.Report, &doc); err != nil {
		t.Fatal(err)
	}
	if want := analyticsNow.Add(5 * time.Second); !doc.GeneratedAt.Equal(want) {
		t.Errorf("report generated at %s, want after the one wait of 5 s (%s)", doc.GeneratedAt, want)
	}
}
