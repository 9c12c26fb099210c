package dev_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"

	"github.com/acu-patrol/acu/ingest"
	"github.com/acu-patrol/acu/internal/app"
	"github.com/acu-patrol/acu/internal/dev"
	"github.com/acu-patrol/acu/internal/event"
	"github.com/acu-patrol/acu/internal/metrics"
	"github.com/acu-patrol/acu/internal/testkit"
	"github.com/acu-patrol/acu/workflows"
)

// TestNothingStopsAPartitionNorPatrolsTwice checks on the whole system,
// from outside, what the issue found broken: a failing result whose
// timestamp is past year 9999 and a record of 1.01 MB, each followed on its
// partition by an ordinary failing result (which must reach the patrol),
// and a failing event delivered again once its run was deleted from
// Temporal (which must not patrol again). And, on the real Temporal client
// and its data converter, that a result whose input cannot be encoded is
// dead-lettered by the alert service instead of retried for ever.
func TestNothingStopsAPartitionNorPatrolsTwice(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole dev stack")
	}
	ctx := context.Background()
	cfg := embeddedConfig(t)
	cfg.PatrolURL = "http://" + cfg.HTTP + "/patrol"
	cfg.FollowUpAfter, cfg.FollowUpSettle = time.Second, 0
	s := startStack(t, dev.Options{Config: cfg, Partitions: 2, SeedThresholds: map[string]float64{"ex-a": 50}})

	// The producer takes what the broker takes, as kcat does.
	prod, err := kgo.NewClient(kgo.SeedBrokers(cfg.Kafka), kgo.ProducerBatchMaxBytes(ingest.ResultsMaxMessageBytes), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	failing := func(eventID string, partition int32, ts string) *kgo.Record {
		return &kgo.Record{Topic: ingest.ResultsTopic, Partition: partition, Key: []byte("s1"), Value: fmt.Appendf(nil,
			`{"event_id":%q,"timestamp":%s,"student_id":"s1","latitude":48.85,"longitude":2.35,"exercise_id":"ex-a","metric":10}`, eventID, ts)}
	}
	now := fmt.Sprint(time.Now().UnixMilli())
	pad := make([]byte, 760_000)
	_, _ = rand.Read(pad) // does not compress: the broker sees the full size
	huge := failing("ev-huge", 1, now)
	huge.Value = fmt.Appendf(nil, `{"event_id":"ev-huge","pad":%q}`, base64.StdEncoding.EncodeToString(pad))
	bad := []*kgo.Record{
		failing("ev-year-10000", 0, "253402300800000"),
		failing("ev-offset-10000", 0, `"9999-12-31T23:30:00-01:00"`),
		huge,
	}
	after := []*kgo.Record{failing("ev-after-0", 0, now), failing("ev-after-1", 1, now)}
	if err := prod.ProduceSync(ctx, append(append([]*kgo.Record{}, bad...), after...)...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	patrolled := func(key string) int {
		for _, d := range s.Patrol.Dispatches() {
			if d.IdempotencyKey == key {
				return d.Attempts
			}
		}
		return 0
	}
	testkit.Eventually(t, time.Minute, func() bool {
		return patrolled("patrol-ev-after-0") > 0 && patrolled("patrol-ev-after-1") > 0
	}, func() string { return "the failing results behind the bad records patrolled" })

	// Each bad record is in the DLQ, once per consumer group, the 1.01 MB
	// one whole.
	dlq := readDLQ(t, cfg.Kafka, 2*len(bad))
	for _, b := range bad {
		src := fmt.Sprintf("%s/%d/%d", ingest.ResultsTopic, b.Partition, b.Offset)
		groups := map[string]bool{}
		for _, d := range dlq {
			if h, _ := testkit.Header(d, ingest.HeaderSource); h == src {
				g, _ := testkit.Header(d, ingest.HeaderGroup)
				groups[g] = true
				if len(d.Value) != len(b.Value) {
					t.Errorf("DLQ copy of %s has %d bytes, want %d", src, len(d.Value), len(b.Value))
				}
			}
		}
		if !groups[ingest.AlertsGroup] || !groups[ingest.ArchiveGroup] {
			t.Errorf("DLQ records of %s from groups %v, want both", src, groups)
		}
	}

	// Redelivered after Temporal forgot it: no second patrol.
	first := failing("ev-again", 0, now)
	if err := prod.ProduceSync(ctx, first).FirstErr(); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, time.Minute, func() bool {
		d, ok, err := s.Store.GetDeployment(ctx, "patrol-ev-again")
		return err == nil && ok && d.Status != workflows.StatusDispatching && d.Status != workflows.StatusFollowingUp
	}, func() string { return "patrol-ev-again followed up" })
	deleteRun(ctx, t, s, cfg.Namespace, "patrol-ev-again")
	again := failing("ev-again", 0, now)
	marker := failing("ev-after-again", 0, now)
	if err := prod.ProduceSync(ctx, again, marker).FirstErr(); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, time.Minute, func() bool { return patrolled("patrol-ev-after-again") > 0 },
		func() string { return "the failing result after the redelivery patrolled" })
	if n := patrolled("patrol-ev-again"); n != 1 {
		t.Errorf("patrol-ev-again notified %d times, want once", n)
	}
	if _, err := s.Client.DescribeWorkflowExecution(ctx, "patrol-ev-again", ""); err == nil {
		t.Error("patrol-ev-again was started again after its run was deleted")
	}

	// The alert service on the real client and converter: an input that
	// does not encode is dead-lettered, the others in its batch started.
	m := metrics.New()
	alerts := ingest.NewAlerts(ingest.AlertConfig{FollowUpAfter: time.Second}, thresholdsOf{"ex-a": 50}, s.Client, testkit.Logger(t, slog.LevelWarn), m)
	ok := event.Result{ID: "ev-direct-ok", EventID: "ev-direct-ok", Timestamp: time.Now().UTC(), StudentID: "s2", ExerciseID: "ex-a", Metric: 1}
	past := ok
	past.ID, past.EventID, past.Timestamp = "ev-direct-10000", "ev-direct-10000", time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	err = alerts.Handle(ctx, []event.Result{past, ok})
	var pe *ingest.PendingError
	if !errors.As(err, &pe) || len(pe.Pending) != 0 || len(pe.Dead) != 1 || pe.Dead[0].Index != 0 || pe.Dead[0].Reason != ingest.ReasonUnencodable {
		t.Fatalf("Handle = %v (%+v), want the year-10000 result dead, nothing pending", err, pe)
	}
	if !strings.Contains(pe.Dead[0].Err.Error(), "year") {
		t.Errorf("dead reason %q does not say what failed", pe.Dead[0].Err)
	}
	if _, err := s.Client.DescribeWorkflowExecution(ctx, "patrol-ev-direct-ok", ""); err != nil {
		t.Errorf("the encodable result of the batch was not started: %v", err)
	}
}

