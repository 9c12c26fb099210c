// Package storetest is the contract every backend of store.Store passes:
// the behaviour the services rely on, checked through the interface alone.
//
// A backend's tests call Run with a Backend that opens fresh, empty stores:
//
//	func TestContract(t *testing.T) {
//		storetest.Run(t, storetest.Backend{Open: openEmptyStore})
//	}
//
// The data is small (at most a few hundred results per subtest) so that the
// suite runs in seconds on a real database too.
package storetest

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/acu-patrol/acu/internal/store"
)

// Backend opens fresh, empty stores of one kind.
type Backend struct {
	// Open returns a new empty store; the suite closes it.
	Open func(t *testing.T) store.Store
	// Settle waits until every result written before the call is at or
	// below the store's ArrivalMark (SQLite: nothing to wait for;
	// Cassandra: its arrival mark trails the clock by a settle margin).
	// Nil means no wait.
	Settle func(t *testing.T, s store.Store)
}

// Run runs the contract as subtests of t. Each subtest opens its own store.
func Run(t *testing.T, b Backend) {
	if b.Open == nil {
		t.Fatal("storetest: Backend.Open is nil")
	}
	for _, c := range []struct {
		name string
		run  func(*testing.T, Backend)
	}{
		{"PutResults", testPutResults},
		{"ResultsArrived", testResultsArrived},
		{"Incremental", testIncremental},
		{"MarkWait", testMarkWait},
		{"SplitArrivals", testSplitArrivals},
		{"ExerciseResults", testExerciseResults},
		{"FollowUpResults", testFollowUpResults},
		{"Deployments", testDeployments},
		{"Analytics", testAnalytics},
		{"AnalyticsRace", testAnalyticsRace},
		{"Close", testClose},
	} {
		t.Run(c.name, func(t *testing.T) { c.run(t, b) })
	}
}

