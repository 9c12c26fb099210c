package workflows_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/acu-patrol/acu/activities"
	"github.com/acu-patrol/acu/internal/event"
	"github.com/acu-patrol/acu/internal/store"
	"github.com/acu-patrol/acu/workflows"
)

var failedAt = time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)

func input() workflows.PatrolInput {
	return workflows.PatrolInput{
		EventID: "e1", StudentID: "stu-1", ExerciseID: "ex-01", Metric: 20, Latitude: 48.85, Longitude: 2.35,
		FailedAt: failedAt, Threshold: 50, HasThreshold: true, FollowUpAfter: 30 * time.Minute,
	}
}

// memStore records deployments and serves follow-up results.
type memStore struct {
	mu      sync.Mutex
	deps    []store.Deployment
	results []event.Result
}

func (m *memStore) PutDeployment(_ context.Context, d store.Deployment) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.deps = append(m.deps, d)
	return nil
}

func (m *memStore) FollowUpResults(_ context.Context, w store.FollowUpWindow) ([]event.Result, error) {
	var out []event.Result
	for _, r := range m.results {
		if r.StudentID == w.StudentID && r.ExerciseID == w.ExerciseID && r.Timestamp.After(w.After) && !r.Timestamp.After(w.Until) {
			out = append(out, r)
		}
	}
	return out, nil
}

// archive is the archiver's progress: Behind answers behind in turn (the
// last repeats; none: caught up).
type archive struct {
	mu     sync.Mutex
	behind []int64
	calls  int
}

func (a *archive) EndOffsets(context.Context) (map[int32]int64, error) {
	return map[int32]int64{0: 10, 1: 20}, nil
}

func (a *archive) Behind(_ context.Context, ends map[int32]int64) (int64, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls++
	if len(ends) != 2 || ends[0] != 10 || ends[1] != 20 {
		return 0, errors.New("not the end offsets of the mark")
	}
	if len(a.behind) == 0 {
		return 0, nil
	}
	return a.behind[min(a.calls-1, len(a.behind)-1)], nil
}

// patrol is a patrol endpoint answering the given statuses in turn (the
// last one repeats) and recording each request's Idempotency-Key.
type patrol struct {
	mu       sync.Mutex
	statuses []int
	keys     []string
}

func (p *patrol) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.keys = append(p.keys, r.Header.Get("Idempotency-Key"))
	code := p.statuses[min(len(p.keys)-1, len(p.statuses)-1)]
	w.WriteHeader(code)
}

type run struct {
	env      *testsuite.TestWorkflowEnvironment
	statuses []string // PatrolStatus values upserted, in order
	store    *memStore
	patrol   *patrol
	archive  *archive
}

func start(t *testing.T, answers []int, results ...event.Result) *run {
	t.Helper()
	return startInput(t, input(), answers, results...)
}

func startInput(t *testing.T, in workflows.PatrolInput, answers []int, results ...event.Result) *run {
	t.Helper()
	return startArchive(t, in, &archive{}, answers, results...)
}

func startArchive(t *testing.T, in workflows.PatrolInput, arch *archive, answers []int, results ...event.Result) *run {
	t.Helper()
	p := &patrol{statuses: answers}
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	var s testsuite.WorkflowTestSuite
	r := &run{env: s.NewTestWorkflowEnvironment(), store: &memStore{results: results}, patrol: p, archive: arch}
	r.env.SetStartTime(failedAt.Add(2 * time.Second))
	r.env.RegisterWorkflow(workflows.PatrolDeployment)
	r.env.RegisterActivity(&activities.Patrol{HTTP: srv.Client(), URL: srv.URL, Store: r.store, Archive: arch})
	r.env.OnUpsertTypedSearchAttributes(mock.Anything).Run(func(args mock.Arguments) {
		sa := args.Get(0).(temporal.SearchAttributes)
		if st, ok := sa.GetKeyword(workflows.PatrolStatusKey); ok {
			r.statuses = append(r.statuses, st)
		}
	}).Return(nil)
	r.env.ExecuteWorkflow(workflows.PatrolDeployment, in)
	return r
}

func result(ts time.Time, metric float64) event.Result {
	return event.Result{ID: ts.String(), StudentID: "stu-1", ExerciseID: "ex-01", Timestamp: ts, Metric: metric}
}

