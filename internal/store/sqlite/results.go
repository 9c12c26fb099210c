package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/acu-patrol/acu/internal/event"
	"github.com/acu-patrol/acu/internal/store"
)

// insertChunks are the row counts of the prepared multi-row INSERTs, largest
// first. A batch is written with as many statements of the largest size as
// fit, then the remainder with the smaller ones (at most 3 of each). Multi-row
// statements cut the allocations (by about 40%) and the per-execution cost of
// database/sql and the driver, but must stay small: modernc.org/sqlite binds
// positional parameters in time quadratic in their number (it searches the
// argument list for each one), and statements of 64 rows or more are already
// slower than single-row ones. The rest of the cost is SQLite's own: four
// B-tree inserts per row (the table and its three indexes), most of them at
// random places for random identities.
var insertChunks = []int{16, 4, 1}

// insertCols is the number of bound parameters per inserted row.
const insertCols = 9

// insertResultsSQL inserts n results; a result whose identity is already
// archived (or appears earlier in the same statement) is skipped, so the
// first write wins and RowsAffected counts the new rows.
func insertResultsSQL(n int) string {
	var b strings.Builder
	b.WriteString(`INSERT INTO results
		(id, event_id, ts_ms, student_id, exercise_id, latitude, longitude, metric, archived_at_ms)
		VALUES `)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("(?,?,?,?,?,?,?,?,?)")
	}
	b.WriteString(" ON CONFLICT (id) DO NOTHING")
	return b.String()
}

const resultCols = `id, event_id, ts_ms, student_id, exercise_id, latitude, longitude, metric`

const (
	getResultSQL    = `SELECT ` + resultCols + ` FROM results WHERE id = ?`
	countResultsSQL = `SELECT count(*) FROM results`
	followUpSQL     = `SELECT ` + resultCols + ` FROM results
		WHERE student_id = ? AND exercise_id = ? AND ts_ms > ? AND ts_ms <= ?
		ORDER BY ts_ms, id`
)

// PutResults archives results idempotently by identity (Result.ID): the
// first write of an identity wins and later ones, in the same batch or
// another, are no-ops. The batch is written in one transaction: all of it or
// none of it. It returns how many results were new.
//
// Timestamps are stored in Unix milliseconds (event timestamps have no finer
// precision). A result with an empty ID is refused, and so is the batch.
func (s *Store) PutResults(ctx context.Context, rs []event.Result) (inserted int, err error) {
	if len(rs) == 0 {
		return 0, nil
	}
	for i := range rs {
		if rs[i].ID == "" {
			return 0, fmt.Errorf("archiving results: result %d has no identity", i)
		}
	}
	inserted, err = s.putResults(ctx, rs)
	if err != nil {
		return 0, fmt.Errorf("archiving results: %w", err)
	}
	return inserted, nil
}

func (s *Store) putResults(ctx context.Context, rs []event.Result) (inserted int, err error) {
	archivedAt := time.Now().UnixMilli()
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit

	args := make([]any, 0, insertCols*min(len(rs), insertChunks[0]))
	for i, size := range insertChunks {
		if len(rs) < size {
			continue
		}
		st := tx.StmtContext(ctx, s.insert[i]) // closed with the transaction
		for len(rs) >= size {
			args = args[:0]
			for j := range rs[:size] {
				r := &rs[j]
				args = append(args, r.ID, r.EventID, r.Timestamp.UnixMilli(), r.StudentID,
					r.ExerciseID, r.Latitude, r.Longitude, r.Metric, archivedAt)
			}
			res, err := st.ExecContext(ctx, args...)
			if err != nil {
				return 0, err
			}
			n, err := res.RowsAffected()
			if err != nil {
				return 0, err
			}
			inserted += int(n)
			rs = rs[size:]
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, err
	}
	return inserted, nil
}

// GetResult returns the archived result with identity id, and false if there
// is none. Its timestamp is in UTC.
func (s *Store) GetResult(ctx context.Context, id string) (event.Result, bool, error) {
	r, err := scanResult(s.getResult.QueryRowContext(ctx, id))
	if errors.Is(err, sql.ErrNoRows) {
		return event.Result{}, false, nil
	}
	if err != nil {
		return event.Result{}, false, fmt.Errorf("getting result %q: %w", id, err)
	}
	return r, true, nil
}

// CountResults returns the number of archived results. It scans an index:
// it is meant for tests and occasional monitoring, not for a hot path.
func (s *Store) CountResults(ctx context.Context) (int64, error) {
	var n int64
	if err := s.countResults.QueryRowContext(ctx).Scan(&n); err != nil {
		return 0, fmt.Errorf("counting results: %w", err)
	}
	return n, nil
}

// FollowUpResults returns the student's archived results on the exercise
// with a timestamp in (w.After, w.Until], ordered by timestamp then identity.
// Window bounds finer than a millisecond are compared correctly against the
// millisecond timestamps of results.
func (s *Store) FollowUpResults(ctx context.Context, w store.FollowUpWindow) ([]event.Result, error) {
	rs, err := s.followUpResults(ctx, w)
	if err != nil {
		return nil, fmt.Errorf("reading follow-up results of student %q on exercise %q: %w",
			w.StudentID, w.ExerciseID, err)
	}
	return rs, nil
}

func (s *Store) followUpResults(ctx context.Context, w store.FollowUpWindow) ([]event.Result, error) {
	// UnixMilli rounds down, which keeps both bounds exact for ms
	// timestamps: ts > After ⇔ ts > floor(After), ts <= Until ⇔ ts <= floor(Until).
	rows, err := s.followUp.QueryContext(ctx, w.StudentID, w.ExerciseID, w.After.UnixMilli(), w.Until.UnixMilli())
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var rs []event.Result
	for rows.Next() {
		r, err := scanResult(rows)
		if err != nil {
			return nil, err
		}
		rs = append(rs, r)
	}
	return rs, rows.Err()
}

type scanner interface{ Scan(dest ...any) error }

func scanResult(sc scanner) (event.Result, error) {
	var r event.Result
	var ts int64
	err := sc.Scan(&r.ID, &r.EventID, &ts, &r.StudentID, &r.ExerciseID, &r.Latitude, &r.Longitude, &r.Metric)
	if err != nil {
		return event.Result{}, err
	}
	r.Timestamp = time.UnixMilli(ts).UTC()
	return r, nil
}