// thresholdsOf is a Judge over fixed thresholds.
type thresholdsOf map[string]float64

func (thresholdsOf) Sync(context.Context) error { return nil }
func (th thresholdsOf) Lookup(ex string) (float64, bool) {
	v, ok := th[ex]
	return v, ok
}

// deleteRun deletes a workflow's run from Temporal, as its retention would,
// and waits until Temporal no longer knows it.
func deleteRun(ctx context.Context, t *testing.T, s *dev.Stack, namespace, id string) {
	t.Helper()
	d, err := s.Client.DescribeWorkflowExecution(ctx, id, "")
	if err != nil {
		t.Fatalf("describing %s: %v", id, err)
	}
	if _, err := s.Client.WorkflowService().DeleteWorkflowExecution(ctx, &workflowservice.DeleteWorkflowExecutionRequest{
		Namespace: namespace, WorkflowExecution: d.GetWorkflowExecutionInfo().GetExecution(),
	}); err != nil {
		t.Fatalf("deleting %s: %v", id, err)
	}
	testkit.Eventually(t, time.Minute, func() bool {
		_, err := s.Client.DescribeWorkflowExecution(ctx, id, "")
		var nf *serviceerror.NotFound
		return errors.As(err, &nf)
	}, func() string { return id + " deleted" })
}

