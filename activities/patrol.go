// Package activities holds the side effects of the workflows: notifying the
// patrol, reading thresholds and recording deployments in the store. Each
// activity is a method on a struct that holds its dependencies; workflows
// call them through a nil pointer of that struct.
package activities

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/acu-patrol/acu/internal/event"
	"github.com/acu-patrol/acu/internal/metrics"
	"github.com/acu-patrol/acu/internal/store"
)

// ErrTypePatrolRejected is the application error type of a notification the
// patrol endpoint refused for good (a 4xx other than 408 and 429).
const ErrTypePatrolRejected = "PatrolRejected"

// DeploymentStore is the part of the store the patrol activities use.
type DeploymentStore interface {
	PutDeployment(ctx context.Context, d store.Deployment) error
	FollowUpResults(ctx context.Context, w store.FollowUpWindow) ([]event.Result, error)
}

// ThresholdReader reads a threshold with a linearizable etcd read.
type ThresholdReader interface {
	ReadThreshold(ctx context.Context, exerciseID string) (value float64, ok bool, err error)
}

// ArchiveProgress is how far the archiver has got in the results topic.
type ArchiveProgress interface {
	// EndOffsets are the topic's end offsets now, per partition.
	EndOffsets(ctx context.Context) (map[int32]int64, error)
	// Behind is how many results below ends the archive does not hold yet.
	Behind(ctx context.Context, ends map[int32]int64) (int64, error)
}

// Patrol holds the dependencies of the PatrolDeployment activities.
type Patrol struct {
	// HTTP sends the notifications; its timeout bounds one attempt.
	HTTP *http.Client
	// URL is the patrol endpoint.
	URL        string
	Store      DeploymentStore
	Thresholds ThresholdReader
	// Archive tells the follow-up check when the archive has caught up.
	Archive ArchiveProgress
	Metrics *metrics.Metrics
	// Now is the clock of the records; nil means time.Now.
	Now func() time.Time
}

func (p *Patrol) now() time.Time {
	if p.Now != nil {
		return p.Now().UTC()
	}
	return time.Now().UTC()
}

// Notification is the body POSTed to the patrol endpoint (DESIGN.md §2.3).
type Notification struct {
	DeploymentID string    `json:"deployment_id"`
	EventID      string    `json:"event_id"`
	StudentID    string    `json:"student_id"`
	ExerciseID   string    `json:"exercise_id"`
	Metric       float64   `json:"metric"`
	Threshold    float64   `json:"threshold"`
	Latitude     float64   `json:"latitude"`
	Longitude    float64   `json:"longitude"`
	FailedAt     time.Time `json:"failed_at"`
}

// NotifyInput is the input of NotifyPatrol.
type NotifyInput struct {
	Notification Notification
}

// NotifyResult is the result of NotifyPatrol.
type NotifyResult struct {
	StatusCode  int
	DeliveredAt time.Time
}

