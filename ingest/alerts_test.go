package ingest_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/acu-patrol/acu/ingest"
	"github.com/acu-patrol/acu/internal/event"
	"github.com/acu-patrol/acu/internal/metrics"
	"github.com/acu-patrol/acu/internal/testkit"
	"github.com/acu-patrol/acu/workflows"
)

// alertsFixture is one Kafka cluster with the alert service of one group
// over a fake Judge and a fake Temporal.
type alertsFixture struct {
	*env
	group   string
	m       *metrics.Metrics
	judge   *fakeJudge
	srv     *temporalServer
	starter *fakeStarter
	cfg     ingest.AlertConfig
}

var testThresholds = map[string]float64{"c-piscine-sort": 50, "c-piscine-graph": 62.5}

func newAlerts(t *testing.T) *alertsFixture {
	t.Helper()
	srv := newTemporal()
	return &alertsFixture{
		env:     newEnv(t),
		group:   ingest.AlertsGroup,
		m:       metrics.New(),
		judge:   newJudge(testThresholds),
		srv:     srv,
		starter: &fakeStarter{srv: srv},
		cfg:     ingest.AlertConfig{FollowUpAfter: 45 * time.Minute, FollowUpSettle: 3 * time.Second, NotifyMaxAttempts: 7},
	}
}

// start runs the alert consumer; set the fakes' hooks before.
func (f *alertsFixture) start(t *testing.T, adjust ...func(*ingest.ConsumerConfig)) (stop func()) {
	t.Helper()
	h := ingest.NewAlerts(f.cfg, f.judge, f.starter, f.log, f.m)
	return f.run(t, f.group, f.m, h, adjust...)
}

func (f *alertsFixture) ids() []string {
	var out []string
	for id := range f.srv.workflows() {
		out = append(out, id)
	}
	return out
}

func TestAlertsStartOnePatrolPerFailingResult(t *testing.T) {
	t.Parallel()
	f := newAlerts(t)
	f.start(t)

	rfc := t0.Add(time.Hour).Format(time.RFC3339Nano)
	cases := []struct {
		name      string
		rec       map[string]any
		wantStart bool
		threshold float64
	}{
		{name: "below threshold fails", rec: result("ev-fail-1", "alice", "c-piscine-sort", 42), wantStart: true, threshold: 50},
		{name: "just below a fractional threshold fails", rec: result("ev-fail-2", "bob", "c-piscine-graph", 62.4), wantStart: true, threshold: 62.5},
		{name: "at the threshold passes", rec: result("ev-pass-1", "carol", "c-piscine-sort", 50)},
		{name: "at a fractional threshold passes", rec: result("ev-pass-2", "dave", "c-piscine-graph", 62.5)},
		{name: "above the threshold passes", rec: result("ev-pass-3", "erin", "c-piscine-sort", 100)},
		{name: "zero fails", rec: func() map[string]any {
			m := result("", "frank", "c-piscine-sort", 0)
			m["timestamp"] = rfc
			return m
		}(), wantStart: true, threshold: 50},
	}
	var recs []*kgo.Record
	for _, c := range cases {
		recs = append(recs, record(t, c.rec))
	}
	f.produce(t, recs...)
	f.waitCommitted(t, f.group, recs)

	wantFail := 0
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id := identity(t, recs[i].Value)
			wfID := "patrol-" + id
			calls := f.srv.callsFor(wfID)
			if !c.wantStart {
				if calls != 0 {
					t.Fatalf("%d starts of %s for a passing result, want none", calls, wfID)
				}
				return
			}
			if calls != 1 {
				t.Fatalf("%d starts of %s, want exactly 1", calls, wfID)
			}
			call, ok := f.srv.workflows()[wfID]
			if !ok {
				t.Fatalf("no workflow %s among %v", wfID, f.ids())
			}
			assertStart(t, call, c.rec, id, c.threshold, f.cfg)
		})
		if c.wantStart {
			wantFail++
		}
	}
	if n := f.srv.callCount(); n != wantFail {
		t.Errorf("%d ExecuteWorkflow calls, want %d", n, wantFail)
	}
	for verdict, want := range map[string]int{"fail": wantFail, "pass": len(cases) - wantFail, "unknown_exercise": 0} {
		if got := testkit.CounterValue(f.m.Judged.WithLabelValues(verdict)); got != float64(want) {
			t.Errorf("Judged{verdict=%q} = %v, want %d", verdict, got, want)
		}
	}
	if got := testkit.CounterValue(f.m.WorkflowStarts.WithLabelValues("started")); got != float64(wantFail) {
		t.Errorf("WorkflowStarts{started} = %v, want %d", got, wantFail)
	}
}

