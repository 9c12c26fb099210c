package ingest_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/acu-patrol/acu/ingest"
	"github.com/acu-patrol/acu/internal/event"
	"github.com/acu-patrol/acu/internal/metrics"
	"github.com/acu-patrol/acu/internal/testkit"
)

// ---- Judge ----

// fakeJudge is a fixed set of thresholds whose Sync can be made to fail.
type fakeJudge struct {
	thresholds map[string]float64 // read-only once the consumer runs

	mu      sync.Mutex
	syncErr error
	syncs   int
}

func newJudge(th map[string]float64) *fakeJudge { return &fakeJudge{thresholds: th} }

func (j *fakeJudge) Sync(context.Context) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.syncs++
	return j.syncErr
}

func (j *fakeJudge) Lookup(exerciseID string) (float64, bool) {
	th, ok := j.thresholds[exerciseID]
	return th, ok
}

func (j *fakeJudge) setSyncErr(err error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.syncErr = err
}

func (j *fakeJudge) syncCount() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.syncs
}

// ---- Temporal ----

// startCall is one ExecuteWorkflow call as the starter received it.
type startCall struct {
	Options  client.StartWorkflowOptions
	Workflow any
	Args     []any
}

// temporalServer is the state a Temporal cluster keeps about starts: every
// call received and the workflows that exist, by ID. Starters share it.
type temporalServer struct {
	mu      sync.Mutex
	calls   []startCall
	started map[string]startCall // the call that created each workflow
}

func newTemporal() *temporalServer { return &temporalServer{started: map[string]startCall{}} }

func (s *temporalServer) record(c startCall) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, c)
}

// create starts the workflow unless one with its ID exists.
func (s *temporalServer) create(c startCall) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.started[c.Options.ID]; ok {
		return false
	}
	s.started[c.Options.ID] = c
	return true
}

// workflows returns the workflows started, by ID.
func (s *temporalServer) workflows() map[string]startCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.started)
}

func (s *temporalServer) callCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.calls)
}

// callsFor counts the calls received for a workflow ID.
func (s *temporalServer) callsFor(id string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.calls {
		if c.Options.ID == id {
			n++
		}
	}
	return n
}

// fakeStarter implements ingest.WorkflowStarter over a temporalServer like
// the Temporal client does: a start of an ID that exists returns
// WorkflowExecutionAlreadyStarted.
type fakeStarter struct {
	srv *temporalServer
	// before, when set, runs first on every call (n counts this starter's
	// calls from 1); an error fails the call before the server has it.
	before func(ctx context.Context, n int) error
	// after, when set, runs once the server has handled the start (started
	// the workflow or found it); an error replaces the reply: the caller
	// does not learn what happened.
	after func(ctx context.Context) error
	// beforeID, when set, runs first on every call with the workflow ID;
	// an error fails the call before the server has it.
	beforeID func(ctx context.Context, id string) error

	n atomic.Int64
}

func (s *fakeStarter) ExecuteWorkflow(ctx context.Context, o client.StartWorkflowOptions, wf any, args ...any) (client.WorkflowRun, error) {
	n := s.n.Add(1)
	c := startCall{Options: o, Workflow: wf, Args: args}
	s.srv.record(c)
	if s.before != nil {
		if err := s.before(ctx, int(n)); err != nil {
			return nil, err
		}
	}
	if s.beforeID != nil {
		if err := s.beforeID(ctx, o.ID); err != nil {
			return nil, err
		}
	}
	created := s.srv.create(c)
	if s.after != nil {
		if err := s.after(ctx); err != nil {
			return nil, err
		}
	}
	if !created {
		return nil, serviceerror.NewWorkflowExecutionAlreadyStarted("workflow execution already started: "+o.ID, "", "run-"+o.ID)
	}
	return nil, nil
}

// ---- Store ----

// fakeWriter is an in-memory ResultWriter, idempotent by event identity.
type fakeWriter struct {
	mu    sync.Mutex
	rows  map[string]event.Result
	puts  int
	calls int
	// loseAcks makes the first loseAcks calls write their rows and then
	// fail, as a store whose reply was lost.
	loseAcks int
}

func newWriter() *fakeWriter { return &fakeWriter{rows: map[string]event.Result{}} }

func (w *fakeWriter) PutResults(_ context.Context, rs []event.Result) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.calls++
	n := 0
	for _, r := range rs {
		w.puts++
		if _, ok := w.rows[r.ID]; !ok {
			w.rows[r.ID] = r
			n++
		}
	}
	if w.calls <= w.loseAcks {
		return 0, serviceerror.NewUnavailable("store reply lost")
	}
	return n, nil
}

func (w *fakeWriter) snapshot() map[string]event.Result {
	w.mu.Lock()
	defer w.mu.Unlock()
	return maps.Clone(w.rows)
}

// ---- Kafka ----

// env is one in-process Kafka cluster with a producer and an admin client.
type env struct {
	addrs []string
	cl    *kgo.Client
	adm   *kadm.Client
	log   *slog.Logger
}

