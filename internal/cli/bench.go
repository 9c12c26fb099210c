package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/acu-patrol/acu/internal/app"
	"github.com/acu-patrol/acu/internal/bench"
	"github.com/acu-patrol/acu/internal/config"
)

func runBench(ctx context.Context, args []string, env Env) error {
	var cfg config.Config
	o := bench.Options{}
	var asJSON bool
	var ingestRecords, ingestPartitions int
	if _, err := parse("bench", args, env, &cfg, func(fs *flag.FlagSet) {
		fs.Float64Var(&o.FailingRate, "failing-rate", 20, "failing results per second")
		fs.Float64Var(&o.PassingRate, "passing-rate", 180, "passing results per second")
		fs.DurationVar(&o.Duration, "duration", 30*time.Second, "how long the paced load runs (0: burst only)")
		fs.IntVar(&o.Burst, "burst", 0, "failing results sent at once before the paced load")
		fs.DurationVar(&o.Drain, "drain", 2*time.Minute, "how long to wait for the patrols once the producer stopped")
		fs.IntVar(&o.Samples, "samples", 200, "deployment histories read for the per-stage breakdown (-1: none)")
		fs.BoolVar(&o.Bare, "bare", true, "also run the bare pipeline (consume → a workflow that only POSTs) on the same servers")
		fs.StringVar(&o.PatrolListen, "patrol-listen", "127.0.0.1:8099", "listen address of the benchmark's patrol endpoint (the system must notify http://ADDR/patrol)")
		fs.StringVar(&o.MetricsURL, "metrics-url", "http://127.0.0.1:8080/metrics", "the system's /metrics, for its CPU, memory and start counters (empty: not read)")
		fs.BoolVar(&asJSON, "json", false, "print the report as JSON")
		fs.IntVar(&ingestRecords, "ingest", 0, "instead: time the alert service's consumer and a bare franz-go consumer over N passing results of a topic of their own")
		fs.IntVar(&ingestPartitions, "ingest-partitions", 6, "partitions of the --ingest topic")
	}); err != nil {
		return err
	}
	if ingestRecords < 0 || ingestPartitions <= 0 {
		return fmt.Errorf("%w: --ingest must not be negative, --ingest-partitions must be positive", errUsage)
	}
	if err := o.CheckLoad(); ingestRecords == 0 && err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	log := app.NewLogger(&cfg)
	tc, err := app.Temporal(&cfg, log)
	if err != nil {
		return err
	}
	defer tc.Close()
	ec, err := app.Etcd(&cfg)
	if err != nil {
		return err
	}
	defer ec.Close()
	if ingestRecords > 0 {
		rep, err := bench.Ingest(ctx, bench.IngestOptions{Config: &cfg, Temporal: tc, Etcd: ec, Records: ingestRecords,
			Partitions: int32(ingestPartitions), Logger: log})
		return report(env.Stdout, asJSON, rep, printIngest, err)
	}
	o.Brokers, o.Temporal, o.Etcd, o.EtcdPrefix, o.Logger = cfg.KafkaBrokers(), tc, ec, cfg.EtcdPrefix, log
	rep, err := bench.Run(ctx, o)
	return report(env.Stdout, asJSON, rep, printBench, err)
}

// report prints rep, as JSON or as text, and returns the run's error.
func report[R any](w io.Writer, asJSON bool, rep R, text func(io.Writer, R), err error) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if jerr := enc.Encode(rep); jerr != nil {
			return errors.Join(err, jerr)
		}
	} else {
		text(w, rep)
	}
	return err
}

func printIngest(w io.Writer, r bench.IngestReport) {
	fmt.Fprintf(w, "%d passing results (%.0f bytes each) on %d partitions, each consumer from the start of the topic to its last commit\n",
		r.Records, float64(r.Bytes)/float64(max(r.Records, 1)), r.Partitions)
	for _, c := range []bench.Consume{r.Bare, r.System} {
		if c.Elapsed > 0 {
			fmt.Fprintf(w, "  %-7s %9.0f records/s  (%s, %.2f cores)\n", c.Name, c.PerSec, c.Elapsed.Round(time.Millisecond), c.CPU)
		}
	}
	fmt.Fprintf(w, "system / bare: %.2f\n", r.Ratio)
}

func printBench(w io.Writer, r bench.Report) {
	fmt.Fprintf(w, "load: %s\n", r.Options)
	printPhase(w, r.System)
	if r.Bare != nil {
		printPhase(w, *r.Bare)
		fmt.Fprintf(w, "\nsustained rate, system / bare: %.2f\n", r.Ratio)
	}
}

func printPhase(w io.Writer, p bench.Phase) {
	if p.Name == "" {
		return
	}
	fmt.Fprintf(w, "\n%s pipeline\n", p.Name)
	fmt.Fprintf(w, "  sent                 %d failing + %d passing (%.0f results/s)\n", p.Failing, p.Passing, p.Produced)
	fmt.Fprintf(w, "  failure → patrol     %s\n", p.Latency)
	fmt.Fprintf(w, "  not arrived          %d\n", p.NotArrived)
	fmt.Fprintf(w, "  sustained            %.1f patrols/s\n", p.Sustained)
	fmt.Fprintf(w, "  notifications        %d (%d repeated a key)\n", p.Requests, p.Repeated)
	if p.Stages.ToStarted.N > 0 {
		fmt.Fprintf(w, "  stages (sampled histories)\n")
		fmt.Fprintf(w, "    producer → workflow started       %s\n", p.Stages.ToStarted)
		fmt.Fprintf(w, "    started → first workflow task     %s\n", p.Stages.ToFirstTask)
		fmt.Fprintf(w, "    first task → patrol received      %s\n", p.Stages.ToArrival)
	}
	if len(p.Windows) > 1 {
		fmt.Fprintf(w, "  over the run (by when the result was sent)\n")
		for _, win := range p.Windows {
			fmt.Fprintf(w, "    %5s–%-5s  %s\n", win.From.Round(time.Second), (win.From + win.Length).Round(time.Second), win.Latency)
		}
	}
	if pr := p.Process; pr != nil {
		fmt.Fprintf(w, "  system process       CPU %.2f cores, RSS %s at start, %s max, %s at end\n", pr.CPU, mib(pr.RSSStart), mib(pr.RSSMax), mib(pr.RSSEnd))
		fmt.Fprintf(w, "  system counters      starts %.0f, already started %.0f, start errors %.0f, batch errors %.0f, notify attempts %.0f\n",
			pr.Counters[`acu_workflow_starts_total{result="started"}`], pr.Counters[`acu_workflow_starts_total{result="already_started"}`],
			pr.Counters[`acu_workflow_starts_total{result="error"}`], pr.Counters["acu_batch_errors_total"], pr.Counters["acu_patrol_attempts_total"])
	}
}

func mib(b uint64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }
