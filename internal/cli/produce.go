package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/acu-patrol/acu/internal/app"
	"github.com/acu-patrol/acu/internal/config"
	"github.com/acu-patrol/acu/internal/produce"
	"github.com/acu-patrol/acu/internal/thresholds"
)

// ProduceFlags are the simulator's flags, shared by acu produce and acu-dev.
type ProduceFlags struct {
	Rate, FailShare, RetryShare, DuplicateShare, MalformedShare, OmitEventIDShare float64
	Count, Students                                                               int
	Duration, RetryAfter                                                          time.Duration
	Seed                                                                          int64
}

// Register adds the flags to fs.
func (p *ProduceFlags) Register(fs *flag.FlagSet) {
	fs.Float64Var(&p.Rate, "rate", produce.DefaultRate, "results per second")
	fs.IntVar(&p.Count, "count", 0, "stop after this many records (0: no limit)")
	fs.DurationVar(&p.Duration, "duration", 0, "stop after this long (0: no limit)")
	fs.IntVar(&p.Students, "students", produce.DefaultStudents, "number of simulated students")
	fs.Float64Var(&p.FailShare, "fail-share", produce.DefaultFailShare, "share of results below their exercise's threshold")
	fs.Float64Var(&p.RetryShare, "retry-share", produce.DefaultRetryShare, "share of failures retaken later by the student")
	fs.DurationVar(&p.RetryAfter, "retry-after", produce.DefaultRetryAfter, "typical delay before a retake")
	fs.Float64Var(&p.DuplicateShare, "duplicate-share", 0, "share of results sent twice")
	fs.Float64Var(&p.MalformedShare, "malformed-share", 0, "share of deliberately malformed records (they go to the DLQ)")
	fs.Float64Var(&p.OmitEventIDShare, "omit-event-id-share", produce.DefaultOmitEventIDShare, "share of results without event_id")
	fs.Int64Var(&p.Seed, "seed", 0, "random seed (0: time-based)")
}

// Options turns the flags into simulator options.
func (p *ProduceFlags) Options(th map[string]float64) produce.Options {
	share := func(v float64) float64 {
		if v == 0 {
			return produce.None
		}
		return v
	}
	return produce.Options{
		Rate: p.Rate, Count: p.Count, Duration: p.Duration, Students: p.Students, Thresholds: th,
		FailShare: share(p.FailShare), RetryShare: share(p.RetryShare), RetryAfter: p.RetryAfter,
		DuplicateShare: share(p.DuplicateShare), MalformedShare: share(p.MalformedShare),
		OmitEventIDShare: share(p.OmitEventIDShare), Seed: p.Seed,
	}
}

// Produce runs the simulator against cfg's Kafka with the thresholds found
// in etcd (the exercises to simulate).
func Produce(ctx context.Context, cfg *config.Config, p *ProduceFlags, progress io.Writer) (produce.Stats, error) {
	ec, err := app.Etcd(cfg)
	if err != nil {
		return produce.Stats{}, err
	}
	defer ec.Close()
	es, err := thresholds.NewAdmin(ec, cfg.EtcdPrefix).List(ctx)
	if err != nil {
		return produce.Stats{}, err
	}
	th := map[string]float64{}
	for _, e := range es {
		if e.Err == nil {
			th[e.ExerciseID] = e.Value
		}
	}
	if len(th) == 0 {
		return produce.Stats{}, errors.New("no thresholds in etcd: set some first (acu thresholds set|import); the simulator draws its exercises from them")
	}
	o := p.Options(th)
	if err := o.Validate(); err != nil {
		return produce.Stats{}, fmt.Errorf("%w: %v", errUsage, err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(cfg.KafkaBrokers()...), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		return produce.Stats{}, fmt.Errorf("creating Kafka client: %w", err)
	}
	defer cl.Close()
	return produce.Run(ctx, cl, o, progress)
}

func runProduce(ctx context.Context, args []string, env Env) error {
	var cfg config.Config
	var p ProduceFlags
	if _, err := parse("produce", args, env, &cfg, p.Register); err != nil {
		return err
	}
	st, err := Produce(ctx, &cfg, &p, env.Stderr)
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	fmt.Fprintf(env.Stdout, "sent %d records: %d distinct results, %d failing, %d retakes, %d duplicates, %d malformed in %s (seed %d)\n",
		st.Sent, st.Events, st.Failing, st.Retries, st.Duplicates, st.Malformed, st.Elapsed.Round(time.Millisecond), st.Seed)
	return nil
}
