// Package store holds the types of long-term storage (archived results and
// patrol deployments) shared by its backends. Consumers declare the small
// interfaces they need next to their own code.
package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/acu-patrol/acu/internal/event"
)

// PatrolStatus values of a deployment (DESIGN.md §2.3), shared by the
// workflow that sets them and the analytics that count them.
const (
	StatusDispatching    = "dispatching"
	StatusDispatched     = "dispatched"
	StatusFollowingUp    = "following-up"
	StatusRecovered      = "recovered"
	StatusStillFailing   = "still-failing"
	StatusNoAttempt      = "no-attempt"
	StatusNotifyRejected = "notify-rejected"
	// StatusNotifyExhausted is a deployment whose notification attempts
	// ran out (--notify-max-attempts) without a delivery.
	StatusNotifyExhausted = "notify-exhausted"
	// StatusAwaitingArchive is a deployment whose follow-up check waits
	// for the archiver to catch up with the end of its window.
	StatusAwaitingArchive = "awaiting-archive"
)

// Deployment is the report of one patrol deployment, keyed by WorkflowID.
type Deployment struct {
	WorkflowID string    // "patrol-<event identity>"
	EventID    string    // the failing event's identity
	StudentID  string    //
	ExerciseID string    //
	Metric     float64   // the failing score
	Threshold  float64   // the threshold that judged it
	Latitude   float64   //
	Longitude  float64   //
	FailedAt   time.Time // the failing result's timestamp
	// Status is the PatrolStatus reached: dispatched, notify-rejected,
	// following-up, recovered, still-failing or no-attempt.
	Status       string
	DispatchedAt time.Time // when the patrol accepted the notification; zero if never
	// FollowUpAt is when the follow-up was checked; zero while pending.
	FollowUpAt time.Time
	// FollowUpResults is how many follow-up results were found.
	FollowUpResults int
	UpdatedAt       time.Time
}

// FollowUpWindow selects a student's results on one exercise with a
// timestamp in (After, Until].
type FollowUpWindow struct {
	StudentID  string
	ExerciseID string
	After      time.Time
	Until      time.Time
}

// Result is an archived result.
type Result = event.Result