// open opens a fresh store that is closed when the test ends.
func (b Backend) open(t *testing.T) store.Store {
	t.Helper()
	s := b.Open(t)
	if s == nil {
		t.Fatal("Backend.Open returned a nil store")
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func (b Backend) settle(t *testing.T, s store.Store) {
	t.Helper()
	if b.Settle != nil {
		b.Settle(t, s)
	}
}

// settledMark settles the store and returns its arrival mark.
func (b Backend) settledMark(t *testing.T, s store.Store) int64 {
	t.Helper()
	b.settle(t, s)
	m, err := s.ArrivalMark(t.Context())
	if err != nil {
		t.Fatalf("ArrivalMark: %v", err)
	}
	if m < 0 {
		t.Fatalf("ArrivalMark = %d, negative", m)
	}
	return m
}

// t0 is the base timestamp of the results (millisecond precision, UTC).
var t0 = time.Date(2025, 3, 14, 9, 26, 53, 589_000_000, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

func mk(id, student, exercise string, ms int, metric float64) store.Result {
	return store.Result{
		ID: id, EventID: id, Timestamp: at(ms),
		StudentID: student, ExerciseID: exercise,
		Latitude: 48.8566, Longitude: 2.3522, Metric: metric,
	}
}

// gen returns n distinct results named prefix-NNNN, spread over students
// s-0..s-4 and exercises ex-0..ex-2 (result i is on ex-(i%3)).
func gen(prefix string, n int) []store.Result {
	rs := make([]store.Result, n)
	for i := range rs {
		id := fmt.Sprintf("%s-%04d", prefix, i)
		r := store.Result{
			ID: id, EventID: id, Timestamp: at(i * 37),
			StudentID:  fmt.Sprintf("s-%d", i%5),
			ExerciseID: fmt.Sprintf("ex-%d", i%3),
			Latitude:   -90 + float64(i%181) + 0.125,
			Longitude:  -180 + float64((i*7)%360) + 0.5,
			Metric:     float64(i%101) + 0.25,
		}
		if i%4 == 0 {
			r.EventID = "" // identity computed from the content
		}
		rs[i] = r
	}
	return rs
}

// variant is a redelivery of r's identity with other content: metric and
// position, and also another exercise, student and day (the same identity
// is the same event, whatever a later record says), so that a store keeping
// a later write, or keeping both, shows it.
func variant(r store.Result) store.Result {
	r.Metric += 1000
	r.Latitude += 0.5
	r.Longitude -= 0.5
	r.ExerciseID = otherOf(r.ExerciseID, "ex-", 3)
	r.StudentID = otherOf(r.StudentID, "s-", 5)
	r.Timestamp = r.Timestamp.Add(25 * time.Hour)
	return r
}

// otherOf maps prefix-i to prefix-((i+1)%n), anything else to prefix-0.
func otherOf(v, prefix string, n int) string {
	var i int
	if _, err := fmt.Sscanf(v, prefix+"%d", &i); err != nil {
		return prefix + "0"
	}
	return fmt.Sprintf("%s%d", prefix, (i+1)%n)
}

func variants(rs []store.Result) []store.Result {
	out := make([]store.Result, len(rs))
	for i, r := range rs {
		out[i] = variant(r)
	}
	return out
}

func concat(batches ...[]store.Result) []store.Result {
	var out []store.Result
	for _, b := range batches {
		out = append(out, b...)
	}
	return out
}

// stored is r as a store returns it: timestamp truncated to the millisecond,
// in UTC.
func stored(r store.Result) store.Result {
	r.Timestamp = msUTC(r.Timestamp)
	return r
}

func msUTC(ts time.Time) time.Time {
	if ts.IsZero() {
		return time.Time{}
	}
	return time.UnixMilli(ts.UnixMilli()).UTC()
}

// archive tracks what a store must hold: the first write of each identity.
type archive map[string]store.Result

// put archives batch in s, checks the inserted count against the identities
// new to a, and records them in a.
func (a archive) put(t *testing.T, s store.Store, batch []store.Result) {
	t.Helper()
	want := 0
	for _, r := range batch {
		if _, ok := a[r.ID]; !ok {
			a[r.ID] = stored(r)
			want++
		}
	}
	putResults(t, s, batch, want)
}

// putResults archives batch and checks that PutResults reports wantNew new
// identities (or UnknownInserted).
func putResults(t *testing.T, s store.Store, batch []store.Result, wantNew int) {
	t.Helper()
	n, err := s.PutResults(t.Context(), batch)
	if err != nil {
		t.Fatalf("PutResults(%d results): %v", len(batch), err)
	}
	if n != wantNew && n != store.UnknownInserted {
		t.Errorf("PutResults(%d results) = %d inserted, want %d (or store.UnknownInserted)", len(batch), n, wantNew)
	}
}

// archiveOf is the archive of distinct results rs, without writing them.
func archiveOf(rs []store.Result) archive {
	a := archive{}
	for _, r := range rs {
		a[r.ID] = stored(r)
	}
	return a
}

func (a archive) clone() archive { return maps.Clone(a) }

func (a archive) results() []store.Result {
	out := make([]store.Result, 0, len(a))
	for _, r := range a {
		out = append(out, r)
	}
	return out
}

func (a archive) exercise(ex string) []store.Result {
	var out []store.Result
	for _, r := range a {
		if r.ExerciseID == ex {
			out = append(out, r)
		}
	}
	return out
}

// followUp is what FollowUpResults(w) must return from a, in order.
func (a archive) followUp(w store.FollowUpWindow) []store.Result {
	var out []store.Result
	for _, r := range a {
		if r.StudentID == w.StudentID && r.ExerciseID == w.ExerciseID &&
			r.Timestamp.After(w.After) && !r.Timestamp.After(w.Until) {
			out = append(out, r)
		}
	}
	sortByTime(out)
	return out
}

func sortByTime(rs []store.Result) {
	slices.SortFunc(rs, func(a, b store.Result) int {
		return cmp.Or(a.Timestamp.Compare(b.Timestamp), strings.Compare(a.ID, b.ID))
	})
}

// arrived returns the results of (after, upTo] as the analytics read them:
// every range SplitArrivals cuts it into, all pages.
func arrived(t *testing.T, s store.Store, after, upTo int64) []store.Result {
	t.Helper()
	ranges, err := s.SplitArrivals(t.Context(), after, upTo, 1000)
	if err != nil {
		t.Fatalf("SplitArrivals(%d, %d): %v", after, upTo, err)
	}
	var out []store.Result
	for _, r := range ranges {
		out = append(out, arrivedRange(t, s, r)...)
	}
	return out
}

// arrivedRange returns what ResultsArrived(r) passes to fn, all pages.
func arrivedRange(t *testing.T, s store.Store, r store.ArrivalRange) []store.Result {
	t.Helper()
	var out []store.Result
	if err := s.ResultsArrived(t.Context(), r, func(page []store.Result) error {
		out = append(out, page...)
		return nil
	}); err != nil {
		t.Fatalf("ResultsArrived(%+v): %v", r, err)
	}
	return out
}

// exerciseResults returns what ExerciseResults passes to fn, all pages,
// checking the pages' size and that they hold only the exercise.
func exerciseResults(t *testing.T, s store.Store, ex string, upTo int64, pageSize int) []store.Result {
	t.Helper()
	var out []store.Result
	if err := s.ExerciseResults(t.Context(), ex, upTo, pageSize, func(page []store.Result) error {
		if len(page) > pageSize {
			t.Errorf("ExerciseResults(%q, %d, pageSize %d): a page of %d results", ex, upTo, pageSize, len(page))
		}
		for _, r := range page {
			if r.ExerciseID != ex {
				t.Errorf("ExerciseResults(%q): result %q is on exercise %q", ex, r.ID, r.ExerciseID)
			}
		}
		out = append(out, page...)
		return nil
	}); err != nil {
		t.Fatalf("ExerciseResults(%q, %d, %d): %v", ex, upTo, pageSize, err)
	}
	return out
}

// diffResult describes how got differs from want ("" if it does not).
// Timestamps must be the same instant, in UTC.
func diffResult(got, want store.Result) string {
	var d []string
	if got.ID != want.ID {
		d = append(d, fmt.Sprintf("ID %q, want %q", got.ID, want.ID))
	}
	if got.EventID != want.EventID {
		d = append(d, fmt.Sprintf("EventID %q, want %q", got.EventID, want.EventID))
	}
	if !got.Timestamp.Equal(want.Timestamp) || got.Timestamp.Location() != time.UTC {
		d = append(d, fmt.Sprintf("Timestamp %v, want %v", got.Timestamp, want.Timestamp))
	}
	if got.StudentID != want.StudentID {
		d = append(d, fmt.Sprintf("StudentID %q, want %q", got.StudentID, want.StudentID))
	}
	if got.ExerciseID != want.ExerciseID {
		d = append(d, fmt.Sprintf("ExerciseID %q, want %q", got.ExerciseID, want.ExerciseID))
	}
	if got.Latitude != want.Latitude {
		d = append(d, fmt.Sprintf("Latitude %v, want %v", got.Latitude, want.Latitude))
	}
	if got.Longitude != want.Longitude {
		d = append(d, fmt.Sprintf("Longitude %v, want %v", got.Longitude, want.Longitude))
	}
	if got.Metric != want.Metric {
		d = append(d, fmt.Sprintf("Metric %v, want %v", got.Metric, want.Metric))
	}
	return strings.Join(d, "; ")
}

// maxReported caps the differences reported by one comparison.
const maxReported = 10

// checkSet checks that got holds every result of want exactly once, with
// the same content, and nothing else (in any order).
func checkSet(t *testing.T, what string, got, want []store.Result) {
	t.Helper()
	wantByID := make(map[string]store.Result, len(want))
	for _, r := range want {
		wantByID[r.ID] = r
	}
	got = slices.Clone(got)
	slices.SortStableFunc(got, func(a, b store.Result) int { return strings.Compare(a.ID, b.ID) })
	var problems []string
	seen := make(map[string]int, len(got))
	for _, r := range got {
		seen[r.ID]++
		switch w, ok := wantByID[r.ID]; {
		case seen[r.ID] == 2:
			problems = append(problems, fmt.Sprintf("%q returned more than once", r.ID))
		case seen[r.ID] > 2:
		case !ok:
			problems = append(problems, fmt.Sprintf("unexpected result %+v", r))
		default:
			if d := diffResult(r, w); d != "" {
				problems = append(problems, fmt.Sprintf("%q: %s", r.ID, d))
			}
		}
	}
	ids := make([]string, 0, len(wantByID))
	for id := range wantByID {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		if seen[id] == 0 {
			problems = append(problems, fmt.Sprintf("missing %q", id))
		}
	}
	report(t, what, fmt.Sprintf("got %d results, want %d distinct", len(got), len(wantByID)), problems)
}

// checkList checks that got is want, in the same order.
func checkList(t *testing.T, what string, got, want []store.Result) {
	t.Helper()
	var problems []string
	if gi, wi := ids(got), ids(want); !slices.Equal(gi, wi) {
		problems = append(problems, fmt.Sprintf("identities in order %v, want %v", gi, wi))
	} else {
		for i := range got {
			if d := diffResult(got[i], want[i]); d != "" {
				problems = append(problems, fmt.Sprintf("%q: %s", got[i].ID, d))
			}
		}
	}
	report(t, what, fmt.Sprintf("got %d results, want %d", len(got), len(want)), problems)
}

func ids(rs []store.Result) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.ID
	}
	return out
}

func report(t *testing.T, what, summary string, problems []string) {
	t.Helper()
	if len(problems) == 0 {
		return
	}
	more := ""
	if len(problems) > maxReported {
		more = fmt.Sprintf("\n\t... and %d more", len(problems)-maxReported)
		problems = problems[:maxReported]
	}
	t.Errorf("%s: %s:\n\t%s%s", what, summary, strings.Join(problems, "\n\t"), more)
}

// testPutResults: empty batches, refused batches, and first-write-wins for
// identities repeated in one batch and across batches, as every read sees it.
func testPutResults(t *testing.T, b Backend) {
	ctx := t.Context()
	s := b.open(t)

	for _, batch := range [][]store.Result{nil, {}} {
		n, err := s.PutResults(ctx, batch)
		if err != nil {
			t.Errorf("PutResults(empty batch): %v", err)
		}
		if n != 0 && n != store.UnknownInserted {
			t.Errorf("PutResults(empty batch) = %d inserted, want 0", n)
		}
	}

	// A result without identity refuses the whole batch, including the
	// valid results before it.
	refused := []store.Result{mk("refused-ok", "s-1", "ex-1", 5, 1), mk("", "s-1", "ex-1", 6, 2)}
	if _, err := s.PutResults(ctx, refused); err == nil {
		t.Error("PutResults accepted a result with an empty ID")
	}

	a := archive{}
	ra := mk("a", "s-1", "ex-1", 100, 10)
	rb := mk("b", "s-1", "ex-1", 200, 20)
	rc := mk("c", "s-2", "ex-1", 150, 30)
	many := gen("m", 250)

	// Duplicates in the same batch, the later ones with other content.
	a.put(t, s, concat(
		[]store.Result{ra, rb, variant(ra)},
		many[:50], []store.Result{variant(many[7]), many[7]},
		many[50:100], []store.Result{variant(many[99]), variant(variant(many[0]))}))
	// Redeliveries of earlier batches mixed with new identities, and a
	// duplicate of a new one in the same batch.
	batch2 := concat(
		[]store.Result{variant(variant(ra)), rc, variant(rb)},
		variants(many[90:100]),
		many[100:150], []store.Result{variant(many[120])}, many[150:200])
	a.put(t, s, batch2)
	// The same batch again, then all of it with other content.
	a.put(t, s, batch2)
	a.put(t, s, variants(batch2))
	a.put(t, s, concat(many[200:], variants(many[:10]), many[240:]))

	mark := b.settledMark(t, s)
	all := a.results()
	checkSet(t, "ResultsArrived(0, mark]", arrived(t, s, 0, mark), all)
	for _, ex := range []string{"ex-0", "ex-1", "ex-2"} {
		checkSet(t, fmt.Sprintf("ExerciseResults(%q, mark)", ex), exerciseResults(t, s, ex, mark, 7), a.exercise(ex))
	}
	for _, w := range []store.FollowUpWindow{
		{StudentID: "s-1", ExerciseID: "ex-1", After: at(-1), Until: at(1_000_000)},
		{StudentID: "s-2", ExerciseID: "ex-1", After: at(-1), Until: at(1_000_000)},
		{StudentID: "s-0", ExerciseID: "ex-0", After: at(-1), Until: at(1_000_000)},
	} {
		rs, err := s.FollowUpResults(ctx, w)
		if err != nil {
			t.Fatalf("FollowUpResults(%+v): %v", w, err)
		}
		checkList(t, fmt.Sprintf("FollowUpResults(%s, %s)", w.StudentID, w.ExerciseID), rs, a.followUp(w))
	}
}

// testResultsArrived: every archived identity once, every field as written
// (timestamps in UTC, to the millisecond), and fn's errors returned.
func testResultsArrived(t *testing.T, b Backend) {
	ctx := t.Context()
	s := b.open(t)

	empty := b.settledMark(t, s)
	if got := arrived(t, s, 0, empty); len(got) != 0 {
		t.Errorf("ResultsArrived(0, %d] of an empty store returned %d results", empty, len(got))
	}

	cet := time.FixedZone("CET", 3600)
	special := []store.Result{
		mk("utc-ms", "s-1", "ex-1", 0, 42.5),
		{ID: "other-zone", EventID: "other-zone", Timestamp: t0.In(cet), StudentID: "s-1", ExerciseID: "ex-1", Latitude: 1, Longitude: 2, Metric: 3},
		{ID: "sub-ms", EventID: "sub-ms", Timestamp: t0.Add(999_999), StudentID: "s-1", ExerciseID: "ex-1", Latitude: 1, Longitude: 2, Metric: 3},
		{ID: "no-event-id", Timestamp: at(1), StudentID: "s-2", ExerciseID: "ex-2", Latitude: -90, Longitude: 180, Metric: 0},
		{ID: "extremes", EventID: "e", Timestamp: at(2), StudentID: "s-3", ExerciseID: "ex-3", Latitude: 90, Longitude: -180, Metric: 100},
		{ID: "fractions", EventID: "fractions", Timestamp: at(3), StudentID: "s-3", ExerciseID: "ex-3", Latitude: 48.856613, Longitude: 2.352222, Metric: 100.0 / 3},
		{ID: "early", EventID: "early", Timestamp: time.UnixMilli(1).UTC(), StudentID: "s-4", ExerciseID: "ex-4", Latitude: 0, Longitude: 0, Metric: 50},
		{ID: "late", EventID: "late", Timestamp: time.Date(2099, 12, 31, 23, 59, 59, 999_000_000, time.UTC), StudentID: "s-4", ExerciseID: "ex-4", Latitude: 0, Longitude: 0, Metric: 50},
		// Epoch milliseconds may be any int64 (DESIGN §2.1).
		{ID: "ms-min", EventID: "ms-min", Timestamp: time.UnixMilli(math.MinInt64 + 1).UTC(), StudentID: "s-4", ExerciseID: "ex-4", Latitude: 0, Longitude: 0, Metric: 50},
		{ID: "ms-max", EventID: "ms-max", Timestamp: time.UnixMilli(math.MaxInt64).UTC(), StudentID: "s-4", ExerciseID: "ex-4", Latitude: 0, Longitude: 0, Metric: 50},
		{ID: "before-1970", EventID: "before-1970", Timestamp: time.UnixMilli(-86_400_001).UTC(), StudentID: "s-4", ExerciseID: "ex-4", Latitude: 0, Longitude: 0, Metric: 50},
		{ID: "ünïcode/é 1", EventID: "ünïcode/é 1", Timestamp: at(4), StudentID: "élève ü", ExerciseID: "exercice 1/2", Latitude: 10, Longitude: 20, Metric: 30},
	}
	a := archive{}
	a.put(t, s, special)
	a.put(t, s, gen("r", 60))

	mark := b.settledMark(t, s)
	if mark < empty {
		t.Errorf("ArrivalMark went back from %d to %d", empty, mark)
	}
	checkSet(t, "ResultsArrived(0, mark]", arrived(t, s, 0, mark), a.results())
	if got := arrived(t, s, mark, mark); len(got) != 0 {
		t.Errorf("ResultsArrived(mark, mark] returned %d results, want none", len(got))
	}

	stop := errors.New("stop here")
	calls := 0
	err := s.ResultsArrived(ctx, store.ArrivalRange{UpTo: mark}, func([]store.Result) error { calls++; return stop })
	if !errors.Is(err, stop) {
		t.Errorf("ResultsArrived with fn failing returned %v, want fn's error", err)
	}
	if calls == 0 {
		t.Error("ResultsArrived did not call fn")
	}
}

// testIncremental: marks taken between batches split the archive into
// intervals that hold each identity once, redeliveries never reappear in a
// later interval, and an interval never gains results after its mark.
func testIncremental(t *testing.T, b Backend) {
	s := b.open(t)
	first := archive{}
	first.put(t, s, gen("i", 40))
	mark1 := b.settledMark(t, s)
	checkSet(t, "ResultsArrived(0, mark1]", arrived(t, s, 0, mark1), first.results())

	all := first.clone()
	fresh := gen("j", 30)
	old := first.results()
	slices.SortFunc(old, func(x, y store.Result) int { return strings.Compare(x.ID, y.ID) })
	// New identities interleaved with redeliveries of old ones.
	var batch []store.Result
	for i, r := range fresh {
		batch = append(batch, r)
		if i < 10 {
			batch = append(batch, variant(old[i]))
		}
	}
	all.put(t, s, batch)
	all.put(t, s, variants(old[10:20]))
	mark2 := b.settledMark(t, s)
	if mark2 <= mark1 {
		t.Errorf("mark2 = %d after new results, not above mark1 = %d", mark2, mark1)
	}

	second := archiveOf(fresh)
	checkSet(t, "ResultsArrived(mark1, mark2]", arrived(t, s, mark1, mark2), second.results())
	checkSet(t, "ResultsArrived(0, mark1] after more arrived", arrived(t, s, 0, mark1), first.results())
	checkSet(t, "ResultsArrived(0, mark2]", arrived(t, s, 0, mark2), all.results())
	checkSet(t, "ResultsArrived(0, mark1] ∪ (mark1, mark2]",
		append(arrived(t, s, 0, mark1), arrived(t, s, mark1, mark2)...), all.results())

	// Only redeliveries: nothing new arrives.
	all.put(t, s, concat(variants(fresh), variants(old), fresh[:5]))
	mark3 := b.settledMark(t, s)
	if mark3 < mark2 {
		t.Errorf("ArrivalMark went back from %d to %d", mark2, mark3)
	}
	if got := arrived(t, s, mark2, mark3); len(got) != 0 {
		t.Errorf("ResultsArrived(mark2, mark3] after only redeliveries: %d results, want none: %v", len(got), ids(got))
	}
	checkSet(t, "ResultsArrived(0, mark3]", arrived(t, s, 0, mark3), all.results())
}

// testMarkWait: once MarkWait(t) says 0, the arrival mark covers every
// result archived before t (acu analytics run relies on it to count the
// whole archive), and waiting what it says gets there.
func testMarkWait(t *testing.T, b Backend) {
	ctx := t.Context()
	s := b.open(t)
	if w, err := s.MarkWait(ctx, time.Now().Add(-time.Hour)); err != nil || w != 0 {
		t.Errorf("MarkWait(an hour ago) = %s, %v on an empty store; want 0", w, err)
	}
	a := archive{}
	a.put(t, s, gen("w", 50))
	before := time.Now()
	deadline := before.Add(2 * time.Minute)
	for {
		w, err := s.MarkWait(ctx, before)
		if err != nil {
			t.Fatalf("MarkWait: %v", err)
		}
		if w == 0 {
			break
		}
		if w > time.Minute || time.Now().After(deadline) {
			t.Fatalf("MarkWait(%s) = %s at %s: the mark does not get there", before.Format(time.RFC3339Nano), w, time.Now().Format(time.RFC3339Nano))
		}
		time.Sleep(w) // what the store said the mark needs, then ask again
	}
	mark, err := s.ArrivalMark(ctx)
	if err != nil {
		t.Fatalf("ArrivalMark: %v", err)
	}
	checkSet(t, "ResultsArrived(0, mark] once MarkWait said 0", arrived(t, s, 0, mark), a.results())
}

// testSplitArrivals: the ranges cover the interval exactly, in order, and
// reading them all reads the interval, each identity once.
func testSplitArrivals(t *testing.T, b Backend) {
	ctx := t.Context()
	s := b.open(t)

	for _, m := range []int64{0, 1, 1000} {
		rs, err := s.SplitArrivals(ctx, m, m, 7)
		if err != nil {
			t.Fatalf("SplitArrivals(%d, %d, 7): %v", m, m, err)
		}
		if len(rs) != 0 {
			t.Errorf("SplitArrivals(%d, %d, 7) = %v, want no ranges", m, m, rs)
		}
	}

	all := archive{}
	all.put(t, s, gen("p", 30))
	all.put(t, s, gen("pp", 20))
	first := all.clone()
	mark1 := b.settledMark(t, s)
	more := gen("q", 23)
	all.put(t, s, concat(more, variants(gen("p", 5))))
	second := archiveOf(more)
	mark2 := b.settledMark(t, s)

	for _, iv := range []struct {
		name        string
		after, upTo int64
		want        archive
	}{
		{"(0, mark1]", 0, mark1, first},
		{"(mark1, mark2]", mark1, mark2, second},
		{"(0, mark2]", 0, mark2, all},
	} {
		for _, size := range []int64{1, 7, 1000} {
			what := fmt.Sprintf("SplitArrivals%s size %d", iv.name, size)
			ranges, err := s.SplitArrivals(ctx, iv.after, iv.upTo, size)
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			checkRanges(t, what, iv.after, iv.upTo, ranges)
			var got []store.Result
			for _, r := range ranges {
				got = append(got, arrivedRange(t, s, r)...)
			}
			checkSet(t, what+": results of the ranges", got, iv.want.results())
		}
		checkSet(t, "ResultsArrived"+iv.name+" in one range of every part",
			arrivedRange(t, s, store.ArrivalRange{After: iv.after, UpTo: iv.upTo}), iv.want.results())
	}
	if rs, err := s.SplitArrivals(ctx, mark2, mark2, 7); err != nil || len(rs) != 0 {
		t.Errorf("SplitArrivals(mark2, mark2, 7) = %v, %v; want no ranges", rs, err)
	}
}

// checkRanges checks that ranges are non-empty and that their intervals
// follow each other and tile (after, upTo] without gaps or overlaps, each
// interval either one range of every identity (Parts 0) or one range for
// each of its Parts parts.
func checkRanges(t *testing.T, what string, after, upTo int64, ranges []store.ArrivalRange) {
	t.Helper()
	if len(ranges) == 0 {
		t.Errorf("%s: no ranges for a non-empty interval (%d, %d]", what, after, upTo)
		return
	}
	next := after
	for i := 0; i < len(ranges); {
		r := ranges[i]
		if r.After >= r.UpTo || r.After < after || r.UpTo > upTo {
			t.Errorf("%s: range %d (%d, %d] is empty or outside (%d, %d]", what, i, r.After, r.UpTo, after, upTo)
		}
		if r.After != next {
			t.Errorf("%s: range %d starts after %d, want %d (ranges must follow each other without gap or overlap)", what, i, r.After, next)
		}
		next = r.UpTo
		n := max(r.Parts, 1)
		for p := range n {
			if i+p >= len(ranges) {
				t.Errorf("%s: interval (%d, %d] has %d of its %d parts", what, r.After, r.UpTo, p, n)
				return
			}
			q := ranges[i+p]
			if q.After != r.After || q.UpTo != r.UpTo || q.Parts != r.Parts || (r.Parts > 0 && q.Part != p) || (r.Parts == 0 && q.Part != 0) {
				t.Errorf("%s: range %d is %+v, want part %d of %d of (%d, %d]", what, i+p, q, p, r.Parts, r.After, r.UpTo)
			}
		}
		i += n
	}
	if next != upTo {
		t.Errorf("%s: the ranges end at %d, want %d", what, next, upTo)
	}
}

// testExerciseResults: an exercise's results up to a mark, in bounded pages,
// without those that arrived after it.
func testExerciseResults(t *testing.T, b Backend) {
	ctx := t.Context()
	s := b.open(t)
	const ex = "ex-1"

	if got := exerciseResults(t, s, ex, b.settledMark(t, s), 3); len(got) != 0 {
		t.Errorf("ExerciseResults on an empty store: %d results", len(got))
	}

	first := archive{}
	first.put(t, s, gen("e", 60)) // 20 on ex-1
	mark1 := b.settledMark(t, s)
	for _, size := range []int{1, 3, 1000} {
		checkSet(t, fmt.Sprintf("ExerciseResults(%q, mark1, %d)", ex, size),
			exerciseResults(t, s, ex, mark1, size), first.exercise(ex))
	}
	if got := exerciseResults(t, s, ex, 0, 3); len(got) != 0 {
		t.Errorf("ExerciseResults(%q, upTo 0): %d results, want none", ex, len(got))
	}

	all := first.clone()
	all.put(t, s, concat(gen("f", 30), variants(first.exercise(ex))))
	mark2 := b.settledMark(t, s)
	checkSet(t, "ExerciseResults(mark1) after more arrived", exerciseResults(t, s, ex, mark1, 3), first.exercise(ex))
	checkSet(t, "ExerciseResults(mark2)", exerciseResults(t, s, ex, mark2, 3), all.exercise(ex))
	if len(all.exercise(ex)) <= len(first.exercise(ex)) {
		t.Fatal("storetest: the second batch adds nothing to the exercise")
	}

	calls := 0
	if err := s.ExerciseResults(ctx, "no-such-exercise", mark2, 3, func([]store.Result) error {
		calls++
		return nil
	}); err != nil {
		t.Errorf("ExerciseResults(unknown exercise): %v", err)
	}
	if calls != 0 {
		t.Errorf("ExerciseResults(unknown exercise) called fn %d times, want 0", calls)
	}

	stop := errors.New("stop here")
	err := s.ExerciseResults(ctx, ex, mark2, 3, func([]store.Result) error { return stop })
	if !errors.Is(err, stop) {
		t.Errorf("ExerciseResults with fn failing returned %v, want fn's error", err)
	}
}

// testFollowUpResults: the window (After, Until] on timestamps, one student
// on one exercise, ordered by timestamp then identity, first write winning.
func testFollowUpResults(t *testing.T, b Backend) {
	ctx := t.Context()
	s := b.open(t)
	r := func(id, student, exercise string, ms int) store.Result {
		return mk(id, student, exercise, ms, 50)
	}
	all := []store.Result{
		r("at-after", "s-1", "ex-1", 0),
		r("just-after", "s-1", "ex-1", 1),
		r("mid-b", "s-1", "ex-1", 500),
		r("mid-a", "s-1", "ex-1", 500), // same timestamp: ordered by ID
		r("at-until", "s-1", "ex-1", 1000),
		r("past-until", "s-1", "ex-1", 1001),
		r("before", "s-1", "ex-1", -1),
		r("other-student", "s-2", "ex-1", 500),
		r("other-exercise", "s-1", "ex-2", 500),
	}
	putResults(t, s, all, len(all))
	// Redeliveries with other content change nothing.
	putResults(t, s, []store.Result{variant(all[2]), variant(all[3]), variant(all[4])}, 0)
	byID := map[string]store.Result{}
	for _, r := range all {
		byID[r.ID] = r
	}

	tests := []struct {
		name string
		w    store.FollowUpWindow
		want []string
	}{
		{"exclusive after, inclusive until",
			store.FollowUpWindow{StudentID: "s-1", ExerciseID: "ex-1", After: at(0), Until: at(1000)},
			[]string{"just-after", "mid-a", "mid-b", "at-until"}},
		{"sub-millisecond bounds",
			store.FollowUpWindow{StudentID: "s-1", ExerciseID: "ex-1", After: at(0).Add(time.Microsecond), Until: at(1000).Add(999 * time.Microsecond)},
			[]string{"just-after", "mid-a", "mid-b", "at-until"}},
		{"after just below a millisecond keeps it",
			store.FollowUpWindow{StudentID: "s-1", ExerciseID: "ex-1", After: at(1).Add(-time.Microsecond), Until: at(1)},
			[]string{"just-after"}},
		{"bounds in another zone",
			store.FollowUpWindow{StudentID: "s-1", ExerciseID: "ex-1", After: at(999).In(time.FixedZone("X", -7*3600)), Until: at(5000)},
			[]string{"at-until", "past-until"}},
		{"everything",
			store.FollowUpWindow{StudentID: "s-1", ExerciseID: "ex-1", After: at(-10), Until: at(2000)},
			[]string{"before", "at-after", "just-after", "mid-a", "mid-b", "at-until", "past-until"}},
		{"other student",
			store.FollowUpWindow{StudentID: "s-2", ExerciseID: "ex-1", After: at(-10), Until: at(2000)},
			[]string{"other-student"}},
		{"other exercise",
			store.FollowUpWindow{StudentID: "s-1", ExerciseID: "ex-2", After: at(-10), Until: at(2000)},
			[]string{"other-exercise"}},
		{"empty window",
			store.FollowUpWindow{StudentID: "s-1", ExerciseID: "ex-1", After: at(500), Until: at(500)},
			nil},
		{"window between results",
			store.FollowUpWindow{StudentID: "s-1", ExerciseID: "ex-1", After: at(2), Until: at(499)},
			nil},
		{"unknown student",
			store.FollowUpWindow{StudentID: "nobody", ExerciseID: "ex-1", After: at(-10), Until: at(2000)},
			nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.FollowUpResults(ctx, tt.w)
			if err != nil {
				t.Fatalf("FollowUpResults(%+v): %v", tt.w, err)
			}
			var want []store.Result
			for _, id := range tt.want {
				want = append(want, stored(byID[id]))
			}
			checkList(t, "FollowUpResults", got, want)
		})
	}
}

