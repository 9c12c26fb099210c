// Package workflows holds the deterministic workflow code of the system.
// Nothing here does I/O or reads the clock except through the workflow API.
package workflows

import (
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/acu-patrol/acu/internal/store"
)

// TaskQueue is the task queue of the patrol workflows and activities.
const TaskQueue = "acu-patrol"

// PatrolWorkflowType is the registered name of PatrolDeployment.
const PatrolWorkflowType = "PatrolDeployment"

// NotifyActivity is the registered name of the patrol notification
// activity (activities.Patrol.NotifyPatrol).
const NotifyActivity = "NotifyPatrol"

// workflowIDPrefix prefixes the event identity in a patrol workflow ID.
const workflowIDPrefix = "patrol-"

// PatrolWorkflowID is the workflow ID of the deployment for an event identity.
func PatrolWorkflowID(eventIdentity string) string { return workflowIDPrefix + eventIdentity }

// EventIdentity is the inverse of PatrolWorkflowID.
func EventIdentity(workflowID string) (string, bool) {
	return strings.CutPrefix(workflowID, workflowIDPrefix)
}

// Search attributes of PatrolDeployment (DESIGN.md §2.3).
var (
	StudentIDKey    = temporal.NewSearchAttributeKeyKeyword("StudentId")
	ExerciseIDKey   = temporal.NewSearchAttributeKeyKeyword("ExerciseId")
	MetricKey       = temporal.NewSearchAttributeKeyFloat64("Metric")
	ThresholdKey    = temporal.NewSearchAttributeKeyFloat64("Threshold")
	PatrolStatusKey = temporal.NewSearchAttributeKeyKeyword("PatrolStatus")
)

// PatrolStatus values.
const (
	StatusDispatching    = store.StatusDispatching
	StatusDispatched     = store.StatusDispatched
	StatusFollowingUp    = store.StatusFollowingUp
	StatusRecovered      = store.StatusRecovered
	StatusStillFailing   = store.StatusStillFailing
	StatusNoAttempt      = store.StatusNoAttempt
	StatusNotifyRejected = store.StatusNotifyRejected
	// StatusNotifyExhausted: the notification's attempts ran out
	// (NotifyMaxAttempts), the patrol never answered 2xx.
	StatusNotifyExhausted = store.StatusNotifyExhausted
	// StatusAwaitingArchive: the follow-up window has closed, and the
	// check waits for the archiver to catch up before it reads.
	StatusAwaitingArchive = store.StatusAwaitingArchive
)

// DefaultFollowUpAfter is the default follow-up delay.
const DefaultFollowUpAfter = 30 * time.Minute

// DefaultFollowUpSettle is how long after the end of the follow-up window the
// check runs by default, so that results timestamped at its end have been
// archived.
const DefaultFollowUpSettle = 10 * time.Second

// PatrolInput is the input of PatrolDeployment.
type PatrolInput struct {
	// EventID is the failing event's identity.
	EventID    string
	StudentID  string
	ExerciseID string
	Metric     float64
	Latitude   float64
	Longitude  float64
	// FailedAt is the failing result's timestamp.
	FailedAt time.Time
	// Threshold is the threshold that judged the result. When HasThreshold
	// is false (a deployment started by hand), the workflow reads the
	// current one from etcd.
	Threshold    float64
	HasThreshold bool
	// FollowUpAfter is the follow-up window length; zero means
	// DefaultFollowUpAfter.
	FollowUpAfter time.Duration
	// FollowUpSettle is the extra wait before the check; nil means
	// DefaultFollowUpSettle (a deployment started by hand).
	FollowUpSettle *time.Duration
	// NotifyMaxAttempts bounds the notification attempts; zero means no limit.
	NotifyMaxAttempts int32
}

// PatrolResult is the result of PatrolDeployment.
type PatrolResult struct {
	// Status is the final PatrolStatus.
	Status string
	// Threshold is the threshold the deployment was judged with.
	Threshold       float64
	DispatchedAt    time.Time
	FollowUpResults int
}
