package cassandra

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/gocql/gocql"
	"golang.org/x/sync/errgroup"

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

// statusRank orders a deployment's statuses as its workflow sets them.
var statusRank = map[string]int64{
	store.StatusDispatching:     0,
	store.StatusDispatched:      1,
	store.StatusNotifyRejected:  1,
	store.StatusNotifyExhausted: 1,
	store.StatusFollowingUp:     2,
	store.StatusRecovered:       3,
	store.StatusStillFailing:    3,
	store.StatusNoAttempt:       3,
}

// deploymentTimestamp is the cell timestamp of a deployment write: its
// status's rank above the clock (2^53 µs is some 285 years), so a later
// step wins even when the worker that wrote the earlier one has a clock a
// little ahead; within a step the later write wins.
func deploymentTimestamp(status string) int64 {
	return statusRank[status]<<53 + time.Now().UnixMicro()
}

// PutDeployment writes a deployment's report: a later step of the workflow
// wins over an earlier one, whatever the workers' clocks; a retry of a step
// wins over its first attempt.
func (s *Store) PutDeployment(ctx context.Context, d store.Deployment) error {
	err := s.session.Query(`INSERT INTO deployments (`+deploymentCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		d.WorkflowID, d.EventID, d.StudentID, d.ExerciseID, d.Metric, d.Threshold, d.Latitude, d.Longitude,
		msOrNull(d.FailedAt), d.Status, msOrNull(d.DispatchedAt), msOrNull(d.FollowUpAt), d.FollowUpResults, msOrNull(d.UpdatedAt)).
		WithContext(ctx).WithTimestamp(deploymentTimestamp(d.Status)).Idempotent(true).Exec()
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

// deployedConcurrency bounds the lookups in flight of one Deployed call.
const deployedConcurrency = 32

// deployedSpeculation sends a lookup a second time, to the next replica,
// when the first has not answered in 300 ms. The lookups are on the path
// from a failing result to its patrol: a replica that is restarting, in a
// long pause or cut off (and not yet marked down) would otherwise hold
// each batch for the full timeout.
var deployedSpeculation = &gocql.SimpleSpeculativeExecution{NumAttempts: 1, TimeoutDelay: 300 * time.Millisecond}

// Deployed returns which of workflowIDs have a deployment recorded: one
// single-partition read per identifier (token-aware, at the store's
// consistency), run concurrently; a multi-partition IN would load one
// coordinator with all of them.
func (s *Store) Deployed(ctx context.Context, workflowIDs []string) (map[string]bool, error) {
	var (
		mu  sync.Mutex
		out = make(map[string]bool)
	)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(deployedConcurrency)
	for _, id := range workflowIDs {
		g.Go(func() error {
			var got string
			err := s.session.Query(`SELECT workflow_id FROM deployments WHERE workflow_id = ?`, id).WithContext(gctx).
				Idempotent(true).SetSpeculativeExecutionPolicy(deployedSpeculation).Scan(&got)
			switch {
			case errors.Is(err, gocql.ErrNotFound):
				return nil
			case err != nil:
				return fmt.Errorf("looking up deployment %s: %w", id, err)
			}
			mu.Lock()
			out[id] = true
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return out, nil
}
