//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/acu-patrol/acu/ingest"
	"github.com/acu-patrol/acu/internal/event"
	"github.com/acu-patrol/acu/internal/metrics"
	"github.com/acu-patrol/acu/internal/testkit"
	"github.com/acu-patrol/acu/workflows"
)

const (
	partitions = 3
	exercise   = "c-piscine-sort"
	threshold  = 50.0
)

// ---- the broker ----

// brokers returns the seed brokers of the real Kafka named by ACU_IT_KAFKA.
// Unset: the test is skipped. Set but not answering: the test fails.
func brokers(t *testing.T) []string { return testkit.RealKafka(t) }

// kenv is one test's view of the broker: its own topics and an admin client.
type kenv struct {
	seeds   []string
	cl      *kgo.Client
	adm     *kadm.Client
	log     *slog.Logger
	topic   string
	dlq     string
	name    string // unique per test run, the prefix of topics and groups
	groupNo atomic.Int32
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// newKenv creates fresh topics (results + DLQ, 3 partitions) for the test,
// deleted at the end.
func newKenv(t *testing.T) *kenv {
	t.Helper()
	seeds := brokers(t)
	log := testkit.Logger(t, slog.LevelWarn)
	name := fmt.Sprintf("it.%s.%d", unsafeName.ReplaceAllString(t.Name(), "_"), time.Now().UnixNano())
	// The producer writes what the broker takes (as kcat would).
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.ProducerLinger(0), kgo.ProducerBatchMaxBytes(ingest.ResultsMaxMessageBytes))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	e := &kenv{
		seeds: seeds, cl: cl, adm: kadm.NewClient(cl),
		log:   log,
		topic: name + ".results", dlq: name + ".dlq", name: name,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// As app.CreateTopics does, with the per-test names.
	for _, tp := range []string{e.topic, e.dlq} {
		r, err := e.adm.CreateTopic(ctx, partitions, 1, ingest.TopicConfigs(tp == e.dlq), tp)
		if err == nil {
			err = r.Err
		}
		if err != nil {
			t.Fatalf("creating topic %s: %v (%s)", tp, err, r.ErrMessage)
		}
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if _, err := e.adm.DeleteTopics(ctx, e.topic, e.dlq); err != nil {
			t.Logf("deleting topics: %v", err)
		}
	})
	// Until the broker serves the topics' metadata with a leader per
	// partition, a produce may fail with UNKNOWN_TOPIC_OR_PARTITION.
	testkit.Eventually(t, 20*time.Second, func() bool {
		md, err := e.adm.Metadata(ctx, e.topic, e.dlq)
		if err != nil {
			return false
		}
		for _, tp := range []string{e.topic, e.dlq} {
			td, ok := md.Topics[tp]
			if !ok || td.Err != nil || len(td.Partitions) != partitions {
				return false
			}
			for _, p := range td.Partitions {
				if p.Err != nil || p.Leader < 0 {
					return false
				}
			}
		}
		return true
	}, func() string { return "topics " + e.topic + ", " + e.dlq + " not ready" })
	return e
}

// group returns a fresh consumer group name; the group is deleted at the end
// (after the consumers registered later have stopped).
func (e *kenv) group(t *testing.T) string {
	t.Helper()
	g := fmt.Sprintf("%s.g%d", e.name, e.groupNo.Add(1))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := e.adm.DeleteGroups(ctx, g); err != nil {
			t.Logf("deleting group %s: %v", g, err)
		}
	})
	return g
}

// consumer is one running ingest.Consumer.
type consumer struct {
	stop func() // cancels and waits for Run to return
	m    *metrics.Metrics
}

// run starts an ingest.Consumer of group on the test's topics.
func (e *kenv) run(t *testing.T, group, clientID string, h func(m *metrics.Metrics) ingest.Handler, adjust ...func(*ingest.ConsumerConfig)) *consumer {
	t.Helper()
	m := metrics.New()
	cfg := ingest.ConsumerConfig{
		Brokers: e.seeds, Group: group, Topic: e.topic, DLQTopic: e.dlq,
		Logger: e.log.With("client", clientID), Metrics: m,
		ExtraOpts: []kgo.Opt{kgo.ClientID(clientID), kgo.FetchMaxWait(100 * time.Millisecond)},
	}
	for _, f := range adjust {
		f(&cfg)
	}
	cons, err := ingest.NewConsumer(cfg, h(m))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cons.Run(ctx) }()
	stop := sync.OnceFunc(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("consumer %s: Run returned %v", clientID, err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("consumer %s: Run did not return within 30s of its context ending", clientID)
		}
	})
	t.Cleanup(stop)
	return &consumer{stop: stop, m: m}
}

