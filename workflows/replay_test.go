package workflows_test

import (
	"testing"

	"go.temporal.io/sdk/worker"

	"github.com/acu-patrol/acu/workers"
)

// TestReplayRecordedHistories replays histories of real PatrolDeployment
// and Analytics runs (recorded from the dev stack: ACU_WRITE_HISTORY=<dir>
// go test ./internal/dev/) against the current workflow code: a change that
// breaks determinism for runs in flight fails here.
func TestReplayRecordedHistories(t *testing.T) {
	// patrol_recovered.json ran before fastPathChange; the _v1 files after
	// it, one whose first notification attempt failed (then retried by the
	// activity) and one delivered at the first attempt.
	for _, file := range []string{"testdata/patrol_recovered.json", "testdata/patrol_recovered_v1.json",
		"testdata/patrol_no_attempt_v1.json", "testdata/analytics.json"} {
		t.Run(file, func(t *testing.T) {
			r := worker.NewWorkflowReplayer()
			workers.RegisterWorkflows(r)
			if err := r.ReplayWorkflowHistoryFromJSONFile(nil, file); err != nil {
				t.Fatal(err)
			}
		})
	}
}
