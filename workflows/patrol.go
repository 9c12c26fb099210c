package workflows

import (
	"errors"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/acu-patrol/acu/activities"
	"github.com/acu-patrol/acu/internal/store"
)

// NotifyRetryPolicy is the patrol notification retry policy of the contract:
// exponential backoff from 1 s doubling to 1 min, no attempt limit by
// default, permanent rejections not retried.
func NotifyRetryPolicy(maxAttempts int32) *temporal.RetryPolicy {
	return &temporal.RetryPolicy{
		InitialInterval:        time.Second,
		BackoffCoefficient:     2,
		MaximumInterval:        time.Minute,
		MaximumAttempts:        maxAttempts,
		NonRetryableErrorTypes: []string{activities.ErrTypePatrolRejected},
	}
}

// fastPathChange versions PatrolDeployment's shorter path to the
// notification (workflow.GetVersion): runs recorded before it replay the
// original steps.
const fastPathChange = "notify-first-local-records"

// followUpChange versions two changes made together (workflow.GetVersion):
// the follow-up check waits from the workflow's start, not from failed_at
// (a laptop's clock, which may be years off either way: a clock behind had
// the check run before the student could retake, one centuries ahead slept
// for centuries), and a notification whose attempts are exhausted
// (--notify-max-attempts) is recorded as notify-exhausted instead of left
// dispatching, and the check reads the archive only once the archiver has
// caught up with the deadline (awaitArchive). Runs recorded before replay
// the earlier steps.
const followUpChange = "follow-up-from-start"

// localRetryHorizon bounds all the attempts of one local activity: ten
// years, in effect no bound. Without it the SDK gives the attempts the
// start-to-close timeout (30 s) in all, and a backend down for longer
// failed the deployment workflow.
const localRetryHorizon = 10 * 365 * 24 * time.Hour