// produce writes recs to the test's results topic; on return they carry
// their partitions and offsets.
func (e *kenv) produce(t *testing.T, recs []*kgo.Record) {
	t.Helper()
	for _, r := range recs {
		r.Topic = e.topic
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("producing %d records: %v", len(recs), err)
	}
}

// endOffsets returns the end offset of every partition of topic.
func (e *kenv) endOffsets(topic string) (map[int32]int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	lo, err := e.adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, err
	}
	if err := lo.Error(); err != nil {
		return nil, err
	}
	out := map[int32]int64{}
	lo.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
	return out, nil
}

// committed returns group's committed offsets on the results topic.
func (e *kenv) committed(group string) (map[int32]int64, error) {
	return testkit.Committed(e.adm, group, e.topic)
}

// waitCommittedAtEnd waits until group's committed offset of every
// partition equals the partition's end offset.
func (e *kenv) waitCommittedAtEnd(t *testing.T, group string, d time.Duration) map[int32]int64 {
	t.Helper()
	var got, want map[int32]int64
	var lastErr error
	testkit.Eventually(t, d, func() bool {
		if want, lastErr = e.endOffsets(e.topic); lastErr != nil {
			return false
		}
		if got, lastErr = e.committed(group); lastErr != nil {
			return false
		}
		return len(want) == partitions && maps.Equal(got, want)
	}, func() string {
		return fmt.Sprintf("group %s committed %v, end offsets %v (last error %v)", group, got, want, lastErr)
	})
	return got
}

// readAll reads topic from the start up to its end offsets.
func (e *kenv) readAll(t *testing.T, topic string) []*kgo.Record {
	t.Helper()
	ends, err := e.endOffsets(topic)
	if err != nil {
		t.Fatalf("end offsets of %s: %v", topic, err)
	}
	total := int64(0)
	for _, o := range ends {
		total += o
	}
	if total == 0 {
		return nil
	}
	return testkit.ReadRecords(t, e.seeds, topic, total)
}

// members returns, per client ID, the partitions of the results topic
// assigned to the group's members; stable is whether the group is Stable.
func (e *kenv) members(group string) (assigned map[string][]int32, stable bool, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ds, err := e.adm.DescribeGroups(ctx, group)
	if err != nil {
		return nil, false, err
	}
	d, ok := ds[group]
	if !ok {
		return nil, false, errors.New("group not described")
	}
	if d.Err != nil {
		return nil, false, d.Err
	}
	assigned = map[string][]int32{}
	for _, m := range d.Members {
		assigned[m.ClientID] = nil
		if c, ok := m.Assigned.AsConsumer(); ok {
			for _, tp := range c.Topics {
				if tp.Topic == e.topic {
					assigned[m.ClientID] = append(assigned[m.ClientID], tp.Partitions...)
				}
			}
		}
	}
	return assigned, d.State == "Stable", nil
}

// ---- fakes ----

// fakeJudge knows one exercise.
type fakeJudge struct{}

func (fakeJudge) Sync(context.Context) error { return nil }
func (fakeJudge) Lookup(ex string) (float64, bool) {
	if ex == exercise {
		return threshold, true
	}
	return 0, false
}

// temporal is the state of a Temporal cluster as far as starts go: the
// workflows that exist by ID (and who created them), and every call.
type temporal struct {
	mu      sync.Mutex
	created map[string]string   // workflow ID -> starter that created it
	calls   map[string][]string // workflow ID -> starters that called, in order
	total   int
}

func newTemporal() *temporal {
	return &temporal{created: map[string]string{}, calls: map[string][]string{}}
}

func (s *temporal) start(by, id string) (created bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.total++
	s.calls[id] = append(s.calls[id], by)
	if _, ok := s.created[id]; ok {
		return false
	}
	s.created[id] = by
	return true
}

