package workflows

import (
	"encoding/json"
	"errors"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/acu-patrol/acu/activities"
	"github.com/acu-patrol/acu/internal/analytics"
)

// AnalyticsWorkflowType is the registered name of the Analytics workflow.
const AnalyticsWorkflowType = "Analytics"

// ProgressQuery is the query that returns an Analytics run's Progress.
const ProgressQuery = "progress"

// How long a run waits before planning again when a range holds a result
// in doubt (activities.ErrTypeInDoubt): doubling from the first to the max.
const (
	inDoubtFirstWait = 5 * time.Second
	inDoubtMaxWait   = time.Minute
)

// AnalyticsInput is the input of Analytics; zero fields take defaults.
type AnalyticsInput struct {
	// ChunkSize is how many new results one activity aggregates; default
	// 50,000.
	ChunkSize int64
	// Precision is the geohash precision of the hotspots; default 5.
	Precision int
	// Top is the number of hotspot cells per exercise; default 10.
	Top int
	// CatchUp makes the run count every result archived before it
	// started: it plans once the archive's mark covers its start (on
	// Cassandra, the settle margin after it; at once on SQLite). The runs
	// of acu analytics run set it; the schedule's do not need to.
	CatchUp bool
}

// AnalyticsResult is the result of Analytics.
type AnalyticsResult struct {
	// Report is the §2.4 document.
	Report json.RawMessage
	// From and To bound the arrival sequence of the results this run added.
	From, To int64
	// Rebuilt lists the exercises recomputed in full (threshold changed).
	Rebuilt []string
}

// Progress is what the progress query returns.
type Progress struct {
	Phase      string // settling, planning, aggregating, waiting for the archive, committing, done
	Ranges     int
	RangesDone int
	Rebuild    int
	Rebuilt    int
}

// Analytics adds the results archived since the last run to the stored
// partial aggregates (fanned out as activities any worker can take),
// recomputes the exercises whose threshold changed, and stores and returns
// the report.
func Analytics(ctx workflow.Context, in AnalyticsInput) (AnalyticsResult, error) {
	if in.ChunkSize <= 0 {
		in.ChunkSize = 50_000
	}
	if in.Precision <= 0 {
		in.Precision = analytics.DefaultPrecision
	}
	if in.Top <= 0 {
		in.Top = 10
	}
	progress := Progress{Phase: "planning"}
	if err := workflow.SetQueryHandler(ctx, ProgressQuery, func() (Progress, error) { return progress, nil }); err != nil {
		return AnalyticsResult{}, err
	}
	var a *activities.Analytics
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 10 * time.Minute,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, MaximumInterval: time.Minute,
			NonRetryableErrorTypes: []string{activities.ErrTypeStalePlan},
		},
	})
	info := workflow.GetInfo(ctx)
	runID := info.WorkflowExecution.ID + "/" + info.WorkflowExecution.RunID
	planIn := activities.PlanInput{ChunkSize: in.ChunkSize, Precision: in.Precision}
	if in.CatchUp {
		planIn.Through = info.WorkflowStartTime
	}
	// A range may hold a result whose place the archive has not settled
	// (an attempt still in doubt): wait, then plan again with a later mark,
	// for as long as it takes.
	doubtWait := inDoubtFirstWait
	// Another run may commit between our plan and our commit (a manual run
	// beside the schedule's): plan again, a few times.
	for attempt := 1; ; attempt++ {
		progress = Progress{Phase: "planning"}
		var plan activities.Plan
		if err := workflow.ExecuteActivity(ctx, a.PlanAnalytics, planIn).Get(ctx, &plan); err != nil {
			return AnalyticsResult{}, err
		}
		if plan.Wait > 0 {
			// What was archived before the start is not settled yet.
			progress = Progress{Phase: "settling"}
			if err := workflow.Sleep(ctx, plan.Wait); err != nil {
				return AnalyticsResult{}, err
			}
			attempt--
			continue
		}
		progress = Progress{Phase: "aggregating", Ranges: len(plan.Ranges), Rebuild: len(plan.Rebuild)}
		actx, cancel := workflow.WithCancel(ctx)
		ranges := make([]workflow.Future, len(plan.Ranges))
		for i, r := range plan.Ranges {
			ranges[i] = workflow.ExecuteActivity(actx, a.AggregateRange, activities.RangeInput{
				Range: r, Thresholds: plan.Thresholds, Precision: plan.Precision, Skip: plan.Rebuild,
			})
		}
		rebuilds := make([]workflow.Future, len(plan.Rebuild))
		for i, id := range plan.Rebuild {
			rebuilds[i] = workflow.ExecuteActivity(actx, a.RebuildExercise, activities.RebuildInput{
				ExerciseID: id, UpTo: plan.To, Thresholds: plan.Thresholds, Precision: plan.Precision,
			})
		}
		deltas := make([]*analytics.Delta, len(ranges))
		var doubt error
		for i, f := range ranges {
			err := f.Get(ctx, &deltas[i])
			var appErr *temporal.ApplicationError
			if errors.As(err, &appErr) && appErr.Type() == activities.ErrTypeInDoubt {
				doubt = err
				break
			}
			if err != nil {
				return AnalyticsResult{}, err
			}
			progress.RangesDone++
		}
		if doubt != nil {
			cancel()
			workflow.GetLogger(ctx).Warn("a result's place in the archive is not settled yet; planning again later", "error", doubt, "wait", doubtWait)
			progress = Progress{Phase: "waiting for the archive"}
			if err := workflow.Sleep(ctx, doubtWait); err != nil {
				return AnalyticsResult{}, err
			}
			doubtWait = min(2*doubtWait, inDoubtMaxWait)
			attempt--
			continue
		}
		rebuilt := make(map[string]*analytics.ExerciseAgg, len(rebuilds))
		for i, f := range rebuilds {
			var agg *analytics.ExerciseAgg
			if err := f.Get(ctx, &agg); err != nil {
				return AnalyticsResult{}, err
			}
			rebuilt[plan.Rebuild[i]] = agg
			progress.Rebuilt++
		}
		cancel()
		progress.Phase = "committing"
		var report json.RawMessage
		err := workflow.ExecuteActivity(ctx, a.CommitAnalytics, activities.CommitInput{
			RunID: runID, Plan: plan, Deltas: deltas, Rebuilt: rebuilt,
			GeneratedAt: workflow.Now(ctx).UTC().Truncate(time.Millisecond), Top: in.Top,
		}).Get(ctx, &report)
		var appErr *temporal.ApplicationError
		if errors.As(err, &appErr) && appErr.Type() == activities.ErrTypeStalePlan && attempt < 5 {
			workflow.GetLogger(ctx).Warn("analytics state moved during the run; planning again", "error", err)
			continue
		}
		if err != nil {
			return AnalyticsResult{}, err
		}
		progress.Phase = "done"
		return AnalyticsResult{Report: report, From: plan.From, To: plan.To, Rebuilt: plan.Rebuild}, nil
	}
}
