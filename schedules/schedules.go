package schedules

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"google.golang.org/protobuf/proto"

	"github.com/acu-patrol/acu/workflows"
)

// ErrNotFound is wrapped by the errors of Pause, Unpause, Trigger and
// Describe when no schedule has the ID.
var ErrNotFound = errors.New("schedule not found")

// overlap is the overlap policy of every schedule: when a run is still
// going at the next scheduled time, that time is skipped.
const overlap = enumspb.SCHEDULE_OVERLAP_POLICY_SKIP

// triggerOverlap is the overlap policy of a manual run (Trigger): it starts
// at once, or right after the run in progress ends — never alongside it
// (two Analytics runs would commit the same new results concurrently), and
// never silently dropped as SKIP would.
const triggerOverlap = enumspb.SCHEDULE_OVERLAP_POLICY_BUFFER_ONE

// memoNoteKey is the schedule memo field holding Definition.Note.
const memoNoteKey = "note"

// Definition is one schedule. Apply makes the schedule with ID match it.
type Definition struct {
	// ID is the schedule ID, e.g. AnalyticsScheduleID. Required.
	ID string
	// Spec is when the schedule runs. Required (see ParseSpec).
	Spec Spec
	// WorkflowType is the registered name of the workflow to start, e.g.
	// workflows.AnalyticsWorkflowType. Required.
	WorkflowType string
	// TaskQueue is the task queue of the started workflows. Required.
	TaskQueue string
	// Args is the workflow input, encoded by the client's data converter.
	Args []any
	// WorkflowIDPrefix prefixes the schedule time in the started workflow's
	// ID, see ScheduledWorkflowID. It must end with "-": Temporal appends
	// "-" and the time to the ID we give it, so we give it the prefix
	// without its dash. Required.
	WorkflowIDPrefix string
	// CatchupWindow is how late a scheduled run may still start after the
	// server was unavailable at its time; zero means DefaultCatchupWindow,
	// less than MinCatchupWindow is invalid.
	CatchupWindow time.Duration
	// Note is a one-line description shown in the UI and the CLI: the
	// summary of every workflow the schedule starts (kept up to date), and
	// the schedule's memo and initial note when it is created (Temporal
	// cannot update the memo of a workflow-backed schedule, and Pause and
	// Unpause replace the note). Optional.
	Note string
}

// Analytics returns the analytics schedule definition for a spec and the
// workflow input (one workflows.AnalyticsInput).
func Analytics(spec Spec, args ...any) Definition {
	return Definition{
		ID:               AnalyticsScheduleID,
		Spec:             spec,
		WorkflowType:     workflows.AnalyticsWorkflowType,
		TaskQueue:        workflows.TaskQueue,
		Args:             args,
		WorkflowIDPrefix: AnalyticsWorkflowIDPrefix,
		Note:             "ACU analytics: failure hotspots, recovery rate and mean success per exercise (acu setup)",
	}
}

// desired is a validated Definition in the SDK's terms.
type desired struct {
	spec          client.ScheduleSpec
	action        *client.ScheduleWorkflowAction
	catchupWindow time.Duration
	args          []*commonpb.Payload // Args as the default data converter encodes them
}