func (s *temporal) snapshot() (created map[string]string, calls map[string][]string, total int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	calls = make(map[string][]string, len(s.calls))
	for k, v := range s.calls {
		calls[k] = append([]string(nil), v...)
	}
	return maps.Clone(s.created), calls, s.total
}

// starter is one process's Temporal client over the shared server: a second
// start of a known ID returns WorkflowExecutionAlreadyStarted, as Temporal
// does with the options ingest uses.
type starter struct {
	name string
	srv  *temporal
	// after, when set, runs once the server has the start; its error
	// replaces the reply.
	after func(ctx context.Context) error
	calls atomic.Int64
}

func (s *starter) ExecuteWorkflow(ctx context.Context, o client.StartWorkflowOptions, _ any, _ ...any) (client.WorkflowRun, error) {
	s.calls.Add(1)
	if o.ID == "" {
		return nil, serviceerror.NewInvalidArgument("WorkflowId is not set on request.")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	created := s.srv.start(s.name, o.ID)
	if s.after != nil {
		if err := s.after(ctx); err != nil {
			return nil, err
		}
	}
	if !created {
		return nil, serviceerror.NewWorkflowExecutionAlreadyStarted("workflow execution already started", "", "run-"+o.ID)
	}
	return nil, nil
}

func alertsHandler(e *kenv, st *starter) func(*metrics.Metrics) ingest.Handler {
	return func(m *metrics.Metrics) ingest.Handler {
		return ingest.NewAlerts(ingest.AlertConfig{}, fakeJudge{}, st, e.log, m)
	}
}

// memWriter is an in-memory ResultWriter, idempotent by event identity.
type memWriter struct {
	mu    sync.Mutex
	rows  map[string]event.Result
	calls int
}

func (w *memWriter) PutResults(_ context.Context, rs []event.Result) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.calls++
	n := 0
	for _, r := range rs {
		if _, ok := w.rows[r.ID]; !ok {
			w.rows[r.ID] = r
			n++
		}
	}
	return n, nil
}

func (w *memWriter) snapshot() map[string]event.Result {
	w.mu.Lock()
	defer w.mu.Unlock()
	return maps.Clone(w.rows)
}

// ---- the data ----

// dataset is a stream of result records and what it must lead to.
type dataset struct {
	recs      []*kgo.Record
	failing   map[string]bool // workflow IDs of the distinct failing identities
	valid     map[string]bool // distinct identities of the valid records
	malformed map[*kgo.Record]bool
	dups      int
}

// newDataset builds n records: nMalformed invalid ones, nDups re-sends of
// earlier valid values (half with another key, so on another partition),
// the rest distinct; half of the distinct ones fail; every 10th has no
// event_id (hash identity). The order is shuffled deterministically.
func newDataset(t *testing.T, prefix string, n, nMalformed, nDups int) *dataset {
	t.Helper()
	d := &dataset{failing: map[string]bool{}, valid: map[string]bool{}, malformed: map[*kgo.Record]bool{}}
	base := time.Date(2025, 11, 24, 9, 15, 30, 250_000_000, time.UTC)
	nUnique := n - nMalformed - nDups
	var uniq []*kgo.Record
	for i := range nUnique {
		student := fmt.Sprintf("s-%03d", i%41)
		metric := 50 + float64(i%50) // passes
		if i%2 == 0 {
			metric = float64(i % 50) // fails: < 50
		}
		m := map[string]any{
			"timestamp":   base.Add(time.Duration(i) * time.Second).Format(time.RFC3339Nano),
			"student_id":  student,
			"latitude":    48.8966,
			"longitude":   2.3185,
			"exercise_id": exercise,
			"metric":      metric,
		}
		if i%10 != 3 {
			m["event_id"] = fmt.Sprintf("%s-ev-%04d", prefix, i)
		}
		v, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		r, err := event.Parse(v)
		if err != nil {
			t.Fatalf("test record %s is invalid: %v", v, err)
		}
		d.valid[r.ID] = true
		if r.Metric < threshold {
			d.failing[workflows.PatrolWorkflowID(r.ID)] = true
		}
		uniq = append(uniq, &kgo.Record{Key: []byte(student), Value: v})
	}
	all := append([]*kgo.Record(nil), uniq...)
	for k := range nDups {
		src := uniq[(k*7)%len(uniq)]
		key := src.Key
		if k%2 == 1 {
			key = []byte("dup-" + strconv.Itoa(k))
		}
		all = append(all, &kgo.Record{Key: key, Value: src.Value})
		d.dups++
	}
	bad := []string{
		`not json at all`,
		`{"student_id":"s-001","exercise_id":"` + exercise + `","metric":10}`, // no timestamp, no position
		`{"timestamp":"2025-11-24T09:15:30Z","student_id":"s-001","latitude":1,"longitude":2,"exercise_id":"` + exercise + `","metric":150}`,
		`{"timestamp":"2025-11-24T09:15:30Z","student_id":"s-001","latitude":95,"longitude":2,"exercise_id":"` + exercise + `","metric":10}`,
		`{"timestamp":"2025-11-24T09:15:30Z","student_id":"bad student","latitude":1,"longitude":2,"exercise_id":"` + exercise + `","metric":10}`,
	}
	for k := range nMalformed {
		r := &kgo.Record{Key: []byte("bad-" + strconv.Itoa(k)), Value: []byte(bad[k%len(bad)])}
		if _, err := event.Parse(r.Value); err == nil {
			t.Fatalf("malformed test record %s parses", r.Value)
		}
		d.malformed[r] = true
		all = append(all, r)
	}
	rng := rand.New(rand.NewPCG(1, uint64(n)))
	rng.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	d.recs = all
	return d
}

