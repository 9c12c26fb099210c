// Package app wires the services from a Config: the same code runs them in
// the acu binary (one service per process) and in acu-dev (all in one).
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"go.uber.org/zap"

	"github.com/acu-patrol/acu/activities"
	"github.com/acu-patrol/acu/ingest"
	"github.com/acu-patrol/acu/internal/config"
	"github.com/acu-patrol/acu/internal/metrics"
	"github.com/acu-patrol/acu/internal/searchattr"
	"github.com/acu-patrol/acu/internal/store"
	"github.com/acu-patrol/acu/internal/store/cassandra"
	"github.com/acu-patrol/acu/internal/store/sqlite"
	"github.com/acu-patrol/acu/internal/thresholds"
	"github.com/acu-patrol/acu/workers"
)

// NewLogger returns the process logger: text on stderr at the configured level.
func NewLogger(cfg *config.Config) *slog.Logger {
	level, _ := cfg.SlogLevel()
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// Temporal returns a lazily connecting Temporal client: a service starts
// while Temporal is down and its calls are retried until it is back.
func Temporal(cfg *config.Config, log *slog.Logger) (client.Client, error) {
	c, err := client.NewLazyClient(client.Options{
		HostPort:  cfg.Temporal,
		Namespace: cfg.Namespace,
		Logger:    tlog.NewStructuredLogger(log.With("component", "temporal-sdk")),
	})
	if err != nil {
		return nil, fmt.Errorf("creating Temporal client for %s: %w", cfg.Temporal, err)
	}
	return c, nil
}

// Etcd returns an etcd client; it connects in the background.
func Etcd(cfg *config.Config) (*clientv3.Client, error) {
	c, err := clientv3.New(clientv3.Config{
		Endpoints:   cfg.EtcdEndpoints(),
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("creating etcd client for %v: %w", cfg.EtcdEndpoints(), err)
	}
	return c, nil
}

// OpenStore opens the configured store. A SQLite file (and its directory)
// is created and migrated as needed; a Cassandra keyspace is created and
// migrated only with migrate (acu setup, acu-dev), and otherwise checked to
// be at this build's schema version. log (nil: none) gets the Cassandra
// driver's own messages.
func OpenStore(ctx context.Context, cfg *config.Config, migrate bool, log *slog.Logger) (store.Store, error) {
	if cfg.IsCassandra() {
		cc, err := cfg.Cassandra()
		if err != nil {
			return nil, err
		}
		return cassandra.Open(ctx, cc, cassandra.Options{Migrate: migrate, Logger: log})
	}
	path, err := cfg.SQLitePath()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("creating store directory: %w", err)
	}
	return sqlite.Open(ctx, path)
}

// OpenStoreWaiting opens the store as OpenStore does (without migrating)
// and, while the store cannot be reached, waits and tries again (1 s
// doubling to 30 s, each failure logged) until ctx ends: a service started
// before its Cassandra is up starts once it is. A schema the build cannot
// use (no keyspace yet: run acu setup) is returned at once. m gets, for
// /readyz, what component waits for.
func OpenStoreWaiting(ctx context.Context, cfg *config.Config, log *slog.Logger, m *metrics.Metrics, component string) (store.Store, error) {
	var st store.Store
	err := retry(ctx, log, "store unreachable; retrying", func(attempt int) (bool, error) {
		var err error
		st, err = OpenStore(ctx, cfg, false, log)
		if err == nil || errors.Is(err, cassandra.ErrSchema) || errors.Is(err, cassandra.ErrInexact) || !cfg.IsCassandra() {
			return true, err
		}
		m.Waiting(component, fmt.Sprintf("the store, unreachable (attempt %d): %v", attempt, err))
		return false, err
	})
	if err != nil && ctx.Err() != nil {
		return nil, fmt.Errorf("opening the store: %w", err)
	}
	return st, err
}

// retry calls try (attempt 1, 2, ...) until it reports done, and returns
// its error then. After each attempt not done it logs msg with the error
// and waits, 1 s doubling to 30 s; when ctx ends first it returns ctx's
// error with the last attempt's.
func retry(ctx context.Context, log *slog.Logger, msg string, try func(attempt int) (done bool, err error)) error {
	delay := time.Second
	for attempt := 1; ; attempt++ {
		done, err := try(attempt)
		if done {
			return err
		}
		log.Warn(msg, "attempt", attempt, "retry_in", delay, "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		case <-time.After(delay):
		}
		delay = min(2*delay, 30*time.Second)
	}
}

// Ingest runs the alert service until ctx ends. deployed is the store's
// record of the deployments (nil only where no result fails: benchmarks).
func Ingest(ctx context.Context, cfg *config.Config, log *slog.Logger, m *metrics.Metrics, tc client.Client, ec *clientv3.Client, deployed ingest.DeploymentLookup, extra ...ingest.ConsumerOption) error {
	m.Waiting("ingest", "the thresholds from etcd")
	cache := thresholds.NewCache(ec, cfg.EtcdPrefix, log.With("component", "thresholds"), readyOnLoad{m})
	alerts := ingest.NewAlerts(ingest.AlertConfig{
		FollowUpAfter: cfg.FollowUpAfter, FollowUpSettle: cfg.FollowUpSettle, MaxInFlight: cfg.MaxInFlight, NotifyMaxAttempts: int32(cfg.NotifyMaxAttempts),
		Deployed: deployed,
	}, cache, tc, log.With("service", "ingest"), m)
	cc := consumerConfig(cfg, ingest.AlertsGroup, log, m, extra)
	if cc.Pipeline == 0 {
		// A failing result waits for no other batch's starts (measured with
		// acu bench: the p99 from the producer to the start halved).
		cc.Pipeline = AlertsPipeline
	}
	if cc.MaxPollRecords == 0 {
		cc.MaxPollRecords = AlertsMaxPollRecords
	}
	cons, err := ingest.NewConsumer(cc, alerts)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- cache.Run(ctx) }()
	// A start Temporal refuses as invalid is dead-lettered; a namespace
	// without the search attributes would refuse them all, so the service
	// consumes nothing until they exist.
	if awaitSearchAttributes(ctx, tc, cfg.Namespace, log, m) {
		err = cons.Run(ctx)
	}
	cancel()
	<-done
	return err
}

