package workflows_test

import (
	"testing"

	"go.temporal.io/sdk/worker"

	"github.com/acu-patrol/acu/workers"
)

// TestReplayRecordedHistories replays histories of real PatrolDeployment
// runs (recorded from the dev stack, see internal/dev's ACU_WRITE_HISTORY)
// against the current workflow code: a change that breaks determinism for
// deployments in flight fails here.
func TestReplayRecordedHistories(t *testing.T) {
	for _, file := range []string{"testdata/patrol_recovered.json"} {
		t.Run(file, func(t *testing.T) {
			r := worker.NewWorkflowReplayer()
			workers.RegisterWorkflows(r)
			if err := r.ReplayWorkflowHistoryFromJSONFile(nil, file); err != nil {
				t.Fatal(err)
			}
		})
	}
}
