// Package cli implements the acu command line: one subcommand per service
// and the operator tools. main only calls Main.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.temporal.io/sdk/client"

	"github.com/acu-patrol/acu/internal/analytics"
	"github.com/acu-patrol/acu/internal/app"
	"github.com/acu-patrol/acu/internal/config"
	"github.com/acu-patrol/acu/internal/metrics"
	"github.com/acu-patrol/acu/internal/store"
	"github.com/acu-patrol/acu/schedules"
)

// Env is what a command gets from its process.
type Env struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	Getenv func(string) string
}

// errUsage marks an error the user fixes by changing the command line.
var errUsage = errors.New("usage")

type command struct {
	summary string
	run     func(ctx context.Context, args []string, env Env) error
}

func commands() map[string]command {
	return map[string]command{
		"ingest":     {"run the alert service (consumer group acu-alerts)", runIngest},
		"archive":    {"run the archiver (consumer group acu-archiver)", runArchive},
		"worker":     {"run a Temporal worker (patrol deployments and analytics) on acu-patrol", runWorker},
		"setup":      {"create topics, search attributes, store schema and the analytics schedule (idempotent)", runSetup},
		"thresholds": {"set|get|list|delete|import exercise thresholds in etcd", runThresholds},
		"produce":    {"simulate student laptops sending results", runProduce},
		"replay":     {"replay PatrolDeployment histories against this build", runReplay},
		"analytics":  {"run|describe|pause|unpause the analytics", runAnalytics},
		"report":     {"print the latest analytics report (--json: the document)", runReport},
		"bench":      {"measure failure → patrol latency at a given load, and a bare pipeline beside it", runBench},
	}
}

// Main runs the command line and returns the process exit code: 0 on
// success, 1 on failure, 2 on a usage error.
func Main(ctx context.Context, args []string, env Env) int {
	cmds := commands()
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(env.Stdout, cmds)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(env.Stderr, "acu: unknown command %q\n\n", args[0])
		usage(env.Stderr, cmds)
		return 2
	}
	err := cmd.run(ctx, args[1:], env)
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(env.Stderr, "acu %s: %v\n", args[0], err)
		return 2
	default:
		fmt.Fprintf(env.Stderr, "acu %s: %v\n", args[0], err)
		return 1
	}
}

func usage(w io.Writer, cmds map[string]command) {
	fmt.Fprintln(w, "Usage: acu <command> [flags]\n\nCommands:")
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-11s %s\n", n, cmds[n].summary)
	}
	fmt.Fprintln(w, "\nEvery flag also reads an ACU_* variable (--patrol-url: ACU_PATROL_URL). Run acu <command> -h for its flags.")
}

// parse parses a command's flags with the shared config.
func parse(name string, args []string, env Env, cfg *config.Config, extra func(fs *flag.FlagSet)) (*flag.FlagSet, error) {
	fs := flag.NewFlagSet("acu "+name, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	cfg.Register(fs)
	if extra != nil {
		extra(fs)
	}
	if err := config.Parse(fs, args, env.Getenv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %v", errUsage, err)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", errUsage, err)
	}
	return fs, nil
}

// AnalyticsFlags are the analytics schedule's flags, shared by acu setup
// and acu-dev.
type AnalyticsFlags struct {
	Every     time.Duration
	Cron      string
	Precision int
}

// Register adds the flags to fs.
func (a *AnalyticsFlags) Register(fs *flag.FlagSet) {
	fs.DurationVar(&a.Every, "analytics-every", 0, "run the analytics this often (default 5m; or --analytics-cron)")
	fs.StringVar(&a.Cron, "analytics-cron", "", `run the analytics on this cron spec, e.g. "*/10 * * * *"`)
	registerPrecision(fs, &a.Precision)
}

// registerPrecision adds --hotspot-precision; checkPrecision validates it.
func registerPrecision(fs *flag.FlagSet, p *int) {
	fs.IntVar(p, "hotspot-precision", analytics.DefaultPrecision, fmt.Sprintf("geohash precision of the hotspot cells (1..%d)", analytics.MaxPrecision))
}

func checkPrecision(p int) error {
	if p < 1 || p > analytics.MaxPrecision {
		return fmt.Errorf("%w: --hotspot-precision must be 1..%d", errUsage, analytics.MaxPrecision)
	}
	return nil
}

// Apply validates the flags into o.
func (a *AnalyticsFlags) Apply(o *app.SetupOptions) error {
	spec, err := schedules.ParseSpec(a.Every, a.Cron)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if err := checkPrecision(a.Precision); err != nil {
		return err
	}
	o.Analytics, o.Precision = spec, a.Precision
	return nil
}

