package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"

	"github.com/acu-patrol/acu/internal/event"
	"github.com/acu-patrol/acu/internal/metrics"
	"github.com/acu-patrol/acu/workflows"
)

// Judge is the thresholds copy: Sync once per batch, then Lookup per result.
type Judge interface {
	Sync(ctx context.Context) error
	Lookup(exerciseID string) (float64, bool)
}

// WorkflowStarter is the part of the Temporal client the alert service uses.
type WorkflowStarter interface {
	ExecuteWorkflow(ctx context.Context, options client.StartWorkflowOptions, workflow any, args ...any) (client.WorkflowRun, error)
}

// AlertConfig configures the alert handler.
type AlertConfig struct {
	// FollowUpAfter is passed to every deployment; zero means the workflow default (30m).
	FollowUpAfter time.Duration
	// FollowUpSettle is passed to every deployment as is; zero means no
	// settle time.
	FollowUpSettle time.Duration
	// MaxInFlight bounds the concurrent workflow starts of this process,
	// across partitions; default 256.
	MaxInFlight int
	// NotifyMaxAttempts is passed to every deployment; zero means no limit.
	NotifyMaxAttempts int32
	// StartTimeout bounds one workflow start request; default 10s. A start
	// that times out is retried by the next attempt (with the same ID: a
	// start that did happen is then acknowledged as already started).
	StartTimeout time.Duration
	// DataConverter is the Temporal client's (default: the SDK's): a
	// workflow input it cannot encode is dead-lettered, not retried.
	DataConverter converter.DataConverter
	// Deployed is the store's record of the deployments. Temporal refuses
	// a second start of a workflow ID only as long as it retains the closed
	// run; the record lasts. Consulted once per batch with failing results,
	// before starting: an event already deployed is never deployed again.
	// Nil: Temporal's memory only (benchmarks of passing results).
	Deployed DeploymentLookup
}

// DeploymentLookup is the store's record of the events deployed.
type DeploymentLookup interface {
	Deployed(ctx context.Context, workflowIDs []string) (map[string]bool, error)
}

// Alerts judges results and starts one PatrolDeployment per failing one.
type Alerts struct {
	cfg     AlertConfig
	judge   Judge
	starter WorkflowStarter
	log     *slog.Logger
	m       *metrics.Metrics
	sem     chan struct{}
}

// NewAlerts returns the alert handler.
func NewAlerts(cfg AlertConfig, judge Judge, starter WorkflowStarter, log *slog.Logger, m *metrics.Metrics) *Alerts {
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 256
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = 10 * time.Second
	}
	if cfg.DataConverter == nil {
		cfg.DataConverter = converter.GetDefaultDataConverter()
	}
	return &Alerts{cfg: cfg, judge: judge, starter: starter, log: log, m: m, sem: make(chan struct{}, cfg.MaxInFlight)}
}

// Failing is a result judged failing, with the threshold that judged it.
type Failing struct {
	Result    event.Result
	Threshold float64
	// Index is the result's position in the batch judged.
	Index int
}

// JudgeBatch splits results into the failing ones (deduplicated by
// identity, first kept) and counts the verdicts. The thresholds copy must
// have been synced. This is the per-record hot path: no I/O.
func (a *Alerts) JudgeBatch(results []event.Result) (failing []Failing, pass, unknown int) {
	var seen map[string]struct{}
	for i, r := range results {
		th, ok := a.judge.Lookup(r.ExerciseID)
		switch {
		case !ok:
			unknown++
		case r.Metric < th:
			if seen == nil {
				seen = make(map[string]struct{})
			}
			if _, dup := seen[r.ID]; dup {
				continue
			}
			seen[r.ID] = struct{}{}
			failing = append(failing, Failing{Result: r, Threshold: th, Index: i})
		default:
			pass++
		}
	}
	return failing, pass, unknown
}

// Handle implements Handler: sync the thresholds, judge, and start the
// deployments concurrently, each start bounded by StartTimeout; nil once
// every start is acknowledged (a start of an existing deployment is
// acknowledged too). When some starts fail or the attempt ends first, the
// error is a *PendingError holding only the failing results not started
// yet: the consumer retries those, never a start already acknowledged. A
// start that can never succeed (an input that does not encode, a request
// Temporal refuses as invalid) is in the PendingError's Dead, for the DLQ.
func (a *Alerts) Handle(ctx context.Context, results []event.Result) error {
	if err := a.judge.Sync(ctx); err != nil {
		// Cut off from the etcd majority (or etcd down): nothing is judged
		// until the copy is current again, and /readyz says so.
		err = fmt.Errorf("thresholds not current, not judging: %w", err)
		a.m.Waiting("thresholds", err.Error())
		return err
	}
	a.m.Ready("thresholds")
	failing, pass, unknown := a.JudgeBatch(results)
	// Passing and unknown results need nothing more: counted now, once.
	a.m.Judged.WithLabelValues("pass").Add(float64(pass))
	a.m.Judged.WithLabelValues("unknown_exercise").Add(float64(unknown))
	failing, err := a.notDeployed(ctx, failing)
	if err != nil {
		pending := make([]int, len(failing))
		for i, f := range failing {
			pending[i] = f.Index
		}
		return &PendingError{Pending: pending, Err: err}
	}

	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		started  = make([]bool, len(failing))
		dead     []Dead
	)
	for i, f := range failing {
		acquired := false
		select {
		case a.sem <- struct{}{}:
			acquired = true
		case <-ctx.Done():
		}
		if !acquired { // the attempt is over: the rest stays pending
			mu.Lock()
			if firstErr == nil {
				firstErr = ctx.Err()
			}
			mu.Unlock()
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-a.sem }()
			err := a.start(ctx, f)
			mu.Lock()
			defer mu.Unlock()
			var never *unstartable
			if errors.As(err, &never) {
				started[i] = true // settled: it goes to the DLQ
				dead = append(dead, Dead{Index: f.Index, Reason: never.reason, Err: err})
				return
			}
			if err != nil {
				if firstErr == nil {
					firstErr = err
				}
				return
			}
			started[i] = true
		}()
	}
	wg.Wait()
	var pending []int
	for i, f := range failing {
		if !started[i] {
			pending = append(pending, f.Index)
		}
	}
	a.m.Judged.WithLabelValues("fail").Add(float64(len(failing) - len(pending) - len(dead)))
	switch {
	case len(pending) > 0:
		return &PendingError{Pending: pending, Dead: dead, Err: fmt.Errorf("%d of %d workflow starts not acknowledged: %w", len(pending), len(failing), firstErr)}
	case len(dead) > 0:
		return &PendingError{Dead: dead}
	}
	return nil
}

// notDeployed drops the failing results whose deployment is recorded in
// the store (one lookup for the batch); they are acknowledged as such. On
// error it returns failing unchanged: nothing is started on a guess.
func (a *Alerts) notDeployed(ctx context.Context, failing []Failing) ([]Failing, error) {
	if a.cfg.Deployed == nil || len(failing) == 0 {
		return failing, nil
	}
	ids := make([]string, len(failing))
	for i, f := range failing {
		ids[i] = workflows.PatrolWorkflowID(f.Result.ID)
	}
	lctx, cancel := context.WithTimeout(ctx, a.cfg.StartTimeout)
	defer cancel()
	deployed, err := a.cfg.Deployed.Deployed(lctx, ids)
	if err != nil {
		return failing, fmt.Errorf("reading which of %d failing results are deployed already, so not starting them: %w", len(failing), err)
	}
	if len(deployed) == 0 {
		return failing, nil
	}
	kept := failing[:0:0]
	for i, f := range failing {
		if deployed[ids[i]] {
			a.log.Info("failing result already deployed (recorded in the store); not deployed again", "workflow_id", ids[i])
			continue
		}
		kept = append(kept, f)
	}
	n := float64(len(failing) - len(kept))
	a.m.WorkflowStarts.WithLabelValues("already_deployed").Add(n)
	a.m.Judged.WithLabelValues("fail").Add(n)
	return kept, nil
}

// PendingError is returned by a Handler that settled only part of a batch.
// Indexes are positions in the slice given to Handle: the results at
// Pending remain to be handled (the consumer retries them, and only them);
// those in Dead can never be and go to the DLQ with their reason. With no
// Pending, the batch is settled once Dead is dead-lettered.
type PendingError struct {
	Pending []int
	Dead    []Dead
	// Err is why Pending remain; nil when none does.
	Err error
}

// Dead is a result that no retry can handle.
type Dead struct {
	Index int
	// Reason is the label of the rejects metric.
	Reason string
	Err    error
}

func (e *PendingError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("%d results can never be handled", len(e.Dead))
	}
	return e.Err.Error()
}

func (e *PendingError) Unwrap() error { return e.Err }

// unstartable is a start that no retry can make succeed.
type unstartable struct {
	reason string
	err    error
}

func (e *unstartable) Error() string { return e.err.Error() }
func (e *unstartable) Unwrap() error { return e.err }

// Reasons of the results the alert service dead-letters after judging.
const (
	ReasonUnencodable  = "unencodable"
	ReasonStartRefused = "start_refused"
)

// StartOptions are the start options of the deployment for a failing result.
func StartOptions(f Failing) client.StartWorkflowOptions {
	r := f.Result
	return client.StartWorkflowOptions{
		ID:        workflows.PatrolWorkflowID(r.ID),
		TaskQueue: workflows.TaskQueue,
		// A second start with the same ID, running or closed, is refused:
		// one patrol per event whatever the number of deliveries.
		WorkflowIDReusePolicy:                    enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		WorkflowIDConflictPolicy:                 enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
		WorkflowExecutionErrorWhenAlreadyStarted: true,
		// Where this process also runs a worker on the task queue (acu-dev,
		// or a worker sharing the client), the first workflow task comes
		// back in the start's response and runs here at once, skipping the
		// trip through matching: the notification is scheduled sooner.
		EnableEagerStart: true,
		TypedSearchAttributes: temporal.NewSearchAttributes(
			workflows.StudentIDKey.ValueSet(r.StudentID),
			workflows.ExerciseIDKey.ValueSet(r.ExerciseID),
			workflows.MetricKey.ValueSet(r.Metric),
			workflows.ThresholdKey.ValueSet(f.Threshold),
			workflows.PatrolStatusKey.ValueSet(workflows.StatusDispatching),
		),
	}
}

func (a *Alerts) start(ctx context.Context, f Failing) error {
	r := f.Result
	in := workflows.PatrolInput{
		EventID: r.ID, StudentID: r.StudentID, ExerciseID: r.ExerciseID, Metric: r.Metric,
		Latitude: r.Latitude, Longitude: r.Longitude, FailedAt: r.Timestamp,
		Threshold: f.Threshold, HasThreshold: true, FollowUpAfter: a.cfg.FollowUpAfter, FollowUpSettle: &a.cfg.FollowUpSettle,
		NotifyMaxAttempts: a.cfg.NotifyMaxAttempts,
	}
	// The SDK encodes the input before it sends anything, and an input that
	// does not encode never will: the result is dead-lettered, never
	// retried. (An extra encoding per failing result, a few µs.)
	if _, err := a.cfg.DataConverter.ToPayloads(in); err != nil {
		a.m.WorkflowStarts.WithLabelValues("unencodable").Inc()
		return &unstartable{ReasonUnencodable, fmt.Errorf("the input of %s does not encode: %w", workflows.PatrolWorkflowID(r.ID), err)}
	}
	began := time.Now()
	sctx, cancel := context.WithTimeout(ctx, a.cfg.StartTimeout)
	defer cancel()
	a.m.StartsInFlight.Inc()
	_, err := a.starter.ExecuteWorkflow(sctx, StartOptions(f), workflows.PatrolWorkflowType, in)
	a.m.StartsInFlight.Dec()
	var (
		already *serviceerror.WorkflowExecutionAlreadyStarted
		invalid *serviceerror.InvalidArgument
	)
	switch {
	case err == nil:
		a.m.WorkflowStarts.WithLabelValues("started").Inc()
		a.m.StartLatency.Observe(time.Since(began).Seconds())
		a.log.Debug("patrol deployment started", "workflow_id", workflows.PatrolWorkflowID(r.ID), "student_id", r.StudentID, "exercise_id", r.ExerciseID, "metric", r.Metric, "threshold", f.Threshold)
		return nil
	case errors.As(err, &already):
		a.m.WorkflowStarts.WithLabelValues("already_started").Inc()
		a.m.StartLatency.Observe(time.Since(began).Seconds())
		return nil
	case errors.As(err, &invalid):
		// Temporal refuses this request as such (a size limit, a value it
		// cannot index): resending it cannot help. The service checks at
		// its start that the search attributes exist, so this is the
		// record's, not the namespace's.
		a.m.WorkflowStarts.WithLabelValues("refused").Inc()
		return &unstartable{ReasonStartRefused, fmt.Errorf("the Temporal server refused to start %s: %w", workflows.PatrolWorkflowID(r.ID), err)}
	default:
		a.m.WorkflowStarts.WithLabelValues("error").Inc()
		return fmt.Errorf("starting %s: %w", workflows.PatrolWorkflowID(r.ID), err)
	}
}