// NotifyPatrol POSTs the notification once. A 2xx is delivered. Connection
// errors, timeouts, 408, 429 and 5xx return a retryable error (the workflow's
// retry policy backs off); another 4xx returns a non-retryable
// ErrTypePatrolRejected error. Every attempt carries the same
// Idempotency-Key, the deployment ID, so the patrol can tell a retry.
func (p *Patrol) NotifyPatrol(ctx context.Context, in NotifyInput) (NotifyResult, error) {
	body, err := json.Marshal(in.Notification)
	if err != nil {
		return NotifyResult{}, temporal.NewNonRetryableApplicationError("encoding notification", "Encoding", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.URL, bytes.NewReader(body))
	if err != nil {
		return NotifyResult{}, temporal.NewNonRetryableApplicationError("building request to "+p.URL, "BadPatrolURL", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", in.Notification.DeploymentID)
	resp, err := p.HTTP.Do(req)
	if err != nil {
		p.attempt("unreachable")
		var nerr net.Error
		if errors.As(err, &nerr) && nerr.Timeout() {
			return NotifyResult{}, fmt.Errorf("patrol endpoint timed out: %w", err)
		}
		return NotifyResult{}, fmt.Errorf("patrol endpoint unreachable: %w", err)
	}
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_ = resp.Body.Close()
	switch code := resp.StatusCode; {
	case code >= 200 && code < 300:
		p.attempt("delivered")
		return NotifyResult{StatusCode: code, DeliveredAt: p.now()}, nil
	case code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500:
		p.attempt("retryable")
		activity.GetLogger(ctx).Warn("patrol endpoint busy; will retry", "status", code)
		return NotifyResult{}, fmt.Errorf("patrol endpoint answered %d %s: %s", code, http.StatusText(code), bytes.TrimSpace(snippet))
	default:
		p.attempt("rejected")
		return NotifyResult{}, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("patrol endpoint rejected the notification: %d %s: %s", code, http.StatusText(code), bytes.TrimSpace(snippet)),
			ErrTypePatrolRejected, nil, code)
	}
}

func (p *Patrol) attempt(outcome string) {
	if p.Metrics != nil {
		p.Metrics.PatrolAttempts.WithLabelValues(outcome).Inc()
	}
}

// ReadThresholdInput is the input of ReadThreshold.
type ReadThresholdInput struct{ ExerciseID string }

// ReadThresholdResult is the result of ReadThreshold.
type ReadThresholdResult struct {
	Threshold float64
	Set       bool
}

// ReadThreshold reads the exercise's current threshold from etcd
// (linearizable).
func (p *Patrol) ReadThreshold(ctx context.Context, in ReadThresholdInput) (ReadThresholdResult, error) {
	v, ok, err := p.Thresholds.ReadThreshold(ctx, in.ExerciseID)
	if err != nil {
		return ReadThresholdResult{}, fmt.Errorf("reading threshold of %s: %w", in.ExerciseID, err)
	}
	return ReadThresholdResult{Threshold: v, Set: ok}, nil
}

// RecordInput is the input of RecordDeployment.
type RecordInput struct {
	Deployment store.Deployment
}

// RecordDeployment upserts the deployment report (idempotent).
func (p *Patrol) RecordDeployment(ctx context.Context, in RecordInput) error {
	d := in.Deployment
	d.UpdatedAt = p.now()
	if err := p.Store.PutDeployment(ctx, d); err != nil {
		return fmt.Errorf("recording deployment %s: %w", d.WorkflowID, err)
	}
	if p.Metrics != nil {
		p.Metrics.Deployments.WithLabelValues(d.Status).Inc()
	}
	return nil
}

// FollowUpInput is the input of CheckFollowUp.
type FollowUpInput struct {
	Window    store.FollowUpWindow
	Threshold float64
}

// FollowUpResult is the result of CheckFollowUp.
type FollowUpResult struct {
	// Results is how many follow-up results were found in the window.
	Results int
	// Passed is how many of them meet the threshold.
	Passed int
	// Best is the highest follow-up metric (0 when none).
	Best float64
}

// CheckFollowUp counts the student's results in the follow-up window and
// those meeting the threshold.
func (p *Patrol) CheckFollowUp(ctx context.Context, in FollowUpInput) (FollowUpResult, error) {
	rs, err := p.Store.FollowUpResults(ctx, in.Window)
	if err != nil {
		return FollowUpResult{}, fmt.Errorf("reading follow-up results: %w", err)
	}
	var out FollowUpResult
	for _, r := range rs {
		out.Results++
		if r.Metric >= in.Threshold {
			out.Passed++
		}
		out.Best = max(out.Best, r.Metric)
	}
	return out, nil
}

// ErrTypeArchiveBehind is the application error type of AwaitArchive while
// the archive has not caught up: retried by the server, visible in the UI
// as the activity's attempts and last failure.
const ErrTypeArchiveBehind = "ArchiveBehind"

// ArchiveMarkResult is the result of ArchiveMark.
type ArchiveMarkResult struct {
	// Ends are the results topic's end offsets when the mark was taken.
	Ends map[int32]int64
	// Behind is how many results below Ends the archive lacked last.
	Behind int64
}

// archiveSettle is how long ArchiveMark waits for an archiver that is
// merely a batch behind before it reports the archive behind.
const archiveSettle = 2 * time.Second

// ArchiveMark takes the results topic's end offsets (every result sent
// before the follow-up's deadline is below them) and says how many of those
// results the archive still lacks, waiting up to two seconds for it to
// catch up.
func (p *Patrol) ArchiveMark(ctx context.Context) (ArchiveMarkResult, error) {
	if p.Archive == nil {
		return ArchiveMarkResult{}, temporal.NewNonRetryableApplicationError("this worker has no archive progress to wait for", "Misconfigured", nil)
	}
	ends, err := p.Archive.EndOffsets(ctx)
	if err != nil {
		return ArchiveMarkResult{}, err
	}
	deadline := time.Now().Add(archiveSettle)
	for {
		behind, err := p.Archive.Behind(ctx, ends)
		if err != nil {
			return ArchiveMarkResult{}, err
		}
		if behind == 0 || time.Now().After(deadline) {
			return ArchiveMarkResult{Ends: ends, Behind: behind}, nil
		}
		select {
		case <-ctx.Done():
			return ArchiveMarkResult{}, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// AwaitArchiveInput is the input of AwaitArchive.
type AwaitArchiveInput struct {
	Ends map[int32]int64
}

// AwaitArchive returns once the archive holds every result below Ends, and
// a retryable ErrTypeArchiveBehind error saying how far behind it is until
// then.
func (p *Patrol) AwaitArchive(ctx context.Context, in AwaitArchiveInput) error {
	if p.Archive == nil {
		return temporal.NewNonRetryableApplicationError("this worker has no archive progress to wait for", "Misconfigured", nil)
	}
	behind, err := p.Archive.Behind(ctx, in.Ends)
	if err != nil {
		return err
	}
	if behind > 0 {
		return temporal.NewApplicationError(fmt.Sprintf("the archive lacks %d of the results sent before the follow-up's deadline; the check waits for the archiver", behind), ErrTypeArchiveBehind, behind)
	}
	return nil
}
