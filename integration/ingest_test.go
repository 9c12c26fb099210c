//go:build integration

package integration

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/acu-patrol/acu/ingest"
	"github.com/acu-patrol/acu/internal/event"
	"github.com/acu-patrol/acu/internal/metrics"
	"github.com/acu-patrol/acu/internal/testkit"
	"github.com/acu-patrol/acu/workflows"
)

// Test 1: one consumer of the alert service; every distinct failing identity
// gets exactly one workflow, the malformed records go to the DLQ with their
// source, and the offsets end committed at the end offsets.
func TestAlertsAgainstRealKafka(t *testing.T) {
	t.Parallel()
	e := newKenv(t)
	d := newDataset(t, "t1", 300, 5, 20)
	group := e.group(t)
	srv := newTemporal()
	st := &starter{name: "A", srv: srv}
	began := time.Now()
	e.run(t, group, "it-alerts-A", alertsHandler(e, st))
	e.produce(t, d.recs)
	parts := map[int32]int{}
	for _, r := range d.recs {
		parts[r.Partition]++
	}
	if len(parts) != partitions {
		t.Fatalf("records on partitions %v, want all %d used", parts, partitions)
	}
	committed := e.waitCommittedAtEnd(t, group, 60*time.Second)
	t.Logf("all committed after %s: %v (records per partition %v)", time.Since(began).Round(time.Millisecond), committed, parts)

	_, calls, total := checkStarts(t, srv, d)
	t.Logf("%d distinct workflows, %d ExecuteWorkflow calls (duplicates across batches/partitions are refused by the server)", len(d.failing), total)
	for id, by := range calls {
		if len(by) > 2 { // at most one per delivery of the original and of a dup
			t.Errorf("workflow %s: %d calls", id, len(by))
		}
	}
	checkDLQ(t, e, d, true)
}

// Test 2: two consumers in one group, B joining while records flow and A
// leaving midway.
func TestAlertsRebalanceAgainstRealKafka(t *testing.T) {
	t.Parallel()
	e := newKenv(t)
	d := newDataset(t, "t2", 300, 5, 20)
	group := e.group(t)
	srv := newTemporal()
	stA := &starter{name: "A", srv: srv}
	stB := &starter{name: "B", srv: srv}
	part1, part2, part3, part4 := d.recs[:100], d.recs[100:200], d.recs[200:250], d.recs[250:]

	a := e.run(t, group, "it-alerts-A", alertsHandler(e, stA))
	e.produce(t, part1)
	testkit.Eventually(t, 30*time.Second, func() bool { return stA.calls.Load() > 0 },
		func() string { return "consumer A made no start" })

	e.run(t, group, "it-alerts-B", alertsHandler(e, stB))
	var (
		assigned map[string][]int32
		stable   bool
		err      error
	)
	both := func() bool {
		assigned, stable, err = e.members(group)
		return err == nil && stable && len(assigned) == 2 &&
			len(assigned["it-alerts-A"]) > 0 && len(assigned["it-alerts-B"]) > 0
	}
	sawBoth := false
	for i := 0; i < len(part2); i += 10 { // B joins while records flow
		e.produce(t, part2[i:i+10])
		if !sawBoth {
			sawBoth = both()
		}
	}
	if !sawBoth {
		testkit.Eventually(t, 30*time.Second, both, func() string {
			return fmt.Sprintf("group never had A and B both assigned: %v stable=%v err=%v", assigned, stable, err)
		})
	}
	t.Logf("both assigned: %v", assigned)
	// A may have drained B's partitions before giving them up: new records
	// show that B consumes while A still runs.
	e.produce(t, part3)
	testkit.Eventually(t, 30*time.Second, func() bool { return stB.calls.Load() > 0 },
		func() string { return "consumer B made no start while assigned" })

	a.stop() // A leaves midway
	callsA := stA.calls.Load()
	e.produce(t, part4)
	e.waitCommittedAtEnd(t, group, 60*time.Second)

	testkit.Eventually(t, 20*time.Second, func() bool {
		assigned, _, err = e.members(group)
		return err == nil && len(assigned) == 1 && len(assigned["it-alerts-B"]) == partitions
	}, func() string { return fmt.Sprintf("B does not own all partitions after A left: %v, %v", assigned, err) })

	created, _, total := checkStarts(t, srv, d)
	byA := 0
	for _, by := range created {
		if by == "A" {
			byA++
		}
	}
	if stA.calls.Load() != callsA {
		t.Errorf("consumer A made starts after it stopped")
	}
	t.Logf("%d distinct workflows (%d created by A, %d by B); calls A=%d B=%d total=%d",
		len(created), byA, len(created)-byA, stA.calls.Load(), stB.calls.Load(), total)
	checkDLQ(t, e, d, false)
}