// serveMetrics starts /healthz and /metrics when cfg.HTTP is set.
func serveMetrics(ctx context.Context, cfg *config.Config, m *metrics.Metrics, log *slog.Logger) (func() error, error) {
	if cfg.HTTP == "" {
		return func() error { return nil }, nil
	}
	mux := http.NewServeMux()
	m.Handle(mux)
	return app.ServeHTTP(ctx, cfg.HTTP, mux, log)
}

// service holds what a long-running service command has opened; close
// releases it in reverse order.
type service struct {
	cfg     config.Config
	log     *slog.Logger
	m       *metrics.Metrics
	wait    func() error
	closers []func()
}

func (s *service) close() {
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i]()
	}
}

// startService parses the flags, starts /healthz and /metrics, and opens
// the clients the service needs.
func startService(ctx context.Context, name string, args []string, env Env, needTemporal, needEtcd, needStore bool) (
	s *service, tc client.Client, ec *clientv3.Client, st store.Store, err error) {
	s = &service{}
	if _, err = parse(name, args, env, &s.cfg, nil); err != nil {
		return nil, nil, nil, nil, err
	}
	s.log = app.NewLogger(&s.cfg)
	s.m = metrics.New()
	s.m.Waiting(name, "starting")
	opened := s // the error returns below set s to nil
	defer func() {
		if err != nil {
			opened.close()
		}
	}()
	if s.wait, err = serveMetrics(ctx, &s.cfg, s.m, s.log); err != nil {
		return nil, nil, nil, nil, err
	}
	if needTemporal {
		if tc, err = app.Temporal(&s.cfg, s.log); err != nil {
			return nil, nil, nil, nil, err
		}
		s.closers = append(s.closers, tc.Close)
	}
	if needEtcd {
		if ec, err = app.Etcd(&s.cfg); err != nil {
			return nil, nil, nil, nil, err
		}
		s.closers = append(s.closers, func() { _ = ec.Close() })
	}
	if needStore {
		s.m.Waiting(name, "the store")
		if st, err = app.OpenStoreWaiting(ctx, &s.cfg, s.log, s.m, name); err != nil {
			return nil, nil, nil, nil, err
		}
		s.closers = append(s.closers, func() { _ = st.Close() })
	}
	return s, tc, ec, st, nil
}

func runIngest(ctx context.Context, args []string, env Env) error {
	s, tc, ec, st, err := startService(ctx, "ingest", args, env, true, true, true)
	if err != nil {
		return err
	}
	defer s.close()
	err = app.Ingest(ctx, &s.cfg, s.log, s.m, tc, ec, st)
	return errors.Join(err, s.wait())
}

func runArchive(ctx context.Context, args []string, env Env) error {
	s, _, _, st, err := startService(ctx, "archive", args, env, false, false, true)
	if err != nil {
		return err
	}
	defer s.close()
	err = app.Archive(ctx, &s.cfg, s.log, s.m, st)
	return errors.Join(err, s.wait())
}

func runWorker(ctx context.Context, args []string, env Env) error {
	s, tc, ec, st, err := startService(ctx, "worker", args, env, true, true, true)
	if err != nil {
		return err
	}
	defer s.close()
	err = app.Worker(ctx, &s.cfg, s.log, s.m, tc, ec, st)
	return errors.Join(err, s.wait())
}

func runSetup(ctx context.Context, args []string, env Env) error {
	var cfg config.Config
	var o app.SetupOptions
	var partitions, rf int
	var af AnalyticsFlags
	if _, err := parse("setup", args, env, &cfg, func(fs *flag.FlagSet) {
		fs.IntVar(&partitions, "partitions", 6, "partitions of the results topic and its DLQ")
		fs.IntVar(&rf, "replication-factor", -1, "replication factor of the topics (-1: broker default)")
		af.Register(fs)
	}); err != nil {
		return err
	}
	if err := af.Apply(&o); err != nil {
		return err
	}
	if partitions <= 0 || rf == 0 || rf < -1 {
		return fmt.Errorf("%w: --partitions must be positive and --replication-factor -1 or positive", errUsage)
	}
	o.Partitions, o.ReplicationFactor = int32(partitions), int16(rf)
	log := app.NewLogger(&cfg)
	tc, err := app.Temporal(&cfg, log)
	if err != nil {
		return err
	}
	defer tc.Close()
	if err := app.Setup(ctx, &cfg, o, tc, log); err != nil {
		return err
	}
	fmt.Fprintln(env.Stdout, "setup done: topics", strings.Join([]string{"piscine.results", "piscine.results.dlq"}, ", "),
		"; search attributes; store schema; analytics schedule", schedules.AnalyticsScheduleID)
	return nil
}