// diffDeployment describes how got differs from want ("" if it does not).
// Times must be the same instant in UTC, or both zero.
func diffDeployment(got, want store.Deployment) string {
	var d []string
	field := func(name string, g, w any) {
		if g != w {
			d = append(d, fmt.Sprintf("%s %v, want %v", name, g, w))
		}
	}
	tm := func(name string, g, w time.Time) {
		if w.IsZero() {
			if !g.IsZero() {
				d = append(d, fmt.Sprintf("%s %v, want the zero time", name, g))
			}
			return
		}
		if !g.Equal(w) || g.Location() != time.UTC {
			d = append(d, fmt.Sprintf("%s %v, want %v", name, g, w))
		}
	}
	field("WorkflowID", got.WorkflowID, want.WorkflowID)
	field("EventID", got.EventID, want.EventID)
	field("StudentID", got.StudentID, want.StudentID)
	field("ExerciseID", got.ExerciseID, want.ExerciseID)
	field("Metric", got.Metric, want.Metric)
	field("Threshold", got.Threshold, want.Threshold)
	field("Latitude", got.Latitude, want.Latitude)
	field("Longitude", got.Longitude, want.Longitude)
	tm("FailedAt", got.FailedAt, want.FailedAt)
	field("Status", got.Status, want.Status)
	tm("DispatchedAt", got.DispatchedAt, want.DispatchedAt)
	tm("FollowUpAt", got.FollowUpAt, want.FollowUpAt)
	field("FollowUpResults", got.FollowUpResults, want.FollowUpResults)
	tm("UpdatedAt", got.UpdatedAt, want.UpdatedAt)
	return strings.Join(d, "; ")
}

