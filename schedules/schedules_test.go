package schedules_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/robfig/cron/v3"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/acu-patrol/acu/internal/devstack"
	"github.com/acu-patrol/acu/schedules"
	"github.com/acu-patrol/acu/workflows"
)

func TestParseSpec(t *testing.T) {
	tests := []struct {
		name    string
		every   time.Duration
		cron    string
		want    schedules.Spec
		wantErr []string // substrings of the error; nil: no error
	}{
		{name: "every", every: time.Minute, want: schedules.Spec{Every: time.Minute}},
		{name: "cron", cron: " */5  * * * * ", want: schedules.Spec{Cron: "*/5 * * * *"}},
		{name: "cron with names", cron: "0 9 * JAN-MAR mon-fri", want: schedules.Spec{Cron: "0 9 * JAN-MAR mon-fri"}},
		{name: "descriptor", cron: "@hourly", want: schedules.Spec{Cron: "@hourly"}},
		{name: "neither: default", want: schedules.Spec{Every: schedules.DefaultEvery}},
		{name: "both", every: time.Minute, cron: "*/5 * * * *", wantErr: []string{"not both", "1m0s", `"*/5 * * * *"`}},
		{name: "minute out of range", cron: "61 * * * *", wantErr: []string{`"61 * * * *"`, `minute field "61"`, "above maximum (59)"}},
		{name: "hour out of range", cron: "0 24 * * *", wantErr: []string{`hour field "24"`, "above maximum (23)"}},
		{name: "bad day of week", cron: "0 0 * * FUNDAY", wantErr: []string{`day-of-week field "FUNDAY"`}},
		{name: "words", cron: "every five", wantErr: []string{`"every five"`, "expected exactly 5 fields, found 2", "minute hour day-of-month month day-of-week"}},
		{name: "six fields", cron: "0 */5 * * * *", wantErr: []string{"expected exactly 5 fields, found 6"}},
		{name: "unknown descriptor", cron: "@fortnightly", wantErr: []string{`"@fortnightly"`, "unrecognized descriptor"}},
		{name: "@every", cron: "@every 5m", wantErr: []string{"@every is an interval"}},
		// robfig/cron v3.0.1 panics on this one; we must return an error.
		{name: "time zone without fields", cron: "TZ=UTC", wantErr: []string{"time zone"}},
		{name: "time zone", cron: "CRON_TZ=Europe/Paris 0 9 * * *", wantErr: []string{"time zone"}},
		{name: "negative every", every: -time.Minute, wantErr: []string{"negative"}},
		{name: "sub-second every", every: 500 * time.Millisecond, wantErr: []string{"500ms", "minimum of 1s"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := schedules.ParseSpec(tt.every, tt.cron)
			if tt.wantErr == nil {
				if err != nil || got != tt.want {
					t.Fatalf("ParseSpec(%v, %q) = %+v, %v; want %+v", tt.every, tt.cron, got, err, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("ParseSpec(%v, %q) = %+v, want an error", tt.every, tt.cron, got)
			}
			if !errors.Is(err, schedules.ErrInvalidSpec) {
				t.Errorf("error %q does not wrap ErrInvalidSpec", err)
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
		})
	}
}

func TestScheduledWorkflowID(t *testing.T) {
	at := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	id := schedules.ScheduledWorkflowID(schedules.AnalyticsWorkflowIDPrefix, at.Add(300*time.Millisecond))
	if id != "analytics-2026-11-28T10:00:00Z" {
		t.Fatalf("ScheduledWorkflowID = %q", id)
	}
	if got, ok := schedules.ScheduledTime(schedules.AnalyticsWorkflowIDPrefix, id); !ok || !got.Equal(at) {
		t.Fatalf("ScheduledTime(%q) = %v, %v", id, got, ok)
	}
	for _, bad := range []string{"patrol-x", "analytics-", "analytics-yesterday"} {
		if _, ok := schedules.ScheduledTime(schedules.AnalyticsWorkflowIDPrefix, bad); ok {
			t.Errorf("ScheduledTime(%q) ok", bad)
		}
	}
}

func TestApplyRejectsInvalidDefinition(t *testing.T) {
	d := schedules.Analytics(schedules.Spec{Cron: "61 * * * *"})
	d.WorkflowIDPrefix = "analytics"
	d.CatchupWindow = time.Second
	// A nil client: validation must fail before any call.
	_, err := schedules.Apply(context.Background(), nil, d)
	if err == nil {
		t.Fatal("Apply accepted an invalid definition")
	}
	for _, want := range []string{`"acu-analytics"`, `minute field "61"`, `prefix "analytics"`, "catch-up window 1s"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
}

// The tests below run against one embedded Temporal server, started by the
// first test that needs it and stopped by TestMain.
var (
	temporalOnce sync.Once
	temporalSrv  *devstack.Temporal
	temporalErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if temporalSrv != nil {
		if err := temporalSrv.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stop temporal:", err)
		}
	}
	os.Exit(code)
}

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// testClient returns a client of the shared embedded server.
func testClient(t *testing.T) client.Client {
	t.Helper()
	temporalOnce.Do(func() {
		addr, err := devstack.FreeLoopbackAddr()
		if err != nil {
			temporalErr = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		temporalSrv, temporalErr = devstack.StartTemporal(ctx, devstack.TemporalOptions{
			FrontendAddr: addr, Namespace: "default", Logger: quietLogger(),
		})
	})
	if temporalErr != nil {
		t.Fatalf("start embedded temporal: %v", temporalErr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.DialContext(ctx, client.Options{
		HostPort:  temporalSrv.FrontendAddr(),
		Namespace: "default",
		Logger:    sdklog.NewStructuredLogger(quietLogger()),
	})
	if err != nil {
		t.Fatalf("dial temporal: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// eventually calls check every 50ms until it returns nil, or fails the test
// when ctx ends.
func eventually(t *testing.T, ctx context.Context, what string, check func() error) {
	t.Helper()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		err := check()
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v (last: %v)", what, ctx.Err(), err)
		case <-tick.C:
		}
	}
}

// idSeq makes schedule IDs unique within the test binary, which shares one
// server across -count runs.
var idSeq atomic.Int64

func uniqueID(base string) string { return fmt.Sprintf("%s-%d", base, idSeq.Add(1)) }

// listed returns the schedules ListSchedules shows with the given ID.
func listed(ctx context.Context, c client.Client, id string) ([]*client.ScheduleListEntry, error) {
	it, err := c.ScheduleClient().List(ctx, client.ScheduleListOptions{})
	if err != nil {
		return nil, err
	}
	var found []*client.ScheduleListEntry
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			return nil, err
		}
		if e.ID == id {
			found = append(found, e)
		}
	}
	return found, nil
}

// waitListedOnce waits until ListSchedules (eventually consistent) shows
// the schedule, and fails if it ever shows it more than once. ok checks the
// listed entry.
func waitListedOnce(t *testing.T, ctx context.Context, c client.Client, id string, ok func(*client.ScheduleListEntry) error) {
	t.Helper()
	eventually(t, ctx, "schedule "+id+" listed", func() error {
		found, err := listed(ctx, c, id)
		switch {
		case err != nil:
			return err
		case len(found) > 1:
			t.Fatalf("ListSchedules shows %d schedules with ID %s", len(found), id)
		case len(found) == 0:
			return errors.New("not listed")
		}
		return ok(found[0])
	})
}

func mustApply(t *testing.T, ctx context.Context, c client.Client, d schedules.Definition, want schedules.Outcome) {
	t.Helper()
	got, err := schedules.Apply(ctx, c, d)
	if err != nil {
		t.Fatalf("Apply(%s): %v", d.Spec, err)
	}
	if got != want {
		t.Fatalf("Apply(%s) = %s, want %s", d.Spec, got, want)
	}
}

func mustDescribe(t *testing.T, ctx context.Context, c client.Client, id string) schedules.Summary {
	t.Helper()
	s, err := schedules.Describe(ctx, c, id)
	if err != nil {
		t.Fatalf("Describe: %v", err)
	}
	return s
}

func TestApply(t *testing.T) {
	t.Parallel()
	c := testClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	d := schedules.Analytics(schedules.Spec{Every: time.Hour}, workflows.AnalyticsInput{Precision: 6})
	d.ID = uniqueID("test-apply")
	mustApply(t, ctx, c, d, schedules.Created)
	mustApply(t, ctx, c, d, schedules.Unchanged)
	waitListedOnce(t, ctx, c, d.ID, func(e *client.ScheduleListEntry) error {
		if e.WorkflowType.Name != workflows.AnalyticsWorkflowType {
			return fmt.Errorf("listed workflow type %q", e.WorkflowType.Name)
		}
		return nil
	})
	s := mustDescribe(t, ctx, c, d.ID)
	if s.Spec != d.Spec || s.SpecText != "every 1h0m0s" || s.WorkflowType != "Analytics" ||
		s.TaskQueue != workflows.TaskQueue || s.WorkflowIDPrefix != "analytics-" ||
		s.Overlap != "SKIP" || s.CatchupWindow != schedules.DefaultCatchupWindow || s.Paused {
		t.Fatalf("Describe after create:\n%+v", s)
	}
	if len(s.NextRuns) == 0 || s.NextRuns[0].Truncate(time.Hour) != s.NextRuns[0] {
		t.Errorf("next runs %v, want on the hour", s.NextRuns)
	}
	t.Logf("after create:\n%s", s)

	// A changed spec updates the same schedule, and keeps it paused.
	if err := schedules.Pause(ctx, c, d.ID, "paused by the test"); err != nil {
		t.Fatal(err)
	}
	d.Spec = schedules.Spec{Cron: "*/5 * * * *"}
	mustApply(t, ctx, c, d, schedules.Updated)
	mustApply(t, ctx, c, d, schedules.Unchanged)
	s = mustDescribe(t, ctx, c, d.ID)
	if s.Spec != d.Spec || s.SpecText != "cron */5 * * * *" || !s.Paused || s.Note != "paused by the test" {
		t.Fatalf("Describe after update:\n%+v", s)
	}
	waitListedOnce(t, ctx, c, d.ID, func(e *client.ScheduleListEntry) error {
		if e.Spec == nil || len(e.Spec.Calendars) == 0 || len(e.Spec.Intervals) != 0 {
			return fmt.Errorf("listed spec %+v, want the cron calendars", e.Spec)
		}
		return nil
	})

	// So do a changed input, task queue and catch-up window.
	d.Args = []any{workflows.AnalyticsInput{Precision: 7}}
	mustApply(t, ctx, c, d, schedules.Updated)
	mustApply(t, ctx, c, d, schedules.Unchanged)
	d.TaskQueue = "elsewhere"
	mustApply(t, ctx, c, d, schedules.Updated)
	d.CatchupWindow = time.Hour
	mustApply(t, ctx, c, d, schedules.Updated)
	mustApply(t, ctx, c, d, schedules.Unchanged)
	s = mustDescribe(t, ctx, c, d.ID)
	if s.TaskQueue != "elsewhere" || s.CatchupWindow != time.Hour || !s.Paused {
		t.Fatalf("Describe after more updates:\n%+v", s)
	}
	t.Logf("after updates:\n%s", s)
}

func TestPauseUnpause(t *testing.T) {
	t.Parallel()
	c := testClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	d := schedules.Analytics(schedules.Spec{Every: time.Hour})
	d.ID = uniqueID("test-pause")
	mustApply(t, ctx, c, d, schedules.Created)
	if err := schedules.Pause(ctx, c, d.ID, "maintenance"); err != nil {
		t.Fatal(err)
	}
	if s := mustDescribe(t, ctx, c, d.ID); !s.Paused || s.Note != "maintenance" {
		t.Fatalf("after Pause: paused %v, note %q", s.Paused, s.Note)
	}
	mustApply(t, ctx, c, d, schedules.Unchanged) // Apply leaves the pause alone
	if err := schedules.Unpause(ctx, c, d.ID, ""); err != nil {
		t.Fatal(err)
	}
	if s := mustDescribe(t, ctx, c, d.ID); s.Paused || s.Note != "unpaused by acu" {
		t.Fatalf("after Unpause: paused %v, note %q", s.Paused, s.Note)
	}

	for name, err := range map[string]error{
		"Pause":   schedules.Pause(ctx, c, "no-such-schedule", ""),
		"Trigger": schedules.Trigger(ctx, c, "no-such-schedule"),
		"Describe": func() error {
			_, err := schedules.Describe(ctx, c, "no-such-schedule")
			return err
		}(),
	} {
		if !errors.Is(err, schedules.ErrNotFound) {
			t.Errorf("%s of a missing schedule: %v, want ErrNotFound", name, err)
		}
	}
}

// TestCronMatchesRobfig checks that the times the server computes for a
// cron spec are the times robfig/cron computes.
func TestCronMatchesRobfig(t *testing.T) {
	t.Parallel()
	c := testClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	for _, spec := range []string{
		"*/5 * * * *",
		"15 10 * * 1-5",
		"0 0 1 * MON",    // both day fields: the 1st OR a Monday
		"0 0 */10 * 0,3", // both, with steps
		"0 12 1-7 JAN,JUL *",
		"@daily",
		"0 0 29 2 *",
	} {
		t.Run(spec, func(t *testing.T) {
			sp, err := schedules.ParseSpec(0, spec)
			if err != nil {
				t.Fatal(err)
			}
			d := schedules.Analytics(sp)
			d.ID = uniqueID("test-cron")
			before := time.Now().UTC().Truncate(time.Second)
			mustApply(t, ctx, c, d, schedules.Created)
			mustApply(t, ctx, c, d, schedules.Unchanged)
			s := mustDescribe(t, ctx, c, d.ID)
			if s.Spec != sp {
				t.Fatalf("described spec %q (%s), want %+v", s.SpecText, s.Spec, sp)
			}
			ref, err := cron.ParseStandard("CRON_TZ=UTC " + sp.Cron)
			if err != nil {
				t.Fatal(err)
			}
			if len(s.NextRuns) < 5 {
				t.Fatalf("only %d next runs: %v", len(s.NextRuns), s.NextRuns)
			}
			// The server computes from its own now, a moment after before.
			if first := s.NextRuns[0]; first.Before(before) || !ref.Next(first.Add(-time.Second)).Equal(first) {
				t.Errorf("first run %v is not a robfig time after %v", first, before)
			}
			for j := 1; j < len(s.NextRuns); j++ {
				if want := ref.Next(s.NextRuns[j-1]); !want.Equal(s.NextRuns[j]) {
					t.Errorf("run after %v: server %v, robfig %v", s.NextRuns[j-1], s.NextRuns[j], want)
				}
			}
		})
	}
}

// analyticsStub stands in for the Analytics workflow: it returns the
// precision it was given.
func analyticsStub(ctx workflow.Context, in workflows.AnalyticsInput) (int, error) {
	return in.Precision, nil
}

func TestTrigger(t *testing.T) {
	t.Parallel()
	c := testClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	d := schedules.Analytics(schedules.Spec{Every: time.Hour}, workflows.AnalyticsInput{Precision: 7})
	d.ID = uniqueID("test-trigger")
	d.TaskQueue = d.ID // apart from the schedules of the other tests
	w := worker.New(c, d.TaskQueue, worker.Options{})
	w.RegisterWorkflowWithOptions(analyticsStub, workflow.RegisterOptions{Name: workflows.AnalyticsWorkflowType})
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	defer w.Stop()

	mustApply(t, ctx, c, d, schedules.Created)
	// Paused, so that only the manual run starts a workflow.
	if err := schedules.Pause(ctx, c, d.ID, "only manual runs"); err != nil {
		t.Fatal(err)
	}
	before := time.Now().UTC().Truncate(time.Second)
	if err := schedules.Trigger(ctx, c, d.ID); err != nil {
		t.Fatal(err)
	}
	var run schedules.Run
	eventually(t, ctx, "the triggered run", func() error {
		s, err := schedules.Describe(ctx, c, d.ID)
		if err != nil {
			return err
		}
		if len(s.RecentRuns) == 0 {
			return errors.New("no recent runs")
		}
		run = s.RecentRuns[0]
		return nil
	})
	at, ok := schedules.ScheduledTime(schedules.AnalyticsWorkflowIDPrefix, run.WorkflowID)
	if !ok || at.Before(before) {
		t.Errorf("workflow ID %q: want %s<trigger time ≥ %v>", run.WorkflowID, schedules.AnalyticsWorkflowIDPrefix, before)
	}
	var precision int
	if err := c.GetWorkflow(ctx, run.WorkflowID, run.RunID).Get(ctx, &precision); err != nil || precision != 7 {
		t.Fatalf("triggered workflow result %d, %v; want 7", precision, err)
	}
	desc, err := c.DescribeWorkflowExecution(ctx, run.WorkflowID, run.RunID)
	if err != nil {
		t.Fatal(err)
	}
	if typ := desc.GetWorkflowExecutionInfo().GetType().GetName(); typ != workflows.AnalyticsWorkflowType {
		t.Errorf("triggered workflow type %q", typ)
	}
	t.Logf("triggered %s (scheduled %v)", run.WorkflowID, run.ScheduledAt)
}
