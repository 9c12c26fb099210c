// Package ingest holds the Kafka consumers of the result stream: the alert
// service (judge each result, start a PatrolDeployment per failing one) and
// the archiver (copy every result to the store).
//
// Both run on Consumer: a franz-go consumer group with manual commits and one
// goroutine per assigned partition. A partition's batch is validated,
// rejects go to the DLQ, the valid results go to a Handler, and the offsets
// are committed only once all of that is durable. A failed batch is retried
// with backoff, never skipped; partitions never wait on each other.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/acu-patrol/acu/internal/event"
	"github.com/acu-patrol/acu/internal/metrics"
)

// Topics and DLQ headers of the contract (DESIGN.md §2.1).
const (
	ResultsTopic = "piscine.results"
	DLQTopic     = "piscine.results.dlq"
	// HeaderError holds a human-readable reason on a DLQ record.
	HeaderError = "acu-error"
	// HeaderSource holds "topic/partition/offset" of the rejected record.
	HeaderSource = "acu-source"
	// HeaderGroup names the consumer group that rejected the record; each
	// group validates on its own, so a DLQ record per rejecting group.
	HeaderGroup = "acu-consumer-group"
)

// Consumer group names.
const (
	AlertsGroup  = "acu-alerts"
	ArchiveGroup = "acu-archiver"
)

// Handler receives the valid results of one partition batch, in offset
// order. It returns nil only once every result's effect is durable; an error
// makes the Consumer retry the batch, so Handle must be idempotent. An error
// wrapping a *PendingError retries only the results it names as pending and
// dead-letters those it names as dead.
type Handler interface {
	Handle(ctx context.Context, results []event.Result) error
}

// ConsumerConfig configures a Consumer.
type ConsumerConfig struct {
	// Brokers are the Kafka seed brokers. Required.
	Brokers []string
	// Group is the consumer group. Required.
	Group string
	// InstanceID, when set, makes the consumer a static member of the
	// group: a process restarted with the same ID takes its partitions back
	// at once, with no rebalance; a stopped one keeps them until the
	// session times out (SessionTimeout), since a static member does not
	// leave the group when it closes.
	InstanceID string
	// Topic is the topic consumed; default ResultsTopic.
	Topic string
	// DLQTopic receives the rejected records; default DLQTopic.
	DLQTopic string
	// MaxPollRecords bounds the records taken per poll; default 5000.
	MaxPollRecords int
	// AttemptTimeout bounds one attempt at a batch; default 30s.
	AttemptTimeout time.Duration
	// StopGrace bounds how long an attempt in flight may go on once its
	// partition is revoked or the consumer stops; default 10s. Then it is
	// cancelled: what it did not commit is redelivered (its effects are
	// idempotent). So a revoke stays inside franz-go's rebalance timeout
	// (60 s) and a stop inside the pods' grace period (45 s in deploy/).
	StopGrace time.Duration
	// Pipeline is how many batches of one partition are handled at once;
	// default 1, one after the other. With more, a batch is handled while
	// the ones before it are still in flight (a failing result waits for no
	// other batch's starts), and offsets are still committed in order, each
	// batch only once every batch before it is committed. The handler must
	// then not depend on the order of batches (the alert service does not;
	// the archiver's first-write-wins does).
	Pipeline int
	// Logger is required.
	Logger *slog.Logger
	// Metrics is required.
	Metrics *metrics.Metrics
	// ExtraOpts are appended to the franz-go options (tests use them).
	ExtraOpts []kgo.Opt
}

func (c *ConsumerConfig) withDefaults() (ConsumerConfig, error) {
	cfg := *c
	if len(cfg.Brokers) == 0 {
		return cfg, errors.New("consumer: no Kafka brokers")
	}
	if cfg.Group == "" {
		return cfg, errors.New("consumer: no group")
	}
	if cfg.Logger == nil || cfg.Metrics == nil {
		return cfg, errors.New("consumer: Logger and Metrics are required")
	}
	if cfg.Topic == "" {
		cfg.Topic = ResultsTopic
	}
	if cfg.DLQTopic == "" {
		cfg.DLQTopic = DLQTopic
	}
	if cfg.MaxPollRecords <= 0 {
		cfg.MaxPollRecords = 5000
	}
	if cfg.AttemptTimeout <= 0 {
		cfg.AttemptTimeout = 30 * time.Second
	}
	if cfg.StopGrace <= 0 {
		cfg.StopGrace = 10 * time.Second
	}
	if cfg.Pipeline <= 0 {
		cfg.Pipeline = 1
	}
	return cfg, nil
}

