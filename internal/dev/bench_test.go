package dev_test

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/acu-patrol/acu/internal/bench"
	"github.com/acu-patrol/acu/internal/dev"
	"github.com/acu-patrol/acu/internal/testkit"
)

// TestBenchProducesItsFigures runs the latency benchmark briefly, at a low
// rate, against the dev stack, and checks that every figure it reports is
// there (not its value: that is the benchmark's job), so the measurement
// cannot rot unseen.
func TestBenchProducesItsFigures(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole dev stack")
	}
	cfg := embeddedConfig(t)
	listen := testkit.FreeAddr(t)
	cfg.PatrolURL = "http://" + listen + "/patrol"
	s := startStack(t, dev.Options{Config: cfg, ExternalPatrol: true, Partitions: 2})

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := bench.Run(ctx, bench.Options{
		Brokers: []string{cfg.Kafka}, Temporal: s.Client, Etcd: s.EtcdCli, EtcdPrefix: cfg.EtcdPrefix,
		PatrolListen: listen, MetricsURL: "http://" + cfg.HTTP + "/metrics",
		FailingRate: 10, PassingRate: 10, Duration: 2 * time.Second, Burst: 5, Drain: time.Minute,
		Samples: 10, Bare: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []*bench.Phase{&rep.System, rep.Bare} {
		if p == nil {
			t.Fatal("no bare phase")
		}
		if p.Failing < 20 || p.Passing < 15 || p.Produced <= 0 {
			t.Errorf("%s: sent %d failing, %d passing at %v/s", p.Name, p.Failing, p.Passing, p.Produced)
		}
		if p.NotArrived != 0 || p.Latency.N != p.Failing || p.Latency.P50 <= 0 || p.Latency.Max < p.Latency.P99 {
			t.Errorf("%s: latency %+v, %d not arrived of %d", p.Name, p.Latency, p.NotArrived, p.Failing)
		}
		if p.Sustained <= 0 || p.Requests < p.Failing {
			t.Errorf("%s: sustained %v/s, %d requests", p.Name, p.Sustained, p.Requests)
		}
		st := p.Stages
		for name, d := range map[string]bench.Dist{"to started": st.ToStarted, "to first task": st.ToFirstTask, "to arrival": st.ToArrival} {
			if d.N != 10 {
				t.Errorf("%s: stage %s has %d samples, want 10", p.Name, name, d.N)
			}
		}
	}
	pr := rep.System.Process
	if pr == nil || pr.CPU <= 0 || pr.RSSMax == 0 || pr.RSSEnd == 0 {
		t.Fatalf("system process figures %+v", pr)
	}
	if got := pr.Counters[`acu_workflow_starts_total{result="started"}`]; got != float64(rep.System.Failing) {
		t.Errorf("the system counted %v starts, want %d", got, rep.System.Failing)
	}
	if rep.Ratio <= 0 {
		t.Errorf("ratio to the bare pipeline %v", rep.Ratio)
	}
}

// TestIngestBenchProducesItsFigures runs the consumer benchmark on a few
// thousand results against the dev stack's Kafka: both consumers read the
// whole topic and the ratio is reported; its topic and groups are gone
// afterwards.
func TestIngestBenchProducesItsFigures(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole dev stack")
	}
	cfg := embeddedConfig(t)
	s := startStack(t, dev.Options{Config: cfg, Partitions: 2})

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := bench.Ingest(ctx, bench.IngestOptions{Config: &cfg, Temporal: s.Client, Etcd: s.EtcdCli, Records: 3000,
		Partitions: 3, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Records != 3000 || rep.Bytes < 3000*100 {
		t.Errorf("wrote %d records, %d bytes", rep.Records, rep.Bytes)
	}
	for _, c := range []bench.Consume{rep.Bare, rep.System} {
		if c.Elapsed <= 0 || c.PerSec <= 0 || c.CPU <= 0 {
			t.Errorf("%s consumer: %+v", c.Name, c)
		}
	}
	if rep.Ratio <= 0 {
		t.Errorf("ratio %v", rep.Ratio)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(cfg.Kafka))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	topics, err := adm.ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range topics.Names() {
		if strings.HasPrefix(name, "acu.bench.ingest.") {
			t.Errorf("the benchmark left its topic %s", name)
		}
	}
	groups, err := adm.ListGroups(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range groups.Groups() {
		if strings.HasPrefix(g, "acu-bench-") {
			t.Errorf("the benchmark left its group %s", g)
		}
	}
}
