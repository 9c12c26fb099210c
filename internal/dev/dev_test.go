package dev_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/acu-patrol/acu/ingest"
	"github.com/acu-patrol/acu/internal/analytics"
	"github.com/acu-patrol/acu/internal/app"
	"github.com/acu-patrol/acu/internal/config"
	"github.com/acu-patrol/acu/internal/dev"
	"github.com/acu-patrol/acu/internal/store"
	"github.com/acu-patrol/acu/internal/testkit"
	"github.com/acu-patrol/acu/workflows"
)

// TestEndToEnd runs the whole system on the embedded servers, produces a
// known set of results (duplicates, malformed records, an exercise without
// threshold, follow-ups) and checks what a user relies on: one patrol
// notification per distinct failing event, the deployment reports with
// their follow-up outcomes, every valid result archived once, the rejects
// in the DLQ, and the deployments findable by status in Temporal.
func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole dev stack")
	}
	cfg := embeddedConfig(t)
	cfg.PatrolURL = "http://" + cfg.HTTP + "/patrol"
	cfg.FollowUpAfter = 4 * time.Second
	cfg.FollowUpSettle = time.Second
	endToEnd(t, dev.Options{Config: cfg})
}

// embeddedConfig is the configuration of a dev stack of embedded servers on
// free loopback ports with its store in the test's directory.
func embeddedConfig(t *testing.T) config.Config {
	var cfg config.Config
	cfg.Register(flag.NewFlagSet("test", flag.ContinueOnError))
	cfg.Kafka, cfg.Etcd, cfg.Temporal, cfg.HTTP = testkit.FreeAddr(t), testkit.FreeAddr(t), testkit.FreeAddr(t), testkit.FreeAddr(t)
	cfg.Store = "sqlite:" + filepath.Join(t.TempDir(), "acu.db")
	cfg.LogLevel = "warn"
	return cfg
}

