package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/acu-patrol/acu/internal/store"
)

const deploymentCols = `workflow_id, event_id, student_id, exercise_id, metric, threshold,
	latitude, longitude, failed_at_ms, status, dispatched_at_ms, follow_up_at_ms,
	follow_up_results, updated_at_ms`

const (
	putDeploymentSQL = `INSERT INTO deployments (` + deploymentCols + `)
		VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)
		ON CONFLICT (workflow_id) DO UPDATE SET
			event_id = excluded.event_id,
			student_id = excluded.student_id,
			exercise_id = excluded.exercise_id,
			metric = excluded.metric,
			threshold = excluded.threshold,
			latitude = excluded.latitude,
			longitude = excluded.longitude,
			failed_at_ms = excluded.failed_at_ms,
			status = excluded.status,
			dispatched_at_ms = excluded.dispatched_at_ms,
			follow_up_at_ms = excluded.follow_up_at_ms,
			follow_up_results = excluded.follow_up_results,
			updated_at_ms = excluded.updated_at_ms`
	getDeploymentSQL = `SELECT ` + deploymentCols + ` FROM deployments WHERE workflow_id = ?`
	deploymentsSQL   = `SELECT ` + deploymentCols + ` FROM deployments ORDER BY workflow_id`
)

// PutDeployment inserts the deployment report, or replaces every field of
// the one with the same WorkflowID. Times are stored with millisecond
// precision; zero times stay zero.
func (s *Store) PutDeployment(ctx context.Context, d store.Deployment) error {
	if d.WorkflowID == "" {
		return errors.New("storing deployment: empty workflow ID")
	}
	_, err := s.putDep.ExecContext(ctx, d.WorkflowID, d.EventID, d.StudentID, d.ExerciseID,
		d.Metric, d.Threshold, d.Latitude, d.Longitude, toMS(d.FailedAt), d.Status,
		toMS(d.DispatchedAt), toMS(d.FollowUpAt), d.FollowUpResults, toMS(d.UpdatedAt))
	if err != nil {
		return fmt.Errorf("storing deployment %q: %w", d.WorkflowID, err)
	}
	return nil
}

// GetDeployment returns the deployment report of the workflow, and false if
// there is none. Its times are in UTC, with millisecond precision.
func (s *Store) GetDeployment(ctx context.Context, workflowID string) (store.Deployment, bool, error) {
	d, err := scanDeployment(s.getDep.QueryRowContext(ctx, workflowID))
	if errors.Is(err, sql.ErrNoRows) {
		return store.Deployment{}, false, nil
	}
	if err != nil {
		return store.Deployment{}, false, fmt.Errorf("getting deployment %q: %w", workflowID, err)
	}
	return d, true, nil
}

// Deployments returns all deployment reports, ordered by WorkflowID.
func (s *Store) Deployments(ctx context.Context) ([]store.Deployment, error) {
	ds, err := s.deployments(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing deployments: %w", err)
	}
	return ds, nil
}

func (s *Store) deployments(ctx context.Context) ([]store.Deployment, error) {
	rows, err := s.r.QueryContext(ctx, deploymentsSQL)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ds []store.Deployment
	for rows.Next() {
		d, err := scanDeployment(rows)
		if err != nil {
			return nil, err
		}
		ds = append(ds, d)
	}
	return ds, rows.Err()
}

func scanDeployment(sc scanner) (store.Deployment, error) {
	var d store.Deployment
	var failedAt, dispatchedAt, followUpAt, updatedAt sql.NullInt64
	err := sc.Scan(&d.WorkflowID, &d.EventID, &d.StudentID, &d.ExerciseID, &d.Metric, &d.Threshold,
		&d.Latitude, &d.Longitude, &failedAt, &d.Status, &dispatchedAt, &followUpAt,
		&d.FollowUpResults, &updatedAt)
	if err != nil {
		return store.Deployment{}, err
	}
	d.FailedAt = fromMS(failedAt)
	d.DispatchedAt = fromMS(dispatchedAt)
	d.FollowUpAt = fromMS(followUpAt)
	d.UpdatedAt = fromMS(updatedAt)
	return d, nil
}

// deployedChunk bounds the identifiers of one Deployed query (SQLite's
// limit on parameters is far above it).
const deployedChunk = 500

// Deployed returns which of workflowIDs have a deployment recorded: one
// primary-key query per 500 identifiers.
func (s *Store) Deployed(ctx context.Context, workflowIDs []string) (map[string]bool, error) {
	out := make(map[string]bool)
	for chunk := range slices.Chunk(workflowIDs, deployedChunk) {
		q := `SELECT workflow_id FROM deployments WHERE workflow_id IN (?` + strings.Repeat(",?", len(chunk)-1) + `)`
		args := make([]any, len(chunk))
		for i, id := range chunk {
			args[i] = id
		}
		rows, err := s.r.QueryContext(ctx, q, args...)
		if err != nil {
			return nil, fmt.Errorf("looking up %d deployments: %w", len(chunk), err)
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return nil, fmt.Errorf("looking up deployments: %w", err)
			}
			out[id] = true
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return nil, fmt.Errorf("looking up deployments: %w", err)
		}
	}
	return out, nil
}
