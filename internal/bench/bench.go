// Package bench measures what the user of the alert service feels: the
// time from a failing result handed to the Kafka producer to its patrol
// notification's first arrival at the patrol endpoint, at a given load of
// failing and passing results, against a running system (acu-dev, or the
// services on real servers). In the same run it measures a bare pipeline
// on the same servers (consume, start a workflow whose only step is the
// POST), so the system's figures read as a ratio to the raw limit.
package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.temporal.io/sdk/client"

	"github.com/acu-patrol/acu/ingest"
	"github.com/acu-patrol/acu/internal/thresholds"
	"github.com/acu-patrol/acu/workflows"
)

// Exercise is the exercise of the benchmark's results; its threshold is
// set to threshold at start.
const (
	Exercise  = "acu-bench"
	threshold = 50
)

// Options configures a benchmark run.
type Options struct {
	// Brokers are the Kafka seed brokers of the system. Required.
	Brokers []string
	// Topic is the results topic the system consumes; default
	// piscine.results.
	Topic string
	// Temporal is a client of the system's Temporal namespace. Required.
	Temporal client.Client
	// Etcd is a client of the system's etcd; the benchmark sets its
	// exercise's threshold there. Required.
	Etcd *clientv3.Client
	// EtcdPrefix is the system's etcd prefix; default /acu/.
	EtcdPrefix string
	// PatrolListen is where the benchmark's patrol endpoint listens; the
	// system must notify http://<PatrolListen>/patrol. Default
	// 127.0.0.1:8099.
	PatrolListen string
	// MetricsURL is the system's /metrics (CPU, memory and start counters);
	// empty: not measured.
	MetricsURL string
	// FailingRate and PassingRate are the results per second sent during
	// Duration.
	FailingRate, PassingRate float64
	// Duration of the paced load.
	Duration time.Duration
	// Burst failing results are sent at once before the paced load.
	Burst int
	// Drain bounds the wait for the patrols once the producer stopped;
	// default 2m. What has not arrived then is counted as not arrived.
	Drain time.Duration
	// Samples is how many deployments' histories are read for the stage
	// breakdown; default 200, negative: none.
	Samples int
	// Bare also runs the bare pipeline with the same load.
	Bare bool
	// Logger is required.
	Logger *slog.Logger
}

// Report is the outcome of a run.
type Report struct {
	Options string  `json:"options"`
	System  Phase   `json:"system"`
	Bare    *Phase  `json:"bare,omitempty"`
	Ratio   float64 `json:"sustained_ratio_to_bare,omitempty"`
}

// Phase is one pipeline's figures.
type Phase struct {
	Name    string `json:"name"`
	Failing int    `json:"failing_sent"`
	Passing int    `json:"passing_sent"`
	// Produced is the achieved producer rate, results per second.
	Produced float64 `json:"produced_per_second"`
	// Latency is handoff to the producer → first arrival at the patrol.
	Latency Dist `json:"latency"`
	// NotArrived is how many failing results had no patrol once the
	// drain time was over.
	NotArrived int `json:"not_arrived"`
	// Sustained is the patrols delivered per second, from the first
	// handoff to the last arrival.
	Sustained float64 `json:"sustained_patrols_per_second"`
	// Requests and Repeated: notifications received, and how many of them
	// repeated a key already received.
	Requests int      `json:"requests"`
	Repeated int      `json:"repeated"`
	Stages   Stages   `json:"stages"`
	Process  *Process `json:"process,omitempty"`
	// Windows is the latency of the failing results handed over in each
	// successive window of the run (a tenth of it, at least 10 s): whether
	// it holds, or drifts as the run goes on.
	Windows []Window `json:"windows"`
}

// Window is the latency of the failing results handed to the producer
// between From and From+Length after the start of the phase.
type Window struct {
	From    time.Duration `json:"from"`
	Length  time.Duration `json:"length"`
	Latency Dist          `json:"latency"`
}

func (o *Options) withDefaults() (Options, error) {
	c := *o
	if len(c.Brokers) == 0 || c.Temporal == nil || c.Etcd == nil || c.Logger == nil {
		return c, errors.New("bench: Brokers, Temporal, Etcd and Logger are required")
	}
	if c.Topic == "" {
		c.Topic = ingest.ResultsTopic
	}
	if c.EtcdPrefix == "" {
		c.EtcdPrefix = "/acu/"
	}
	if c.PatrolListen == "" {
		c.PatrolListen = "127.0.0.1:8099"
	}
	if c.Drain <= 0 {
		c.Drain = 2 * time.Minute
	}
	if c.Samples == 0 {
		c.Samples = 200
	}
	return c, c.CheckLoad()
}

// CheckLoad says what is wrong with the load asked for, if anything.
func (o *Options) CheckLoad() error {
	if o.FailingRate < 0 || o.PassingRate < 0 || o.Duration < 0 || o.Burst < 0 {
		return errors.New("rates, duration and burst must not be negative")
	}
	if o.Burst == 0 && (o.FailingRate == 0 || o.Duration == 0) {
		return errors.New("nothing to send: give a failing rate and a duration, or a burst")
	}
	return nil
}

