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

// Activities are the activity structs a worker serves.
type Activities struct {
	Patrol    *activities.Patrol
	Analytics *activities.Analytics
}

// Register registers the workflows and the activities.
func Register(r worker.Registry, a Activities) {
	RegisterWorkflows(r)
	r.RegisterActivity(a.Patrol)
	r.RegisterActivity(a.Analytics)
}

// RegisterWorkflows registers the workflows alone (a replayer needs no
// activities).
func RegisterWorkflows(r worker.WorkflowRegistry) {
	r.RegisterWorkflowWithOptions(workflows.PatrolDeployment, workflow.RegisterOptions{Name: workflows.PatrolWorkflowType})
	r.RegisterWorkflowWithOptions(workflows.Analytics, workflow.RegisterOptions{Name: workflows.AnalyticsWorkflowType})
}

// Run runs a worker on the task queue until ctx ends.
func Run(ctx context.Context, c client.Client, a Activities, opts worker.Options) error {
	w := worker.New(c, workflows.TaskQueue, opts)
	Register(w, a)
	if err := w.Start(); err != nil {
		return fmt.Errorf("starting worker on %s: %w", workflows.TaskQueue, err)
	}
	<-ctx.Done()
	w.Stop()
	return nil
}