// assertStart checks the options and input of the start of a failing result.
func assertStart(t *testing.T, call startCall, rec map[string]any, id string, threshold float64, cfg ingest.AlertConfig) {
	t.Helper()
	o := call.Options
	if o.ID != "patrol-"+id {
		t.Errorf("workflow ID %q, want %q", o.ID, "patrol-"+id)
	}
	if o.TaskQueue != "acu-patrol" { // DESIGN.md §2.3, not workflows.TaskQueue: the contract
		t.Errorf("task queue %q, want acu-patrol", o.TaskQueue)
	}
	if call.Workflow != workflows.PatrolWorkflowType {
		t.Errorf("workflow %v, want %q", call.Workflow, workflows.PatrolWorkflowType)
	}
	// A second start of the ID must be refused, running or closed.
	if o.WorkflowIDReusePolicy != enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE ||
		o.WorkflowIDConflictPolicy != enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL || !o.WorkflowExecutionErrorWhenAlreadyStarted {
		t.Errorf("reuse policy %v, conflict policy %v, error when started %v: a duplicate start would not be refused",
			o.WorkflowIDReusePolicy, o.WorkflowIDConflictPolicy, o.WorkflowExecutionErrorWhenAlreadyStarted)
	}

	student, exercise, metric := rec["student_id"].(string), rec["exercise_id"].(string), rec["metric"].(float64)
	sa := o.TypedSearchAttributes
	if v, ok := sa.GetKeyword(workflows.StudentIDKey); !ok || v != student {
		t.Errorf("StudentId = %q, %v; want %q", v, ok, student)
	}
	if v, ok := sa.GetKeyword(workflows.ExerciseIDKey); !ok || v != exercise {
		t.Errorf("ExerciseId = %q, %v; want %q", v, ok, exercise)
	}
	if v, ok := sa.GetFloat64(workflows.MetricKey); !ok || v != metric {
		t.Errorf("Metric = %v, %v; want %v", v, ok, metric)
	}
	if v, ok := sa.GetFloat64(workflows.ThresholdKey); !ok || v != threshold {
		t.Errorf("Threshold = %v, %v; want %v", v, ok, threshold)
	}
	if v, ok := sa.GetKeyword(workflows.PatrolStatusKey); !ok || v != "dispatching" {
		t.Errorf("PatrolStatus = %q, %v; want dispatching", v, ok)
	}
	if n := sa.Size(); n != 5 {
		t.Errorf("%d search attributes, want 5", n)
	}

	if len(call.Args) != 1 {
		t.Fatalf("%d workflow arguments, want one PatrolInput", len(call.Args))
	}
	in, ok := call.Args[0].(workflows.PatrolInput)
	if !ok {
		t.Fatalf("workflow argument is a %T, want workflows.PatrolInput", call.Args[0])
	}
	ts, err := time.Parse(time.RFC3339Nano, rec["timestamp"].(string))
	if err != nil {
		t.Fatal(err)
	}
	want := workflows.PatrolInput{
		EventID: id, StudentID: student, ExerciseID: exercise, Metric: metric,
		Latitude: rec["latitude"].(float64), Longitude: rec["longitude"].(float64),
		FailedAt: ts, Threshold: threshold, HasThreshold: true,
		FollowUpAfter: cfg.FollowUpAfter, FollowUpSettle: &cfg.FollowUpSettle, NotifyMaxAttempts: cfg.NotifyMaxAttempts,
	}
	if !in.FailedAt.Equal(want.FailedAt) {
		t.Errorf("FailedAt = %v, want %v", in.FailedAt, want.FailedAt)
	}
	if in.FollowUpSettle == nil || *in.FollowUpSettle != *want.FollowUpSettle {
		t.Errorf("FollowUpSettle = %v, want %v", in.FollowUpSettle, *want.FollowUpSettle)
	}
	in.FailedAt, want.FailedAt = time.Time{}, time.Time{}
	in.FollowUpSettle, want.FollowUpSettle = nil, nil
	if in != want {
		t.Errorf("input\n got %+v\nwant %+v", in, want)
	}
}

