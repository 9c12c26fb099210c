package cassandra

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gocql/gocql"

	"github.com/acu-patrol/acu/internal/store"
)

// AnalyticsState returns the stored analytics state, if any.
func (s *Store) AnalyticsState(ctx context.Context) ([]byte, bool, error) {
	var state []byte
	err := s.session.Query(`SELECT state FROM analytics_state WHERE k = 'state'`).WithContext(ctx).Scan(&state)
	if errors.Is(err, gocql.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("reading analytics state: %w", err)
	}
	return state, true, nil
}

// SaveAnalytics saves the state with a lightweight transaction on the
// stored watermark (store.ErrStale if another run moved it), then the
// report by run. A crash between the two is mended by RunReport.
func (s *Store) SaveAnalytics(ctx context.Context, runID string, from int64, state []byte, watermark int64, report []byte, generatedAt time.Time) error {
	var (
		applied bool
		err     error
		gotRun  string
		gotMark int64
	)
	gen := generatedAt.UnixMilli()
	if from == 0 {
		m := map[string]any{}
		applied, err = s.session.Query(`INSERT INTO analytics_state (k, run_id, watermark, state, report, generated_at)
			VALUES ('state', ?, ?, ?, ?, ?) IF NOT EXISTS`, runID, watermark, state, report, gen).
			WithContext(ctx).SerialConsistency(s.serial).MapScanCAS(m)
		if err == nil && !applied {
			gotRun, _ = m["run_id"].(string)
			gotMark, _ = m["watermark"].(int64)
		}
	} else {
		applied, err = s.session.Query(`UPDATE analytics_state SET run_id = ?, watermark = ?, state = ?, report = ?, generated_at = ?
			WHERE k = 'state' IF watermark = ?`, runID, watermark, state, report, gen, from).
			WithContext(ctx).SerialConsistency(s.serial).ScanCAS(&gotMark)
		if err == nil && !applied {
			// The row has another watermark (or is missing): which run?
			if gotRun, _, err = s.stateRun(ctx); err != nil {
				return err
			}
		}
	}
	if err != nil {
		return fmt.Errorf("saving analytics state of run %s: %w", runID, err)
	}
	if !applied && gotRun != runID {
		return fmt.Errorf("saving analytics of run %s from %d: stored watermark %d (run %s): %w", runID, from, gotMark, gotRun, store.ErrStale)
	}
	if applied {
		return s.putReport(ctx, runID, gen, watermark, report)
	}
	// Saved by an earlier attempt of this run: keep what it saved (and the
	// report by run, which RunReport writes if that attempt died before).
	_, _, err = s.RunReport(ctx, runID)
	return err
}

func (s *Store) putReport(ctx context.Context, runID string, gen, watermark int64, report []byte) error {
	if err := s.session.Query(`INSERT INTO analytics_reports (run_id, generated_at, watermark, report) VALUES (?, ?, ?, ?)`,
		runID, gen, watermark, report).WithContext(ctx).Idempotent(true).Exec(); err != nil {
		return fmt.Errorf("saving the report of run %s: %w", runID, err)
	}
	return nil
}

// stateRun returns the run that saved the state last.
func (s *Store) stateRun(ctx context.Context) (string, bool, error) {
	var run string
	err := s.session.Query(`SELECT run_id FROM analytics_state WHERE k = 'state'`).WithContext(ctx).Scan(&run)
	if errors.Is(err, gocql.ErrNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("reading analytics state: %w", err)
	}
	return run, true, nil
}

// RunReport returns the report saved by run runID, if any.
func (s *Store) RunReport(ctx context.Context, runID string) ([]byte, bool, error) {
	var report []byte
	err := s.session.Query(`SELECT report FROM analytics_reports WHERE run_id = ?`, runID).WithContext(ctx).Scan(&report)
	if err == nil {
		return report, true, nil
	}
	if !errors.Is(err, gocql.ErrNotFound) {
		return nil, false, fmt.Errorf("reading the report of run %s: %w", runID, err)
	}
	// Saved in the state but not yet by run (a crash in between)?
	var run string
	var watermark, gen int64
	err = s.session.Query(`SELECT run_id, watermark, generated_at, report FROM analytics_state WHERE k = 'state'`).
		WithContext(ctx).Scan(&run, &watermark, &gen, &report)
	if errors.Is(err, gocql.ErrNotFound) || (err == nil && run != runID) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("reading the report of run %s: %w", runID, err)
	}
	if err := s.putReport(ctx, runID, gen, watermark, report); err != nil {
		return nil, false, err
	}
	return report, true, nil
}

// LatestReport returns the report of the run that saved the state last.
func (s *Store) LatestReport(ctx context.Context) ([]byte, bool, error) {
	var report []byte
	err := s.session.Query(`SELECT report FROM analytics_state WHERE k = 'state'`).WithContext(ctx).Scan(&report)
	if errors.Is(err, gocql.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("reading the latest report: %w", err)
	}
	return report, true, nil
}