// endToEnd is the scenario of TestEndToEnd on the stack of o (whose Config
// has its addresses and store set): embedded servers, or real Kafka and
// Cassandra in the integration suite.
func endToEnd(t *testing.T, o dev.Options) {
	cfg := o.Config
	ctx := context.Background()
	o.PatrolFailRate, o.Partitions = 0.3, 3
	o.SeedThresholds = map[string]float64{"ex-a": 50, "ex-b": 70}
	s := startStack(t, o)

	base := time.Now().Add(-time.Second).UTC().Truncate(time.Millisecond)
	rec := func(eventID, student, exercise string, at time.Duration, metric float64) *kgo.Record {
		ev := ""
		if eventID != "" {
			ev = fmt.Sprintf(`"event_id":%q,`, eventID)
		}
		v := fmt.Sprintf(`{%s"timestamp":%q,"student_id":%q,"latitude":48.85,"longitude":2.35,"exercise_id":%q,"metric":%v}`,
			ev, base.Add(at).Format(time.RFC3339Nano), student, exercise, metric)
		return &kgo.Record{Topic: ingest.ResultsTopic, Key: []byte(student), Value: []byte(v)}
	}
	// The same no-event_id failure, its timestamp written as epoch ms.
	hashDup := &kgo.Record{Topic: ingest.ResultsTopic, Key: []byte("s5"), Value: []byte(fmt.Sprintf(
		`{"timestamp":%d,"student_id":"s5","latitude":43.6,"longitude":1.44,"exercise_id":"ex-b","metric":3}`, base.UnixMilli()))}
	records := []*kgo.Record{
		rec("e1", "s1", "ex-a", 0, 20),                  // fails, then recovers
		rec("e1-retake", "s1", "ex-a", time.Second, 80), //
		rec("e1", "s1", "ex-a", 0, 20),                  // duplicate delivery
		rec("e2", "s2", "ex-b", 0, 60),                  // fails, retake still below 70
		rec("e2-retake", "s2", "ex-b", time.Second, 69.99),
		rec("e3", "s3", "ex-a", 0, 10),   // fails, no attempt afterwards
		rec("e4", "s4", "ex-a", 0, 50),   // passes: metric == threshold
		rec("e5", "s4", "ex-none", 0, 1), // no threshold: no alert
		rec("", "s5", "ex-b", 0, 3),      // fails, identity from the hash
		hashDup,
		{Topic: ingest.ResultsTopic, Key: []byte("bad"), Value: []byte(`{"student_id":`)},
		rec("e6", "s6", "ex-a", 0, 150), // out of range
	}
	prod, err := kgo.NewClient(kgo.SeedBrokers(cfg.Kafka))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	// A real broker may hold an earlier run's rejects: read the DLQ from
	// its end offsets now.
	ends, err := kadm.NewClient(prod).ListEndOffsets(ctx, ingest.DLQTopic)
	if err != nil || ends.Error() != nil {
		t.Fatalf("DLQ end offsets: %v %v", err, ends.Error())
	}
	dlqFrom := map[string]map[int32]kgo.Offset{ingest.DLQTopic: {}}
	ends.Each(func(o kadm.ListedOffset) { dlqFrom[ingest.DLQTopic][o.Partition] = kgo.NewOffset().At(o.Offset) })
	if err := prod.ProduceSync(ctx, records...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	// Every deployment reaches its follow-up outcome.
	want := map[string]string{
		"patrol-e1": workflows.StatusRecovered,
		"patrol-e2": workflows.StatusStillFailing,
		"patrol-e3": workflows.StatusNoAttempt,
		// The retake failed too (69.99 < 70): a deployment of its own,
		// with no attempt after it.
		"patrol-e2-retake": workflows.StatusNoAttempt,
	}
	var deps []store.Deployment
	testkit.Eventually(t, 90*time.Second, func() bool {
		deps, err = s.Store.Deployments(ctx)
		if err != nil || len(deps) != 5 {
			return false
		}
		for _, d := range deps {
			if d.Status == workflows.StatusDispatched || d.Status == workflows.StatusFollowingUp {
				return false
			}
		}
		return true
	}, func() string { return "deployments decided" })
	for _, d := range deps {
		w, ok := want[d.WorkflowID]
		if !ok {
			w = workflows.StatusNoAttempt // the hashed s5 failure
			if d.StudentID != "s5" || d.ExerciseID != "ex-b" || d.Threshold != 70 {
				t.Errorf("unexpected deployment %+v", d)
			}
		}
		if d.Status != w {
			t.Errorf("%s: status %s, want %s", d.WorkflowID, d.Status, w)
		}
		if d.DispatchedAt.IsZero() || d.FollowUpAt.IsZero() {
			t.Errorf("%s: missing timestamps %+v", d.WorkflowID, d)
		}
	}

	// One logical notification per distinct failing event.
	var keys []string
	for _, d := range s.Patrol.Dispatches() {
		keys = append(keys, d.IdempotencyKey)
		if d.Attempts != 1 {
			t.Errorf("%s delivered %d times", d.IdempotencyKey, d.Attempts)
		}
	}
	var depIDs []string
	for _, d := range deps {
		depIDs = append(depIDs, d.WorkflowID)
	}
	slices.Sort(keys)
	slices.Sort(depIDs)
	if !slices.Equal(keys, depIDs) {
		t.Errorf("patrol keys %v, deployments %v", keys, depIDs)
	}

	// Every valid distinct result archived once: 12 records, 2 malformed,
	// 2 duplicates.
	testkit.Eventually(t, 30*time.Second, func() bool {
		return len(testkit.Archived(t, s.Store)) == 8
	}, func() string { return "results archived" })

	// The rejects are in the DLQ, once per consumer group.
	cons, err := kgo.NewClient(kgo.SeedBrokers(cfg.Kafka), kgo.ConsumePartitions(dlqFrom))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	var dlq []*kgo.Record
	testkit.Eventually(t, 30*time.Second, func() bool {
		fctx, fcancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer fcancel()
		dlq = append(dlq, cons.PollFetches(fctx).Records()...)
		return len(dlq) >= 4
	}, func() string { return "DLQ records" })
	if len(dlq) != 4 {
		t.Errorf("%d DLQ records, want 4", len(dlq))
	}
	for _, r := range dlq {
		h := map[string]string{}
		for _, kv := range r.Headers {
			h[kv.Key] = string(kv.Value)
		}
		if h[ingest.HeaderError] == "" || h[ingest.HeaderSource] == "" {
			t.Errorf("DLQ record without headers: %v", h)
		}
	}

	// The analytics over what was archived and deployed.
	run, err := s.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "analytics-e2e", TaskQueue: workflows.TaskQueue},
		workflows.AnalyticsWorkflowType, workflows.AnalyticsInput{})
	if err != nil {
		t.Fatal(err)
	}
	var res workflows.AnalyticsResult
	began := time.Now()
	if err := app.AwaitResult(ctx, s.Client, run.GetID(), &res, nil); err != nil {
		t.Fatal(err)
	}
	t.Logf("analytics run took %s", time.Since(began))
	checkReport(ctx, t, s, res.Report)

	// ACU_WRITE_HISTORY=<dir> saves the histories of real runs for the
	// replay test (workflows/testdata).
	if dir := os.Getenv("ACU_WRITE_HISTORY"); dir != "" {
		writeHistory(ctx, t, s, "patrol-e1", filepath.Join(dir, "patrol_recovered_v2.json"))
		writeHistory(ctx, t, s, "patrol-e3", filepath.Join(dir, "patrol_no_attempt_v2.json"))
		writeHistory(ctx, t, s, "analytics-e2e", filepath.Join(dir, "analytics.json"))
	}

	// Operators find deployments by status in Temporal's visibility.
	testkit.Eventually(t, 30*time.Second, func() bool {
		resp, err := s.Client.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Query: "PatrolStatus = 'recovered' AND StudentId = 's1'",
		})
		return err == nil && len(resp.Executions) == 1 && resp.Executions[0].Execution.WorkflowId == "patrol-e1"
	}, func() string { return "visibility by PatrolStatus" })
}