// Consumer consumes the results topic in a consumer group.
type Consumer struct {
	cfg ConsumerConfig
	h   Handler
	cl  *kgo.Client
	log *slog.Logger

	// parts is touched only by the poll loop and the group callbacks, which
	// BlockRebalanceOnPoll keeps from running at the same time.
	parts map[int32]*partition
}

type partition struct {
	p int32
	// hwm is the partition's high watermark as of the last fetch; the lag
	// reported after each commit is hwm minus the committed offset.
	hwm atomic.Int64
	lag prometheus.Gauge

	// The poll loop never blocks on a partition: it queues the batch and
	// pauses fetching the partition while its queue is full, so a partition
	// that cannot make progress holds back no other. paused and the
	// client's pause change together, under mu: a pause decided by the poll
	// loop and a resume decided by the worker cannot land in the other
	// order and leave the partition paused with nothing queued.
	mu     sync.Mutex
	queue  [][]*kgo.Record
	paused bool
	fetch  fetchPauser // the client given to the assignment callback
	topic  string
	wake   chan struct{} // capacity 1: "the queue changed"

	quit chan struct{}
	done chan struct{}
}

// maxQueued is how many polled batches may wait for a partition's worker
// before its fetching is paused.
const maxQueued = 4

// fetchPauser is the part of the Kafka client that pauses fetching.
type fetchPauser interface {
	PauseFetchPartitions(map[string][]int32) map[string][]int32
	ResumeFetchPartitions(map[string][]int32)
}

// enqueue adds a batch and pauses fetching while the queue is full.
func (pt *partition) enqueue(recs []*kgo.Record) {
	pt.mu.Lock()
	pt.queue = append(pt.queue, recs)
	if len(pt.queue) >= maxQueued && !pt.paused {
		pt.paused = true
		pt.fetch.PauseFetchPartitions(map[string][]int32{pt.topic: {pt.p}})
	}
	pt.mu.Unlock()
	select {
	case pt.wake <- struct{}{}:
	default:
	}
}

// dequeue takes the oldest batch, if any, and resumes fetching once the
// queue has room again.
func (pt *partition) dequeue() []*kgo.Record {
	pt.mu.Lock()
	defer pt.mu.Unlock()
	if len(pt.queue) == 0 {
		return nil
	}
	recs := pt.queue[0]
	pt.queue[0] = nil
	pt.queue = pt.queue[1:]
	if pt.paused && len(pt.queue) < maxQueued/2 {
		pt.paused = false
		pt.fetch.ResumeFetchPartitions(map[string][]int32{pt.topic: {pt.p}})
	}
	return recs
}

// unpause resumes fetching if it is paused: a stopped partition fetches
// again if it comes back to this member.
func (pt *partition) unpause() {
	pt.mu.Lock()
	defer pt.mu.Unlock()
	if pt.paused {
		pt.paused = false
		pt.fetch.ResumeFetchPartitions(map[string][]int32{pt.topic: {pt.p}})
	}
}

// SessionTimeout is how long the group waits for a silent member before
// giving its partitions to the others. Above the brokers' default floor
// (group.min.session.timeout.ms, 6 s) with room for a starved process:
// heartbeats go every tenth of it.
const SessionTimeout = 10 * time.Second

// NewConsumer creates the Kafka client; Run starts consuming.
func NewConsumer(cfg ConsumerConfig, h Handler) (*Consumer, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	c := &Consumer{cfg: cfg, h: h, log: cfg.Logger.With("group", cfg.Group), parts: map[int32]*partition{}}
	opts := []kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ConsumerGroup(cfg.Group),
		// A member that died (SIGKILL, a lost host) holds its partitions
		// until its session times out: franz-go's 45 s left a killed
		// ingest's partitions unconsumed for 35 s under the nemesis.
		kgo.SessionTimeout(SessionTimeout),
		kgo.HeartbeatInterval(SessionTimeout / 10),
		kgo.ConsumeTopics(cfg.Topic),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsAssigned(c.assigned),
		kgo.OnPartitionsRevoked(c.revoked),
		kgo.OnPartitionsLost(c.revoked),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(500 * time.Millisecond),
		kgo.ProducerLinger(0),
		// The DLQ takes any record the results topic took, plus headers.
		kgo.ProducerBatchMaxBytes(DLQMaxMessageBytes),
	}
	if cfg.InstanceID != "" {
		opts = append(opts, kgo.InstanceID(cfg.InstanceID))
	}
	opts = append(opts, cfg.ExtraOpts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("creating Kafka client: %w", err)
	}
	c.cl = cl
	return c, nil
}

