// Package dev runs the whole system in one process on embedded servers:
// Temporal with its UI, etcd, an in-process Kafka, the SQLite store, a patrol
// endpoint, and the ingest, archive and worker services wired exactly as in
// production (internal/app).
package dev

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.temporal.io/sdk/client"

	"github.com/acu-patrol/acu/ingest"
	"github.com/acu-patrol/acu/internal/app"
	"github.com/acu-patrol/acu/internal/config"
	"github.com/acu-patrol/acu/internal/devstack"
	"github.com/acu-patrol/acu/internal/metrics"
	"github.com/acu-patrol/acu/internal/store"
	"github.com/acu-patrol/acu/internal/store/cassandra"
	"github.com/acu-patrol/acu/internal/thresholds"
)

// Options configures acu-dev. Addresses default to the contract's ports.
type Options struct {
	// Config is the services' configuration; its Kafka, Etcd, Temporal, HTTP
	// and Store addresses are where the embedded servers listen.
	Config config.Config
	// UIAddr is the Temporal UI's listen address; default 127.0.0.1:8233.
	UIAddr string
	// DataDir keeps every server's state across runs; empty: nothing kept.
	DataDir string
	// ExternalPatrol is true when Config.PatrolURL points elsewhere: the dev
	// endpoint is then not served.
	ExternalPatrol bool
	// ExternalKafka and ExternalEtcd use the servers at Config.Kafka and
	// Config.Etcd instead of embedding them (acu setup creates the topics).
	ExternalKafka, ExternalEtcd bool
	// PatrolFailRate makes the dev patrol endpoint answer 503 at random.
	PatrolFailRate float64
	// Partitions of the results topic; default 6.
	Partitions int32
	// Analytics is the analytics schedule (spec and precision) acu-dev
	// applies at start; a zero Spec runs every 5 minutes.
	Analytics app.SetupOptions
	// SeedThresholds are written to etcd at start when no threshold exists.
	SeedThresholds map[string]float64
	// NoArchive leaves the archiver out (tests start it themselves, as an
	// operator would after an archiver outage).
	NoArchive bool
	// Logger is required.
	Logger *slog.Logger
	// Ready, if set, is called once everything runs.
	Ready func(*Stack)
}

// DefaultThresholds are the exercise thresholds acu-dev seeds into an empty
// etcd, so a first run has something to judge.
var DefaultThresholds = map[string]float64{
	"c00": 50, "c01": 50, "c02": 55, "c03": 60, "c04": 60, "c05": 62.5, "c06": 65, "c07": 70, "c08": 70, "c09": 75,
}

// Stack is the running dev system.
type Stack struct {
	Temporal *devstack.Temporal
	Etcd     *devstack.Etcd   // nil with an external etcd
	Kafka    *devstack.Kafka  // nil with an external Kafka
	Patrol   *devstack.Patrol // nil with an external patrol endpoint
	Store    store.Store
	Metrics  *metrics.Metrics
	Client   client.Client
	EtcdCli  *clientv3.Client
	Opts     Options
}