// resolve validates d and applies defaults.
func (d Definition) resolve() (desired, error) {
	var errs []error
	if d.ID == "" {
		errs = append(errs, errors.New("schedule ID is empty"))
	}
	if d.WorkflowType == "" {
		errs = append(errs, errors.New("workflow type is empty"))
	}
	if d.TaskQueue == "" {
		errs = append(errs, errors.New("task queue is empty"))
	}
	if !strings.HasSuffix(d.WorkflowIDPrefix, "-") || len(d.WorkflowIDPrefix) < 2 {
		errs = append(errs, fmt.Errorf("workflow ID prefix %q must be non-empty and end with \"-\"", d.WorkflowIDPrefix))
	}
	cw := d.CatchupWindow
	if cw == 0 {
		cw = DefaultCatchupWindow
	}
	if cw < MinCatchupWindow {
		errs = append(errs, fmt.Errorf("catch-up window %v is below Temporal's minimum of %v", d.CatchupWindow, MinCatchupWindow))
	}
	spec, err := d.Spec.scheduleSpec()
	if err != nil {
		errs = append(errs, err)
	}
	dc := converter.GetDefaultDataConverter()
	args := make([]*commonpb.Payload, len(d.Args))
	for i, a := range d.Args {
		if args[i], err = dc.ToPayload(a); err != nil {
			errs = append(errs, fmt.Errorf("encode workflow argument %d: %w", i, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return desired{}, fmt.Errorf("schedule definition %q: %w", d.ID, err)
	}
	return desired{
		spec: spec,
		action: &client.ScheduleWorkflowAction{
			ID:            strings.TrimSuffix(d.WorkflowIDPrefix, "-"),
			Workflow:      d.WorkflowType,
			Args:          d.Args,
			TaskQueue:     d.TaskQueue,
			StaticSummary: d.Note,
		},
		catchupWindow: cw,
		args:          args,
	}, nil
}

// Apply creates the schedule d describes, or updates the existing schedule
// with that ID in place when what Apply manages differs: the spec, the
// workflow type, task queue, ID prefix, input and note of the action, the
// overlap policy and the catch-up window. The paused state, the note and
// the remaining-actions limit of an existing schedule are kept. Applying the
// same definition again changes nothing and returns Unchanged.
//
// The input is compared as the SDK's default data converter encodes it; with
// a client using another converter every Apply reports Updated (harmless).
// The SDK's Update reads, then writes the whole schedule without a conflict
// token, so a Pause between the two can be undone; `acu setup` is not
// expected to race with operators.
func Apply(ctx context.Context, c client.Client, d Definition) (Outcome, error) {
	want, err := d.resolve()
	if err != nil {
		return "", err
	}
	sc := c.ScheduleClient()
	_, err = sc.Create(ctx, client.ScheduleOptions{
		ID:            d.ID,
		Spec:          want.spec,
		Action:        want.action,
		Overlap:       overlap,
		CatchupWindow: want.catchupWindow,
		Note:          d.Note,
		Memo:          noteMemo(d.Note),
	})
	if err == nil {
		return Created, nil
	}
	var exists *serviceerror.AlreadyExists
	if !errors.Is(err, temporal.ErrScheduleAlreadyRunning) && !errors.As(err, &exists) {
		return "", fmt.Errorf("create schedule %q: %w", d.ID, err)
	}

	outcome := Unchanged
	err = sc.GetHandle(ctx, d.ID).Update(ctx, client.ScheduleUpdateOptions{
		DoUpdate: func(in client.ScheduleUpdateInput) (*client.ScheduleUpdate, error) {
			current := in.Description.Schedule
			if matches(current, want) {
				return nil, temporal.ErrSkipScheduleUpdate
			}
			outcome = Updated
			state := current.State
			if state == nil {
				state = &client.ScheduleState{}
			}
			spec := want.spec
			return &client.ScheduleUpdate{Schedule: &client.Schedule{
				Action: want.action,
				Spec:   &spec,
				Policy: &client.SchedulePolicies{Overlap: overlap, CatchupWindow: want.catchupWindow},
				State:  state,
			}}, nil
		},
	})
	if err != nil {
		return "", fmt.Errorf("update schedule %q: %w", d.ID, err)
	}
	return outcome, nil
}

// noteMemo is the schedule memo for a note.
func noteMemo(note string) map[string]any {
	if note == "" {
		return nil
	}
	return map[string]any{memoNoteKey: note}
}

// matches reports whether the current schedule is what want describes, in
// everything Apply manages.
func matches(current client.Schedule, want desired) bool {
	if specKey(current.Spec) != specKey(&want.spec) {
		return false
	}
	if current.Policy == nil || current.Policy.CatchupWindow != want.catchupWindow ||
		current.Policy.PauseOnFailure || effectiveOverlap(current.Policy.Overlap) != overlap {
		return false
	}
	action, ok := current.Action.(*client.ScheduleWorkflowAction)
	if !ok || action.ID != want.action.ID || action.Workflow != want.action.Workflow ||
		action.TaskQueue != want.action.TaskQueue || action.StaticSummary != want.action.StaticSummary ||
		len(action.Args) != len(want.args) {
		return false
	}
	// Describe returns the input as the payloads it stores.
	for i, a := range action.Args {
		p, ok := a.(*commonpb.Payload)
		if !ok || !proto.Equal(p, want.args[i]) {
			return false
		}
	}
	return true
}

// effectiveOverlap is the policy the server applies for p: unspecified
// means SKIP.
func effectiveOverlap(p enumspb.ScheduleOverlapPolicy) enumspb.ScheduleOverlapPolicy {
	if p == enumspb.SCHEDULE_OVERLAP_POLICY_UNSPECIFIED {
		return enumspb.SCHEDULE_OVERLAP_POLICY_SKIP
	}
	return p
}

// Pause pauses the schedule: no scheduled runs until Unpause (Trigger still
// runs). The note says why; empty means "paused by acu".
func Pause(ctx context.Context, c client.Client, id, note string) error {
	if note == "" {
		note = "paused by acu"
	}
	err := c.ScheduleClient().GetHandle(ctx, id).Pause(ctx, client.SchedulePauseOptions{Note: note})
	return wrapHandleErr("pause", id, err)
}

// Unpause resumes a paused schedule; runs missed while paused are not made
// up. The note replaces the pause note; empty means "unpaused by acu".
func Unpause(ctx context.Context, c client.Client, id, note string) error {
	if note == "" {
		note = "unpaused by acu"
	}
	err := c.ScheduleClient().GetHandle(ctx, id).Unpause(ctx, client.ScheduleUnpauseOptions{Note: note})
	return wrapHandleErr("unpause", id, err)
}

// Trigger starts a run now, paused or not. If a run is in progress the new
// one starts when it ends (overlap policy BUFFER_ONE), so runs never
// overlap and a manual run is never silently skipped. The run's workflow ID
// is ScheduledWorkflowID(prefix, trigger time); see Describe for it.
func Trigger(ctx context.Context, c client.Client, id string) error {
	err := c.ScheduleClient().GetHandle(ctx, id).Trigger(ctx, client.ScheduleTriggerOptions{Overlap: triggerOverlap})
	return wrapHandleErr("trigger", id, err)
}

// wrapHandleErr names the operation and schedule, and adds ErrNotFound when
// the server says there is no such schedule.
func wrapHandleErr(op, id string, err error) error {
	if err == nil {
		return nil
	}
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		return fmt.Errorf("%s schedule %q: %w: %w", op, id, ErrNotFound, err)
	}
	return fmt.Errorf("%s schedule %q: %w", op, id, err)
}