func newEnv(t *testing.T) *env {
	t.Helper()
	// Registered first so that it runs last: nothing logs to t after.
	log := testkit.Logger(t, slog.LevelWarn)
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, ingest.ResultsTopic, ingest.DLQTopic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	// The producer writes what the broker takes (as kcat would), not only
	// what franz-go's default batch size allows.
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ProducerLinger(0), kgo.ProducerBatchMaxBytes(ingest.ResultsMaxMessageBytes))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return &env{
		addrs: c.ListenAddrs(),
		cl:    cl,
		adm:   kadm.NewClient(cl),
		log:   log,
	}
}

// run starts a consumer of group in the background and returns a function
// that stops it and waits for Run to return (also done at cleanup).
func (e *env) run(t *testing.T, group string, m *metrics.Metrics, h ingest.Handler, adjust ...func(*ingest.ConsumerConfig)) (stop func()) {
	t.Helper()
	cfg := ingest.ConsumerConfig{
		Brokers: e.addrs, Group: group, Logger: e.log, Metrics: m,
		ExtraOpts: []kgo.Opt{kgo.FetchMaxWait(50 * time.Millisecond)},
	}
	for _, f := range adjust {
		f(&cfg)
	}
	cons, err := ingest.NewConsumer(cfg, h)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cons.Run(ctx) }()
	stop = sync.OnceFunc(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("consumer %s: Run returned %v", group, err)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("consumer %s: Run did not return within 15s of its context ending", group)
		}
	})
	t.Cleanup(stop)
	return stop
}

// produce writes recs to the results topic (unless a record names a topic)
// and returns them with their partitions and offsets.
func (e *env) produce(t *testing.T, recs ...*kgo.Record) []*kgo.Record {
	t.Helper()
	for _, r := range recs {
		if r.Topic == "" {
			r.Topic = ingest.ResultsTopic
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("producing: %v", err)
	}
	return recs
}

// committed returns the group's committed offsets on the results topic;
// a partition without a commit is absent.
func (e *env) committed(group string) (map[int32]int64, error) {
	return testkit.Committed(e.adm, group, ingest.ResultsTopic)
}

// mustCommitted is committed, failing the test on error.
func (e *env) mustCommitted(t *testing.T, group string) map[int32]int64 {
	t.Helper()
	c, err := e.committed(group)
	if err != nil {
		t.Fatalf("fetching the offsets of %s: %v", group, err)
	}
	return c
}

// ends returns, per partition, the offset after the last of recs.
func ends(recs []*kgo.Record) map[int32]int64 {
	out := map[int32]int64{}
	for _, r := range recs {
		out[r.Partition] = max(out[r.Partition], r.Offset+1)
	}
	return out
}

// waitCommitted waits until group has committed past every record of recs.
func (e *env) waitCommitted(t *testing.T, group string, recs []*kgo.Record) {
	t.Helper()
	want := ends(recs)
	var got map[int32]int64
	testkit.Eventually(t, 10*time.Second, func() bool {
		c, err := e.committed(group)
		if err != nil {
			return false
		}
		got = c
		for p, end := range want {
			if c[p] < end {
				return false
			}
		}
		return true
	}, func() string { return "committed offsets " + jsonString(got) + ", want at least " + jsonString(want) })
}

// dlq reads the whole DLQ topic. Call it once the records rejected have
// been committed: the DLQ is written before the commit.
func (e *env) dlq(t *testing.T) []*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	endOffsets, err := e.adm.ListEndOffsets(ctx, ingest.DLQTopic)
	if err != nil {
		t.Fatalf("listing the DLQ end offsets: %v", err)
	}
	total := int64(0)
	endOffsets.Each(func(o kadm.ListedOffset) { total += o.Offset })
	if total == 0 {
		return nil
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.addrs...), kgo.ConsumeTopics(ingest.DLQTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []*kgo.Record
	for int64(len(out)) < total {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of the %d DLQ records: %v", len(out), total, ctx.Err())
		}
		out = append(out, fs.Records()...)
	}
	return out
}

// ---- conditions ----

// ---- records ----

// base instant of the test results: 2025-11-24T09:15:30.250Z.
var t0 = time.Date(2025, 11, 24, 9, 15, 30, 250_000_000, time.UTC)

// result is a valid result event as a JSON object; change fields before
// encoding with value.
func result(eventID, student, exercise string, metric float64) map[string]any {
	m := map[string]any{
		"timestamp":   t0.Format(time.RFC3339Nano),
		"student_id":  student,
		"latitude":    48.8966,
		"longitude":   2.3185,
		"exercise_id": exercise,
		"metric":      metric,
	}
	if eventID != "" {
		m["event_id"] = eventID
	}
	return m
}

func value(t testing.TB, m map[string]any) []byte {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// record is a results-topic record keyed by the student, as producers do.
func record(t testing.TB, m map[string]any) *kgo.Record {
	t.Helper()
	key, _ := m["student_id"].(string)
	return &kgo.Record{Topic: ingest.ResultsTopic, Key: []byte(key), Value: value(t, m)}
}

// identity parses a record value as the consumers do and returns its event
// identity.
func identity(t testing.TB, v []byte) string {
	t.Helper()
	r, err := event.Parse(v)
	if err != nil {
		t.Fatalf("test record %s is invalid: %v", v, err)
	}
	return r.ID
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