// Store is long-term storage as the services use it. Both backends
// (sqlite and cassandra) implement it and pass the same contract suite
// (internal/store/storetest).
//
// Results are archived idempotently by identity: the first write of an
// identity wins, later writes of it (redeliveries, replays) change nothing
// and are never counted twice by the analytics reads.
//
// Arrival positions order the archive for incremental analytics: every
// archived identity has one arrival position; ArrivalMark returns a position
// such that every result with a position at or below it is visible to the
// reads below, and none will later appear there. SQLite's positions are its
// insert sequence; Cassandra's are arrival times in microseconds, settled by
// a margin.
type Store interface {
	// PutResults archives a batch and returns how many identities were new,
	// or UnknownInserted when the backend cannot tell without extra reads.
	PutResults(ctx context.Context, rs []Result) (inserted int, err error)
	// FollowUpResults returns a student's results on one exercise in the
	// window, by timestamp then identity.
	FollowUpResults(ctx context.Context, w FollowUpWindow) ([]Result, error)

	// PutDeployment writes a deployment's report. Its workflow writes the
	// steps in order and the latest write wins; a backend whose writes are
	// ordered by the writers' clocks (Cassandra) orders them by step first.
	PutDeployment(ctx context.Context, d Deployment) error
	GetDeployment(ctx context.Context, workflowID string) (Deployment, bool, error)
	Deployments(ctx context.Context) ([]Deployment, error)
	// Deployed returns which of workflowIDs have a deployment recorded, in
	// one call for a batch: the alert service's long-term memory of the
	// events already deployed, after Temporal has forgotten their runs.
	Deployed(ctx context.Context, workflowIDs []string) (map[string]bool, error)

	// ArrivalMark is the settled arrival position of the archive (0 when
	// empty).
	ArrivalMark(ctx context.Context) (int64, error)
	// MarkWait returns how long until ArrivalMark covers every result
	// archived before t (0 once it does): nothing for a store whose mark
	// is its insert sequence, the rest of the settle margin for one whose
	// positions are arrival times.
	MarkWait(ctx context.Context, t time.Time) (time.Duration, error)
	// SplitArrivals cuts (after, upTo] into ranges for parallel reads; size
	// is the number of results a range should hold where positions count
	// results, which backends with time positions may ignore. Reading
	// every range it returns reads (after, upTo], each identity once.
	SplitArrivals(ctx context.Context, after, upTo, size int64) ([]ArrivalRange, error)
	// ResultsArrived calls fn with the results of the range, each identity
	// once, in pages. It returns an *InDoubtError, after calling fn for
	// some pages maybe, when an identity of the range cannot be placed
	// yet: the caller discards what it got and reads again later, with a
	// later mark.
	ResultsArrived(ctx context.Context, r ArrivalRange, fn func([]Result) error) error
	// ExerciseResults calls fn with the exercise's results whose arrival
	// position is at or below upTo, in pages of at most pageSize.
	ExerciseResults(ctx context.Context, exerciseID string, upTo int64, pageSize int, fn func([]Result) error) error

	// AnalyticsState returns the stored analytics state, if any.
	AnalyticsState(ctx context.Context) ([]byte, bool, error)
	// SaveAnalytics stores the state of run runID, with watermark, and its
	// report, if the stored watermark is still from (0 when there is no
	// state); otherwise it returns ErrStale. Saving again for the run that
	// saved last succeeds and changes nothing.
	SaveAnalytics(ctx context.Context, runID string, from int64, state []byte, watermark int64, report []byte, generatedAt time.Time) error
	// RunReport returns the report saved by run runID, if any.
	RunReport(ctx context.Context, runID string) ([]byte, bool, error)
	// LatestReport returns the last saved report, if any.
	LatestReport(ctx context.Context) ([]byte, bool, error)

	Close() error
}

// UnknownInserted is what PutResults returns when the backend does not know
// how many of the results were new.
const UnknownInserted = -1

// ErrStale is returned by SaveAnalytics when another run saved first.
var ErrStale = errors.New("the analytics state moved since it was read")

// ArrivalRange is the arrival positions in (After, UpTo] of the identities
// in part Part of Parts.
type ArrivalRange struct {
	After, UpTo int64
	// Part and Parts, when Parts is not 0, restrict the range to one of
	// Parts disjoint sets of identities, in which every arrival of an
	// identity between After and UpTo is: one reader then sees all of
	// them, in order. Parts 0 is every identity.
	Part  int `json:",omitempty"`
	Parts int `json:",omitempty"`
}

// InDoubtError says that an identity arrived at Arrival but that where it
// counts is not settled yet: the attempt that arrived then is not its
// canonical one, and the canonical one is missing (no attempt of it has
// completed yet) or arrived after the range (at Canonical). Counting the
// identity or leaving it out could count it never or twice; once the
// archiver completes it and the mark passes it, it is settled.
type InDoubtError struct {
	ID        string
	Arrival   int64
	Canonical int64 // 0: no complete attempt
}

func (e *InDoubtError) Error() string {
	if e.Canonical == 0 {
		return fmt.Sprintf("result %s arrived at %d but has no complete attempt in the archive yet", e.ID, e.Arrival)
	}
	return fmt.Sprintf("result %s arrived at %d but its complete attempt arrived at %d, after the range", e.ID, e.Arrival, e.Canonical)
}

// SplitEvery cuts (after, upTo] into consecutive ranges of size positions
// (the last one shorter).
func SplitEvery(after, upTo, size int64) []ArrivalRange {
	size = max(size, 1)
	var out []ArrivalRange
	for a := after; a < upTo; a += size {
		out = append(out, ArrivalRange{After: a, UpTo: min(a+size, upTo)})
	}
	return out
}