// Run consumes until ctx ends, then stops the partition workers (their
// uncommitted records are redelivered to the group) and closes the client.
func (c *Consumer) Run(ctx context.Context) error {
	defer c.cl.Close()
	c.log.Info("consumer started", "topic", c.cfg.Topic, "brokers", c.cfg.Brokers)
	for {
		fetches := c.cl.PollRecords(ctx, c.cfg.MaxPollRecords)
		if ctx.Err() != nil || fetches.IsClientClosed() {
			break
		}
		fetches.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.Canceled) {
				c.log.Warn("fetch error; the client retries", "topic", topic, "partition", p, "err", err)
			}
		})
		fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
			if len(fp.Records) == 0 {
				return
			}
			c.cfg.Metrics.Consumed.WithLabelValues(c.cfg.Group).Add(float64(len(fp.Records)))
			pt := c.parts[fp.Partition]
			if pt == nil { // cannot happen with BlockRebalanceOnPoll; never drop silently
				c.log.Error("records for an unassigned partition; they will be redelivered", "partition", fp.Partition)
				return
			}
			pt.hwm.Store(fp.HighWatermark)
			pt.enqueue(fp.Records)
		})
		c.cl.AllowRebalance()
	}
	// Stop the workers first (their attempts in flight finish, bounded),
	// then let the client leave the group.
	c.stopAll()
	c.cl.AllowRebalance()
	return nil
}

func (c *Consumer) assigned(ctx context.Context, cl *kgo.Client, assigned map[string][]int32) {
	for _, ps := range assigned {
		for _, p := range ps {
			pt := &partition{p: p, fetch: cl, topic: c.cfg.Topic, wake: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{}),
				lag: c.cfg.Metrics.ConsumerLag.WithLabelValues(c.cfg.Group, c.cfg.Topic, strconv.Itoa(int(p)))}
			c.parts[p] = pt
			go c.work(pt)
		}
	}
	c.log.Info("partitions assigned", "partitions", assigned)
}

// revoked stops the workers of the partitions taken away and waits for their
// in-flight attempt; what they did not commit is redelivered.
func (c *Consumer) revoked(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	var stop []*partition
	for _, ps := range lost {
		for _, p := range ps {
			if pt := c.parts[p]; pt != nil {
				stop = append(stop, pt)
				delete(c.parts, p)
			}
		}
	}
	c.stop(stop)
	c.log.Info("partitions revoked", "partitions", lost)
}

func (c *Consumer) stopAll() {
	var all []*partition
	for p, pt := range c.parts {
		all = append(all, pt)
		delete(c.parts, p)
	}
	c.stop(all)
}

// stop stops the workers and waits for them; the batches they had not
// committed are redelivered to whoever gets the partition next. A paused
// partition is resumed, so that it fetches again if it comes back to us.
func (c *Consumer) stop(pts []*partition) {
	for _, pt := range pts {
		close(pt.quit)
	}
	for _, pt := range pts {
		<-pt.done
		pt.unpause()
	}
}

// work processes one partition's batches until quit: up to Pipeline of
// them at once, committed in order.
func (c *Consumer) work(pt *partition) {
	defer close(pt.done)
	var wg sync.WaitGroup
	defer wg.Wait()
	slots := make(chan struct{}, c.cfg.Pipeline)
	committed := closedChan // the previous batch's commit
	for {
		select {
		case <-pt.quit:
			return
		default:
		}
		recs := pt.dequeue()
		if recs == nil {
			select {
			case <-pt.quit:
				return
			case <-pt.wake:
			}
			continue
		}
		select {
		case slots <- struct{}{}:
		case <-pt.quit:
			return
		}
		prev, done := committed, make(chan struct{})
		committed = done
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			if c.process(pt, recs, prev) {
				close(done)
			}
		}()
	}
}