// PatrolDeployment notifies the patrol of a failing result, records the
// deployment, waits for the follow-up window to end and records whether the
// student recovered. PatrolStatus is kept current at every step.
//
// The first notification attempt runs inside the first workflow task (a
// local activity, see notifyFirst); the store writes and reads are local
// activities too (run inside the workflow task that needs them, no task of
// their own), and the record of the delivered notification and the start
// of the follow-up are one step: a deployment whose patrol answers costs
// one workflow task until its follow-up timer fires.
func PatrolDeployment(ctx workflow.Context, in PatrolInput) (PatrolResult, error) {
	if workflow.GetVersion(ctx, fastPathChange, workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		return patrolDeploymentV0(ctx, in)
	}
	var a *activities.Patrol
	log := workflow.GetLogger(ctx)
	followUpAfter, settle := followUpTimes(in)
	wid := workflow.GetInfo(ctx).WorkflowExecution.ID
	out := PatrolResult{Threshold: in.Threshold}

	// Store, etcd and Kafka calls retry until they succeed (no attempt
	// limit): a backend outage delays a deployment, never loses it.
	local := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		StartToCloseTimeout:    30 * time.Second,
		ScheduleToCloseTimeout: localRetryHorizon,
		RetryPolicy:            &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: time.Minute},
	})
	if _, set := workflow.GetTypedSearchAttributes(ctx).GetKeyword(PatrolStatusKey); !set {
		// Started without the start's search attributes (by hand).
		if err := setStatus(ctx, StatusDispatching); err != nil {
			return out, err
		}
	}
	if !in.HasThreshold {
		th, err := currentThreshold(ctx, workflow.ExecuteLocalActivity(local, a.ReadThreshold, activities.ReadThresholdInput{ExerciseID: in.ExerciseID}), in.ExerciseID)
		if err != nil {
			return out, err
		}
		out.Threshold = th
	}

	dep := deployment(wid, in, out.Threshold)
	sent, err := notifyFirst(ctx, wid, in, out.Threshold)
	v := workflow.GetVersion(ctx, followUpChange, workflow.DefaultVersion, 1)
	if err != nil {
		var appErr *temporal.ApplicationError
		status := ""
		switch {
		case errors.As(err, &appErr) && appErr.Type() == activities.ErrTypePatrolRejected:
			log.Error("patrol rejected the notification", "error", err)
			status = StatusNotifyRejected
		case v >= 1 && !temporal.IsCanceledError(err):
			// Only a limit on the attempts ends the retries of a patrol
			// that keeps failing (the policy has none by default).
			log.Error("patrol notification attempts exhausted", "max_attempts", in.NotifyMaxAttempts, "error", err)
			status = StatusNotifyExhausted
		}
		if status != "" {
			out.Status, dep.Status = status, status
			if rerr := workflow.ExecuteLocalActivity(local, a.RecordDeployment, activities.RecordInput{Deployment: dep}).Get(ctx, nil); rerr != nil {
				return out, rerr
			}
			if serr := setStatus(ctx, status); serr != nil {
				return out, serr
			}
		}
		return out, err
	}
	// Delivered: the deployment is recorded as dispatched and following up
	// in one write, then waits on a durable timer until the window
	// (failed_at, failed_at + follow-up-after] has closed and settled.
	out.DispatchedAt = sent.DeliveredAt
	dep.DispatchedAt = sent.DeliveredAt
	dep.Status = StatusFollowingUp
	if err := workflow.ExecuteLocalActivity(local, a.RecordDeployment, activities.RecordInput{Deployment: dep}).Get(ctx, nil); err != nil {
		return out, err
	}
	if err := setStatus(ctx, StatusFollowingUp); err != nil {
		return out, err
	}
	windowEnd := in.FailedAt.Add(followUpAfter)
	// The window is in the laptop's time, failed_at's; the wait is on the
	// workflow's clock. The failure was sent before the workflow started,
	// so a retake sent within follow-up-after of the failure has been sent
	// by start + follow-up-after, whatever the laptop's clock says.
	deadline := windowEnd.Add(settle)
	if v >= 1 {
		deadline = workflow.GetInfo(ctx).WorkflowStartTime.Add(followUpAfter + settle)
	}
	if wait := deadline.Sub(workflow.Now(ctx)); wait > 0 {
		if err := workflow.Sleep(ctx, wait); err != nil {
			return out, err
		}
	}
	if v >= 1 {
		if err := awaitArchive(ctx, local, dep); err != nil {
			return out, err
		}
	}
	var fu activities.FollowUpResult
	if err := workflow.ExecuteLocalActivity(local, a.CheckFollowUp, followUpInput(in, windowEnd, out.Threshold)).Get(ctx, &fu); err != nil {
		return out, err
	}
	out.Status, out.FollowUpResults = outcome(fu), fu.Results
	dep.Status, dep.FollowUpResults, dep.FollowUpAt = out.Status, fu.Results, workflow.Now(ctx).UTC()
	if err := workflow.ExecuteLocalActivity(local, a.RecordDeployment, activities.RecordInput{Deployment: dep}).Get(ctx, nil); err != nil {
		return out, err
	}
	if err := setStatus(ctx, out.Status); err != nil {
		return out, err
	}
	return out, nil
}

// awaitArchive waits until the archive holds every result sent before now
// (the follow-up's deadline): the end offsets of the results topic are
// taken once, and the check waits until the archiver has committed up to
// them. A retake the archiver has not written yet would make the outcome a
// guess, recorded for ever. While it waits, the deployment's status is
// awaiting-archive (in the store and in PatrolStatus) and the wait is an
// activity retried by the server, its last failure saying how far behind
// the archive is.
func awaitArchive(ctx workflow.Context, local workflow.Context, dep store.Deployment) error {
	var a *activities.Patrol
	var mark activities.ArchiveMarkResult
	if err := workflow.ExecuteLocalActivity(local, a.ArchiveMark).Get(ctx, &mark); err != nil {
		return err
	}
	if mark.Behind == 0 {
		return nil
	}
	workflow.GetLogger(ctx).Warn("the archive is behind the follow-up's deadline; waiting for it", "behind", mark.Behind)
	dep.Status = StatusAwaitingArchive
	if err := workflow.ExecuteLocalActivity(local, a.RecordDeployment, activities.RecordInput{Deployment: dep}).Get(ctx, nil); err != nil {
		return err
	}
	if err := setStatus(ctx, StatusAwaitingArchive); err != nil {
		return err
	}
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: time.Minute},
	})
	return workflow.ExecuteActivity(actx, a.AwaitArchive, activities.AwaitArchiveInput{Ends: mark.Ends}).Get(ctx, nil)
}

