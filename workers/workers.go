// Package workers registers the workflows and activities on their task
// queue and runs a Temporal worker. Several workers may run at once, on any
// machines: Temporal hands each task to one of them.
package workers

import (
	"context"
	"fmt"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/acu-patrol/acu/activities"
	"github.com/acu-patrol/acu/workflows"
)

// Register registers PatrolDeployment and its activities.
func Register(r worker.Registry, patrol *activities.Patrol) {
	RegisterWorkflows(r)
	r.RegisterActivity(patrol)
}

// RegisterWorkflows registers the workflows alone (a replayer needs no
// activities).
func RegisterWorkflows(r worker.WorkflowRegistry) {
	r.RegisterWorkflowWithOptions(workflows.PatrolDeployment, workflow.RegisterOptions{Name: workflows.PatrolWorkflowType})
}

// Run runs a worker on the patrol task queue until ctx ends.
func Run(ctx context.Context, c client.Client, patrol *activities.Patrol, opts worker.Options) error {
	w := worker.New(c, workflows.TaskQueue, opts)
	Register(w, patrol)
	if err := w.Start(); err != nil {
		return fmt.Errorf("starting worker on %s: %w", workflows.TaskQueue, err)
	}
	<-ctx.Done()
	w.Stop()
	return nil
}
