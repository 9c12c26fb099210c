// Package schedules holds the declarative Temporal Schedule definitions of
// the analytics workflows and applies them idempotently (`acu setup`).
package schedules

import (
	"strings"
	"time"
)

// AnalyticsScheduleID is the schedule ID of the analytics schedule.
const AnalyticsScheduleID = "acu-analytics"

// AnalyticsWorkflowIDPrefix prefixes the schedule time in the ID of every
// Analytics run the schedule starts: "analytics-2026-11-28T10:00:00Z".
const AnalyticsWorkflowIDPrefix = "analytics-"

// DefaultEvery is the schedule interval when neither an interval nor a cron
// spec is given.
const DefaultEvery = 5 * time.Minute

// DefaultCatchupWindow is how late a missed action may still be taken
// (e.g. after a server outage) when a Definition leaves CatchupWindow zero.
const DefaultCatchupWindow = 10 * time.Minute

// MinCatchupWindow is the smallest catch-up window Temporal honours (the
// server silently raises smaller ones); Apply rejects smaller values.
const MinCatchupWindow = 10 * time.Second

// MinEvery is the shortest interval Temporal accepts.
const MinEvery = time.Second

// scheduledTimeLayout is how Temporal appends the schedule (nominal) time to
// the action's workflow ID: "<base>-" + UTC time, whole seconds, RFC 3339.
const scheduledTimeLayout = time.RFC3339

// Outcome is what Apply did.
type Outcome string

// Outcomes of Apply.
const (
	Created   Outcome = "created"
	Updated   Outcome = "updated"
	Unchanged Outcome = "unchanged"
)

// ScheduledWorkflowID is the ID of the workflow a schedule whose
// WorkflowIDPrefix is prefix starts for schedule time t (the nominal time,
// or the trigger time of a manual run).
func ScheduledWorkflowID(prefix string, t time.Time) string {
	return prefix + t.UTC().Truncate(time.Second).Format(scheduledTimeLayout)
}

// ScheduledTime is the inverse of ScheduledWorkflowID: the schedule time in
// a workflow ID started by a schedule with the given prefix.
func ScheduledTime(prefix, workflowID string) (time.Time, bool) {
	rest, ok := strings.CutPrefix(workflowID, prefix)
	if !ok {
		return time.Time{}, false
	}
	t, err := time.Parse(scheduledTimeLayout, rest)
	if err != nil {
		return time.Time{}, false
	}
	return t, true
}