// Test 3: consumer A's starts reach Temporal but A never learns it (its
// starts block until their attempt times out), so A commits nothing with a
// failing result; A is stopped and B, same group, redelivers.
func TestAlertsRedeliveryAfterKillAgainstRealKafka(t *testing.T) {
	t.Parallel()
	e := newKenv(t)
	d := newDataset(t, "t3", 300, 5, 20)
	group := e.group(t)
	srv := newTemporal()
	stA := &starter{name: "A", srv: srv, after: func(ctx context.Context) error {
		<-ctx.Done() // the reply never comes
		return ctx.Err()
	}}
	stB := &starter{name: "B", srv: srv}

	a := e.run(t, group, "it-alerts-A", alertsHandler(e, stA), func(c *ingest.ConsumerConfig) {
		c.AttemptTimeout = 2 * time.Second
	})
	e.produce(t, d.recs)
	// Wait until A's unacknowledged starts cover every partition.
	partOf := map[string]int32{}
	for _, r := range d.recs {
		if res, err := event.Parse(r.Value); err == nil {
			partOf[workflows.PatrolWorkflowID(res.ID)] = r.Partition
		}
	}
	var covered map[int32]int
	testkit.Eventually(t, 30*time.Second, func() bool {
		created, _, _ := srv.snapshot()
		covered = map[int32]int{}
		for id := range created {
			covered[partOf[id]]++
		}
		return len(covered) == partitions
	}, func() string { return fmt.Sprintf("A's starts per partition: %v", covered) })
	a.stop()
	createdByA, _, _ := srv.snapshot()
	before, err := e.committed(group)
	if err != nil {
		t.Fatal(err)
	}
	ends, err := e.endOffsets(e.topic)
	if err != nil {
		t.Fatal(err)
	}
	if maps.Equal(before, ends) {
		t.Fatalf("A committed everything (%v) although no start was acknowledged", before)
	}
	t.Logf("A stopped: %d workflows created, calls %d, committed %v of %v", len(createdByA), stA.calls.Load(), before, ends)

	e.run(t, group, "it-alerts-B", alertsHandler(e, stB))
	e.waitCommittedAtEnd(t, group, 60*time.Second)

	created, calls, total := checkStarts(t, srv, d)
	for id := range createdByA {
		if !slices.Contains(calls[id], "B") {
			t.Errorf("workflow %s created by A's unacknowledged start was not redelivered to B", id)
		}
		if created[id] != "A" {
			t.Errorf("workflow %s: created by %s, want A (B's start must have been refused)", id, created[id])
		}
	}
	t.Logf("%d distinct workflows (%d by A before the kill); calls A=%d B=%d total=%d",
		len(created), len(createdByA), stA.calls.Load(), stB.calls.Load(), total)
	checkDLQ(t, e, d, false)
}

// Test 4: the archiver stores every valid result once; malformed to the DLQ.
func TestArchiveAgainstRealKafka(t *testing.T) {
	t.Parallel()
	e := newKenv(t)
	d := newDataset(t, "t4", 300, 5, 20)
	group := e.group(t)
	w := &memWriter{rows: map[string]event.Result{}}
	var m *metrics.Metrics
	e.run(t, group, "it-archive", func(mm *metrics.Metrics) ingest.Handler {
		m = mm
		return ingest.NewArchive(w, mm)
	})
	e.produce(t, d.recs)
	e.waitCommittedAtEnd(t, group, 60*time.Second)

	rows := w.snapshot()
	for id := range d.valid {
		if _, ok := rows[id]; !ok {
			t.Errorf("result %s not archived", id)
		}
	}
	for id := range rows {
		if !d.valid[id] {
			t.Errorf("row %s archived for no valid result", id)
		}
	}
	if len(rows) != len(d.valid) {
		t.Errorf("%d rows, want %d", len(rows), len(d.valid))
	}
	if got := testkit.CounterValue(m.Archived.WithLabelValues("new")); got != float64(len(d.valid)) {
		t.Errorf("Archived{new} = %v, want %d (each valid result stored once)", got, len(d.valid))
	}
	t.Logf("%d rows in %d writes, %v duplicates", len(rows), w.calls, testkit.CounterValue(m.Archived.WithLabelValues("duplicate")))
	checkDLQ(t, e, d, true)
}

