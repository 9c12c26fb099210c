package cassandra

import (
	"cmp"
	"context"
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gocql/gocql"
	"golang.org/x/sync/errgroup"

	"github.com/acu-patrol/acu/internal/event"
	"github.com/acu-patrol/acu/internal/store"
)

const (
	// shards per arrival minute in results_by_arrival.
	shards = 8
	// minuteUS is a minute in microseconds (arrival positions).
	minuteUS = int64(time.Minute / time.Microsecond)
	// minutesPerBucket partitions arrival_minutes by 30 days.
	minutesPerBucket = 30 * 24 * 60
	// dayMS is a day in milliseconds (results_by_exercise.day).
	dayMS = int64(24 * time.Hour / time.Millisecond)
	// invertedBase minus the arrival is a result's cell timestamp, so that
	// the earliest arrival has the highest timestamp and wins. It is far
	// above any real clock (year ~38,000 in microseconds); nothing else
	// writes these tables, and nothing deletes from them without a
	// timestamp above it (retention should use TTLs).
	invertedBase = int64(1) << 60
	// inFlight bounds the concurrent requests of one call.
	inFlight = 64
	// batchRows bounds the rows of one single-partition batch.
	batchRows = 100
)

func shardOf(id string) int8 {
	h := fnv.New32a()
	h.Write([]byte(id))
	return int8(h.Sum32() % shards)
}

// idBuckets is the number of results_by_id partitions (fixed by the schema).
const idBuckets = 1024

// bucketOf is an identity's results_by_id partition.
func bucketOf(id string) int16 {
	h := fnv.New64a()
	h.Write([]byte(id))
	return int16(h.Sum64() % idBuckets)
}

// canon is an identity's canonical attempt, as results_by_id holds it.
type canon struct {
	exercise, student string
	ts                int64 // Unix ms
	arrival           int64
}

// agrees tells whether a row with this content key is the canonical one.
func (c canon) agrees(exercise, student string, ts time.Time) bool {
	return c.exercise == exercise && c.student == student && c.ts == ts.UnixMilli()
}

