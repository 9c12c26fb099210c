package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/acu-patrol/acu/internal/analytics"
	"github.com/acu-patrol/acu/internal/event"
	"github.com/acu-patrol/acu/internal/store"
	"github.com/acu-patrol/acu/internal/thresholds"
)

// ErrTypeStalePlan is the error type of a commit whose plan no longer
// matches the stored state (another run committed first): re-plan.
const ErrTypeStalePlan = "StalePlan"

// ErrTypeInDoubt is the error type of a range holding a result whose place
// the archive has not settled yet (store.InDoubtError): plan again later,
// with a later mark.
const ErrTypeInDoubt = "ArchiveInDoubt"

// AnalyticsStore is the part of the store the analytics activities use.
type AnalyticsStore interface {
	ArrivalMark(ctx context.Context) (int64, error)
	MarkWait(ctx context.Context, t time.Time) (time.Duration, error)
	SplitArrivals(ctx context.Context, after, upTo, size int64) ([]store.ArrivalRange, error)
	ResultsArrived(ctx context.Context, r store.ArrivalRange, fn func([]event.Result) error) error
	ExerciseResults(ctx context.Context, exerciseID string, upTo int64, pageSize int, fn func([]event.Result) error) error
	AnalyticsState(ctx context.Context) ([]byte, bool, error)
	SaveAnalytics(ctx context.Context, runID string, from int64, state []byte, watermark int64, report []byte, generatedAt time.Time) error
	RunReport(ctx context.Context, runID string) ([]byte, bool, error)
	Deployments(ctx context.Context) ([]store.Deployment, error)
}

// ThresholdLister lists the thresholds with a linearizable read.
type ThresholdLister interface {
	List(ctx context.Context) ([]thresholds.Entry, error)
}

// Analytics holds the dependencies of the analytics activities.
type Analytics struct {
	Store      AnalyticsStore
	Thresholds ThresholdLister
}

// storedState is the analytics state as stored, with the run that wrote it.
type storedState struct {
	RunID string          `json:"run_id"`
	State analytics.State `json:"state"`
}

func (a *Analytics) load(ctx context.Context) (storedState, error) {
	var s storedState
	b, ok, err := a.Store.AnalyticsState(ctx)
	if err != nil {
		return s, err
	}
	if !ok {
		s.State = analytics.State{Exercises: map[string]*analytics.ExerciseAgg{}}
		return s, nil
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, temporal.NewNonRetryableApplicationError("stored analytics state is unreadable", "CorruptState", err)
	}
	if s.State.Exercises == nil {
		s.State.Exercises = map[string]*analytics.ExerciseAgg{}
	}
	return s, nil
}

// PlanInput is the input of PlanAnalytics.
type PlanInput struct {
	// ChunkSize is the number of arrival positions per range where positions
	// count results (SQLite); a backend with time positions splits by time.
	ChunkSize int64
	// Precision is the geohash precision of the hotspots.
	Precision int
	// Through, when set, asks for a plan that covers every result archived
	// before it: while the archive's mark does not cover it yet, the plan
	// is only a Wait.
	Through time.Time
}

// SeqRange is the results with an arrival position in (After, UpTo].
type SeqRange = store.ArrivalRange

// Plan is what a run has to do.
type Plan struct {
	// From is the stored watermark, To the archive's settled arrival mark.
	From, To int64
	// Ranges split (From, To] for the new results.
	Ranges []SeqRange
	// Rebuild lists the exercises to recompute from all their results: their
	// threshold changed (or the precision did).
	Rebuild    []string
	Thresholds analytics.Thresholds
	Precision  int
	// Wait, when not 0, is how long until the archive's mark covers the
	// input's Through: plan again after it; nothing else is set.
	Wait time.Duration
}

// PlanAnalytics reads the watermark, the archive's sequence and the
// current thresholds, and splits the work.
func (a *Analytics) PlanAnalytics(ctx context.Context, in PlanInput) (Plan, error) {
	if !in.Through.IsZero() {
		wait, err := a.Store.MarkWait(ctx, in.Through)
		if err != nil {
			return Plan{}, err
		}
		if wait > 0 {
			return Plan{Wait: wait}, nil
		}
	}
	st, err := a.load(ctx)
	if err != nil {
		return Plan{}, err
	}
	top, err := a.Store.ArrivalMark(ctx)
	if err != nil {
		return Plan{}, err
	}
	entries, err := a.Thresholds.List(ctx)
	if err != nil {
		return Plan{}, err
	}
	th := analytics.Thresholds{}
	for _, e := range entries {
		if e.Err == nil {
			th[e.ExerciseID] = e.Value
		}
	}
	p := Plan{From: st.State.Watermark, To: max(top, st.State.Watermark), Thresholds: th, Precision: in.Precision}
	if st.State.Precision != 0 && st.State.Precision != in.Precision {
		for id := range st.State.Exercises {
			p.Rebuild = append(p.Rebuild, id)
		}
	} else {
		p.Rebuild = st.State.Stale(th)
	}
	// An exercise the state has never seen needs no rebuild: all its
	// results are in the new ranges.
	if p.Ranges, err = a.Store.SplitArrivals(ctx, p.From, p.To, in.ChunkSize); err != nil {
		return Plan{}, err
	}
	return p, nil
}