func TestFollowUpOutcomes(t *testing.T) {
	tests := []struct {
		name    string
		results []event.Result
		want    string
		found   int
	}{
		{"recovered", []event.Result{result(failedAt.Add(time.Minute), 30), result(failedAt.Add(30*time.Minute), 50)}, workflows.StatusRecovered, 2},
		{"still failing", []event.Result{result(failedAt.Add(time.Minute), 49.99)}, workflows.StatusStillFailing, 1},
		// Results at failed_at itself or after the window do not count.
		{"no attempt", []event.Result{result(failedAt, 90), result(failedAt.Add(30*time.Minute+time.Millisecond), 90)}, workflows.StatusNoAttempt, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := start(t, []int{http.StatusAccepted}, tc.results...)
			if !r.env.IsWorkflowCompleted() || r.env.GetWorkflowError() != nil {
				t.Fatalf("workflow did not complete: %v", r.env.GetWorkflowError())
			}
			var out workflows.PatrolResult
			if err := r.env.GetWorkflowResult(&out); err != nil {
				t.Fatal(err)
			}
			if out.Status != tc.want || out.FollowUpResults != tc.found {
				t.Fatalf("got %+v, want status %s with %d results", out, tc.want, tc.found)
			}
			// Started without search attributes (by hand), the run sets
			// dispatching itself; the delivered notification and the start
			// of the follow-up are one step.
			wantSeq := []string{workflows.StatusDispatching, workflows.StatusFollowingUp, tc.want}
			if !slices.Equal(r.statuses, wantSeq) {
				t.Fatalf("PatrolStatus sequence %v, want %v", r.statuses, wantSeq)
			}
			last := r.store.deps[len(r.store.deps)-1]
			if last.Status != tc.want || last.WorkflowID != "default-test-workflow-id" || last.Threshold != 50 ||
				last.DispatchedAt.IsZero() || last.FollowUpAt.IsZero() || !last.FailedAt.Equal(failedAt) {
				t.Fatalf("last deployment record %+v", last)
			}
			// The check ran once the window (and its settle time) had closed.
			if min := failedAt.Add(30*time.Minute + workflows.DefaultFollowUpSettle); last.FollowUpAt.Before(min) {
				t.Fatalf("follow-up checked at %v, before %v", last.FollowUpAt, min)
			}
		})
	}
}

func TestNotifyRetriedThrough503s(t *testing.T) {
	r := start(t, []int{503, 503, 429, 408, 200})
	if err := r.env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if len(r.patrol.keys) != 5 {
		t.Fatalf("%d attempts, want 5", len(r.patrol.keys))
	}
	for _, k := range r.patrol.keys {
		if k != "default-test-workflow-id" {
			t.Fatalf("Idempotency-Key %q, want the workflow ID on every attempt", k)
		}
	}
}

func TestPermanent4xxIsNotifyRejected(t *testing.T) {
	r := start(t, []int{503, http.StatusUnprocessableEntity, 200})
	err := r.env.GetWorkflowError()
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != activities.ErrTypePatrolRejected {
		t.Fatalf("workflow error %v, want a %s application error", err, activities.ErrTypePatrolRejected)
	}
	if len(r.patrol.keys) != 2 {
		t.Fatalf("%d attempts, want 2 (a 4xx is not retried)", len(r.patrol.keys))
	}
	want := []string{workflows.StatusDispatching, workflows.StatusNotifyRejected}
	if !slices.Equal(r.statuses, want) {
		t.Fatalf("PatrolStatus sequence %v, want %v", r.statuses, want)
	}
	if len(r.store.deps) != 1 || r.store.deps[0].Status != workflows.StatusNotifyRejected {
		t.Fatalf("deployment records %+v", r.store.deps)
	}
}

// TestNotifyMaxAttemptsBoundsEveryAttempt: --notify-max-attempts counts
// the first attempt (in the workflow task) with the activity's retries.
func TestNotifyMaxAttemptsBoundsEveryAttempt(t *testing.T) {
	for _, max := range []int32{1, 2, 4} {
		in := input()
		in.NotifyMaxAttempts = max
		r := startInput(t, in, []int{503})
		if r.env.GetWorkflowError() == nil {
			t.Fatalf("max %d: the workflow succeeded against an endpoint that always answers 503", max)
		}
		if got := len(r.patrol.keys); got != int(max) {
			t.Errorf("max %d: %d attempts", max, got)
		}
		// The deployment ends in a recorded status, not dispatching.
		want := []string{workflows.StatusDispatching, workflows.StatusNotifyExhausted}
		if !slices.Equal(r.statuses, want) {
			t.Errorf("max %d: PatrolStatus sequence %v, want %v", max, r.statuses, want)
		}
		if n := len(r.store.deps); n == 0 || r.store.deps[n-1].Status != workflows.StatusNotifyExhausted {
			t.Errorf("max %d: deployment records %+v, want the last one %s", max, r.store.deps, workflows.StatusNotifyExhausted)
		}
	}
}

