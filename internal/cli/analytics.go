package cli

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/acu-patrol/acu/internal/app"
	"github.com/acu-patrol/acu/internal/config"
	"github.com/acu-patrol/acu/schedules"
	"github.com/acu-patrol/acu/workflows"
)

const analyticsUsage = `usage:
  acu analytics run        run the analytics now over every result archived so far
                           (on Cassandra it first waits out the settle margin),
                           wait (progress shown), print the report
  acu analytics describe   show the schedule: spec, paused, next and recent runs
  acu analytics pause      pause the schedule
  acu analytics unpause    resume the schedule`

func runAnalytics(ctx context.Context, args []string, env Env) error {
	var cfg config.Config
	var precision int
	var asJSON bool
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		// acu analytics run --json: the flags may follow the subcommand.
		args = append(append([]string(nil), args[1:]...), args[0])
	}
	fs, err := parse("analytics", args, env, &cfg, func(fs *flag.FlagSet) {
		registerPrecision(fs, &precision)
		fs.BoolVar(&asJSON, "json", false, "run: print the report document instead of tables")
	})
	if err != nil {
		return err
	}
	rest := fs.Args()
	if len(rest) != 1 {
		return fmt.Errorf("%w: want one subcommand\n%s", errUsage, analyticsUsage)
	}
	if err := checkPrecision(precision); err != nil {
		return err
	}
	log := app.NewLogger(&cfg)
	tc, err := app.Temporal(&cfg, log)
	if err != nil {
		return err
	}
	defer tc.Close()
	switch rest[0] {
	case "run":
		return analyticsRun(ctx, tc, precision, asJSON, env)
	case "describe":
		s, err := schedules.Describe(ctx, tc, schedules.AnalyticsScheduleID)
		if err != nil {
			return err
		}
		fmt.Fprintln(env.Stdout, s)
		return nil
	case "pause":
		return schedules.Pause(ctx, tc, schedules.AnalyticsScheduleID, "paused with acu analytics pause")
	case "unpause":
		return schedules.Unpause(ctx, tc, schedules.AnalyticsScheduleID, "unpaused with acu analytics unpause")
	default:
		return fmt.Errorf("%w: unknown subcommand %q\n%s", errUsage, rest[0], analyticsUsage)
	}
}

// analyticsRun starts a run beside the schedule's and waits for it. Runs
// do not conflict: a run that finds the state moved plans again. The run
// counts every result archived before it started (CatchUp): an operator
// who runs it after an exam expects the whole exam.
func analyticsRun(ctx context.Context, tc client.Client, precision int, asJSON bool, env Env) error {
	id := fmt.Sprintf("analytics-manual-%d", time.Now().UnixMilli())
	run, err := tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: workflows.TaskQueue},
		workflows.AnalyticsWorkflowType, workflows.AnalyticsInput{Precision: precision, CatchUp: true})
	if err != nil {
		return fmt.Errorf("starting analytics: %w", err)
	}
	fmt.Fprintf(env.Stderr, "analytics run %s started\n", id)
	var res workflows.AnalyticsResult
	began := time.Now()
	err = app.AwaitResult(ctx, tc, run.GetID(), &res, func() {
		v, err := tc.QueryWorkflow(ctx, id, "", workflows.ProgressQuery)
		if err != nil {
			return // not picked up by a worker yet
		}
		var p workflows.Progress
		if v.Get(&p) == nil {
			fmt.Fprintf(env.Stderr, "\r%-12s ranges %d/%d  rebuilds %d/%d  %s   ", p.Phase, p.RangesDone, p.Ranges, p.Rebuilt, p.Rebuild,
				time.Since(began).Round(time.Second))
		}
	})
	fmt.Fprintln(env.Stderr)
	if err != nil {
		return fmt.Errorf("analytics run %s: %w", id, err)
	}
	fmt.Fprintf(env.Stderr, "done in %s: results %d..%d added", time.Since(began).Round(time.Millisecond), res.From+1, res.To)
	if len(res.Rebuilt) > 0 {
		fmt.Fprintf(env.Stderr, ", recomputed %v (threshold changed)", res.Rebuilt)
	}
	fmt.Fprintln(env.Stderr)
	if asJSON {
		_, err := fmt.Fprintln(env.Stdout, string(res.Report))
		return err
	}
	return printReport(env.Stdout, res.Report)
}
