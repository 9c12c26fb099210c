package ingest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.temporal.io/sdk/client"

	"github.com/acu-patrol/acu/internal/devstack"
	"github.com/acu-patrol/acu/internal/metrics"
	"github.com/acu-patrol/acu/internal/testkit"
	"github.com/acu-patrol/acu/internal/thresholds"
)

// startRecorder records the IDs of the workflows started.
type startRecorder struct {
	mu  sync.Mutex
	ids map[string]bool
}

func (s *startRecorder) ExecuteWorkflow(_ context.Context, o client.StartWorkflowOptions, _ any, _ ...any) (client.WorkflowRun, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ids[o.ID] = true
	return nil, nil
}

func (s *startRecorder) snapshot() map[string]bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]bool, len(s.ids))
	for k := range s.ids {
		out[k] = true
	}
	return out
}

// TestThresholdWriteSeenByBothInstances writes a threshold, and only once
// the write has returned produces a result with metric 50: the result must
// be judged with that threshold by two alert instances, each with its own
// watched copy (two consumer groups, so both judge every result). Writes to
// unrelated keys move etcd's revision in between, so catching up needs
// etcd's progress notifications, not only threshold events.
func TestThresholdWriteSeenByBothInstances(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, err := devstack.FreeLoopbackAddr()
	if err != nil {
		t.Fatal(err)
	}
	etcd, err := devstack.StartEtcd(addr, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer etcd.Stop()
	kafka, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, ResultsTopic, DLQTopic))
	if err != nil {
		t.Fatal(err)
	}
	defer kafka.Close()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	newEtcd := func() *clientv3.Client {
		c, err := clientv3.New(clientv3.Config{Endpoints: []string{addr}, DialTimeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	adm := thresholds.NewAdmin(newEtcd(), "/acu/")
	if err := adm.Set(ctx, "ex", 30); err != nil {
		t.Fatal(err)
	}

	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	recorders := []*startRecorder{{ids: map[string]bool{}}, {ids: map[string]bool{}}}
	for i, rec := range recorders {
		m := metrics.New()
		cache := thresholds.NewCache(newEtcd(), "/acu/", log, m)
		alerts := NewAlerts(AlertConfig{}, cache, rec, log, m)
		cons, err := NewConsumer(ConsumerConfig{
			Brokers: kafka.ListenAddrs(), Group: fmt.Sprintf("alerts-%d", i), Logger: log, Metrics: m,
			ExtraOpts: []kgo.Opt{kgo.FetchMaxWait(50 * time.Millisecond)},
		}, alerts)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(2)
		go func() { defer wg.Done(); _ = cache.Run(ctx) }()
		go func() { defer wg.Done(); _ = cons.Run(ctx) }()
	}

	prod, err := kgo.NewClient(kgo.SeedBrokers(kafka.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	other := newEtcd()
	adm2 := kadm.NewClient(prod)
	want := map[string]bool{}
	const rounds = 60
	for i := range rounds {
		th := 30.0
		if i%3 == 1 {
			th = 70
		}
		if err := adm.Set(ctx, "ex", th); err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			if _, err := other.Put(ctx, "/unrelated/key", fmt.Sprint(i)); err != nil {
				t.Fatal(err)
			}
		}
		id := fmt.Sprintf("round-%03d", i)
		if th == 70 {
			want["patrol-"+id] = true
		}
		v := fmt.Sprintf(`{"event_id":%q,"timestamp":%d,"student_id":"s%d","latitude":45,"longitude":5,"exercise_id":"ex","metric":50}`,
			id, 1_764_000_000_000+int64(i), i)
		if err := prod.ProduceSync(ctx, &kgo.Record{Topic: ResultsTopic, Key: []byte(fmt.Sprint(i)), Value: []byte(v)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		// The next write must not race this result: wait until both
		// instances have judged and committed it.
		for g := range recorders {
			waitCommitted(ctx, t, adm2, fmt.Sprintf("alerts-%d", g))
		}
	}
	for i, rec := range recorders {
		got := rec.snapshot()
		for id := range want {
			if !got[id] {
				t.Errorf("instance %d: %s not started though written threshold 70 judged it failing", i, id)
			}
		}
		for id := range got {
			if !want[id] {
				t.Errorf("instance %d: %s started though the threshold written before it was 30", i, id)
			}
		}
	}
}

// waitCommitted waits until group has committed every record of the topic.
func waitCommitted(ctx context.Context, t *testing.T, adm *kadm.Client, group string) {
	t.Helper()
	testkit.Eventually(t, 30*time.Second, func() bool {
		lags, err := adm.Lag(ctx, group)
		if err != nil {
			return false
		}
		l, ok := lags[group]
		if !ok || l.FetchErr != nil || l.DescribeErr != nil {
			return false
		}
		for _, pl := range l.Lag.Sorted() {
			if pl.Topic == ResultsTopic && pl.Lag != 0 {
				return false
			}
		}
		return true
	}, nil)
}