// TestFollowUpWaitsOnTheWorkflowClock: the window is read in the laptop's
// time (failed_at), but the check waits follow-up-after (and the settle
// time) from the workflow's start, whatever the laptop's clock said: a
// clock years behind must not have the check run before the student could
// retake, one centuries ahead must not sleep for centuries.
func TestFollowUpWaitsOnTheWorkflowClock(t *testing.T) {
	startedAt := failedAt.Add(2 * time.Second) // startInput's start time
	for _, tc := range []struct {
		name   string
		laptop time.Time
	}{
		{"laptop clock right", failedAt},
		{"laptop clock 3 years behind", failedAt.AddDate(-3, 0, 0)},
		{"laptop clock reset to 1970", time.UnixMilli(0).UTC()},
		{"laptop clock centuries ahead", time.Date(9000, 1, 1, 0, 0, 0, 0, time.UTC)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := input()
			in.FailedAt = tc.laptop
			r := startInput(t, in, []int{http.StatusOK}, result(tc.laptop.Add(10*time.Minute), 90))
			var out workflows.PatrolResult
			if err := r.env.GetWorkflowResult(&out); err != nil {
				t.Fatal(err)
			}
			if out.Status != workflows.StatusRecovered {
				t.Errorf("status %s, want recovered (the retake is in the window of the laptop's time)", out.Status)
			}
			at := r.store.deps[len(r.store.deps)-1].FollowUpAt
			earliest := startedAt.Add(30*time.Minute + workflows.DefaultFollowUpSettle)
			if at.Before(earliest) || at.After(earliest.Add(time.Minute)) {
				t.Errorf("follow-up checked at %v, want at %v (start + follow-up-after + settle)", at, earliest)
			}
		})
	}
}

func TestRetryPolicyOfContract(t *testing.T) {
	p := workflows.NotifyRetryPolicy(0)
	if p.InitialInterval != time.Second || p.BackoffCoefficient != 2 || p.MaximumInterval != time.Minute || p.MaximumAttempts != 0 {
		t.Fatalf("retry policy %+v", p)
	}
}

// thresholdReader answers ReadThreshold with one value, or none.
type thresholdReader struct {
	value float64
	set   bool
}

func (r thresholdReader) ReadThreshold(context.Context, string) (float64, bool, error) {
	return r.value, r.set, nil
}

// TestStartedWithoutThreshold: a deployment started by hand without a
// threshold judges with the exercise's current one (and shows it), and
// deploys nothing when the exercise has none.
func TestStartedWithoutThreshold(t *testing.T) {
	for _, tc := range []struct {
		name string
		th   thresholdReader
	}{{"current threshold", thresholdReader{value: 60, set: true}}, {"no threshold", thresholdReader{}}} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(&patrol{statuses: []int{http.StatusOK}})
			defer srv.Close()
			var s testsuite.WorkflowTestSuite
			env := s.NewTestWorkflowEnvironment()
			env.SetStartTime(failedAt.Add(2 * time.Second))
			env.RegisterWorkflow(workflows.PatrolDeployment)
			st := &memStore{}
			env.RegisterActivity(&activities.Patrol{HTTP: srv.Client(), URL: srv.URL, Store: st, Thresholds: tc.th, Archive: &archive{}})
			var shown []float64
			env.OnUpsertTypedSearchAttributes(mock.Anything).Run(func(args mock.Arguments) {
				if v, ok := args.Get(0).(temporal.SearchAttributes).GetFloat64(workflows.ThresholdKey); ok {
					shown = append(shown, v)
				}
			}).Return(nil)
			in := input()
			in.HasThreshold, in.Threshold = false, 0
			env.ExecuteWorkflow(workflows.PatrolDeployment, in)
			err := env.GetWorkflowError()
			if !tc.th.set {
				var appErr *temporal.ApplicationError
				if !errors.As(err, &appErr) || appErr.Type() != "NoThreshold" || len(st.deps) != 0 {
					t.Fatalf("error %v, %d deployments recorded; want NoThreshold and none", err, len(st.deps))
				}
				return
			}
			var out workflows.PatrolResult
			if err != nil || env.GetWorkflowResult(&out) != nil {
				t.Fatalf("workflow: %v", err)
			}
			if out.Threshold != 60 || !slices.Equal(shown, []float64{60}) || st.deps[len(st.deps)-1].Threshold != 60 {
				t.Fatalf("threshold %v, shown %v, recorded %+v; want 60 everywhere", out.Threshold, shown, st.deps)
			}
		})
	}
}

