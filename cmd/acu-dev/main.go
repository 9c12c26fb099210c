// Command acu-dev runs the whole ACU patrol platform on one machine with
// embedded servers: Temporal and its UI, etcd, an in-process Kafka, SQLite,
// a patrol endpoint, and the ingest, archive and worker services.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/acu-patrol/acu/internal/app"
	"github.com/acu-patrol/acu/internal/cli"
	"github.com/acu-patrol/acu/internal/config"
	"github.com/acu-patrol/acu/internal/dev"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	var o dev.Options
	var p cli.ProduceFlags
	var doProduce bool
	var af cli.AnalyticsFlags
	fs := flag.NewFlagSet("acu-dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o.Config.Register(fs)
	fs.StringVar(&o.UIAddr, "ui", "127.0.0.1:8233", "listen address of the Temporal UI")
	fs.StringVar(&o.DataDir, "data-dir", "", "keep all state (Temporal, etcd, Kafka, store) in this directory (default: nothing kept)")
	fs.Float64Var(&o.PatrolFailRate, "patrol-fail-rate", 0, "share of patrol notifications the dev endpoint answers with 503 (0..1)")
	fs.BoolVar(&doProduce, "produce", false, "also run the laptop simulator (see the simulator flags)")
	p.Register(fs)
	af.Register(fs)
	if err := config.Parse(fs, args, getenv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "acu-dev:", err)
		return 2
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	set := func(name string) bool { return given[name] || getenv(config.EnvName(name)) != "" }
	// Servers named on the command line (or in ACU_*) are used as they
	// are; only the others are embedded.
	o.ExternalKafka, o.ExternalEtcd = set("kafka"), set("etcd")
	if set("patrol-url") {
		o.ExternalPatrol = true
	} else {
		o.Config.PatrolURL = "http://" + o.Config.HTTP + "/patrol"
	}
	if o.DataDir != "" && !set("store") {
		o.Config.Store = "sqlite:" + filepath.Join(o.DataDir, "acu.db")
	}
	if err := af.Apply(&o.Analytics); err != nil {
		fmt.Fprintln(stderr, "acu-dev:", err)
		return 2
	}
	if o.PatrolFailRate < 0 || o.PatrolFailRate >= 1 {
		fmt.Fprintln(stderr, "acu-dev: --patrol-fail-rate must be in [0,1)")
		return 2
	}
	if err := o.Config.Validate(); err != nil {
		fmt.Fprintln(stderr, "acu-dev:", err)
		return 2
	}
	o.Logger = app.NewLogger(&o.Config)
	o.SeedThresholds = dev.DefaultThresholds
	produced := make(chan error, 1)
	producing := false
	o.Ready = func(s *dev.Stack) {
		dev.Banner(stdout, s)
		if !doProduce {
			return
		}
		producing = true
		go func() {
			_, err := cli.Produce(ctx, &o.Config, &p, stderr)
			produced <- err
		}()
	}
	err := dev.Run(ctx, o)
	if producing {
		if perr := <-produced; perr != nil && !errors.Is(perr, context.Canceled) {
			err = errors.Join(err, fmt.Errorf("simulator: %w", perr))
		}
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(stderr, "acu-dev:", err)
		return 1
	}
	return 0
}