// storedDeployment is d as a store returns it: times to the millisecond,
// in UTC, zero times zero.
func storedDeployment(d store.Deployment) store.Deployment {
	d.FailedAt = msUTC(d.FailedAt)
	d.DispatchedAt = msUTC(d.DispatchedAt)
	d.FollowUpAt = msUTC(d.FollowUpAt)
	d.UpdatedAt = msUTC(d.UpdatedAt)
	return d
}

// testDeployments: round trip of every field, the latest write winning,
// unknown workflows, and the full list.
func testDeployments(t *testing.T, b Backend) {
	ctx := t.Context()
	s := b.open(t)

	if ds, err := s.Deployments(ctx); err != nil || len(ds) != 0 {
		t.Errorf("Deployments() of an empty store = %v, %v; want none", ds, err)
	}
	if _, ok, err := s.GetDeployment(ctx, "patrol-none"); ok || err != nil {
		t.Errorf("GetDeployment(unknown) of an empty store = %v, %v; want false, nil", ok, err)
	}

	full := store.Deployment{
		WorkflowID: "patrol-b", EventID: "b", StudentID: "s-1", ExerciseID: "ex-1",
		Metric: 12.5, Threshold: 40, Latitude: 48.85, Longitude: 2.35,
		FailedAt: t0, Status: store.StatusDispatched,
		// Sub-millisecond, another zone: read back to the ms, in UTC.
		DispatchedAt: t0.Add(2*time.Second + 123456*time.Nanosecond).In(time.FixedZone("X", 7200)),
		FollowUpAt:   t0.Add(time.Hour), FollowUpResults: 3,
		UpdatedAt: t0.Add(time.Hour + time.Millisecond),
	}
	pending := store.Deployment{ // zero DispatchedAt and FollowUpAt
		WorkflowID: "patrol-a", EventID: "a", StudentID: "s-2", ExerciseID: "ex-2",
		Metric: 1, Threshold: 40, FailedAt: t0, Status: store.StatusNotifyRejected, UpdatedAt: t0,
	}
	// The Unix epoch is a time like any other, not the zero time.
	epoch := store.Deployment{WorkflowID: "patrol-c", FailedAt: time.UnixMilli(0).UTC(), Status: store.StatusNoAttempt}

	check := func(what string, want store.Deployment) {
		t.Helper()
		got, ok, err := s.GetDeployment(ctx, want.WorkflowID)
		if err != nil || !ok {
			t.Fatalf("%s: GetDeployment(%q) = %v, %v; want true, nil", what, want.WorkflowID, ok, err)
		}
		if d := diffDeployment(got, storedDeployment(want)); d != "" {
			t.Errorf("%s: GetDeployment(%q): %s", what, want.WorkflowID, d)
		}
	}
	for _, d := range []store.Deployment{full, pending, epoch} {
		if err := s.PutDeployment(ctx, d); err != nil {
			t.Fatalf("PutDeployment(%q): %v", d.WorkflowID, err)
		}
	}
	for _, d := range []store.Deployment{full, pending, epoch} {
		check("after the first write", d)
	}
	// Which of a batch's deployments exist, in one call: more identifiers
	// than one query's chunk, duplicates, none at all.
	lookup := []string{"patrol-none", "patrol-b", "patrol-c", "patrol-b"}
	for i := range 1200 {
		lookup = append(lookup, fmt.Sprintf("patrol-absent-%d", i))
	}
	lookup = append(lookup, "patrol-a")
	got, err := s.Deployed(ctx, lookup)
	if err != nil {
		t.Fatalf("Deployed: %v", err)
	}
	if want := map[string]bool{"patrol-a": true, "patrol-b": true, "patrol-c": true}; !maps.Equal(got, want) {
		t.Errorf("Deployed(%d identifiers) = %v, want %v", len(lookup), got, want)
	}
	if got, err := s.Deployed(ctx, nil); err != nil || len(got) != 0 {
		t.Errorf("Deployed(none) = %v, %v; want none", got, err)
	}

	// The latest write wins, every field of it, including times going back
	// to zero.
	following := full
	following.Status, following.UpdatedAt = store.StatusFollowingUp, t0.Add(90*time.Minute)
	replaced := store.Deployment{
		WorkflowID: "patrol-b", EventID: "b2", StudentID: "s-9", ExerciseID: "ex-9",
		Metric: 99, Threshold: 1, Latitude: -1, Longitude: -2,
		FailedAt: t0.Add(time.Minute), Status: store.StatusStillFailing, FollowUpResults: 0,
		UpdatedAt: t0.Add(2 * time.Hour),
	}
	for _, d := range []store.Deployment{following, replaced} {
		if err := s.PutDeployment(ctx, d); err != nil {
			t.Fatalf("PutDeployment(%q): %v", d.WorkflowID, err)
		}
	}
	check("after an overwrite", replaced)
	check("after another deployment's overwrite", pending)

	if _, ok, err := s.GetDeployment(ctx, "patrol-none"); ok || err != nil {
		t.Errorf("GetDeployment(unknown) = %v, %v; want false, nil", ok, err)
	}

	ds, err := s.Deployments(ctx)
	if err != nil {
		t.Fatalf("Deployments: %v", err)
	}
	slices.SortFunc(ds, func(x, y store.Deployment) int { return strings.Compare(x.WorkflowID, y.WorkflowID) })
	want := []store.Deployment{pending, replaced, epoch} // by WorkflowID
	if len(ds) != len(want) {
		var got []string
		for _, d := range ds {
			got = append(got, d.WorkflowID)
		}
		t.Fatalf("Deployments() = %v, want %d deployments", got, len(want))
	}
	for i := range want {
		if d := diffDeployment(ds[i], storedDeployment(want[i])); d != "" {
			t.Errorf("Deployments()[%q]: %s", want[i].WorkflowID, d)
		}
	}
}

