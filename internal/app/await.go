package app

import (
	"context"
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
)

// AwaitResult waits until the workflow closes and decodes its result into
// out, calling tick (if set) about every 200 ms while it runs. It polls
// DescribeWorkflowExecution and fetches the result once the run is closed,
// rather than holding the SDK's history long poll: the embedded dev server
// sometimes answers that long poll only at its 20 s expiry, well after
// the workflow completed.
func AwaitResult(ctx context.Context, c client.Client, workflowID string, out any, tick func()) error {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		d, err := c.DescribeWorkflowExecution(ctx, workflowID, "")
		if err != nil {
			return fmt.Errorf("describing %s: %w", workflowID, err)
		}
		if d.GetWorkflowExecutionInfo().GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
			return c.GetWorkflow(ctx, workflowID, "").Get(ctx, out)
		}
		if tick != nil {
			tick()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