func TestAlertsOnePatrolPerEvent(t *testing.T) {
	t.Parallel()
	const ex = "c-piscine-sort"
	withTS := func(ts any) map[string]any {
		m := result("", "gina", ex, 12.5)
		m["timestamp"] = ts
		return m
	}
	ms := t0.UnixMilli()
	cases := []struct {
		name string
		// batches are produced one after the other, each once the
		// previous one is committed.
		batches [][]map[string]any
	}{
		{name: "same event_id twice together", batches: [][]map[string]any{{
			result("ev-dup", "hugo", ex, 10), result("ev-dup", "hugo", ex, 10),
		}}},
		{name: "same event_id redelivered later", batches: [][]map[string]any{
			{result("ev-dup", "hugo", ex, 10)}, {result("ev-dup", "hugo", ex, 10)},
		}},
		{name: "same event_id on two partitions", batches: [][]map[string]any{{
			result("ev-dup", "hugo", ex, 10), result("ev-dup", "ines", ex, 10), result("ev-dup", "jules", ex, 10),
		}}},
		{name: "no event_id, RFC 3339 and epoch ms together", batches: [][]map[string]any{{
			withTS(t0.Format(time.RFC3339Nano)), withTS(ms),
		}}},
		{name: "no event_id, other offset then epoch ms later", batches: [][]map[string]any{
			{withTS(t0.In(time.FixedZone("CET", 3600)).Format(time.RFC3339Nano))},
			{withTS(ms)},
			{withTS("2025-11-24T09:15:30.25Z")},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			f := newAlerts(t)
			f.start(t)
			var all []*kgo.Record
			for _, b := range c.batches {
				var recs []*kgo.Record
				for _, m := range b {
					recs = append(recs, record(t, m))
				}
				all = append(all, f.produce(t, recs...)...)
				f.waitCommitted(t, f.group, recs)
			}
			wantID := "patrol-" + identity(t, all[0].Value)
			for _, r := range all[1:] {
				if id := "patrol-" + identity(t, r.Value); id != wantID {
					t.Fatalf("test records have identities %s and %s, want one event", wantID, id)
				}
			}
			if ids := f.ids(); len(ids) != 1 || ids[0] != wantID {
				t.Fatalf("workflows started %v, want only %s", ids, wantID)
			}
			// Every call after the first was refused and taken as done.
			calls := f.srv.callCount()
			if calls < 1 || calls > len(all) {
				t.Errorf("%d start calls for %d deliveries", calls, len(all))
			}
			started := testkit.CounterValue(f.m.WorkflowStarts.WithLabelValues("started"))
			already := testkit.CounterValue(f.m.WorkflowStarts.WithLabelValues("already_started"))
			if started != 1 || already != float64(calls-1) {
				t.Errorf("WorkflowStarts started=%v already_started=%v, want 1 and %d", started, already, calls-1)
			}
			if len(c.batches) > 1 && calls != len(c.batches) {
				t.Errorf("%d start calls for %d batches delivered one after the other", calls, len(c.batches))
			}
		})
	}
}

// TestAlertsRedeliveryAfterCrash: consumer A's start reaches Temporal but A
// stops before the acknowledgement, so nothing is committed; consumer B of
// the same group gets the record again and starts no second patrol.
func TestAlertsRedeliveryAfterCrash(t *testing.T) {
	t.Parallel()
	f := newAlerts(t)
	// A: the server starts the workflow, the reply never comes back.
	crashed := &fakeStarter{srv: f.srv, after: func(ctx context.Context) error {
		<-ctx.Done()
		return ctx.Err()
	}}
	mA := metrics.New()
	stopA := f.run(t, f.group, mA, ingest.NewAlerts(f.cfg, f.judge, crashed, f.log, mA),
		func(c *ingest.ConsumerConfig) { c.AttemptTimeout = time.Second })

	recs := f.produce(t,
		record(t, result("ev-crash", "kim", "c-piscine-sort", 3)),
		record(t, result("ev-crash-pass", "kim", "c-piscine-sort", 99)))
	wantID := "patrol-ev-crash"
	testkit.Eventually(t, 10*time.Second, func() bool { return len(f.srv.workflows()) == 1 },
		func() string { return fmt.Sprint("workflows ", f.ids()) })
	stopA()
	if c := f.mustCommitted(t, f.group); len(c) != 0 {
		t.Fatalf("offsets %v committed though no start was acknowledged", c)
	}

	mB := metrics.New()
	f.run(t, f.group, mB, ingest.NewAlerts(f.cfg, f.judge, f.starter, f.log, mB))
	f.waitCommitted(t, f.group, recs)
	if ids := f.ids(); len(ids) != 1 || ids[0] != wantID {
		t.Fatalf("workflows %v, want only %s", ids, wantID)
	}
	if n := f.starter.n.Load(); n == 0 {
		t.Fatal("consumer B never saw the redelivered record")
	}
	if got := testkit.CounterValue(mB.WorkflowStarts.WithLabelValues("already_started")); got < 1 {
		t.Errorf("consumer B: WorkflowStarts{already_started} = %v, want ≥ 1", got)
	}
	if got := testkit.CounterValue(mB.WorkflowStarts.WithLabelValues("started")); got != 0 {
		t.Errorf("consumer B: WorkflowStarts{started} = %v, want 0", got)
	}
}