// awaitSearchAttributes waits (1 s doubling to 30 s, logged and on
// /readyz) until the namespace has every search attribute of the
// deployments: Temporal down, or acu setup not run yet.
// It reports false when ctx ended first.
func awaitSearchAttributes(ctx context.Context, tc client.Client, namespace string, log *slog.Logger, m *metrics.Metrics) bool {
	const component = "temporal"
	err := retry(ctx, log, "not consuming: the deployments cannot be started yet", func(int) (bool, error) {
		missing, err := searchattr.Missing(ctx, tc, namespace, SearchAttributes)
		if err == nil && len(missing) == 0 {
			m.Ready(component)
			return true, nil
		}
		if err == nil {
			names := slices.Sorted(maps.Keys(missing))
			err = fmt.Errorf("namespace %q lacks the search attributes %s: run acu setup", namespace, strings.Join(names, ", "))
		}
		m.Waiting(component, err.Error())
		return false, err
	})
	return err == nil
}

// AlertsPipeline is how many batches of one partition the alert service
// handles at once (ingest.ConsumerConfig.Pipeline).
const AlertsPipeline = 4

// AlertsMaxPollRecords bounds the records the alert service takes per poll.
// Passing results cost only their judging, so the larger the batch the
// fewer commits and threshold syncs per record: on the real Kafka of
// deploy/local (acu bench --ingest 2000000), 5,000 per poll consumed
// 0.41–0.52 M results/s and 50,000 0.76–0.80 M/s. A poll takes only what
// the client has fetched, so at low rates batches stay small.
const AlertsMaxPollRecords = 50000

// readyOnLoad is the thresholds observer of the alert service: the
// service is ready once it holds a copy of the thresholds to judge with.
type readyOnLoad struct{ *metrics.Metrics }

func (r readyOnLoad) Loaded(valid, malformed int) {
	r.Metrics.Loaded(valid, malformed)
	r.Ready("ingest")
}