// Run starts everything, calls Ready, and runs until ctx ends; then it
// stops the services and the servers in reverse order.
func Run(ctx context.Context, o Options) (err error) {
	log := o.Logger
	cfg := &o.Config
	if o.UIAddr == "" {
		o.UIAddr = "127.0.0.1:8233"
	}
	if o.Partitions <= 0 {
		o.Partitions = 6
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	var cleanups []func()
	defer func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}()
	sub := func(name string) string {
		if o.DataDir == "" {
			return ""
		}
		return filepath.Join(o.DataDir, name)
	}
	began := time.Now()
	s := &Stack{Opts: o, Metrics: metrics.New()}

	if !o.ExternalEtcd {
		if s.Etcd, err = devstack.StartEtcd(cfg.Etcd, sub("etcd")); err != nil {
			return err
		}
		cleanups = append(cleanups, s.Etcd.Stop)
	}

	if !o.ExternalKafka {
		if d := sub("kafka"); d != "" {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return err
			}
		}
		if s.Kafka, err = devstack.StartKafka(cfg.Kafka, sub("kafka"), o.Partitions, ingest.ResultsTopic, ingest.DLQTopic); err != nil {
			return err
		}
		cleanups = append(cleanups, s.Kafka.Stop)
	}

	if d := sub("temporal"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if s.Temporal, err = devstack.StartTemporal(ctx, devstack.TemporalOptions{
		FrontendAddr: cfg.Temporal, UIAddr: o.UIAddr, Namespace: cfg.Namespace, DataDir: sub("temporal"),
		SearchAttributes: app.SearchAttributes, Logger: log.With("component", "temporal-server"),
	}); err != nil {
		return err
	}
	cleanups = append(cleanups, func() { _ = s.Temporal.Stop() })

	if o.DataDir == "" {
		// Everything else starts empty: so does the store.
		if path, err := cfg.SQLitePath(); err == nil {
			for _, suffix := range []string{"", "-wal", "-shm"} {
				_ = os.Remove(path + suffix)
			}
		}
	}
	if s.Store, err = app.OpenStore(ctx, cfg, true, log); err != nil {
		return err
	}
	cleanups = append(cleanups, func() { _ = s.Store.Close() })

	if s.Client, err = app.Temporal(cfg, log); err != nil {
		return err
	}
	cleanups = append(cleanups, s.Client.Close)
	if s.EtcdCli, err = app.Etcd(cfg); err != nil {
		return err
	}
	cleanups = append(cleanups, func() { _ = s.EtcdCli.Close() })

	// acu setup, as an operator would run it (topics exist already).
	setup := o.Analytics
	setup.Partitions = o.Partitions
	if setup.Analytics.Every == 0 && setup.Analytics.Cron == "" {
		setup.Analytics.Every = 5 * time.Minute
	}
	if err := app.Setup(ctx, cfg, setup, s.Client, log); err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	if err := seedThresholds(ctx, s.EtcdCli, cfg.EtcdPrefix, o.SeedThresholds, log); err != nil {
		return err
	}

	services := []string{"worker", "ingest", "archive"}
	if o.NoArchive {
		services = services[:2]
	}
	for _, c := range services {
		s.Metrics.Waiting(c, "starting")
	}
	mux := http.NewServeMux()
	s.Metrics.Handle(mux)
	if !o.ExternalPatrol {
		s.Patrol = devstack.NewPatrol(log.With("component", "patrol"), o.PatrolFailRate)
		s.Patrol.Handle(mux)
	}
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	waitHTTP, err := app.ServeHTTP(sctx, cfg.HTTP, mux, log)
	if err != nil {
		return err
	}

	var wg sync.WaitGroup
	errs := make(chan error, 3)
	run := func(name string, f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(sctx); err != nil && !errors.Is(err, context.Canceled) {
				errs <- fmt.Errorf("%s: %w", name, err)
				stop()
			}
		}()
	}
	run("worker", func(ctx context.Context) error {
		return app.Worker(ctx, cfg, log.With("service", "worker"), s.Metrics, s.Client, s.EtcdCli, s.Store)
	})
	run("ingest", func(ctx context.Context) error {
		return app.Ingest(ctx, cfg, log, s.Metrics, s.Client, s.EtcdCli, s.Store)
	})
	if !o.NoArchive {
		run("archive", func(ctx context.Context) error { return app.Archive(ctx, cfg, log, s.Metrics, s.Store) })
	}
	log.Info("acu-dev ready", "startup", time.Since(began).Round(time.Millisecond))
	if o.Ready != nil {
		o.Ready(s)
	}
	<-sctx.Done()
	stop()
	wg.Wait()
	err = waitHTTP()
	close(errs)
	for e := range errs {
		err = errors.Join(err, e)
	}
	return err
}

func seedThresholds(ctx context.Context, ec *clientv3.Client, prefix string, seed map[string]float64, log *slog.Logger) error {
	if len(seed) == 0 {
		return nil
	}
	adm := thresholds.NewAdmin(ec, prefix)
	have, err := adm.List(ctx)
	if err != nil {
		return err
	}
	if len(have) > 0 {
		return nil
	}
	if err := adm.Import(ctx, seed); err != nil {
		return err
	}
	log.Info("seeded default thresholds", "count", len(seed))
	return nil
}

// Banner writes what runs where.
func Banner(w io.Writer, s *Stack) {
	cfg := s.Opts.Config
	fmt.Fprintf(w, `
acu-dev is running. Ctrl-C stops it.

  Temporal UI      %s/namespaces/%s/workflows
  Temporal         %s  (namespace %s)   temporal workflow list --address %s
  Kafka            %s  (topics piscine.results, piscine.results.dlq)%s
  etcd             %s  (thresholds under %sthresholds/)%s
  store            %s
  health, metrics  http://%s/healthz  http://%s/metrics
`, s.Temporal.UIURL(), cfg.Namespace, cfg.Temporal, cfg.Namespace, cfg.Temporal, cfg.Kafka, external(s.Kafka == nil),
		cfg.Etcd, cfg.EtcdPrefix, external(s.Etcd == nil), cassandra.Redact(cfg.Store), cfg.HTTP, cfg.HTTP)
	if s.Patrol != nil {
		fmt.Fprintf(w, "  patrol endpoint  %s  (dispatches: http://%s/patrol/dispatches)\n", cfg.PatrolURL, cfg.HTTP)
	} else {
		fmt.Fprintf(w, "  patrol endpoint  %s  (external)\n", cfg.PatrolURL)
	}
	fmt.Fprintf(w, "  follow-up after  %s\n", cfg.FollowUpAfter)
	spec := s.Opts.Analytics.Analytics
	if spec.Every == 0 && spec.Cron == "" {
		spec.Every = 5 * time.Minute
	}
	fmt.Fprintf(w, "  analytics        schedule acu-analytics, %s; acu analytics run / acu report\n\n", spec)
}

func external(ext bool) string {
	if ext {
		return "  external"
	}
	return ""
}
