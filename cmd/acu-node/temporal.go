package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/acu-patrol/acu/internal/devstack"
)

// temporalConfig is the configuration of acu-node temporal.
type temporalConfig struct {
	// Postgres is the PostgreSQL server's host:port. Required.
	Postgres string
	// PGUser is the PostgreSQL role; default "postgres". It must be allowed
	// to create databases unless DB and VisibilityDB exist.
	PGUser string
	// PGPassword is PGUser's password; default none (trust authentication).
	PGPassword string
	// DB is the database of executions, shards, task queues and
	// namespaces; default "temporal". Created if missing.
	DB string
	// VisibilityDB is the visibility database; default
	// "temporal_visibility". Created if missing.
	VisibilityDB string
	// PGMaxConns bounds each connection pool (one per database and
	// service: up to 8 of them); default 20.
	PGMaxConns int
	// Shards is the number of history shards; default 4. Fixed when the
	// databases are first used: a restart with another count fails.
	Shards int
	// Address is the IP every listener binds to (a loopback IP). Required.
	Address string
	// FrontendPort is the frontend's gRPC port; default 7233.
	FrontendPort int
	// HistoryPort, MatchingPort and WorkerPort are the internal services'
	// gRPC ports; defaults 7234, 7235 and 7239, as in Temporal's own
	// configuration.
	HistoryPort, MatchingPort, WorkerPort int
	// UIPort is the Web UI's HTTP port; default 8233, 0 means no UI.
	UIPort int
	// Namespace is registered at start unless it exists; default "default".
	Namespace string
	// Retention is the workflow retention of a namespace registered at
	// start; default 24h.
	Retention time.Duration
}

func (c *temporalConfig) register(fs *flag.FlagSet) {
	fs.StringVar(&c.Postgres, "postgres", "", "PostgreSQL server HOST:PORT (required)")
	fs.StringVar(&c.PGUser, "pg-user", "postgres", "PostgreSQL role (must be allowed to create the databases unless they exist)")
	fs.StringVar(&c.PGPassword, "pg-password", "", "PostgreSQL password (default none: trust authentication)")
	fs.StringVar(&c.DB, "db", "temporal", "database of executions and namespaces (created if missing)")
	fs.StringVar(&c.VisibilityDB, "visibility-db", "temporal_visibility", "visibility database (created if missing)")
	fs.IntVar(&c.PGMaxConns, "pg-max-conns", 20, "connections per pool; the server has one pool per database and service (up to 8)")
	fs.IntVar(&c.Shards, "shards", 4, "history shards (fixed at the first start)")
	fs.StringVar(&c.Address, "address", "", "loopback IP every listener binds to (required)")
	fs.IntVar(&c.FrontendPort, "frontend-port", 7233, "frontend gRPC port")
	fs.IntVar(&c.HistoryPort, "history-port", 7234, "history gRPC port")
	fs.IntVar(&c.MatchingPort, "matching-port", 7235, "matching gRPC port")
	fs.IntVar(&c.WorkerPort, "worker-port", 7239, "worker service gRPC port")
	fs.IntVar(&c.UIPort, "ui-port", 8233, "Web UI HTTP port (0: no UI)")
	fs.StringVar(&c.Namespace, "namespace", "default", "namespace registered at start unless it exists")
	fs.DurationVar(&c.Retention, "retention", 24*time.Hour, "workflow retention of a namespace registered at start")
}

// validate checks c and returns the server's options (without a logger).
func (c *temporalConfig) validate() (devstack.TemporalOptions, error) {
	var o devstack.TemporalOptions
	if c.Postgres == "" || c.Address == "" {
		return o, fmt.Errorf("%w: --postgres and --address are required", errUsage)
	}
	if _, _, err := net.SplitHostPort(c.Postgres); err != nil {
		return o, fmt.Errorf("%w: --postgres: %v", errUsage, err)
	}
	if ip := net.ParseIP(c.Address); ip == nil || !ip.IsLoopback() {
		return o, fmt.Errorf("%w: --address %q is not a loopback IP", errUsage, c.Address)
	}
	ports := []struct {
		name string
		port int
	}{
		{"--frontend-port", c.FrontendPort}, {"--history-port", c.HistoryPort},
		{"--matching-port", c.MatchingPort}, {"--worker-port", c.WorkerPort}, {"--ui-port", c.UIPort},
	}
	seen := map[int]string{}
	for i, p := range ports {
		if p.port == 0 && p.name == "--ui-port" {
			continue
		}
		if p.port < 1 || p.port > 65535 {
			return o, fmt.Errorf("%w: %s %d is not a port", errUsage, p.name, p.port)
		}
		if other, dup := seen[p.port]; dup {
			return o, fmt.Errorf("%w: %s and %s are both %d", errUsage, other, p.name, p.port)
		}
		seen[p.port] = ports[i].name
	}
	switch {
	case c.Shards < 1 || c.Shards > 1<<14:
		return o, fmt.Errorf("%w: --shards must be in [1, 16384]", errUsage)
	case c.PGMaxConns < 1:
		return o, fmt.Errorf("%w: --pg-max-conns must be positive", errUsage)
	case c.Retention <= 0:
		return o, fmt.Errorf("%w: --retention must be positive", errUsage)
	case c.Namespace == "" || c.DB == "" || c.VisibilityDB == "" || c.PGUser == "":
		return o, fmt.Errorf("%w: --namespace, --db, --visibility-db and --pg-user must not be empty", errUsage)
	case c.DB == c.VisibilityDB:
		return o, fmt.Errorf("%w: --db and --visibility-db must differ", errUsage)
	}
	o = devstack.TemporalOptions{
		FrontendAddr: net.JoinHostPort(c.Address, strconv.Itoa(c.FrontendPort)),
		Namespace:    c.Namespace,
		Postgres: &devstack.TemporalPostgres{
			Addr: c.Postgres, User: c.PGUser, Password: c.PGPassword,
			Database: c.DB, VisibilityDatabase: c.VisibilityDB, MaxConns: c.PGMaxConns,
		},
		HistoryShards: int32(c.Shards),
		Retention:     c.Retention,
		HistoryPort:   c.HistoryPort,
		MatchingPort:  c.MatchingPort,
		WorkerPort:    c.WorkerPort,
	}
	if c.UIPort != 0 {
		o.UIAddr = net.JoinHostPort(c.Address, strconv.Itoa(c.UIPort))
	}
	return o, nil
}

func runTemporal(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c temporalConfig
	fs := flag.NewFlagSet("acu-node temporal", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	o, err := c.validate()
	if err != nil {
		return err
	}
	o.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	began := time.Now()
	t, err := devstack.StartTemporal(ctx, o)
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintln(stdout, "acu-node: temporal stopped before it was ready")
			return nil
		}
		return err
	}
	ui := "no UI"
	if t.UIURL() != "" { // StartTemporal waited until its API answers
		ui = "UI " + t.UIURL()
	}
	fmt.Fprintf(stdout, "acu-node: ready: temporal frontend %s, %s, namespace %s, %d shards on postgres %s (started in %v)\n",
		t.FrontendAddr(), ui, o.Namespace, o.HistoryShards, c.Postgres, time.Since(began).Round(time.Millisecond))
	<-ctx.Done()
	began = time.Now()
	err = t.Stop()
	fmt.Fprintf(stdout, "acu-node: temporal stopped in %v\n", time.Since(began).Round(time.Millisecond))
	return err
}