// fromMSUTC is a stored result timestamp as a time.
func fromMSUTC(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

// canonicals looks up the canonical attempts of ids (missing: not yet
// complete), with one IN query per bucket and at most batchRows ids.
func (s *Store) canonicals(ctx context.Context, ids []string) (map[string]canon, error) {
	byBucket := map[int16][]string{}
	for _, id := range ids {
		b := bucketOf(id)
		byBucket[b] = append(byBucket[b], id)
	}
	out := make(map[string]canon, len(ids))
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(inFlight)
	for b, bids := range byBucket {
		slices.Sort(bids)
		bids = slices.Compact(bids)
		for chunk := range slices.Chunk(bids, batchRows) {
			g.Go(func() error {
				iter := s.session.Query(`SELECT id, exercise_id, student_id, ts, arrival FROM results_by_id WHERE bucket = ? AND id IN ?`,
					b, chunk).WithContext(gctx).Iter()
				var id string
				var c canon
				found := make(map[string]canon, len(chunk))
				for iter.Scan(&id, &c.exercise, &c.student, &c.ts, &c.arrival) {
					found[id] = c
				}
				if err := iter.Close(); err != nil {
					return fmt.Errorf("reading canonical results: %w", err)
				}
				mu.Lock()
				maps.Copy(out, found)
				mu.Unlock()
				return nil
			})
		}
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return out, nil
}

// dayOf is the day of a result's timestamp, in days since the epoch.
func dayOf(ts time.Time) int32 { return dayOfMS(ts.UnixMilli()) }

// dayOfMS is the day of a timestamp in Unix ms.
func dayOfMS(ms int64) int32 {
	d := ms / dayMS
	if ms < 0 && ms%dayMS != 0 {
		d--
	}
	return int32(d)
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a < 0 && a%b != 0 {
		q--
	}
	return q
}

// PutResults archives a batch. It returns store.UnknownInserted: telling
// new identities from re-deliveries would cost a read per result.
//
// Each attempt (up to attemptRows results) gets one arrival stamp
// (microseconds, increasing in this process) and writes, in this order, each
// step only once the previous one is acknowledged:
//  1. the index rows: arrival_minutes and exercise_days (once per process
//     each, cached) and one results_by_arrival row per result;
//  2. the query rows, results_by_exercise and results_by_student;
//  3. the arbiter row, results_by_id.
//
// Steps 2 and 3 carry the cell timestamp invertedBase-arrival, so the
// earliest arrival of an identity wins in each table whatever order the
// writes land in. The identity's canonical attempt is the one results_by_id
// holds: the analytics count it at that attempt's results_by_arrival row and
// read it from that attempt's (exercise, day) partition, and every read keeps
// only rows that agree with it — so an identity is counted and returned
// once even when a redelivery carries another exercise or timestamp. Because
// of the order, a complete attempt's rows all exist; a redelivery or the
// retry of a half-written batch only adds rows that do not agree.
//
// The whole attempt must finish within half the settle margin after its
// stamp (its context deadline), so that the analytics, which read arrivals
// only once they are older than the margin, never read a minute that can
// still get a canonical row. A retry after a failure is a new attempt with a
// new stamp.
func (s *Store) PutResults(ctx context.Context, rs []event.Result) (int, error) {
	if len(rs) == 0 {
		return 0, nil
	}
	for i := range rs {
		if rs[i].ID == "" {
			return 0, fmt.Errorf("archiving results: result %d has no identity", i)
		}
	}
	if err := s.checkClock(ctx); err != nil {
		return 0, fmt.Errorf("archiving results: %w", err)
	}
	// The first occurrence of an identity in the batch wins, as in SQLite.
	seen := make(map[string]bool, len(rs))
	uniq := make([]*event.Result, 0, len(rs))
	for i := range rs {
		if !seen[rs[i].ID] {
			seen[rs[i].ID] = true
			uniq = append(uniq, &rs[i])
		}
	}
	// Chunks, each an attempt with its own stamp, keep every attempt well
	// inside its deadline however big the batch.
	for chunk := range slices.Chunk(uniq, attemptRows) {
		if err := s.attempt(ctx, chunk); err != nil {
			return 0, fmt.Errorf("archiving results: %w", err)
		}
	}
	return store.UnknownInserted, nil
}

// attemptRows bounds the results of one write attempt.
const attemptRows = 1000

// attempt writes rs with one arrival stamp, index rows first, and gives up
// at half the settle margin after the stamp.
func (s *Store) attempt(ctx context.Context, rs []*event.Result) error {
	arrival := s.arrival()
	deadline := time.UnixMicro(arrival).Add(s.cfg.Settle / 2)
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	if err := s.putIndex(ctx, rs, arrival); err != nil {
		return fmt.Errorf("index rows: %w", err)
	}
	if err := s.putQueryRows(ctx, rs, arrival); err != nil {
		return err
	}
	return s.exec(ctx, groupBy(rs, func(r *event.Result) string { return fmt.Sprint(bucketOf(r.ID)) }), invertedBase-arrival,
		insertByID, func(r *event.Result) []any {
			return []any{bucketOf(r.ID), r.ID, r.ExerciseID, r.StudentID, r.Timestamp.UnixMilli(), arrival}
		})
}

// group collects the rows of one partition.
type group struct {
	key  string
	rows []*event.Result
}

// groupBy groups rows by partition key, in first-seen order.
func groupBy(rs []*event.Result, key func(*event.Result) string) []group {
	idx := map[string]int{}
	var out []group
	for _, r := range rs {
		k := key(r)
		i, ok := idx[k]
		if !ok {
			i = len(out)
			idx[k] = i
			out = append(out, group{key: k})
		}
		out[i].rows = append(out[i].rows, r)
	}
	return out
}

// exec runs one statement per group (a single-partition unlogged batch when
// the group has several rows), at most inFlight at a time.
func (s *Store) exec(ctx context.Context, groups []group, ts int64, stmt string, args func(*event.Result) []any) error {
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(inFlight)
	for _, gr := range groups {
		for chunk := range slices.Chunk(gr.rows, batchRows) {
			g.Go(func() error {
				if len(chunk) == 1 {
					q := s.session.Query(stmt, args(chunk[0])...).WithContext(ctx).Idempotent(true)
					if ts != 0 {
						q = q.WithTimestamp(ts)
					}
					return q.Exec()
				}
				b := s.session.NewBatch(gocql.UnloggedBatch).WithContext(ctx)
				if ts != 0 {
					b = b.WithTimestamp(ts)
				}
				for _, r := range chunk {
					b.Entries = append(b.Entries, gocql.BatchEntry{Stmt: stmt, Args: args(r), Idempotent: true})
				}
				return s.session.ExecuteBatch(b)
			})
		}
	}
	return g.Wait()
}

const (
	insertArrivalMinute = `INSERT INTO arrival_minutes (bucket, minute) VALUES (?, ?)`
	insertExerciseDay   = `INSERT INTO exercise_days (exercise_id, day) VALUES (?, ?)`
	insertByArrival     = `INSERT INTO results_by_arrival (minute, shard, arrival, id, exercise_id, ts) VALUES (?, ?, ?, ?, ?, ?)`
	insertByExercise    = `INSERT INTO results_by_exercise (exercise_id, day, id, event_id, ts, student_id, latitude, longitude, metric, arrival)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	insertByStudent = `INSERT INTO results_by_student (student_id, exercise_id, ts, id, event_id, latitude, longitude, metric, arrival)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`
	insertByID = `INSERT INTO results_by_id (bucket, id, exercise_id, student_id, ts, arrival) VALUES (?, ?, ?, ?, ?, ?)`
)

func (s *Store) putIndex(ctx context.Context, rs []*event.Result, arrival int64) error {
	minute := floorDiv(arrival, minuteUS)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(inFlight)
	var written []string
	if k := fmt.Sprintf("m/%d", minute); !s.seen.has(k) {
		written = append(written, k)
		g.Go(func() error {
			return s.session.Query(insertArrivalMinute, int32(floorDiv(minute, minutesPerBucket)), minute).
				WithContext(gctx).Idempotent(true).Exec()
		})
	}
	for _, gr := range groupBy(rs, func(r *event.Result) string { return fmt.Sprintf("d/%d/%s", dayOf(r.Timestamp), r.ExerciseID) }) {
		if s.seen.has(gr.key) {
			continue
		}
		written = append(written, gr.key)
		r := gr.rows[0]
		g.Go(func() error {
			return s.session.Query(insertExerciseDay, r.ExerciseID, dayOf(r.Timestamp)).WithContext(gctx).Idempotent(true).Exec()
		})
	}
	byShard := groupBy(rs, func(r *event.Result) string { return string(rune('0' + shardOf(r.ID))) })
	g.Go(func() error {
		return s.exec(gctx, byShard, 0, insertByArrival, func(r *event.Result) []any {
			return []any{minute, shardOf(r.ID), arrival, r.ID, r.ExerciseID, r.Timestamp.UnixMilli()}
		})
	})
	if err := g.Wait(); err != nil {
		return err
	}
	for _, k := range written {
		s.seen.add(k)
	}
	return nil
}

func (s *Store) putQueryRows(ctx context.Context, rs []*event.Result, arrival int64) error {
	ts := invertedBase - arrival
	g, gctx := errgroup.WithContext(ctx)
	byExercise := groupBy(rs, func(r *event.Result) string { return fmt.Sprintf("%d/%s", dayOf(r.Timestamp), r.ExerciseID) })
	byStudent := groupBy(rs, func(r *event.Result) string { return r.StudentID + "\x00" + r.ExerciseID })
	g.Go(func() error {
		return s.exec(gctx, byExercise, ts, insertByExercise, func(r *event.Result) []any {
			return []any{r.ExerciseID, dayOf(r.Timestamp), r.ID, r.EventID, r.Timestamp.UnixMilli(), r.StudentID, r.Latitude, r.Longitude, r.Metric, arrival}
		})
	})
	g.Go(func() error {
		return s.exec(gctx, byStudent, ts, insertByStudent, func(r *event.Result) []any {
			return []any{r.StudentID, r.ExerciseID, r.Timestamp.UnixMilli(), r.ID, r.EventID, r.Latitude, r.Longitude, r.Metric, arrival}
		})
	})
	return g.Wait()
}

// FollowUpResults returns a student's results on one exercise with a
// timestamp in (After, Until], by timestamp then identity.
func (s *Store) FollowUpResults(ctx context.Context, w store.FollowUpWindow) ([]event.Result, error) {
	iter := s.session.Query(`SELECT ts, id, event_id, latitude, longitude, metric FROM results_by_student
		WHERE student_id = ? AND exercise_id = ? AND ts > ? AND ts <= ?`,
		w.StudentID, w.ExerciseID, w.After.UnixMilli(), w.Until.UnixMilli()).WithContext(ctx).PageSize(1000).Iter()
	var rows []event.Result
	r := event.Result{StudentID: w.StudentID, ExerciseID: w.ExerciseID}
	var ms int64
	for iter.Scan(&ms, &r.ID, &r.EventID, &r.Latitude, &r.Longitude, &r.Metric) {
		r.Timestamp = fromMSUTC(ms)
		rows = append(rows, r)
	}
	if err := iter.Close(); err != nil {
		return nil, fmt.Errorf("reading follow-up results of %s on %s: %w", w.StudentID, w.ExerciseID, err)
	}
	return s.keepCanonical(ctx, rows)
}

// keepCanonical keeps the rows that agree with their identity's canonical
// attempt (a redelivery with another timestamp left a row of its own).
func (s *Store) keepCanonical(ctx context.Context, rows []event.Result) ([]event.Result, error) {
	if len(rows) == 0 {
		return rows, nil
	}
	ids := make([]string, len(rows))
	for i := range rows {
		ids[i] = rows[i].ID
	}
	cs, err := s.canonicals(ctx, ids)
	if err != nil {
		return nil, err
	}
	out := rows[:0]
	for _, r := range rows {
		c, ok := cs[r.ID]
		if ok && c.agrees(r.ExerciseID, r.StudentID, r.Timestamp) {
			out = append(out, r)
		}
	}
	return out, nil
}

// ArrivalMark is now minus the settle margin, in Unix microseconds: every
// write stamped at or before it has finished or failed (PutResults gives up
// on an attempt after half the margin), so the analytics can read up to it.
func (s *Store) ArrivalMark(ctx context.Context) (int64, error) {
	if err := s.checkClock(ctx); err != nil {
		return 0, fmt.Errorf("arrival mark: %w", err)
	}
	return time.Now().Add(-s.cfg.Settle).UnixMicro(), nil
}

// MarkWait returns how long until ArrivalMark passes t, by this process's
// clock: a result whose attempt was acknowledged before t was stamped
// before it, up to the skew between the archiver's clock and this one
// (checkClock keeps each within a quarter of the margin of Cassandra's); a
// result that skew leaves out is in the next run.
func (s *Store) MarkWait(ctx context.Context, t time.Time) (time.Duration, error) {
	if err := s.checkClock(ctx); err != nil {
		return 0, fmt.Errorf("arrival mark: %w", err)
	}
	// The mark is now − settle, in whole microseconds.
	return max(0, time.Until(t.Add(s.cfg.Settle+time.Microsecond))), nil
}

// SplitArrivals returns, when a minute of (after, upTo] has arrivals, one
// range per shard of results_by_arrival, each over the whole interval (size
// is ignored: positions are times here). Every arrival of an identity is in
// its identity's shard, so the reader of a shard sees all of them, in
// arrival order: ResultsArrived places an identity by what it read earlier
// in the same range, which is what keeps an attempt that lands late (below)
// from being counted never or twice.
func (s *Store) SplitArrivals(ctx context.Context, after, upTo, _ int64) ([]store.ArrivalRange, error) {
	if upTo <= after {
		return nil, nil
	}
	minutes, err := s.arrivalMinutes(ctx, after, upTo)
	if err != nil {
		return nil, err
	}
	if len(minutes) == 0 {
		return nil, nil
	}
	out := make([]store.ArrivalRange, shards)
	for i := range out {
		out[i] = store.ArrivalRange{After: after, UpTo: upTo, Part: i, Parts: shards}
	}
	return out, nil
}

// arrivalMinutes lists the minutes with arrivals that overlap (after, upTo].
func (s *Store) arrivalMinutes(ctx context.Context, after, upTo int64) ([]int64, error) {
	first, last := floorDiv(after+1, minuteUS), floorDiv(upTo, minuteUS)
	var out []int64
	for b := floorDiv(first, minutesPerBucket); b <= floorDiv(last, minutesPerBucket); b++ {
		iter := s.session.Query(`SELECT minute FROM arrival_minutes WHERE bucket = ? AND minute >= ? AND minute <= ?`,
			int32(b), first, last).WithContext(ctx).PageSize(10_000).Iter()
		var m int64
		for iter.Scan(&m) {
			out = append(out, m)
		}
		if err := iter.Close(); err != nil {
			return nil, fmt.Errorf("listing arrival minutes: %w", err)
		}
	}
	return out, nil
}

// candidate is one arrival of an identity.
type candidate struct {
	arrival int64
	id      string
	day     int32
}

// placer decides where each identity of a range counts: at exactly one of
// its arrivals, its canonical attempt's (the earliest complete attempt's,
// results_by_id). An attempt can fail for its writer yet land later (a
// hint replayed, a replica that had it read at last): it then becomes the
// canonical one although an earlier read did not see it. So the placer
// decides each identity once per range, from the first of its arrivals it
// meets, and remembers a decision that points later in the range; and it
// refuses (InDoubtError) an identity whose canonical attempt is missing or
// after the range, which later reads could place anywhere.
type placer struct {
	upTo int64
	// legacy: a range of every shard cut by time (Parts 0, planned before
	// ranges were by shard): count an arrival iff it is the canonical one.
	legacy bool
	// later holds the identities whose canonical arrival is later in the
	// range than the arrival that decided them.
	later map[string]int64
}

// counts tells whether the identity counts at arrival c; ok says whether
// its canonical attempt was found.
func (p *placer) counts(c candidate, canon canon, ok bool) (bool, error) {
	if p.legacy {
		return ok && canon.arrival == c.arrival, nil
	}
	if at, decided := p.later[c.id]; decided {
		return at == c.arrival, nil
	}
	switch {
	case !ok:
		return false, &store.InDoubtError{ID: c.id, Arrival: c.arrival}
	case canon.arrival == c.arrival:
		return true, nil
	case canon.arrival < c.arrival:
		// Counted at that arrival: earlier in this range (it was canonical
		// when read, or a decision above points here), or in a range read
		// before this one.
		return false, nil
	case canon.arrival <= p.upTo:
		p.later[c.id] = canon.arrival
		return false, nil
	default:
		return false, &store.InDoubtError{ID: c.id, Arrival: c.arrival, Canonical: canon.arrival}
	}
}

// ResultsArrived calls fn, once per arrival minute, with the results of
// the range that count there (placer): each arrival row is checked against
// its identity's canonical row (one single-partition IN query per exercise
// and day), so an identity that arrived several times counts once.
func (s *Store) ResultsArrived(ctx context.Context, r store.ArrivalRange, fn func([]event.Result) error) error {
	minutes, err := s.arrivalMinutes(ctx, r.After, r.UpTo)
	if err != nil {
		return err
	}
	var ours []int8
	for sh := range int8(shards) {
		if r.Parts <= 0 || int(sh)%r.Parts == r.Part {
			ours = append(ours, sh)
		}
	}
	p := &placer{upTo: r.UpTo, legacy: r.Parts <= 0, later: map[string]int64{}}
	for _, minute := range minutes {
		page, err := s.minuteResults(ctx, minute, ours, r.After, r.UpTo, p)
		if err != nil {
			return err
		}
		if len(page) == 0 {
			continue
		}
		if err := fn(page); err != nil {
			return err
		}
	}
	return nil
}

// exerciseDay is a results_by_exercise partition.
type exerciseDay struct {
	exercise string
	day      int32
}

func (s *Store) minuteResults(ctx context.Context, minute int64, ours []int8, after, upTo int64, p *placer) ([]event.Result, error) {
	// The arrivals of the minute, by exercise and day.
	var mu sync.Mutex
	cands := map[exerciseDay][]candidate{}
	g, gctx := errgroup.WithContext(ctx)
	for _, shard := range ours {
		g.Go(func() error {
			iter := s.session.Query(`SELECT arrival, id, exercise_id, ts FROM results_by_arrival
				WHERE minute = ? AND shard = ? AND arrival > ? AND arrival <= ?`, minute, shard, after, upTo).
				WithContext(gctx).PageSize(5000).Iter()
			var c candidate
			var ex string
			var ts int64
			local := map[exerciseDay][]candidate{}
			for iter.Scan(&c.arrival, &c.id, &ex, &ts) {
				c.day = dayOfMS(ts)
				k := exerciseDay{ex, c.day}
				local[k] = append(local[k], c)
			}
			if err := iter.Close(); err != nil {
				return fmt.Errorf("reading arrivals of minute %d: %w", minute, err)
			}
			mu.Lock()
			for k, cs := range local {
				cands[k] = append(cands[k], cs...)
			}
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	var all []candidate
	for _, cs := range cands {
		all = append(all, cs...)
	}
	ids := make([]string, len(all))
	for i, c := range all {
		ids[i] = c.id
	}
	canons, err := s.canonicals(ctx, ids)
	if err != nil {
		return nil, err
	}
	// Place each arrival, in arrival order, so that an identity is decided
	// by its first arrival, as in the minutes before.
	slices.SortFunc(all, func(a, b candidate) int {
		return cmp.Or(cmp.Compare(a.arrival, b.arrival), strings.Compare(a.id, b.id))
	})
	counted := map[candidate]bool{}
	for _, c := range all {
		cn, ok := canons[c.id]
		yes, err := p.counts(c, cn, ok)
		if err != nil {
			return nil, err
		}
		counted[c] = yes
	}
	// Read the counted ones from their attempt's partition.
	var out []event.Result
	g, gctx = errgroup.WithContext(ctx)
	g.SetLimit(inFlight)
	for k, cs := range cands {
		cs = slices.DeleteFunc(cs, func(c candidate) bool { return !counted[c] })
		for chunk := range slices.Chunk(cs, batchRows) {
			g.Go(func() error {
				ids := make([]string, len(chunk))
				for i, c := range chunk {
					ids[i] = c.id
				}
				iter := s.session.Query(`SELECT id, event_id, ts, student_id, latitude, longitude, metric
					FROM results_by_exercise WHERE exercise_id = ? AND day = ? AND id IN ?`, k.exercise, k.day, ids).
					WithContext(gctx).Iter()
				r := event.Result{ExerciseID: k.exercise}
				found := make([]event.Result, 0, len(chunk))
				var ms int64
				for iter.Scan(&r.ID, &r.EventID, &ms, &r.StudentID, &r.Latitude, &r.Longitude, &r.Metric) {
					r.Timestamp = fromMSUTC(ms)
					found = append(found, r)
				}
				if err := iter.Close(); err != nil {
					return fmt.Errorf("reading results of %s on day %d: %w", k.exercise, k.day, err)
				}
				mu.Lock()
				out = append(out, found...)
				mu.Unlock()
				return nil
			})
		}
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return out, nil
}

// ExerciseResults calls fn with the exercise's results whose canonical
// attempt is in this exercise and day and arrived at or below upTo, day by
// day, in pages of at most pageSize (each page checked against results_by_id
// in one batch of lookups).
func (s *Store) ExerciseResults(ctx context.Context, exerciseID string, upTo int64, pageSize int, fn func([]event.Result) error) error {
	if pageSize <= 0 {
		pageSize = 10_000
	}
	iter := s.session.Query(`SELECT day FROM exercise_days WHERE exercise_id = ?`, exerciseID).WithContext(ctx).PageSize(10_000).Iter()
	var days []int32
	var d int32
	for iter.Scan(&d) {
		days = append(days, d)
	}
	if err := iter.Close(); err != nil {
		return fmt.Errorf("listing the days of %s: %w", exerciseID, err)
	}
	for _, day := range days {
		// The row of this partition counts if the canonical attempt is in
		// it; its content is the partition's (the earliest write there).
		keep := func(c canon) bool {
			return c.exercise == exerciseID && dayOfMS(c.ts) == day && c.arrival <= upTo
		}
		flush := func(rows []event.Result) error {
			ids := make([]string, len(rows))
			for i := range rows {
				ids[i] = rows[i].ID
			}
			cs, err := s.canonicals(ctx, ids)
			if err != nil {
				return err
			}
			page := slices.DeleteFunc(rows, func(r event.Result) bool {
				c, ok := cs[r.ID]
				return !ok || !keep(c)
			})
			if len(page) == 0 {
				return nil
			}
			return fn(page)
		}
		iter := s.session.Query(`SELECT id, event_id, ts, student_id, latitude, longitude, metric
			FROM results_by_exercise WHERE exercise_id = ? AND day = ?`, exerciseID, day).
			WithContext(ctx).PageSize(pageSize).Iter()
		rows := make([]event.Result, 0, pageSize)
		r := event.Result{ExerciseID: exerciseID}
		var ms int64
		for iter.Scan(&r.ID, &r.EventID, &ms, &r.StudentID, &r.Latitude, &r.Longitude, &r.Metric) {
			r.Timestamp = fromMSUTC(ms)
			rows = append(rows, r)
			if len(rows) == pageSize {
				if err := flush(rows); err != nil {
					_ = iter.Close()
					return err
				}
				rows = make([]event.Result, 0, pageSize)
			}
		}
		if err := iter.Close(); err != nil {
			return fmt.Errorf("reading results of %s on day %d: %w", exerciseID, day, err)
		}
		if len(rows) > 0 {
			if err := flush(rows); err != nil {
				return err
			}
		}
	}
	return nil
}
