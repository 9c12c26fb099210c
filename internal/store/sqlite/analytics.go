package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/acu-patrol/acu/internal/event"
	"github.com/acu-patrol/acu/internal/store"
)

// ArrivalMark returns the highest arrival sequence of the archive (0 when
// empty): every result with a lower or equal seq is visible to later reads.
func (s *Store) ArrivalMark(ctx context.Context) (int64, error) {
	var n sql.NullInt64
	if err := s.r.QueryRowContext(ctx, `SELECT max(seq) FROM results`).Scan(&n); err != nil {
		return 0, fmt.Errorf("reading the archive's sequence: %w", err)
	}
	return n.Int64, nil
}

// MarkWait is always 0: every result committed is at or below the mark.
func (s *Store) MarkWait(context.Context, time.Time) (time.Duration, error) { return 0, nil }

// SplitArrivals cuts (after, upTo] into ranges of size sequence numbers:
// sequence numbers count results.
func (s *Store) SplitArrivals(_ context.Context, after, upTo, size int64) ([]store.ArrivalRange, error) {
	return store.SplitEvery(after, upTo, size), nil
}

// resultsArrivedPage is the page size of ResultsArrived.
const resultsArrivedPage = 20_000

// ResultsArrived calls fn with the results with r.After < seq <= r.UpTo,
// in seq order, in pages. One row per identity: nothing is ever in doubt,
// and the parts are ignored (SplitArrivals makes none).
func (s *Store) ResultsArrived(ctx context.Context, r store.ArrivalRange, fn func([]event.Result) error) error {
	after, upTo := r.After, r.UpTo
	for after < upTo {
		next := min(after+resultsArrivedPage, upTo)
		page, err := s.resultsBySeq(ctx, after, next)
		if err != nil {
			return err
		}
		if len(page) > 0 {
			if err := fn(page); err != nil {
				return err
			}
		}
		after = next
	}
	return nil
}

func (s *Store) resultsBySeq(ctx context.Context, after, upTo int64) ([]event.Result, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+resultCols+` FROM results WHERE seq > ? AND seq <= ? ORDER BY seq`, after, upTo)
	if err != nil {
		return nil, fmt.Errorf("reading results %d..%d: %w", after+1, upTo, err)
	}
	defer rows.Close()
	out := make([]event.Result, 0, max(min(upTo-after, resultsArrivedPage), 0))
	for rows.Next() {
		r, err := scanResult(rows)
		if err != nil {
			return nil, fmt.Errorf("reading results %d..%d: %w", after+1, upTo, err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// ExerciseResults calls fn with the exercise's results with seq <= upTo,
// in pages of at most pageSize, in seq order.
func (s *Store) ExerciseResults(ctx context.Context, exerciseID string, upTo int64, pageSize int, fn func([]event.Result) error) error {
	if pageSize <= 0 {
		pageSize = 10_000
	}
	var after int64 = -1
	for {
		rows, err := s.r.QueryContext(ctx, `SELECT seq, `+resultCols+` FROM results
			WHERE exercise_id = ? AND seq > ? AND seq <= ? ORDER BY seq LIMIT ?`, exerciseID, after, upTo, pageSize)
		if err != nil {
			return fmt.Errorf("reading results of %s: %w", exerciseID, err)
		}
		page := make([]event.Result, 0, pageSize)
		for rows.Next() {
			var r event.Result
			var ts int64
			if err := rows.Scan(&after, &r.ID, &r.EventID, &ts, &r.StudentID, &r.ExerciseID, &r.Latitude, &r.Longitude, &r.Metric); err != nil {
				rows.Close()
				return fmt.Errorf("reading results of %s: %w", exerciseID, err)
			}
			r.Timestamp = time.UnixMilli(ts).UTC()
			page = append(page, r)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return fmt.Errorf("reading results of %s: %w", exerciseID, err)
		}
		if len(page) == 0 {
			return nil
		}
		if err := fn(page); err != nil {
			return err
		}
		if len(page) < pageSize {
			return nil
		}
	}
}

// AnalyticsState returns the stored analytics state, if any.
func (s *Store) AnalyticsState(ctx context.Context) ([]byte, bool, error) {
	var state string
	err := s.r.QueryRowContext(ctx, `SELECT state FROM analytics_state WHERE id = 1`).Scan(&state)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("reading analytics state: %w", err)
	}
	return []byte(state), true, nil
}

// SaveAnalytics stores the new state and appends the report of run runID,
// atomically, if the stored watermark is still from (store.ErrStale if not).
func (s *Store) SaveAnalytics(ctx context.Context, runID string, from int64, state []byte, watermark int64, report []byte, generatedAt time.Time) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("saving analytics: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	var stored int64
	var lastRun string
	err = tx.QueryRowContext(ctx, `SELECT watermark, run_id FROM analytics_state WHERE id = 1`).Scan(&stored, &lastRun)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return fmt.Errorf("saving analytics: %w", err)
	case lastRun == runID:
		return nil // saved by an earlier attempt of this run
	}
	if stored != from {
		return fmt.Errorf("saving analytics of run %s from %d: stored watermark %d: %w", runID, from, stored, store.ErrStale)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO analytics_state (id, state, watermark, run_id) VALUES (1, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET state = excluded.state, watermark = excluded.watermark, run_id = excluded.run_id`,
		string(state), watermark, runID); err != nil {
		return fmt.Errorf("saving analytics state: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO analytics_reports (run_id, generated_at_ms, watermark, report) VALUES (?, ?, ?, ?)`,
		runID, generatedAt.UnixMilli(), watermark, string(report)); err != nil {
		return fmt.Errorf("saving analytics report: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("saving analytics: %w", err)
	}
	return nil
}

// LatestReport returns the most recent analytics report, if any.
func (s *Store) LatestReport(ctx context.Context) ([]byte, bool, error) {
	return s.report(ctx, `SELECT report FROM analytics_reports ORDER BY id DESC LIMIT 1`)
}

// RunReport returns the report made by the analytics run runID, if any.
func (s *Store) RunReport(ctx context.Context, runID string) ([]byte, bool, error) {
	return s.report(ctx, `SELECT report FROM analytics_reports WHERE run_id = ?`, runID)
}

func (s *Store) report(ctx context.Context, query string, args ...any) ([]byte, bool, error) {
	var report string
	err := s.r.QueryRowContext(ctx, query, args...).Scan(&report)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("reading the latest report: %w", err)
	}
	return []byte(report), true, nil
}