// startStack runs the dev stack of o (its Config has its addresses and
// store set) until the test ends, and returns it once /readyz answers 200,
// as an operator would wait for it.
func startStack(t *testing.T, o dev.Options) *dev.Stack {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan *dev.Stack, 1)
	done := make(chan error, 1)
	o.UIAddr = testkit.FreeAddr(t)
	o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	o.Ready = func(s *dev.Stack) { ready <- s }
	go func() { done <- dev.Run(ctx, o) }()
	var s *dev.Stack
	select {
	case s = <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("dev stack did not start: %v", err)
	case <-time.After(2 * time.Minute):
		cancel()
		t.Fatal("dev stack not ready in 2 minutes")
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("dev stack stopped with %v", err)
		}
	})
	var code int
	var readyz string
	testkit.Eventually(t, time.Minute, func() bool {
		code, readyz = testkit.Get("http://" + o.Config.HTTP + "/readyz")
		return code == http.StatusOK
	}, func() string { return fmt.Sprintf("/readyz: %d %s", code, readyz) })
	return s
}

func writeHistory(ctx context.Context, t *testing.T, s *dev.Stack, id, path string) {
	t.Helper()
	it := s.Client.GetWorkflowHistory(ctx, id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	h := &historypb.History{}
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		h.Events = append(h.Events, ev)
	}
	b, err := protojson.MarshalOptions{Indent: "  "}.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// checkReport compares the report with hand-computed figures and with a
// full recomputation over the store.
func checkReport(ctx context.Context, t *testing.T, s *dev.Stack, doc []byte) {
	t.Helper()
	var rep analytics.Report
	if err := json.Unmarshal(doc, &rep); err != nil {
		t.Fatal(err)
	}
	byID := map[string]analytics.ExerciseStats{}
	for _, e := range rep.Exercises {
		byID[e.ExerciseID] = e
	}
	// ex-a: 20, 80 (retake), 10, 50 — the out-of-range 150 was rejected.
	if e := byID["ex-a"]; e.Results != 4 || e.MeanMetric != 40 || e.PassRate == nil || *e.PassRate != 0.5 {
		t.Errorf("ex-a %+v", e)
	}
	// ex-none: one result, no threshold.
	if e := byID["ex-none"]; e.Results != 1 || e.PassRate != nil || e.Threshold != nil {
		t.Errorf("ex-none %+v", e)
	}
	r := rep.Recovery
	if r.Deployments != 5 || r.Recovered != 1 || r.StillFailing != 1 || r.NoAttempt != 3 || r.Pending != 0 ||
		r.Rate == nil || *r.Rate != 0.5 {
		t.Errorf("recovery %+v", r)
	}
	rs := testkit.Archived(t, s.Store)
	deps, err := s.Store.Deployments(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want, err := analytics.FullRecompute(rs, analytics.Thresholds{"ex-a": 50, "ex-b": 70}, deps, 5, 10, rep.GeneratedAt)
	if err != nil {
		t.Fatal(err)
	}
	wantDoc, _ := json.Marshal(want)
	if string(wantDoc) != string(doc) {
		t.Errorf("report\n%s\nfull recomputation\n%s", doc, wantDoc)
	}
}