// testAnalytics: the analytics state and reports, and the conditional save
// that lets one run at a time move the watermark on.
// testAnalyticsRace: runs that planned from the same watermark save at
// once (a manual run beside the scheduled one, on several workers): exactly
// one wins, the others get ErrStale, and the stored state is the winner's.
func testAnalyticsRace(t *testing.T, b Backend) {
	ctx := t.Context()
	s := b.open(t)
	for round, from := range []int64{0, 100} {
		const runners = 6
		errs := make([]error, runners)
		var wg sync.WaitGroup
		for i := range runners {
			wg.Go(func() {
				run := fmt.Sprintf("race-%d-%d", round, i)
				errs[i] = s.SaveAnalytics(ctx, run, from, []byte(run), 100*int64(round+1), []byte("report of "+run), t0)
			})
		}
		wg.Wait()
		winner := -1
		for i, err := range errs {
			switch {
			case err == nil && winner >= 0:
				t.Errorf("round %d: runs %d and %d both saved from %d", round, winner, i, from)
			case err == nil:
				winner = i
			case !errors.Is(err, store.ErrStale):
				t.Errorf("round %d: run %d: %v, want ErrStale", round, i, err)
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: no run saved from %d", round, from)
		}
		want := fmt.Sprintf("race-%d-%d", round, winner)
		if st, ok, err := s.AnalyticsState(ctx); err != nil || !ok || string(st) != want {
			t.Errorf("round %d: state %q, %v, %v; want the winner's %q", round, st, ok, err, want)
		}
		if r, ok, err := s.LatestReport(ctx); err != nil || !ok || string(r) != "report of "+want {
			t.Errorf("round %d: latest report %q, %v, %v; want the winner's", round, r, ok, err)
		}
		for i := range runners {
			run := fmt.Sprintf("race-%d-%d", round, i)
			_, ok, err := s.RunReport(ctx, run)
			if err != nil || ok != (i == winner) {
				t.Errorf("round %d: RunReport(%s) = %v, %v; want a report only for the winner", round, run, ok, err)
			}
		}
	}
}

func testAnalytics(t *testing.T, b Backend) {
	ctx := t.Context()
	s := b.open(t)
	state := func(run string, wm int) []byte {
		return fmt.Appendf(nil, `{"run_id":%q,"state":{"watermark":%d,"exercises":{}}}`, run, wm)
	}
	rep := func(run string) []byte {
		return fmt.Appendf(nil, `{"run_id":%q,"exercises":[{"exercise_id":"ex-1","count":3}]}`, run)
	}
	minute := func(i int) time.Time { return t0.Add(time.Duration(i) * time.Minute) }

	// expect checks the stored state and the latest report (nil: none).
	expect := func(what string, wantState, wantLatest []byte) {
		t.Helper()
		st, ok, err := s.AnalyticsState(ctx)
		switch {
		case err != nil:
			t.Errorf("%s: AnalyticsState: %v", what, err)
		case wantState == nil && ok:
			t.Errorf("%s: AnalyticsState = %s, want none", what, st)
		case wantState != nil && (!ok || !bytes.Equal(st, wantState)):
			t.Errorf("%s: AnalyticsState = %s, %v; want %s", what, st, ok, wantState)
		}
		r, ok, err := s.LatestReport(ctx)
		switch {
		case err != nil:
			t.Errorf("%s: LatestReport: %v", what, err)
		case wantLatest == nil && ok:
			t.Errorf("%s: LatestReport = %s, want none", what, r)
		case wantLatest != nil && (!ok || !bytes.Equal(r, wantLatest)):
			t.Errorf("%s: LatestReport = %s, %v; want %s", what, r, ok, wantLatest)
		}
	}
	runReport := func(what, run string, want []byte) {
		t.Helper()
		r, ok, err := s.RunReport(ctx, run)
		switch {
		case err != nil:
			t.Errorf("%s: RunReport(%q): %v", what, run, err)
		case want == nil && ok:
			t.Errorf("%s: RunReport(%q) = %s, want none", what, run, r)
		case want != nil && (!ok || !bytes.Equal(r, want)):
			t.Errorf("%s: RunReport(%q) = %s, %v; want %s", what, run, r, ok, want)
		}
	}
	save := func(run string, from int64, st []byte, wm int64, report []byte, when time.Time) error {
		t.Helper()
		return s.SaveAnalytics(ctx, run, from, st, wm, report, when)
	}
	mustSave := func(what, run string, from int64, st []byte, wm int64, report []byte, when time.Time) {
		t.Helper()
		if err := save(run, from, st, wm, report, when); err != nil {
			t.Fatalf("%s: SaveAnalytics(%q, from %d): %v", what, run, from, err)
		}
	}
	mustBeStale := func(what, run string, from int64, st []byte, wm int64, report []byte, when time.Time) {
		t.Helper()
		err := save(run, from, st, wm, report, when)
		if !errors.Is(err, store.ErrStale) {
			t.Errorf("%s: SaveAnalytics(%q, from %d) = %v, want an error wrapping store.ErrStale", what, run, from, err)
		}
	}

	expect("empty store", nil, nil)
	runReport("empty store", "run-1", nil)

	// With no state, the stored watermark is 0.
	mustBeStale("no state, from 5", "run-0", 5, state("run-0", 9), 9, rep("run-0"), minute(0))
	expect("after a stale save on an empty store", nil, nil)
	runReport("after a stale save on an empty store", "run-0", nil)

	mustSave("first save", "run-1", 0, state("run-1", 10), 10, rep("run-1"), minute(1))
	expect("after run-1", state("run-1", 10), rep("run-1"))
	runReport("after run-1", "run-1", rep("run-1"))

	// Another run that read the same state saves second: stale.
	mustBeStale("concurrent run", "run-2", 0, state("run-2", 15), 15, rep("run-2"), minute(2))
	expect("after run-2's stale save", state("run-1", 10), rep("run-1"))
	runReport("after run-2's stale save", "run-2", nil)

	// A retry of the run that saved last succeeds and changes nothing,
	// whatever it carries.
	mustSave("run-1 retried", "run-1", 0, state("run-1", 10), 10, rep("run-1"), minute(1))
	mustSave("run-1 retried with other content", "run-1", 0, state("run-1-other", 11), 11, rep("run-1-other"), minute(3))
	expect("after run-1's retries", state("run-1", 10), rep("run-1"))
	runReport("after run-1's retries", "run-1", rep("run-1"))

	mustSave("run-2 from run-1's watermark", "run-2", 10, state("run-2", 20), 20, rep("run-2"), minute(4))
	expect("after run-2", state("run-2", 20), rep("run-2"))
	runReport("after run-2", "run-2", rep("run-2"))
	runReport("after run-2", "run-1", rep("run-1"))

	// Once another run saved, late saves of older runs are stale.
	mustBeStale("run-1 retried after run-2", "run-1", 0, state("run-1", 10), 10, rep("run-1"), minute(5))
	mustBeStale("run-3 from an old watermark", "run-3", 10, state("run-3", 30), 30, rep("run-3"), minute(5))
	expect("after stale saves", state("run-2", 20), rep("run-2"))
	runReport("after stale saves", "run-1", rep("run-1"))
	runReport("after stale saves", "run-3", nil)

	mustSave("run-3 from run-2's watermark", "run-3", 20, state("run-3", 30), 30, rep("run-3"), minute(6))
	expect("after run-3", state("run-3", 30), rep("run-3"))
	for _, run := range []string{"run-1", "run-2", "run-3"} {
		runReport("after run-3", run, rep(run))
	}
	runReport("after run-3", "run-unknown", nil)
}

// testClose: a store that was used closes without error.
func testClose(t *testing.T, b Backend) {
	s := b.Open(t)
	if s == nil {
		t.Fatal("Backend.Open returned a nil store")
	}
	closed := false
	t.Cleanup(func() {
		if !closed { // the test stopped before its Close
			_ = s.Close()
		}
	})
	putResults(t, s, gen("c", 5), 5)
	if err := s.PutDeployment(t.Context(), store.Deployment{WorkflowID: "patrol-c", Status: store.StatusDispatched}); err != nil {
		t.Errorf("PutDeployment: %v", err)
	}
	if got := arrived(t, s, 0, b.settledMark(t, s)); len(got) != 5 {
		t.Errorf("ResultsArrived: %d results, want 5", len(got))
	}
	closed = true
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}