// currentThreshold takes the result of the ReadThreshold call of a
// deployment started without a threshold and makes it the deployment's
// (search attribute Threshold); no threshold is no alert.
func currentThreshold(ctx workflow.Context, read workflow.Future, exerciseID string) (float64, error) {
	var th activities.ReadThresholdResult
	if err := read.Get(ctx, &th); err != nil {
		return 0, err
	}
	if !th.Set {
		// No threshold means no alert (DESIGN.md §2.2).
		return 0, temporal.NewNonRetryableApplicationError("exercise "+exerciseID+" has no threshold: nothing to deploy", "NoThreshold", nil)
	}
	return th.Threshold, workflow.UpsertTypedSearchAttributes(ctx, ThresholdKey.ValueSet(th.Threshold))
}

func followUpTimes(in PatrolInput) (after, settle time.Duration) {
	after = in.FollowUpAfter
	if after <= 0 {
		after = DefaultFollowUpAfter
	}
	settle = DefaultFollowUpSettle
	if in.FollowUpSettle != nil {
		settle = max(*in.FollowUpSettle, 0)
	}
	return after, settle
}

func deployment(wid string, in PatrolInput, threshold float64) store.Deployment {
	return store.Deployment{
		WorkflowID: wid, EventID: in.EventID, StudentID: in.StudentID, ExerciseID: in.ExerciseID,
		Metric: in.Metric, Threshold: threshold, Latitude: in.Latitude, Longitude: in.Longitude,
		FailedAt: in.FailedAt.UTC(),
	}
}

// notifyTimeout bounds one notification attempt as the workflow sees it
// (the worker's HTTP client has its own, shorter, timeout).
const notifyTimeout = 30 * time.Second

// notifyFirst makes the first notification attempt a local activity: it
// runs in the worker as soon as the first workflow task arrives, with no
// task of its own, so a patrol that answers is notified in the time of one
// workflow start. A first attempt that fails and may be retried is followed,
// after the policy's first interval, by the notification activity with the
// contract's retry policy for the remaining attempts: a long outage of the
// patrol endpoint is retried by the server, visible in the UI as that
// activity's attempts. Every attempt carries the same Idempotency-Key.
func notifyFirst(ctx workflow.Context, wid string, in PatrolInput, threshold float64) (activities.NotifyResult, error) {
	var a *activities.Patrol
	req := notification(wid, in, threshold)
	policy := NotifyRetryPolicy(in.NotifyMaxAttempts)
	lctx := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		StartToCloseTimeout: notifyTimeout,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 1},
	})
	var sent activities.NotifyResult
	err := workflow.ExecuteLocalActivity(lctx, a.NotifyPatrol, req).Get(ctx, &sent)
	var appErr *temporal.ApplicationError
	if err == nil || (errors.As(err, &appErr) && appErr.NonRetryable()) || policy.MaximumAttempts == 1 {
		return sent, err
	}
	workflow.GetLogger(ctx).Warn("patrol notification failed; retrying", "error", err)
	if err := workflow.Sleep(ctx, policy.InitialInterval); err != nil {
		return sent, err
	}
	if policy.MaximumAttempts > 1 {
		policy.MaximumAttempts--
	}
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: notifyTimeout, RetryPolicy: policy})
	err = workflow.ExecuteActivity(actx, a.NotifyPatrol, req).Get(ctx, &sent)
	return sent, err
}

// notify runs the notification activity (retried as the contract says):
// the path of runs recorded before fastPathChange.
func notify(ctx workflow.Context, wid string, in PatrolInput, threshold float64) (activities.NotifyResult, error) {
	var a *activities.Patrol
	notifyCtx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: notifyTimeout,
		RetryPolicy:         NotifyRetryPolicy(in.NotifyMaxAttempts),
	})
	var sent activities.NotifyResult
	err := workflow.ExecuteActivity(notifyCtx, a.NotifyPatrol, notification(wid, in, threshold)).Get(ctx, &sent)
	return sent, err
}

// notification is the notification of the deployment (DESIGN.md §2.3).
func notification(wid string, in PatrolInput, threshold float64) activities.NotifyInput {
	return activities.NotifyInput{Notification: activities.Notification{
		DeploymentID: wid, EventID: in.EventID, StudentID: in.StudentID, ExerciseID: in.ExerciseID,
		Metric: in.Metric, Threshold: threshold, Latitude: in.Latitude, Longitude: in.Longitude,
		FailedAt: in.FailedAt.UTC(),
	}}
}