// Archive runs the archiver until ctx ends.
func Archive(ctx context.Context, cfg *config.Config, log *slog.Logger, m *metrics.Metrics, st ingest.ResultWriter, extra ...ingest.ConsumerOption) error {
	cons, err := ingest.NewConsumer(consumerConfig(cfg, ingest.ArchiveGroup, log, m, extra), ingest.NewArchive(st, m))
	if err != nil {
		return err
	}
	m.Ready("archive")
	return cons.Run(ctx)
}

func consumerConfig(cfg *config.Config, group string, log *slog.Logger, m *metrics.Metrics, extra []ingest.ConsumerOption) ingest.ConsumerConfig {
	cc := ingest.ConsumerConfig{Brokers: cfg.KafkaBrokers(), Group: group, InstanceID: cfg.KafkaInstanceID, Logger: log.With("service", group), Metrics: m}
	for _, o := range extra {
		o(&cc)
	}
	return cc
}

// WorkerStore is the store a worker needs: deployments and analytics.
type WorkerStore interface {
	activities.DeploymentStore
	activities.AnalyticsStore
}

// Worker runs the worker (patrol deployments and analytics) until ctx ends.
func Worker(ctx context.Context, cfg *config.Config, log *slog.Logger, m *metrics.Metrics, tc client.Client, ec *clientv3.Client, st WorkerStore) error {
	// The follow-up checks wait for the archiver's progress in Kafka.
	progress, err := ingest.NewArchiveProgress(cfg.KafkaBrokers())
	if err != nil {
		return err
	}
	defer progress.Close()
	patrol := &activities.Patrol{
		HTTP:       patrolClient(cfg.PatrolTimeout),
		URL:        cfg.PatrolURL,
		Store:      st,
		Thresholds: thresholds.NewAdmin(ec, cfg.EtcdPrefix),
		Archive:    progress,
		Metrics:    m,
	}
	log.Info("worker started", "task_queue", "acu-patrol", "patrol_url", cfg.PatrolURL)
	m.Ready("worker")
	an := &activities.Analytics{Store: st, Thresholds: thresholds.NewAdmin(ec, cfg.EtcdPrefix)}
	worker.SetStickyWorkflowCacheSize(StickyCacheSize)
	return workers.Run(ctx, tc, workers.Activities{Patrol: patrol, Analytics: an}, WorkerOptions)
}

// patrolClient is the HTTP client of the notifications. Keep-alive
// connections to the patrol are reused up to the worker's activity
// concurrency: the default transport keeps two idle ones per host, and at
// an exam's peak every other notification would open a new connection.
func patrolClient(timeout time.Duration) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 128
	return &http.Client{Timeout: timeout, Transport: t}
}

// WorkerOptions are the worker's task pollers. With the SDK's two per kind
// tasks waited in matching at an exam's peak; eight of each keep a poller
// waiting whenever a task arrives (the workflow tasks that come back after
// a timer or a retried notification, the analytics' activities), so tasks
// are matched synchronously instead of written to the task queue and read
// back. Measured together with the embedded server's tuning (README, Speed).
var WorkerOptions = worker.Options{
	MaxConcurrentWorkflowTaskPollers: 8,
	MaxConcurrentActivityTaskPollers: 8,
}

// StickyCacheSize is how many workflows a worker process keeps in memory
// between their workflow tasks (the SDK's default is 10,000). A deployment
// sleeps for its follow-up window right after its first task, so caching it
// only holds memory; an evicted workflow replays its short history when its
// timer fires. (No change in the process's size was measurable with acu
// bench over a minute: it is dominated by the embedded servers' data.)
const StickyCacheSize = 1024

// ServeHTTP serves mux on addr until ctx ends. The listener is opened
// before it returns, so a port already in use is reported at once.
func ServeHTTP(ctx context.Context, addr string, mux http.Handler, log *slog.Logger) (wait func() error, err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() {
		err := srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		done <- err
	}()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	log.Info("HTTP listening", "addr", ln.Addr().String())
	return func() error { return <-done }, nil
}