// closedChan is a batch commit that has happened: the first batch's
// predecessor.
var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// process handles one batch until it is durable and, once prev is closed
// (the batch before it committed), committed, retrying with backoff. It
// returns false when told to quit before that.
func (c *Consumer) process(pt *partition, recs []*kgo.Record, prev <-chan struct{}) bool {
	b := newBatch(c.cfg.Group, c.cfg.DLQTopic, recs)
	b.prev = prev
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		stage, err := c.attempt(b, pt.quit)
		if err == nil {
			pt.lag.Set(float64(max(pt.hwm.Load()-recs[len(recs)-1].Offset-1, 0)))
			return true
		}
		if errors.Is(err, errQuit) {
			return false
		}
		c.cfg.Metrics.BatchErrors.WithLabelValues(c.cfg.Group, stage).Inc()
		c.log.Warn("batch failed; retrying, offsets not committed", "partition", pt.p, "stage", stage,
			"first_offset", recs[0].Offset, "records", len(recs), "attempt", attempt, "retry_in", backoff, "err", err)
		select {
		case <-pt.quit:
			return false
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}

// batch is one partition batch with its validation done once.
type batch struct {
	recs  []*kgo.Record
	valid []event.Result
	// validRecs[i] is the record of valid[i].
	validRecs []*kgo.Record
	// rejects are the DLQ records not written yet, built once, and
	// reasons their metric labels.
	rejects []*kgo.Record
	reasons []event.Reason
	handled bool
	// prev is closed once the batch before this one is committed.
	prev <-chan struct{}
}

func newBatch(group, dlqTopic string, recs []*kgo.Record) *batch {
	b := &batch{recs: recs, valid: make([]event.Result, 0, len(recs)), validRecs: make([]*kgo.Record, 0, len(recs))}
	for _, r := range recs {
		res, err := event.Parse(r.Value)
		if err != nil {
			b.rejects = append(b.rejects, dlqRecord(group, dlqTopic, r, err))
			reason := event.ReasonMalformed
			var e *event.Error
			if errors.As(err, &e) {
				reason = e.Reason
			}
			b.reasons = append(b.reasons, reason)
			continue
		}
		b.valid = append(b.valid, res)
		b.validRecs = append(b.validRecs, r)
	}
	return b
}

// settle applies what a handler settled: its dead results join the
// rejects, and only its pending ones stay to be handled. It reports
// whether some remain.
func (b *batch) settle(group, dlqTopic string, pe *PendingError) (pending bool) {
	for _, d := range pe.Dead {
		b.rejects = append(b.rejects, dlqRecord(group, dlqTopic, b.validRecs[d.Index], d.Err))
		b.reasons = append(b.reasons, event.Reason(d.Reason))
	}
	valid := make([]event.Result, 0, len(pe.Pending))
	recs := make([]*kgo.Record, 0, len(pe.Pending))
	for _, i := range pe.Pending {
		valid = append(valid, b.valid[i])
		recs = append(recs, b.validRecs[i])
	}
	b.valid, b.validRecs = valid, recs
	return len(valid) > 0
}

// errQuit ends an attempt whose partition is being stopped while it waits
// for the batch before it.
var errQuit = errors.New("partition stopped")

// attempt runs the stages not yet durable, then, once the batch before it
// is committed, commits. It returns the failing stage.
func (c *Consumer) attempt(b *batch, quit <-chan struct{}) (string, error) {
	// Not the poll context: a revoke lets the attempt in flight finish, a
	// shutdown too, for StopGrace at most.
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.AttemptTimeout)
	defer cancel()
	go func() {
		select {
		case <-quit:
		case <-ctx.Done():
			return
		}
		select {
		case <-time.After(c.cfg.StopGrace):
			cancel()
		case <-ctx.Done():
		}
	}()
	if !b.handled && len(b.valid) > 0 {
		if err := c.h.Handle(ctx, b.valid); err != nil {
			// What the handler settled is not handed to it again.
			var pe *PendingError
			if !errors.As(err, &pe) || b.settle(c.cfg.Group, c.cfg.DLQTopic, pe) {
				return "handle", err
			}
		}
	}
	b.handled = true
	if err := c.writeDLQ(ctx, b); err != nil {
		return "dlq", err
	}
	select {
	case <-b.prev:
	case <-quit:
		return "commit", errQuit
	}
	if err := c.cl.CommitRecords(ctx, b.recs...); err != nil {
		return "commit", fmt.Errorf("committing offsets: %w", err)
	}
	return "", nil
}

// ConsumerOption adjusts a ConsumerConfig built by the caller's wiring.
type ConsumerOption func(*ConsumerConfig)

// WithKafkaOpts appends franz-go options (tests use it to shorten timeouts).
func WithKafkaOpts(opts ...kgo.Opt) ConsumerOption {
	return func(c *ConsumerConfig) { c.ExtraOpts = append(c.ExtraOpts, opts...) }
}
