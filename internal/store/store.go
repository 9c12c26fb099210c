// Package store holds the types of long-term storage (archived results and
// patrol deployments) shared by its backends. Consumers declare the small
// interfaces they need next to their own code.
package store

import (
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