// TestFollowUpWaitsForTheArchive: the window has closed, but the archiver
// has not written everything sent before it (stopped, catching up,
// Cassandra down): the check waits, visibly (awaiting-archive, in
// PatrolStatus and in the store), until the archive holds every result sent
// before the deadline, and only then reads it: no outcome guessed from a
// partial archive.
func TestFollowUpWaitsForTheArchive(t *testing.T) {
	arch := &archive{behind: []int64{7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 3, 0}}
	r := startArchive(t, input(), arch, []int{http.StatusOK}, result(failedAt.Add(time.Minute), 90))
	var out workflows.PatrolResult
	if err := r.env.GetWorkflowResult(&out); err != nil {
		t.Fatal(err)
	}
	if out.Status != workflows.StatusRecovered {
		t.Errorf("status %s, want recovered", out.Status)
	}
	want := []string{workflows.StatusDispatching, workflows.StatusFollowingUp, workflows.StatusAwaitingArchive, workflows.StatusRecovered}
	if !slices.Equal(r.statuses, want) {
		t.Errorf("PatrolStatus sequence %v, want %v", r.statuses, want)
	}
	var recorded []string
	for _, d := range r.store.deps {
		recorded = append(recorded, d.Status)
	}
	if !slices.Contains(recorded, workflows.StatusAwaitingArchive) {
		t.Errorf("recorded statuses %v, want awaiting-archive among them", recorded)
	}
	arch.mu.Lock()
	defer arch.mu.Unlock()
	if arch.calls < len(arch.behind) {
		t.Errorf("the archive was asked %d times: the check ran before it had caught up", arch.calls)
	}
}

// flakyArchive fails its first calls to EndOffsets, as Kafka does while a
// broker restarts.
type flakyArchive struct {
	archive
	failures int
}

func (f *flakyArchive) EndOffsets(ctx context.Context) (map[int32]int64, error) {
	f.mu.Lock()
	fail := f.failures > 0
	f.failures--
	f.mu.Unlock()
	if fail {
		return nil, errors.New("end offsets of piscine.results: unable to dial: connection refused")
	}
	return f.archive.EndOffsets(ctx)
}

// TestBackendOutageLongerThanALocalActivityTimeout: the store, etcd and
// Kafka calls of a deployment are retried until they succeed, however long
// the outage. The SDK gives a local activity without a schedule-to-close
// timeout its start-to-close one (30 s) for all its attempts: a Kafka
// broker down for longer failed the deployment in the follow-up
// (found under the nemesis: PatrolStatus left at following-up).
func TestBackendOutageLongerThanALocalActivityTimeout(t *testing.T) {
	arch := &flakyArchive{failures: 8} // 1+2+4+…+60 s of backoff: over four minutes
	p := &patrol{statuses: []int{http.StatusOK}}
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.SetStartTime(failedAt.Add(2 * time.Second))
	env.RegisterWorkflow(workflows.PatrolDeployment)
	st := &memStore{results: []event.Result{result(failedAt.Add(time.Minute), 90)}}
	env.RegisterActivity(&activities.Patrol{HTTP: srv.Client(), URL: srv.URL, Store: st, Archive: arch})
	env.OnUpsertTypedSearchAttributes(mock.Anything).Return(nil)
	env.ExecuteWorkflow(workflows.PatrolDeployment, input())
	var out workflows.PatrolResult
	if err := env.GetWorkflowResult(&out); err != nil {
		t.Fatalf("the deployment failed during an outage of its backend: %v", err)
	}
	if out.Status != workflows.StatusRecovered {
		t.Errorf("status %s, want recovered", out.Status)
	}
	if arch.failures >= 0 {
		t.Errorf("%d failures left: the outage did not happen", arch.failures+1)
	}
}