func TestAlertsRejectMalformedRecords(t *testing.T) {
	t.Parallel()
	f := newAlerts(t)
	f.start(t)

	huge := result("ev-huge", "lea", "c-piscine-sort", 1)
	huge["padding"] = strings.Repeat("x", event.MaxSize)
	noStudent := result("ev-nostudent", "lea", "c-piscine-sort", 1)
	delete(noStudent, "student_id")
	cases := []struct {
		name    string
		value   []byte
		reason  event.Reason
		mention string // the error names what is wrong
	}{
		{name: "not JSON", value: []byte(`{"event_id":"ev-bad",`), reason: event.ReasonMalformed, mention: "JSON"},
		{name: "metric 150", value: value(t, result("ev-150", "lea", "c-piscine-sort", 150)), reason: event.ReasonRange, mention: "metric"},
		{name: "no student_id", value: value(t, noStudent), reason: event.ReasonMissing, mention: "student_id"},
		{name: "over 64 KiB", value: value(t, huge), reason: event.ReasonTooLarge, mention: "bytes"},
	}
	// All on one key, so one partition, followed by a valid failing result.
	key := []byte("lea")
	var recs []*kgo.Record
	for i, c := range cases {
		recs = append(recs, &kgo.Record{Key: key, Value: c.value, Headers: []kgo.RecordHeader{{Key: "producer-seq", Value: []byte(strconv.Itoa(i))}}})
	}
	valid := &kgo.Record{Key: key, Value: value(t, result("ev-after", "lea", "c-piscine-sort", 1))}
	recs = append(recs, valid)
	f.produce(t, recs...)
	f.waitCommitted(t, f.group, recs)

	if ids := f.ids(); len(ids) != 1 || ids[0] != "patrol-ev-after" {
		t.Errorf("workflows %v, want only patrol-ev-after (the valid record after the rejects)", ids)
	}
	dlq := map[string]*kgo.Record{}
	for _, r := range f.dlq(t) {
		src, _ := testkit.Header(r, ingest.HeaderSource)
		if dlq[src] != nil {
			t.Errorf("two DLQ records for %s", src)
		}
		dlq[src] = r
	}
	if len(dlq) != len(cases) {
		t.Errorf("%d DLQ records, want %d", len(dlq), len(cases))
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			orig := recs[i]
			src := fmt.Sprintf("piscine.results/%d/%d", orig.Partition, orig.Offset)
			d := dlq[src]
			if d == nil {
				t.Fatalf("no DLQ record with %s=%s", ingest.HeaderSource, src)
			}
			if !bytes.Equal(d.Key, orig.Key) || !bytes.Equal(d.Value, orig.Value) {
				t.Errorf("DLQ key/value differ from the original (key %q, %d bytes)", d.Key, len(d.Value))
			}
			msg, ok := testkit.Header(d, ingest.HeaderError)
			if !ok || strings.TrimSpace(msg) == "" || !strings.Contains(msg, c.mention) {
				t.Errorf("%s = %q, want a reason mentioning %q", ingest.HeaderError, msg, c.mention)
			}
			if g, _ := testkit.Header(d, ingest.HeaderGroup); g != f.group {
				t.Errorf("%s = %q, want %q", ingest.HeaderGroup, g, f.group)
			}
			if got := testkit.CounterValue(f.m.Rejected.WithLabelValues(f.group, string(c.reason))); got != 1 {
				t.Errorf("Rejected{%s, %s} = %v, want 1", f.group, c.reason, got)
			}
		})
	}
}

func TestAlertsUnknownExercise(t *testing.T) {
	t.Parallel()
	f := newAlerts(t)
	f.start(t)
	recs := f.produce(t,
		record(t, result("ev-unknown", "max", "c-piscine-unknown", 0)),
		record(t, result("ev-known", "max", "c-piscine-sort", 0)))
	f.waitCommitted(t, f.group, recs)
	if ids := f.ids(); len(ids) != 1 || ids[0] != "patrol-ev-known" {
		t.Errorf("workflows %v, want only patrol-ev-known", ids)
	}
	if n := f.srv.callsFor("patrol-ev-unknown"); n != 0 {
		t.Errorf("%d starts for a result of an exercise without threshold", n)
	}
	if got := testkit.CounterValue(f.m.Judged.WithLabelValues("unknown_exercise")); got != 1 {
		t.Errorf("Judged{unknown_exercise} = %v, want 1", got)
	}
}