// readDLQ reads the DLQ from its start until it holds at least n records.
func readDLQ(t *testing.T, broker string, n int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(broker), kgo.ConsumeTopics(ingest.DLQTopic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []*kgo.Record
	testkit.Eventually(t, 30*time.Second, func() bool {
		fctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		out = append(out, cl.PollFetches(fctx).Records()...)
		return len(out) >= n
	}, func() string { return fmt.Sprintf("%d DLQ records, want %d", len(out), n) })
	return out
}

// TestFollowUpWaitsForTheArchiver: on the whole system with its archiver
// stopped, a deployment whose window has closed does not decide from the
// incomplete archive (its student's retake is in Kafka, not in the store):
// it waits as awaiting-archive, visible in Temporal and in the store, and
// once the archiver runs again it finds the retake: recovered, not
// no-attempt.
func TestFollowUpWaitsForTheArchiver(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole dev stack")
	}
	ctx := context.Background()
	cfg := embeddedConfig(t)
	cfg.PatrolURL = "http://" + cfg.HTTP + "/patrol"
	cfg.FollowUpAfter, cfg.FollowUpSettle = 2*time.Second, 0
	s := startStack(t, dev.Options{Config: cfg, Partitions: 2, NoArchive: true, SeedThresholds: map[string]float64{"ex-a": 50}})

	prod, err := kgo.NewClient(kgo.SeedBrokers(cfg.Kafka))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	now := time.Now().UTC()
	rec := func(id string, at time.Time, metric float64) *kgo.Record {
		return &kgo.Record{Topic: ingest.ResultsTopic, Key: []byte("s1"), Value: fmt.Appendf(nil,
			`{"event_id":%q,"timestamp":%d,"student_id":"s1","latitude":48.85,"longitude":2.35,"exercise_id":"ex-a","metric":%v}`, id, at.UnixMilli(), metric)}
	}
	if err := prod.ProduceSync(ctx, rec("e-wait", now, 10), rec("e-wait-retake", now.Add(time.Second), 80)).FirstErr(); err != nil {
		t.Fatal(err)
	}
	const id = "patrol-e-wait"
	testkit.Eventually(t, time.Minute, func() bool {
		d, ok, err := s.Store.GetDeployment(ctx, id)
		return err == nil && ok && d.Status == workflows.StatusAwaitingArchive
	}, func() string { return id + " awaiting the archive in the store" })
	testkit.Eventually(t, 30*time.Second, func() bool {
		d, err := s.Client.DescribeWorkflowExecution(ctx, id, "")
		if err != nil {
			return false
		}
		p := d.GetWorkflowExecutionInfo().GetSearchAttributes().GetIndexedFields()["PatrolStatus"]
		return p != nil && strings.Contains(string(p.GetData()), workflows.StatusAwaitingArchive)
	}, func() string { return id + " awaiting the archive in PatrolStatus" })

	// The archiver comes back.
	actx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- app.Archive(actx, &cfg, testkit.Logger(t, slog.LevelWarn), metrics.New(), s.Store)
	}()
	defer func() { cancel(); <-done }()
	testkit.Eventually(t, 2*time.Minute, func() bool {
		d, ok, err := s.Store.GetDeployment(ctx, id)
		return err == nil && ok && d.Status != workflows.StatusAwaitingArchive
	}, func() string { return id + " decided once the archiver ran" })
	d, _, _ := s.Store.GetDeployment(ctx, id)
	if d.Status != workflows.StatusRecovered || d.FollowUpResults != 1 {
		t.Errorf("%s: %s with %d follow-up results, want recovered with the retake", id, d.Status, d.FollowUpResults)
	}
	if dir := os.Getenv("ACU_WRITE_HISTORY"); dir != "" {
		writeHistory(ctx, t, s, id, filepath.Join(dir, "patrol_awaiting_archive_v2.json"))
	}
}