// TestRecordSizesAgainstRealKafka: on a real broker, with the topics as
// acu setup creates them, a record of 1.01 MB (which the results topic
// accepts and franz-go's default producer refused to copy) reaches the DLQ
// whole, and a record larger than the DLQ takes (the results topic raised
// by hand to 4 MiB) reaches it truncated with its size and digest; the
// failing result behind each on its partition is started.
func TestRecordSizesAgainstRealKafka(t *testing.T) {
	e := newKenv(t)
	ctx := context.Background()
	resp, err := e.adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Name: "max.message.bytes", Value: kadm.StringPtr("4194304")}}, e.topic)
	if err == nil {
		_, err = resp.On(e.topic, nil)
	}
	if err != nil {
		t.Fatalf("raising %s's max.message.bytes: %v", e.topic, err)
	}
	big := func(n int) []byte {
		pad := make([]byte, n*3/4)
		_, _ = rand.NewChaCha8([32]byte{byte(n)}).Read(pad) // does not compress
		return []byte(`{"event_id":"big","pad":"` + base64.StdEncoding.EncodeToString(pad) + `"}`)
	}
	prod, err := kgo.NewClient(kgo.SeedBrokers(e.seeds...), kgo.ProducerBatchMaxBytes(4<<20), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	recs := []*kgo.Record{
		{Topic: e.topic, Partition: 0, Key: []byte("lea"), Value: big(1_010_000)},
		{Topic: e.topic, Partition: 0, Key: []byte("lea"), Value: recordJSON(t, "after-0")},
		{Topic: e.topic, Partition: 1, Key: []byte("tom"), Value: big(3_000_000)},
		{Topic: e.topic, Partition: 1, Key: []byte("tom"), Value: recordJSON(t, "after-1")},
	}
	if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("producing: %v", err)
	}
	srv := newTemporal()
	group := e.group(t)
	e.run(t, group, "alerts", alertsHandler(e, &starter{srv: srv, name: "alerts"}))
	var committed map[int32]int64
	testkit.Eventually(t, time.Minute, func() bool {
		committed, err = e.committed(group)
		return err == nil && committed[0] == 2 && committed[1] == 2
	}, func() string { return fmt.Sprintf("committed %v (%v), want 2 on partitions 0 and 1", committed, err) })
	created, _, _ := srv.snapshot()
	for _, id := range []string{"patrol-after-0", "patrol-after-1"} {
		if _, ok := created[id]; !ok {
			t.Errorf("%s not started (created %v)", id, created)
		}
	}
	dlq := e.readAll(t, e.dlq)
	if len(dlq) != 2 {
		t.Fatalf("%d DLQ records, want 2", len(dlq))
	}
	for _, d := range dlq {
		src, _ := testkit.Header(d, ingest.HeaderSource)
		switch src {
		case source(recs[0]):
			if !bytes.Equal(d.Value, recs[0].Value) {
				t.Errorf("the 1.01 MB record's DLQ copy has %d bytes, want it whole (%d)", len(d.Value), len(recs[0].Value))
			}
		case source(recs[2]):
			sum := sha256.Sum256(recs[2].Value)
			size, _ := testkit.Header(d, ingest.HeaderValueSize)
			digest, _ := testkit.Header(d, ingest.HeaderValueSHA256)
			if size != strconv.Itoa(len(recs[2].Value)) || digest != hex.EncodeToString(sum[:]) || !bytes.HasPrefix(recs[2].Value, d.Value) {
				t.Errorf("the 3 MB record's DLQ copy: %d bytes, size %q, digest %q; want a prefix with size %d and digest %x", len(d.Value), size, digest, len(recs[2].Value), sum)
			}
		default:
			t.Errorf("unexpected DLQ record from %s", src)
		}
	}
}

// recordJSON is a failing result of the test's exercise.
func recordJSON(t *testing.T, eventID string) []byte {
	t.Helper()
	v := fmt.Appendf(nil, `{"event_id":%q,"timestamp":"2025-11-24T09:15:30Z","student_id":"s-1","latitude":48.9,"longitude":2.3,"exercise_id":%q,"metric":10}`, eventID, exercise)
	if _, err := event.Parse(v); err != nil {
		t.Fatalf("test record %s is invalid: %v", v, err)
	}
	return v
}

