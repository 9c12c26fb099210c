package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.temporal.io/sdk/client"

	"github.com/acu-patrol/acu/ingest"
	"github.com/acu-patrol/acu/internal/app"
	"github.com/acu-patrol/acu/internal/config"
	"github.com/acu-patrol/acu/internal/metrics"
	"github.com/acu-patrol/acu/internal/thresholds"
)

// IngestOptions configures the consumer benchmark: the alert service's
// consumer and a bare franz-go group consumer, each reading the same
// passing results from the start of the same topic.
type IngestOptions struct {
	// Config is the system's configuration: the alert service is built
	// from it as acu ingest builds it (its thresholds cache on the etcd,
	// its Temporal client), with its own group and the benchmark's topic.
	Config *config.Config
	// Temporal and Etcd are clients of the system's servers. Required.
	Temporal client.Client
	Etcd     *clientv3.Client
	// Records is how many passing results are written to the topic.
	Records int
	// Partitions of the benchmark's topic; default 6 (acu setup's).
	Partitions int32
	// Logger is required.
	Logger *slog.Logger
}

// IngestReport is the outcome of the consumer benchmark.
type IngestReport struct {
	Records    int     `json:"records"`
	Bytes      int64   `json:"bytes"`
	Partitions int32   `json:"partitions"`
	System     Consume `json:"system"`
	Bare       Consume `json:"bare"`
	// Ratio is the system's records per second over the bare consumer's.
	Ratio float64 `json:"ratio_to_bare"`
}

// Consume is one consumer's run over the topic: from its creation to the
// moment its group's committed offsets reach the end of every partition.
type Consume struct {
	Name    string        `json:"name"`
	Elapsed time.Duration `json:"elapsed"`
	PerSec  float64       `json:"records_per_second"`
	// CPU is the cores this process used on average during the run (the
	// consumer, and the benchmark watching its offsets).
	CPU float64 `json:"cpu_cores"`
}