// Run warms the system up with one failing result (it must reach the
// patrol: that checks the wiring), then runs the load, then the bare
// pipeline with the same load if asked.
func Run(ctx context.Context, o Options) (Report, error) {
	o, err := o.withDefaults()
	if err != nil {
		return Report{}, err
	}
	rep := Report{Options: fmt.Sprintf("failing %g/s + passing %g/s for %s, burst %d", o.FailingRate, o.PassingRate, o.Duration, o.Burst)}
	rcv, err := startReceiver(o.PatrolListen)
	if err != nil {
		return rep, err
	}
	defer rcv.stop()
	if err := thresholds.NewAdmin(o.Etcd, o.EtcdPrefix).Set(ctx, Exercise, threshold); err != nil {
		return rep, fmt.Errorf("setting the benchmark's threshold: %w", err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(o.Brokers...), kgo.ProducerLinger(0), kgo.RequiredAcks(kgo.AllISRAcks()))
	if err != nil {
		return rep, fmt.Errorf("creating Kafka client: %w", err)
	}
	defer cl.Close()
	run := strconv.FormatInt(time.Now().UnixMilli(), 36)
	sh := shape{topic: o.Topic, run: "bench-" + run, exercise: Exercise, idPrefix: workflows.PatrolWorkflowID(""),
		failingRate: o.FailingRate, passingRate: o.PassingRate, duration: o.Duration, burst: o.Burst, students: 2000}

	if err := warmUp(ctx, cl, rcv, sh, "the system: is it running, and does it notify "+rcv.url+" (acu-dev --patrol-url "+rcv.url+")?"); err != nil {
		return rep, err
	}
	var smp *sampler
	if o.MetricsURL != "" {
		if smp, err = startSampler(o.MetricsURL); err != nil {
			return rep, err
		}
	}
	o.Logger.Info("bench: system phase", "load", rep.Options)
	rep.System, err = phase(ctx, o, cl, rcv, sh, "system")
	if smp != nil {
		p, serr := smp.finish()
		if serr != nil {
			err = errors.Join(err, serr)
		} else {
			rep.System.Process = &p
		}
	}
	if err != nil || !o.Bare {
		return rep, err
	}

	partitions, err := partitionsOf(ctx, cl, o.Topic)
	if err != nil {
		return rep, err
	}
	if err := ensureTopic(ctx, cl, bareTopic, partitions); err != nil {
		return rep, err
	}
	b, err := startBare(o.Temporal, o.Brokers, "acu-bench-bare-"+run, rcv.url, o.Logger)
	if err != nil {
		return rep, err
	}
	defer b.stop()
	bsh := sh
	bsh.topic, bsh.run, bsh.idPrefix = bareTopic, "bench-"+run+"-bare", bareIDPrefix
	if err := warmUp(ctx, cl, rcv, bsh, "the bare pipeline"); err != nil {
		return rep, err
	}
	o.Logger.Info("bench: bare phase", "load", rep.Options)
	bp, err := phase(ctx, o, cl, rcv, bsh, "bare")
	rep.Bare = &bp
	if bp.Sustained > 0 {
		rep.Ratio = rep.System.Sustained / bp.Sustained
	}
	return rep, err
}

// warmUp sends one failing result and waits up to a minute for its patrol.
func warmUp(ctx context.Context, cl *kgo.Client, rcv *receiver, sh shape, what string) error {
	sh.run += "-warmup"
	sh.burst, sh.duration = 1, 0
	l, err := produce(ctx, cl, sh)
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := rcv.waitAll(wctx, l.handoff); err != nil {
		return fmt.Errorf("warm-up: no patrol arrived within a minute from %s", what)
	}
	return nil
}

func phase(ctx context.Context, o Options, cl *kgo.Client, rcv *receiver, sh shape, name string) (Phase, error) {
	reqs0, keys0 := rcv.counts()
	l, err := produce(ctx, cl, sh)
	p := Phase{Name: name, Failing: l.failing, Passing: l.passing}
	if err != nil {
		return p, err
	}
	if d := l.ended.Sub(l.began).Seconds(); d > 0 {
		p.Produced = float64(l.failing+l.passing) / d
	}
	dctx, cancel := context.WithTimeout(ctx, o.Drain)
	derr := rcv.waitAll(dctx, l.handoff)
	cancel()
	if derr != nil && ctx.Err() != nil {
		return p, ctx.Err()
	}
	var lat []time.Duration
	var last time.Time
	span := max(l.ended.Sub(l.began), time.Second)
	width := max(span/10, 10*time.Second)
	byWindow := make([][]time.Duration, int(span/width)+1)
	for k, t0 := range l.handoff {
		at, ok := rcv.arrival(k)
		if !ok {
			p.NotArrived++
			continue
		}
		lat = append(lat, at.Sub(t0))
		w := min(int(t0.Sub(l.began)/width), len(byWindow)-1)
		byWindow[w] = append(byWindow[w], at.Sub(t0))
		if at.After(last) {
			last = at
		}
	}
	p.Latency = dist(lat)
	for i, ds := range byWindow {
		if len(ds) > 0 {
			p.Windows = append(p.Windows, Window{From: time.Duration(i) * width, Length: width, Latency: dist(ds)})
		}
	}
	if d := last.Sub(l.began).Seconds(); d > 0 {
		p.Sustained = float64(len(lat)) / d
	}
	reqs, keys := rcv.counts()
	p.Requests = reqs - reqs0
	p.Repeated = p.Requests - (keys - keys0)
	if o.Samples > 0 {
		p.Stages, err = stages(ctx, o.Temporal, l, rcv, o.Samples)
	}
	return p, err
}

func partitionsOf(ctx context.Context, cl *kgo.Client, topic string) (int32, error) {
	td, err := kadm.NewClient(cl).ListTopics(ctx, topic)
	if err != nil {
		return 0, fmt.Errorf("describing %s: %w", topic, err)
	}
	t, ok := td[topic]
	if !ok || t.Err != nil {
		return 0, fmt.Errorf("describing %s: %v", topic, t.Err)
	}
	return int32(len(t.Partitions)), nil
}

func ensureTopic(ctx context.Context, cl *kgo.Client, topic string, partitions int32) error {
	resp, err := kadm.NewClient(cl).CreateTopic(ctx, partitions, -1, nil, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("creating %s: %w", topic, err)
	}
	return nil
}