// TestStaticMemberRestartAgainstRealKafka: an archiver with an instance ID
// that is SIGKILLed and restarted under the same ID takes its partitions
// back at once: the records produced meanwhile are consumed before the dead
// member's session could have expired, and the other member's assignment
// does not change (no rebalance). A dynamic member would hold the group
// until its session timed out.
func TestStaticMemberRestartAgainstRealKafka(t *testing.T) {
	t.Parallel()
	e := newKenv(t)
	group := e.group(t)
	w := &memWriter{rows: map[string]event.Result{}}
	archive := func(m *metrics.Metrics) ingest.Handler { return ingest.NewArchive(w, m) }
	static := func(id string) func(*ingest.ConsumerConfig) {
		return func(c *ingest.ConsumerConfig) { c.InstanceID = id }
	}
	// A runs in a process of its own, so that it can die as a crash does.
	a := exec.Command(os.Args[0], "-test.run=^TestHelperStaticArchiver$", "-test.v")
	a.Env = append(os.Environ(), "ACU_IT_HELPER_GROUP="+group, "ACU_IT_HELPER_TOPIC="+e.topic,
		"ACU_IT_HELPER_DLQ="+e.dlq, "ACU_IT_HELPER_INSTANCE=archive-a")
	var aOut lockedBuffer
	a.Stdout, a.Stderr = &aOut, &aOut
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = a.Process.Kill()
		_ = a.Wait()
	})
	var bLog lockedBuffer // B's own account of its assignments
	e.run(t, group, "it-static-B", archive, static("archive-b"), func(c *ingest.ConsumerConfig) {
		c.Logger = slog.New(slog.NewTextHandler(&bLog, &slog.HandlerOptions{Level: slog.LevelInfo}))
	})
	var before map[string][]int32
	testkit.Eventually(t, 60*time.Second, func() bool {
		m, stable, err := e.members(group)
		before = m
		return err == nil && stable && len(m["it-static-A"]) > 0 && len(m["it-static-B"]) > 0
	}, func() string {
		return fmt.Sprintf("group %s: members %v; A's output:\n%s", group, before, aOut.String())
	})

	settled := len(bLog.String())
	if err := a.Process.Kill(); err != nil { // SIGKILL: no leave, no last commit
		t.Fatal(err)
	}
	_ = a.Wait()
	died := time.Now()
	d := newDataset(t, "t7", 120, 0, 0)
	e.produce(t, d.recs)
	e.run(t, group, "it-static-A2", archive, static("archive-a"))
	e.waitCommittedAtEnd(t, group, 60*time.Second)
	if took := time.Since(died); took >= ingest.SessionTimeout {
		t.Errorf("the records were consumed %s after A died: not before its session (%s) expired", took, ingest.SessionTimeout)
	}
	for _, l := range strings.Split(bLog.String()[settled:], "\n") {
		changed := strings.Contains(l, "partitions assigned") || strings.Contains(l, "partitions revoked")
		if changed && !strings.Contains(l, "partitions=map[]") {
			t.Errorf("B's assignment changed while A was down and back (a rebalance): %s", l)
		}
	}
	rows := w.snapshot()
	for id := range d.valid {
		if _, ok := rows[id]; !ok {
			t.Errorf("result %s not archived", id)
		}
	}
}

// TestHelperStaticArchiver is the process TestStaticMemberRestartAgainstRealKafka
// kills: an archiver of the group it is given, until it is killed.
func TestHelperStaticArchiver(t *testing.T) {
	group := os.Getenv("ACU_IT_HELPER_GROUP")
	if group == "" {
		t.Skip("the helper process of TestStaticMemberRestartAgainstRealKafka")
	}
	m := metrics.New()
	cons, err := ingest.NewConsumer(ingest.ConsumerConfig{
		Brokers: brokers(t), Group: group, Topic: os.Getenv("ACU_IT_HELPER_TOPIC"), DLQTopic: os.Getenv("ACU_IT_HELPER_DLQ"),
		InstanceID: os.Getenv("ACU_IT_HELPER_INSTANCE"), Logger: testkit.Logger(t, slog.LevelInfo), Metrics: m,
		ExtraOpts: []kgo.Opt{kgo.ClientID("it-static-A"), kgo.FetchMaxWait(100 * time.Millisecond)},
	}, ingest.NewArchive(&memWriter{rows: map[string]event.Result{}}, m))
	if err != nil {
		t.Fatal(err)
	}
	t.Fatal(cons.Run(context.Background())) // returns only on error
}

// lockedBuffer is a bytes.Buffer safe for a logger's concurrent writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