// Ingest writes the passing results to a topic of its own, then measures
// the bare consumer and the alert service's consumer on it, one after the
// other, and deletes the topic and the groups.
func Ingest(ctx context.Context, o IngestOptions) (IngestReport, error) {
	if o.Config == nil || o.Temporal == nil || o.Etcd == nil || o.Logger == nil || o.Records <= 0 {
		return IngestReport{}, errors.New("bench: Config, Temporal, Etcd, Logger and a positive Records are required")
	}
	if o.Partitions <= 0 {
		o.Partitions = 6
	}
	rep := IngestReport{Records: o.Records, Partitions: o.Partitions}
	if err := thresholds.NewAdmin(o.Etcd, o.Config.EtcdPrefix).Set(ctx, Exercise, threshold); err != nil {
		return rep, fmt.Errorf("setting the benchmark's threshold: %w", err)
	}
	brokers := o.Config.KafkaBrokers()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RequiredAcks(kgo.AllISRAcks()))
	if err != nil {
		return rep, fmt.Errorf("creating Kafka client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	run := "bench-" + strconv.FormatInt(time.Now().UnixMilli(), 36)
	topic := "acu.bench.ingest." + run
	if err := ensureTopic(ctx, cl, topic, o.Partitions); err != nil {
		return rep, err
	}
	groups := []string{"acu-bench-bare-" + run, "acu-bench-ingest-" + run}
	defer func() {
		// The benchmark leaves nothing behind; a failure here only logs.
		dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		dg, err := adm.DeleteGroups(dctx, groups...)
		for g, r := range dg {
			if r.Err != nil && err == nil {
				err = fmt.Errorf("%s: %w", g, r.Err)
			}
		}
		if err != nil {
			o.Logger.Warn("bench: deleting the consumer groups", "groups", groups, "err", err)
		}
		dt, err := adm.DeleteTopics(dctx, topic)
		if err == nil {
			err = dt.Error()
		}
		if err != nil {
			o.Logger.Warn("bench: deleting the topic", "topic", topic, "err", err)
		}
	}()

	o.Logger.Info("bench: writing passing results", "records", o.Records, "topic", topic)
	if rep.Bytes, err = fill(ctx, cl, shape{topic: topic, run: run, exercise: Exercise, students: 2000}, o.Records); err != nil {
		return rep, err
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return rep, fmt.Errorf("end offsets of %s: %w", topic, err)
	}

	o.Logger.Info("bench: bare consumer")
	rep.Bare, err = timeConsumer(ctx, adm, groups[0], topic, ends, "bare", func(ctx context.Context) error {
		return bareConsume(ctx, brokers, groups[0], topic)
	})
	if err != nil {
		return rep, err
	}
	o.Logger.Info("bench: the alert service's consumer")
	rep.System, err = timeConsumer(ctx, adm, groups[1], topic, ends, "system", func(ctx context.Context) error {
		// Passing results only: no deployment to look up.
		return app.Ingest(ctx, o.Config, o.Logger, metrics.New(), o.Temporal, o.Etcd, nil, func(c *ingest.ConsumerConfig) {
			c.Topic, c.Group, c.DLQTopic = topic, groups[1], topic+".dlq"
		})
	})
	if rep.Bare.PerSec > 0 {
		rep.Ratio = rep.System.PerSec / rep.Bare.PerSec
	}
	return rep, err
}

// fill writes n passing results as fast as the producer takes them and
// returns their total value size.
func fill(ctx context.Context, cl *kgo.Client, sh shape, n int) (int64, error) {
	var size int64
	var failed atomic.Int64
	var firstErr atomic.Value
	now := time.Now()
	for seq := 1; seq <= n; seq++ {
		rec, _ := sh.record(seq, false, now)
		size += int64(len(rec.Value))
		cl.Produce(ctx, rec, func(_ *kgo.Record, err error) {
			if err != nil && failed.Add(1) == 1 {
				firstErr.Store(err)
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		return size, err
	}
	if n := failed.Load(); n > 0 {
		return size, fmt.Errorf("writing %s: %d records not acknowledged: %v", sh.topic, n, firstErr.Load())
	}
	return size, nil
}

// timeConsumer runs consume until group's committed offsets reach ends on
// every partition, and times it.
func timeConsumer(ctx context.Context, adm *kadm.Client, group, topic string, ends kadm.ListedOffsets, name string, consume func(context.Context) error) (Consume, error) {
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	cpu0, began := cpuTime(), time.Now()
	go func() { done <- consume(cctx) }()
	defer func() { cancel(); <-done }()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			done <- err // for the deferred wait
			return Consume{Name: name}, fmt.Errorf("%s consumer stopped before the end of %s: %v", name, topic, err)
		case <-ctx.Done():
			return Consume{Name: name}, ctx.Err()
		case <-tick.C:
		}
		committed, err := adm.FetchOffsets(ctx, group)
		if err != nil {
			continue // the group may not exist yet
		}
		if caughtUp(committed, ends, topic) {
			c := Consume{Name: name, Elapsed: time.Since(began)}
			c.PerSec = float64(total(ends, topic)) / c.Elapsed.Seconds()
			c.CPU = (cpuTime() - cpu0).Seconds() / c.Elapsed.Seconds()
			return c, nil
		}
	}
}

func caughtUp(committed kadm.OffsetResponses, ends kadm.ListedOffsets, topic string) bool {
	for p, end := range ends[topic] {
		if end.Offset == 0 {
			continue
		}
		c, ok := committed.Lookup(topic, p)
		if !ok || c.Err != nil || c.At < end.Offset {
			return false
		}
	}
	return true
}

func total(ends kadm.ListedOffsets, topic string) int64 {
	var n int64
	for _, end := range ends[topic] {
		n += end.Offset
	}
	return n
}

// bareConsume is the least a group consumer does: poll and commit what
// was polled, synchronously, until ctx ends.
func bareConsume(ctx context.Context, brokers []string, group, topic string) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
		kgo.DisableAutoCommit(), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return err
	}
	defer cl.Close()
	var size int
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		fs.EachRecord(func(r *kgo.Record) { size += len(r.Value) })
		if err := cl.CommitUncommittedOffsets(ctx); err != nil && ctx.Err() == nil {
			return fmt.Errorf("committing after %d bytes: %w", size, err)
		}
	}
}

// cpuTime is the user and system CPU time of this process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
