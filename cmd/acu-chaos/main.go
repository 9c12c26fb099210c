// Command acu-chaos runs the production topology on this machine — three
// Cassandra nodes, three Kafka brokers, three etcd members, Temporal on
// PostgreSQL, two of each acu service — each node on its own loopback
// address, and proves the system's promises under a seeded nemesis.
//
//	acu-chaos up                 start the topology and leave it running
//	acu-chaos down               stop everything it started, remove its network rules
//	acu-chaos run [flags]        up, workload under faults, check, down
//
// It needs root (cgroups and iptables), Java 17 with Maven, PostgreSQL, cqlsh
// and iptables; deploy/local/cluster.sh installs what is missing.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/acu-patrol/acu/internal/chaos"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "acu-chaos:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: acu-chaos up|down|run [flags] (run -h for the flags)")
	}
	fs := flag.NewFlagSet("acu-chaos "+args[0], flag.ContinueOnError)
	dir := fs.String("dir", filepath.Join(os.TempDir(), "acu-chaos"), "state of every node: data, logs")
	bin := fs.String("bin", "", "directory holding the acu and acu-node binaries (default: DIR/bin)")
	repo := fs.String("repo", ".", "the repository (its deploy/local scripts)")
	seed := fs.Uint64("seed", 0, "seed of the fault schedule and the simulator (0: from the clock, printed)")
	duration := fs.Duration("duration", 0, "length of the faulty part (0: every kind of fault once)")
	rate := fs.Float64("rate", 20, "simulator results per second")
	keep := fs.Bool("keep", false, "leave the topology running after run")
	faults := fs.String("faults", "", "comma-separated kinds of fault to draw from (default: all: "+strings.Join(chaos.FaultKinds, ",")+")")
	net := fs.Int("net", 0, "run on 127.0.NET.0/24 (two topologies side by side need two)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *bin == "" {
		*bin = filepath.Join(*dir, "bin")
	}
	abs := func(p string) string {
		a, err := filepath.Abs(p)
		if err != nil {
			return p
		}
		return a
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	c := chaos.NewCluster(abs(*dir)+"/nodes", abs(*repo), abs(*bin), *net, log)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch args[0] {
	case "up":
		if err := chaos.Up(ctx, c); err != nil {
			return err
		}
		fmt.Printf("up: kafka %s; etcd %s; temporal %s (UI http://%s:8233); store %s\n",
			strings.Join(c.KafkaBrokers(), ","), strings.Join(c.EtcdEndpoints(), ","), c.TemporalAddr(),
			c.Of(chaos.Temporal)[0].Addr, c.StoreURL())
		fmt.Println("no patrol endpoint runs outside acu-chaos run: the workers retry their notifications")
		return nil
	case "down":
		return c.Down(ctx)
	case "run":
		if *seed == 0 {
			*seed = uint64(time.Now().UnixNano() % 1_000_000)
		}
		var kinds []string
		if *faults != "" {
			kinds = strings.Split(*faults, ",")
			for _, k := range kinds {
				if !slices.Contains(chaos.FaultKinds, k) {
					return fmt.Errorf("--faults: unknown kind %q (known: %s)", k, strings.Join(chaos.FaultKinds, ","))
				}
			}
		}
		_, err := chaos.Run(ctx, chaos.Options{Seed: *seed, Duration: *duration, Rate: *rate, Out: os.Stdout, Keep: *keep, Kinds: kinds}, c)
		if err != nil {
			return fmt.Errorf("%w (rerun with --seed %d)", err, *seed)
		}
		return nil
	}
	return fmt.Errorf("unknown command %q (up, down, run)", args[0])
}