// RangeInput is the input of AggregateRange.
type RangeInput struct {
	Range      SeqRange
	Thresholds analytics.Thresholds
	Precision  int
	// Skip lists exercises being rebuilt: their results are left out.
	Skip []string
}

// AggregateRange computes the partial aggregates of a range of new results.
func (a *Analytics) AggregateRange(ctx context.Context, in RangeInput) (*analytics.Delta, error) {
	skip := make(map[string]bool, len(in.Skip))
	for _, id := range in.Skip {
		skip[id] = true
	}
	d := analytics.NewDelta()
	err := a.Store.ResultsArrived(ctx, in.Range, func(rs []event.Result) error {
		for _, r := range rs {
			if skip[r.ExerciseID] {
				continue
			}
			if err := d.Add(r, in.Thresholds, in.Precision); err != nil {
				return temporal.NewNonRetryableApplicationError("aggregating result "+r.ID+": "+err.Error(), "BadResult", err)
			}
		}
		if activity.IsActivity(ctx) {
			activity.RecordHeartbeat(ctx)
		}
		return nil
	})
	if doubt := (*store.InDoubtError)(nil); errors.As(err, &doubt) {
		return nil, temporal.NewNonRetryableApplicationError(doubt.Error(), ErrTypeInDoubt, err)
	}
	if err != nil {
		return nil, err
	}
	return d, nil
}

// RebuildInput is the input of RebuildExercise.
type RebuildInput struct {
	ExerciseID string
	UpTo       int64
	Thresholds analytics.Thresholds
	Precision  int
}

// RebuildExercise recomputes one exercise's aggregates from all its results
// up to UpTo. It returns nil when the exercise has no results.
func (a *Analytics) RebuildExercise(ctx context.Context, in RebuildInput) (*analytics.ExerciseAgg, error) {
	d := analytics.NewDelta()
	err := a.Store.ExerciseResults(ctx, in.ExerciseID, in.UpTo, 20_000, func(rs []event.Result) error {
		for _, r := range rs {
			if err := d.Add(r, in.Thresholds, in.Precision); err != nil {
				return temporal.NewNonRetryableApplicationError("aggregating result "+r.ID+": "+err.Error(), "BadResult", err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return d.Exercises[in.ExerciseID], nil
}

// CommitInput is the input of CommitAnalytics.
type CommitInput struct {
	RunID       string
	Plan        Plan
	Deltas      []*analytics.Delta
	Rebuilt     map[string]*analytics.ExerciseAgg
	GeneratedAt time.Time
	Top         int
}

// CommitAnalytics merges the run's aggregates into the stored state,
// builds the report over it and the deployments, and stores both
// atomically. A retry after success returns the stored report.
func (a *Analytics) CommitAnalytics(ctx context.Context, in CommitInput) (json.RawMessage, error) {
	if b, ok, err := a.Store.RunReport(ctx, in.RunID); err != nil || ok {
		return b, err
	}
	st, err := a.load(ctx)
	if err != nil {
		return nil, err
	}
	if st.State.Watermark != in.Plan.From {
		return nil, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("state moved from %d to %d since the plan", in.Plan.From, st.State.Watermark), ErrTypeStalePlan, nil)
	}
	st.State.Precision = in.Plan.Precision
	for _, id := range in.Plan.Rebuild {
		if err := st.State.Replace(id, in.Rebuilt[id]); err != nil {
			return nil, temporal.NewNonRetryableApplicationError("replacing "+id+": "+err.Error(), ErrTypeStalePlan, err)
		}
	}
	for _, d := range in.Deltas {
		if err := st.State.Merge(d); err != nil {
			return nil, temporal.NewNonRetryableApplicationError("merging aggregates: "+err.Error(), ErrTypeStalePlan, err)
		}
	}
	st.State.Watermark = in.Plan.To
	st.RunID = in.RunID
	deps, err := a.Store.Deployments(ctx)
	if err != nil {
		return nil, err
	}
	rep, err := analytics.Build(&st.State, in.Plan.Thresholds, deps, in.GeneratedAt, in.Top)
	if err != nil {
		return nil, temporal.NewNonRetryableApplicationError("building the report: "+err.Error(), ErrTypeStalePlan, err)
	}
	report, err := json.Marshal(rep)
	if err != nil {
		return nil, err
	}
	state, err := json.Marshal(st)
	if err != nil {
		return nil, err
	}
	if err := a.Store.SaveAnalytics(ctx, in.RunID, in.Plan.From, state, in.Plan.To, report, in.GeneratedAt); err != nil {
		if errors.Is(err, store.ErrStale) {
			return nil, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeStalePlan, err)
		}
		return nil, err
	}
	return report, nil
}