// TestAlertsCommitAfterStartAcknowledged: while a start is in flight the
// offset of its record stays uncommitted.
func TestAlertsCommitAfterStartAcknowledged(t *testing.T) {
	t.Parallel()
	f := newAlerts(t)
	gate := make(chan struct{})
	release := sync.OnceFunc(func() { close(gate) })
	f.starter.before = func(ctx context.Context, _ int) error {
		select {
		case <-gate:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	f.start(t)
	t.Cleanup(release) // before the consumer is stopped

	recs := f.produce(t, record(t, result("ev-slow", "nina", "c-piscine-sort", 20)))
	testkit.Eventually(t, 10*time.Second, func() bool { return f.srv.callCount() == 1 }, nil)
	if c := f.mustCommitted(t, f.group); len(c) != 0 {
		t.Fatalf("offsets %v committed while the start is in flight", c)
	}
	release()
	f.waitCommitted(t, f.group, recs)
	if ids := f.ids(); len(ids) != 1 || ids[0] != "patrol-ev-slow" {
		t.Errorf("workflows %v, want patrol-ev-slow", ids)
	}
}

// TestAlertsRetryStartFailures: Temporal refuses the first starts; the batch
// is retried, not skipped, and committed only once all are started.
func TestAlertsRetryStartFailures(t *testing.T) {
	t.Parallel()
	f := newAlerts(t)
	const failures = 3
	var (
		mu         sync.Mutex
		seenCommit []map[int32]int64
		fetchErrs  []error
	)
	f.starter.before = func(_ context.Context, n int) error {
		if n > failures {
			return nil
		}
		// The partition's worker is in this call: its offsets cannot move.
		c, err := f.committed(f.group)
		mu.Lock()
		seenCommit = append(seenCommit, c)
		if err != nil {
			fetchErrs = append(fetchErrs, err)
		}
		mu.Unlock()
		return serviceerror.NewUnavailable("temporal is down")
	}
	f.start(t)

	var recs []*kgo.Record
	for i := range 5 {
		recs = append(recs, record(t, result(fmt.Sprintf("ev-retry-%d", i), "oscar", "c-piscine-sort", float64(i))))
	}
	f.produce(t, recs...)
	f.waitCommitted(t, f.group, recs)

	got := f.srv.workflows()
	for i := range recs {
		id := fmt.Sprintf("patrol-ev-retry-%d", i)
		if _, ok := got[id]; !ok {
			t.Errorf("%s never started: a record was skipped", id)
		}
	}
	if len(got) != len(recs) {
		t.Errorf("%d workflows, want %d", len(got), len(recs))
	}
	if n := f.starter.n.Load(); n <= failures {
		t.Fatalf("%d start calls, want more than the %d failures", n, failures)
	}
	mu.Lock()
	defer mu.Unlock()
	if err := errors.Join(fetchErrs...); err != nil {
		t.Fatalf("fetching offsets during the failures: %v", err)
	}
	for i, c := range seenCommit {
		if len(c) != 0 {
			t.Errorf("failed start %d: offsets %v already committed", i+1, c)
		}
	}
	if got := testkit.CounterValue(f.m.BatchErrors.WithLabelValues(f.group, "handle")); got < 1 {
		t.Errorf("BatchErrors{handle} = %v, want ≥ 1", got)
	}
	if got := testkit.CounterValue(f.m.WorkflowStarts.WithLabelValues("error")); got != failures {
		t.Errorf("WorkflowStarts{error} = %v, want %d", got, failures)
	}
}

// TestAlertsWaitForThresholds: while the thresholds cannot be synced nothing
// is judged, started or committed.
func TestAlertsWaitForThresholds(t *testing.T) {
	t.Parallel()
	f := newAlerts(t)
	f.judge.setSyncErr(errors.New("etcd: context deadline exceeded"))
	f.start(t)
	recs := f.produce(t, record(t, result("ev-etcd", "paul", "c-piscine-sort", 10)))

	// Three failed attempts: the batch is retried, not skipped.
	testkit.Eventually(t, 10*time.Second, func() bool { return f.judge.syncCount() >= 3 }, nil)
	if n := f.srv.callCount(); n != 0 {
		t.Fatalf("%d starts while the thresholds are not current", n)
	}
	if c := f.mustCommitted(t, f.group); len(c) != 0 {
		t.Fatalf("offsets %v committed while the thresholds are not current", c)
	}
	if got := testkit.CounterValue(f.m.Judged.WithLabelValues("fail")); got != 0 {
		t.Errorf("Judged{fail} = %v while the thresholds are not current", got)
	}

	mux := http.NewServeMux()
	f.m.Handle(mux)
	readyz := func() (int, string) {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		return rec.Code, rec.Body.String()
	}
	if code, body := readyz(); code != http.StatusServiceUnavailable || !strings.Contains(body, "thresholds not current") {
		t.Errorf("/readyz %d %q while the thresholds cannot be synced, want 503 saying so", code, body)
	}

	f.judge.setSyncErr(nil)
	f.waitCommitted(t, f.group, recs)
	if ids := f.ids(); len(ids) != 1 || ids[0] != "patrol-ev-etcd" {
		t.Errorf("workflows %v, want patrol-ev-etcd", ids)
	}
	if code, body := readyz(); code != http.StatusOK {
		t.Errorf("/readyz %d %q once the thresholds are current again, want 200", code, body)
	}
}

// TestAlertsStuckPartitionDoesNotBlockOthers: a partition whose batch
// cannot be handled (its start keeps failing, and is retried forever) must
// not hold back the results of the other partitions, however many batches
// arrive behind it (DESIGN.md §2.1: a record never blocks its partition;
// consumer.go: "partitions never wait on each other").
func TestAlertsStuckPartitionDoesNotBlockOthers(t *testing.T) {
	t.Parallel()
	f := newAlerts(t)
	const stuckID = "patrol-ev-stuck-0"
	refusing := &refusingStarter{inner: f.starter, refuse: stuckID}
	f.run(t, f.group, f.m, ingest.NewAlerts(f.cfg, f.judge, refusing, f.log, f.m))

	// One batch stuck in its worker, then more batches for the same
	// partition, one poll each, until its queue is full (one batch in
	// flight and four queued): fetching of that partition is then paused,
	// and further records wait in Kafka.
	var stuck []*kgo.Record
	for i := range 8 {
		stuck = append(stuck, f.produce(t, record(t, result(fmt.Sprintf("ev-stuck-%d", i), "stuck-student", "c-piscine-sort", 1)))...)
		if i >= 5 {
			continue
		}
		want := float64(i + 1)
		testkit.Eventually(t, 10*time.Second, func() bool { return testkit.CounterValue(f.m.Consumed.WithLabelValues(f.group)) >= want },
			func() string { return fmt.Sprintf("batch %d of the stuck partition never polled", i+1) })
	}
	// A result of a student whose records land on another partition.
	var other *kgo.Record
	for i := 0; other == nil; i++ {
		r := f.produce(t, record(t, result(fmt.Sprintf("ev-other-%d", i), fmt.Sprintf("other-%d", i), "c-piscine-sort", 1)))[0]
		if r.Partition != stuck[0].Partition {
			other = r
		}
	}
	f.waitCommitted(t, f.group, []*kgo.Record{other})
	if c := f.mustCommitted(t, f.group); c[stuck[0].Partition] > stuck[0].Offset {
		t.Errorf("the stuck partition committed %d past its failing record at %d", c[stuck[0].Partition], stuck[0].Offset)
	}
}

// refusingStarter fails the starts of one workflow ID forever, with err
// (default: Unavailable, as a history shard that never comes back).
type refusingStarter struct {
	inner  ingest.WorkflowStarter
	refuse string
	err    error
}

func (s *refusingStarter) ExecuteWorkflow(ctx context.Context, o client.StartWorkflowOptions, wf any, args ...any) (client.WorkflowRun, error) {
	if o.ID == s.refuse {
		if s.err != nil {
			return nil, s.err
		}
		return nil, serviceerror.NewUnavailable("shard unavailable")
	}
	return s.inner.ExecuteWorkflow(ctx, o, wf, args...)
}

// failingConverter cannot encode the input of one event, as the SDK's
// converter cannot encode a time past year 9999.
type failingConverter struct {
	converter.DataConverter
	eventID string
}

func (c failingConverter) ToPayloads(values ...any) (*commonpb.Payloads, error) {
	for _, v := range values {
		if in, ok := v.(workflows.PatrolInput); ok && in.EventID == c.eventID {
			return nil, errors.New("json: error calling MarshalJSON for type time.Time: Time.MarshalJSON: year outside of range [0,9999]")
		}
	}
	return c.DataConverter.ToPayloads(values...)
}

// TestAlertsDeadLetterWhatCanNeverStart: a failing result whose start can
// never succeed (Temporal refuses the request as invalid; its input does not
// encode) goes to the DLQ with its reason instead of being retried forever,
// and the partition goes on: the next failing result on it is started.
func TestAlertsDeadLetterWhatCanNeverStart(t *testing.T) {
	t.Parallel()
	f := newAlerts(t)
	refusing := &refusingStarter{inner: f.starter, refuse: "patrol-ev-refused", err: serviceerror.NewInvalidArgument("search attribute value of size 3000 exceeds size limit 2048")}
	cfg := f.cfg
	cfg.DataConverter = failingConverter{DataConverter: converter.GetDefaultDataConverter(), eventID: "ev-unencodable"}
	f.run(t, f.group, f.m, ingest.NewAlerts(cfg, f.judge, refusing, f.log, f.m))

	key := []byte("lea")
	recs := f.produce(t,
		&kgo.Record{Key: key, Value: value(t, result("ev-refused", "lea", "c-piscine-sort", 1))},
		&kgo.Record{Key: key, Value: value(t, result("ev-unencodable", "lea", "c-piscine-sort", 2))},
		&kgo.Record{Key: key, Value: value(t, result("ev-after", "lea", "c-piscine-sort", 3))},
	)
	f.waitCommitted(t, f.group, recs)
	if ids := f.ids(); len(ids) != 1 || ids[0] != "patrol-ev-after" {
		t.Errorf("workflows %v, want patrol-ev-after", ids)
	}
	want := map[string]struct {
		rec     *kgo.Record
		reason  string
		mention string
	}{
		fmt.Sprintf("piscine.results/%d/%d", recs[0].Partition, recs[0].Offset): {recs[0], ingest.ReasonStartRefused, "exceeds size limit"},
		fmt.Sprintf("piscine.results/%d/%d", recs[1].Partition, recs[1].Offset): {recs[1], ingest.ReasonUnencodable, "year outside of range"},
	}
	dlq := f.dlq(t)
	if len(dlq) != len(want) {
		t.Errorf("%d DLQ records, want %d", len(dlq), len(want))
	}
	for _, d := range dlq {
		src, _ := testkit.Header(d, ingest.HeaderSource)
		w, ok := want[src]
		if !ok {
			t.Errorf("unexpected DLQ record from %s", src)
			continue
		}
		if !bytes.Equal(d.Value, w.rec.Value) || !bytes.Equal(d.Key, w.rec.Key) {
			t.Errorf("DLQ record of %s differs from the original", src)
		}
		if msg, _ := testkit.Header(d, ingest.HeaderError); !strings.Contains(msg, w.mention) {
			t.Errorf("%s of %s = %q, want it to mention %q", ingest.HeaderError, src, msg, w.mention)
		}
		if got := testkit.CounterValue(f.m.Rejected.WithLabelValues(f.group, w.reason)); got != 1 {
			t.Errorf("Rejected{%s} = %v, want 1", w.reason, got)
		}
	}
	if got := testkit.CounterValue(f.m.Judged.WithLabelValues("fail")); got != 1 {
		t.Errorf("Judged{fail} = %v, want 1 (the started one)", got)
	}
}

// TestAlertsRetryOnlyUnacknowledgedStarts: when some starts of a batch fail,
// or the attempt ends before all are done (a slow Temporal), the retry
// starts only the results not acknowledged yet: a start acknowledged once is
// never sent again, whatever the batch size.
func TestAlertsRetryOnlyUnacknowledgedStarts(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		// hold decides, for the n-th start call of the given workflow ID,
		// whether it fails at once (fail) or waits for the end of the
		// attempt (block).
		hold    func(id string, call int) (fail, block bool)
		attempt time.Duration
		// again are the IDs that are legitimately started twice.
		again []string
	}{
		{"one start fails", func(id string, call int) (bool, bool) { return id == "patrol-ev-ack-3" && call == 1, false },
			0, []string{"patrol-ev-ack-3"}},
		{"attempt ends mid-batch", func(id string, call int) (bool, bool) { return false, id == "patrol-ev-ack-4" && call == 1 },
			300 * time.Millisecond, []string{"patrol-ev-ack-4"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newAlerts(t)
			f.cfg.MaxInFlight = 1 // one start at a time: the later ones wait behind the held one
			var mu sync.Mutex
			calls := map[string]int{}
			f.starter.beforeID = func(ctx context.Context, id string) error {
				mu.Lock()
				calls[id]++
				n := calls[id]
				mu.Unlock()
				fail, block := tc.hold(id, n)
				if block {
					<-ctx.Done()
					return ctx.Err()
				}
				if fail {
					return serviceerror.NewUnavailable("temporal is busy")
				}
				return nil
			}
			f.start(t, func(c *ingest.ConsumerConfig) {
				if tc.attempt > 0 {
					c.AttemptTimeout = tc.attempt
				}
			})
			var recs []*kgo.Record
			for i := range 10 { // one student: one partition, batched together
				r := record(t, result(fmt.Sprintf("ev-ack-%d", i), "quentin", "c-piscine-sort", 10))
				recs = append(recs, r)
			}
			f.produce(t, recs...)
			f.waitCommitted(t, f.group, recs)
			for i := range recs {
				id := fmt.Sprintf("patrol-ev-ack-%d", i)
				want := 1
				if slices.Contains(tc.again, id) {
					want = 2
				}
				if got := f.srv.callsFor(id); got != want {
					t.Errorf("%s: %d start calls, want %d", id, got, want)
				}
			}
			if got := testkit.CounterValue(f.m.Judged.WithLabelValues("fail")); got != float64(len(recs)) {
				t.Errorf("Judged{fail} = %v, want %d", got, len(recs))
			}
		})
	}
}

// TestAlertsPipelinedBatchesCommitInOrder: with Pipeline 2, a batch is
// handled while the batch before it on the same partition still waits for
// a start, and its offsets are committed only after that batch's.
func TestAlertsPipelinedBatchesCommitInOrder(t *testing.T) {
	t.Parallel()
	f := newAlerts(t)
	held, release := make(chan struct{}), make(chan struct{})
	f.starter.beforeID = func(ctx context.Context, id string) error {
		if id == "patrol-ev-pipe-first" {
			close(held)
			select {
			case <-release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	}
	f.start(t, func(c *ingest.ConsumerConfig) { c.Pipeline = 2 })
	first := f.produce(t, record(t, result("ev-pipe-first", "rita", "c-piscine-sort", 10)))
	<-held
	second := f.produce(t, record(t, result("ev-pipe-second", "rita", "c-piscine-sort", 10)))
	if first[0].Partition != second[0].Partition {
		t.Fatalf("records on partitions %d and %d, want one", first[0].Partition, second[0].Partition)
	}
	testkit.Eventually(t, 10*time.Second, func() bool {
		_, ok := f.srv.workflows()["patrol-ev-pipe-second"]
		return ok
	}, func() string { return "the second batch was not handled while the first waited" })
	if c := f.mustCommitted(t, f.group); len(c) != 0 {
		t.Fatalf("offsets %v committed while the first batch waits for its start", c)
	}
	// The held start is what /metrics shows in flight.
	testkit.Eventually(t, 10*time.Second, func() bool { return testkit.GaugeValue(f.m.StartsInFlight) == 1 },
		func() string {
			return fmt.Sprintf("starts in flight %v, want 1", testkit.GaugeValue(f.m.StartsInFlight))
		})
	close(release)
	f.waitCommitted(t, f.group, append(first, second...))
	if got := testkit.GaugeValue(f.m.StartsInFlight); got != 0 {
		t.Errorf("starts in flight %v once everything is committed, want 0", got)
	}
}

// fakeDeployments is the store's record of deployments, counting lookups.
type fakeDeployments struct {
	mu       sync.Mutex
	deployed map[string]bool
	err      error
	calls    int
	asked    int
}

func (d *fakeDeployments) Deployed(_ context.Context, ids []string) (map[string]bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls++
	d.asked += len(ids)
	if d.err != nil {
		return nil, d.err
	}
	out := map[string]bool{}
	for _, id := range ids {
		if d.deployed[id] {
			out[id] = true
		}
	}
	return out, nil
}

func (d *fakeDeployments) set(err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.err = err
}

// TestAlertsNeverRedeployARecordedEvent: Temporal has forgotten the run of
// an event deployed long ago (its retention passed), and the event comes
// back (a laptop resending, a replay of the topic): the store's record of
// the deployment keeps it from being deployed again. The record is read
// once per batch, not per result; while it cannot be read, nothing is
// started (or committed) on a guess.
func TestAlertsNeverRedeployARecordedEvent(t *testing.T) {
	t.Parallel()
	f := newAlerts(t)
	deps := &fakeDeployments{deployed: map[string]bool{"patrol-ev-old": true}, err: errors.New("store unreachable")}
	cfg := f.cfg
	cfg.Deployed = deps
	f.run(t, f.group, f.m, ingest.NewAlerts(cfg, f.judge, f.starter, f.log, f.m))

	key := []byte("lea")
	var recs []*kgo.Record
	for _, id := range []string{"ev-old", "ev-new", "ev-old"} {
		recs = append(recs, &kgo.Record{Key: key, Value: value(t, result(id, "lea", "c-piscine-sort", 1))})
	}
	recs = append(recs, &kgo.Record{Key: key, Value: value(t, result("ev-pass", "lea", "c-piscine-sort", 90))})
	f.produce(t, recs...)
	testkit.Eventually(t, 10*time.Second, func() bool {
		return testkit.CounterValue(f.m.BatchErrors.WithLabelValues(f.group, "handle")) >= 2
	}, func() string { return "the batch retried while the store is unreachable" })
	if n := f.srv.callCount(); n != 0 {
		t.Fatalf("%d starts while the deployments could not be read", n)
	}
	if c := f.mustCommitted(t, f.group); len(c) != 0 {
		t.Fatalf("offsets %v committed while the deployments could not be read", c)
	}

	deps.set(nil)
	f.waitCommitted(t, f.group, recs)
	if ids := f.ids(); len(ids) != 1 || ids[0] != "patrol-ev-new" {
		t.Errorf("workflows %v, want only patrol-ev-new", ids)
	}
	if n := f.srv.callsFor("patrol-ev-old"); n != 0 {
		t.Errorf("%d starts of the event already deployed", n)
	}
	deps.mu.Lock()
	defer deps.mu.Unlock()
	if deps.asked > deps.calls*2 {
		t.Errorf("%d identifiers asked in %d lookups: more than the batch's two distinct failing events each", deps.asked, deps.calls)
	}
	if got := testkit.CounterValue(f.m.WorkflowStarts.WithLabelValues("already_deployed")); got != 1 {
		t.Errorf("WorkflowStarts{already_deployed} = %v, want 1", got)
	}
	if got := testkit.CounterValue(f.m.Judged.WithLabelValues("pass")); got != 1 {
		t.Errorf("Judged{pass} = %v, want 1 (counted once, whatever the retries)", got)
	}
}

// blockingHandler never finishes a batch: it waits for its attempt's end,
// as starts to a Temporal that does not answer would.
type blockingHandler struct{ entered chan struct{} }

func (h blockingHandler) Handle(ctx context.Context, _ []event.Result) error {
	select {
	case h.entered <- struct{}{}:
	default:
	}
	<-ctx.Done()
	return ctx.Err()
}

// TestStopIsBoundedByTheGrace: a consumer stopped while an attempt hangs
// (a long attempt timeout, a Temporal that does not answer) returns within
// its stop grace, not at the attempt's end, and commits nothing of that
// batch (it is redelivered).
func TestStopIsBoundedByTheGrace(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	m := metrics.New()
	h := blockingHandler{entered: make(chan struct{}, 1)}
	stop := e.run(t, ingest.AlertsGroup, m, h, func(c *ingest.ConsumerConfig) {
		c.AttemptTimeout, c.StopGrace = time.Minute, 300*time.Millisecond
	})
	e.produce(t, record(t, result("ev-hang", "lea", "c-piscine-sort", 1)))
	select {
	case <-h.entered:
	case <-time.After(20 * time.Second):
		t.Fatal("the batch never reached the handler")
	}
	began := time.Now()
	stop()
	if took := time.Since(began); took > 5*time.Second {
		t.Errorf("stop took %s with a stop grace of 300ms", took)
	}
	if c := e.mustCommitted(t, ingest.AlertsGroup); len(c) != 0 {
		t.Errorf("committed %v of a batch never handled", c)
	}
}