func followUpInput(in PatrolInput, windowEnd time.Time, threshold float64) activities.FollowUpInput {
	return activities.FollowUpInput{
		Window: store.FollowUpWindow{StudentID: in.StudentID, ExerciseID: in.ExerciseID,
			After: in.FailedAt.UTC(), Until: windowEnd.UTC()},
		Threshold: threshold,
	}
}

func outcome(fu activities.FollowUpResult) string {
	switch {
	case fu.Passed > 0:
		return StatusRecovered
	case fu.Results > 0:
		return StatusStillFailing
	default:
		return StatusNoAttempt
	}
}

// patrolDeploymentV0 is PatrolDeployment as it ran before fastPathChange:
// runs recorded then replay it. Do not change it.
func patrolDeploymentV0(ctx workflow.Context, in PatrolInput) (PatrolResult, error) {
	var a *activities.Patrol
	log := workflow.GetLogger(ctx)
	followUpAfter, settle := followUpTimes(in)
	wid := workflow.GetInfo(ctx).WorkflowExecution.ID
	out := PatrolResult{Threshold: in.Threshold}

	// Store and etcd calls retry until they succeed (the default policy has
	// no attempt limit): a backend outage delays a deployment, never loses it.
	local := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: time.Minute},
	})
	if err := setStatus(ctx, StatusDispatching); err != nil {
		return out, err
	}
	if !in.HasThreshold {
		th, err := currentThreshold(ctx, workflow.ExecuteActivity(local, a.ReadThreshold, activities.ReadThresholdInput{ExerciseID: in.ExerciseID}), in.ExerciseID)
		if err != nil {
			return out, err
		}
		out.Threshold = th
	}

	dep := deployment(wid, in, out.Threshold)
	sent, err := notify(ctx, wid, in, out.Threshold)
	if err != nil {
		var appErr *temporal.ApplicationError
		if errors.As(err, &appErr) && appErr.Type() == activities.ErrTypePatrolRejected {
			log.Error("patrol rejected the notification", "error", err)
			out.Status = StatusNotifyRejected
			dep.Status = StatusNotifyRejected
			if serr := setStatus(ctx, StatusNotifyRejected); serr != nil {
				return out, serr
			}
			if rerr := workflow.ExecuteActivity(local, a.RecordDeployment, activities.RecordInput{Deployment: dep}).Get(ctx, nil); rerr != nil {
				return out, rerr
			}
		}
		return out, err
	}
	out.DispatchedAt = sent.DeliveredAt
	dep.DispatchedAt = sent.DeliveredAt
	dep.Status = StatusDispatched
	if err := setStatus(ctx, StatusDispatched); err != nil {
		return out, err
	}
	if err := workflow.ExecuteActivity(local, a.RecordDeployment, activities.RecordInput{Deployment: dep}).Get(ctx, nil); err != nil {
		return out, err
	}

	// Wait on a durable timer until the window (failed_at, failed_at +
	// follow-up-after] has closed and settled.
	dep.Status = StatusFollowingUp
	if err := setStatus(ctx, StatusFollowingUp); err != nil {
		return out, err
	}
	if err := workflow.ExecuteActivity(local, a.RecordDeployment, activities.RecordInput{Deployment: dep}).Get(ctx, nil); err != nil {
		return out, err
	}
	windowEnd := in.FailedAt.Add(followUpAfter)
	if wait := windowEnd.Add(settle).Sub(workflow.Now(ctx)); wait > 0 {
		if err := workflow.Sleep(ctx, wait); err != nil {
			return out, err
		}
	}
	var fu activities.FollowUpResult
	if err := workflow.ExecuteActivity(local, a.CheckFollowUp, followUpInput(in, windowEnd, out.Threshold)).Get(ctx, &fu); err != nil {
		return out, err
	}
	out.Status, out.FollowUpResults = outcome(fu), fu.Results
	dep.Status = out.Status
	dep.FollowUpResults = fu.Results
	dep.FollowUpAt = workflow.Now(ctx).UTC()
	if err := setStatus(ctx, out.Status); err != nil {
		return out, err
	}
	if err := workflow.ExecuteActivity(local, a.RecordDeployment, activities.RecordInput{Deployment: dep}).Get(ctx, nil); err != nil {
		return out, err
	}
	return out, nil
}

func setStatus(ctx workflow.Context, status string) error {
	return workflow.UpsertTypedSearchAttributes(ctx, PatrolStatusKey.ValueSet(status))
}
