package cli

import (
	"context"
	"flag"
	"fmt"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"

	"github.com/acu-patrol/acu/internal/app"
	"github.com/acu-patrol/acu/internal/config"
	"github.com/acu-patrol/acu/workers"
	"github.com/acu-patrol/acu/workflows"
)

func runReplay(ctx context.Context, args []string, env Env) error {
	var cfg config.Config
	var id, query string
	var limit int
	if _, err := parse("replay", args, env, &cfg, func(fs *flag.FlagSet) {
		fs.StringVar(&id, "workflow-id", "", "replay this one workflow (all its runs' latest)")
		fs.StringVar(&query, "query", "", "visibility query selecting the workflows (default: closed PatrolDeployment runs)")
		fs.IntVar(&limit, "limit", 100, "at most this many workflows, most recent first")
	}); err != nil {
		return err
	}
	if limit <= 0 {
		return fmt.Errorf("%w: --limit must be positive", errUsage)
	}
	log := app.NewLogger(&cfg)
	tc, err := app.Temporal(&cfg, log)
	if err != nil {
		return err
	}
	defer tc.Close()
	var execs []execution
	if id != "" {
		execs = []execution{{id: id}}
	} else {
		if query == "" {
			query = fmt.Sprintf("WorkflowType = '%s' AND ExecutionStatus != 'Running'", workflows.PatrolWorkflowType)
		}
		if execs, err = list(ctx, tc, cfg.Namespace, query, limit); err != nil {
			return err
		}
	}
	replayer := worker.NewWorkflowReplayer()
	workers.RegisterWorkflows(replayer)
	var bad int
	for _, e := range execs {
		h, err := history(ctx, tc, e)
		if err != nil {
			return err
		}
		if err := replayer.ReplayWorkflowHistory(tlog.NewStructuredLogger(log), h); err != nil {
			bad++
			fmt.Fprintf(env.Stdout, "NONDETERMINISTIC %s (run %s): %v\n", e.id, e.run, err)
			continue
		}
		fmt.Fprintf(env.Stdout, "ok %s (run %s, %d events)\n", e.id, e.run, len(h.Events))
	}
	fmt.Fprintf(env.Stdout, "%d replayed, %d non-deterministic\n", len(execs), bad)
	if bad > 0 {
		return fmt.Errorf("%d of %d histories do not replay on this build", bad, len(execs))
	}
	return nil
}

type execution struct{ id, run string }

func list(ctx context.Context, tc client.Client, ns, query string, limit int) ([]execution, error) {
	var out []execution
	var token []byte
	for len(out) < limit {
		resp, err := tc.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Namespace: ns, Query: query, PageSize: int32(min(limit-len(out), 1000)), NextPageToken: token,
		})
		if err != nil {
			return nil, fmt.Errorf("listing workflows (%s): %w", query, err)
		}
		for _, e := range resp.Executions {
			out = append(out, execution{id: e.Execution.WorkflowId, run: e.Execution.RunId})
		}
		token = resp.NextPageToken
		if len(token) == 0 {
			break
		}
	}
	return out[:min(len(out), limit)], nil
}

func history(ctx context.Context, tc client.Client, e execution) (*historypb.History, error) {
	it := tc.GetWorkflowHistory(ctx, e.id, e.run, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	h := &historypb.History{}
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			return nil, fmt.Errorf("fetching history of %s: %w", e.id, err)
		}
		h.Events = append(h.Events, ev)
	}
	return h, nil
}