func source(r *kgo.Record) string {
	return r.Topic + "/" + strconv.Itoa(int(r.Partition)) + "/" + strconv.FormatInt(r.Offset, 10)
}

// checkDLQ checks that the DLQ holds the malformed records (each with its
// key, value and headers), exactly once each if exact, and nothing else.
func checkDLQ(t *testing.T, e *kenv, d *dataset, exact bool) {
	t.Helper()
	bySource := map[string]*kgo.Record{}
	for r := range d.malformed {
		bySource[source(r)] = r
	}
	seen := map[string]int{}
	dlq := e.readAll(t, e.dlq)
	for _, r := range dlq {
		src, ok := testkit.Header(r, ingest.HeaderSource)
		if !ok {
			t.Errorf("DLQ record at %s without %s header", source(r), ingest.HeaderSource)
			continue
		}
		orig, ok := bySource[src]
		if !ok {
			t.Errorf("DLQ record with %s=%q: not one of the malformed records produced", ingest.HeaderSource, src)
			continue
		}
		seen[src]++
		if msg, ok := testkit.Header(r, ingest.HeaderError); !ok || msg == "" {
			t.Errorf("DLQ record of %s: %s header missing or empty", src, ingest.HeaderError)
		}
		if string(r.Key) != string(orig.Key) || string(r.Value) != string(orig.Value) {
			t.Errorf("DLQ record of %s: key/value %q/%q, want the original %q/%q", src, r.Key, r.Value, orig.Key, orig.Value)
		}
	}
	for src := range bySource {
		switch n := seen[src]; {
		case n == 0:
			t.Errorf("malformed record %s is not on the DLQ", src)
		case exact && n != 1:
			t.Errorf("malformed record %s is %d times on the DLQ, want once", src, n)
		}
	}
	if exact && len(dlq) != len(d.malformed) {
		t.Errorf("%d DLQ records, want %d", len(dlq), len(d.malformed))
	}
}

// checkStarts checks that the distinct workflows created are exactly the
// failing identities, and returns the total of calls.
func checkStarts(t *testing.T, srv *temporal, d *dataset) (created map[string]string, calls map[string][]string, total int) {
	t.Helper()
	created, calls, total = srv.snapshot()
	for id := range d.failing {
		if _, ok := created[id]; !ok {
			t.Errorf("no workflow %s for a failing result", id)
		}
	}
	for id := range created {
		if !d.failing[id] {
			t.Errorf("workflow %s started for no failing result", id)
		}
	}
	if len(created) != len(d.failing) {
		t.Errorf("%d distinct workflows, want %d", len(created), len(d.failing))
	}
	return created, calls, total
}

// ---- plumbing ----
