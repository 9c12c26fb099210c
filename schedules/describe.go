package schedules

import (
	"context"
	"fmt"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
)

// Summary is a readable description of a schedule, for the CLI.
type Summary struct {
	ID string
	// Spec is the spec the schedule was applied with; zero when its spec
	// is not one Apply writes (edited by hand), see SpecText.
	Spec Spec
	// SpecText is Spec.String(), or else Temporal's spec in a readable
	// canonical form (calendars as "second minute hour day-of-month month
	// day-of-week year").
	SpecText     string
	WorkflowType string
	TaskQueue    string
	// WorkflowIDPrefix is the ID prefix of the started workflows ("" when
	// the action is not a workflow).
	WorkflowIDPrefix string
	// Overlap is the overlap policy, e.g. "SKIP".
	Overlap       string
	CatchupWindow time.Duration
	Paused        bool
	// Note is the schedule's note: why it was paused or unpaused, or the
	// definition's note.
	Note string
	// NextRuns are the next scheduled times (up to 10), computed even while
	// paused.
	NextRuns []time.Time
	// RecentRuns are the latest runs started (up to 10, oldest first),
	// manual triggers included.
	RecentRuns []Run
	// Running are the IDs of the workflows it started that are still
	// running.
	Running []string
	// Runs, MissedCatchup and SkippedOverlap count the runs started,
	// skipped for being later than the catch-up window, and skipped
	// because a run was still going.
	Runs, MissedCatchup, SkippedOverlap int
	CreatedAt, UpdatedAt                time.Time
}

// Run is one run a schedule started.
type Run struct {
	// ScheduledAt is the time it was scheduled for (the trigger time for a
	// manual run); StartedAt when it was actually started.
	ScheduledAt, StartedAt time.Time
	WorkflowID, RunID      string
}

// Describe returns a readable summary of the schedule with ID id.
func Describe(ctx context.Context, c client.Client, id string) (Summary, error) {
	desc, err := c.ScheduleClient().GetHandle(ctx, id).Describe(ctx)
	if err != nil {
		return Summary{}, wrapHandleErr("describe", id, err)
	}
	s := Summary{
		ID:             id,
		Runs:           desc.Info.NumActions,
		MissedCatchup:  desc.Info.NumActionsMissedCatchupWindow,
		SkippedOverlap: desc.Info.NumActionsSkippedOverlap,
		NextRuns:       desc.Info.NextActionTimes,
		CreatedAt:      desc.Info.CreatedAt,
		UpdatedAt:      desc.Info.LastUpdateAt,
	}
	sched := desc.Schedule
	if spec, ok := specFromSchedule(sched.Spec); ok {
		s.Spec, s.SpecText = spec, spec.String()
	} else {
		s.SpecText = specKey(sched.Spec)
	}
	if a, ok := sched.Action.(*client.ScheduleWorkflowAction); ok {
		s.WorkflowType, _ = a.Workflow.(string) // Describe gives the type name
		s.TaskQueue = a.TaskQueue
		s.WorkflowIDPrefix = a.ID + "-"
	}
	if sched.Policy != nil {
		s.Overlap = overlapName(sched.Policy.Overlap)
		s.CatchupWindow = sched.Policy.CatchupWindow
	}
	if sched.State != nil {
		s.Paused, s.Note = sched.State.Paused, sched.State.Note
	}
	for _, a := range desc.Info.RecentActions {
		r := Run{ScheduledAt: a.ScheduleTime, StartedAt: a.ActualTime}
		if w := a.StartWorkflowResult; w != nil {
			r.WorkflowID, r.RunID = w.WorkflowID, w.FirstExecutionRunID
		}
		s.RecentRuns = append(s.RecentRuns, r)
	}
	for _, w := range desc.Info.RunningWorkflows {
		s.Running = append(s.Running, w.WorkflowID)
	}
	return s, nil
}

// overlapName is "SKIP" for SCHEDULE_OVERLAP_POLICY_SKIP, and so on.
func overlapName(p enumspb.ScheduleOverlapPolicy) string {
	name := enumspb.ScheduleOverlapPolicy_name[int32(effectiveOverlap(p))]
	return strings.TrimPrefix(name, "SCHEDULE_OVERLAP_POLICY_")
}

// String is a multi-line human-readable rendering.
func (s Summary) String() string {
	var b strings.Builder
	ts := func(t time.Time) string { return t.UTC().Format(time.RFC3339) }
	fmt.Fprintf(&b, "Schedule %s\n", s.ID)
	fmt.Fprintf(&b, "  spec:      %s (UTC)\n", s.SpecText)
	state := "active"
	if s.Paused {
		state = "PAUSED"
	}
	if s.Note != "" {
		state += " — " + s.Note
	}
	fmt.Fprintf(&b, "  state:     %s\n", state)
	fmt.Fprintf(&b, "  workflow:  %s on task queue %s, IDs %s<time>\n", s.WorkflowType, s.TaskQueue, s.WorkflowIDPrefix)
	fmt.Fprintf(&b, "  policy:    overlap %s, catch-up window %v\n", s.Overlap, s.CatchupWindow)
	fmt.Fprintf(&b, "  runs:      %d started, %d skipped (overlap), %d missed (catch-up window)\n", s.Runs, s.SkippedOverlap, s.MissedCatchup)
	if len(s.Running) > 0 {
		fmt.Fprintf(&b, "  running:   %s\n", strings.Join(s.Running, ", "))
	}
	if len(s.NextRuns) > 0 {
		next := make([]string, 0, 3)
		for _, t := range s.NextRuns[:min(3, len(s.NextRuns))] {
			next = append(next, ts(t))
		}
		fmt.Fprintf(&b, "  next:      %s\n", strings.Join(next, ", "))
	}
	for i := len(s.RecentRuns) - 1; i >= 0 && i >= len(s.RecentRuns)-3; i-- {
		r := s.RecentRuns[i]
		fmt.Fprintf(&b, "  recent:    %s (scheduled %s, started %s)\n", r.WorkflowID, ts(r.ScheduledAt), ts(r.StartedAt))
	}
	return b.String()
}
