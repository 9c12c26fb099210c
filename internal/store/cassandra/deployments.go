package cassandra

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gocql/gocql"

	"github.com/acu-patrol/acu/internal/store"
)

const deploymentCols = `workflow_id, event_id, student_id, exercise_id, metric, threshold, latitude, longitude,
	failed_at, status, dispatched_at, follow_up_at, follow_up_results, updated_at`

// msOrNull stores a time as Unix ms, the zero time as null.
func msOrNull(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMilli()
}

func fromMS(ms *int64) time.Time {
	if ms == nil {
		return time.Time{}
	}
	return time.UnixMilli(*ms).UTC()
}

// PutDeployment writes a deployment's report; the latest write wins.
func (s *Store) PutDeployment(ctx context.Context, d store.Deployment) error {
	err := s.session.Query(`INSERT INTO deployments (`+deploymentCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		d.WorkflowID, d.EventID, d.StudentID, d.ExerciseID, d.Metric, d.Threshold, d.Latitude, d.Longitude,
		msOrNull(d.FailedAt), d.Status, msOrNull(d.DispatchedAt), msOrNull(d.FollowUpAt), d.FollowUpResults, msOrNull(d.UpdatedAt)).
		WithContext(ctx).Idempotent(true).Exec()
	if err != nil {
		return fmt.Errorf("recording deployment %s: %w", d.WorkflowID, err)
	}
	return nil
}

type deploymentRow struct {
	d                                     store.Deployment
	failed, dispatched, followUp, updated *int64
}

func (r *deploymentRow) dest() []any {
	d := &r.d
	return []any{&d.WorkflowID, &d.EventID, &d.StudentID, &d.ExerciseID, &d.Metric, &d.Threshold, &d.Latitude, &d.Longitude,
		&r.failed, &d.Status, &r.dispatched, &r.followUp, &d.FollowUpResults, &r.updated}
}

func (r *deploymentRow) deployment() store.Deployment {
	d := r.d
	d.FailedAt, d.DispatchedAt, d.FollowUpAt, d.UpdatedAt = fromMS(r.failed), fromMS(r.dispatched), fromMS(r.followUp), fromMS(r.updated)
	return d
}

// GetDeployment returns the deployment of workflowID, if recorded.
func (s *Store) GetDeployment(ctx context.Context, workflowID string) (store.Deployment, bool, error) {
	var r deploymentRow
	err := s.session.Query(`SELECT `+deploymentCols+` FROM deployments WHERE workflow_id = ?`, workflowID).
		WithContext(ctx).Scan(r.dest()...)
	if errors.Is(err, gocql.ErrNotFound) {
		return store.Deployment{}, false, nil
	}
	if err != nil {
		return store.Deployment{}, false, fmt.Errorf("reading deployment %s: %w", workflowID, err)
	}
	return r.deployment(), true, nil
}

// Deployments returns every deployment (a paged scan of the table; one row
// per failing event).
func (s *Store) Deployments(ctx context.Context) ([]store.Deployment, error) {
	iter := s.session.Query(`SELECT ` + deploymentCols + ` FROM deployments`).WithContext(ctx).PageSize(5000).Iter()
	var out []store.Deployment
	var r deploymentRow
	for iter.Scan(r.dest()...) {
		out = append(out, r.deployment())
		r = deploymentRow{}
	}
	if err := iter.Close(); err != nil {
		return nil, fmt.Errorf("reading deployments: %w", err)
	}
	return out, nil
}
