package workflows_test

import (
	"encoding/json"
	"os"
	"slices"
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
	// it, the _v2 files after followUpChange too: in each pair one whose
	// first notification attempt failed (then retried by the activity) and
	// one delivered at the first attempt; patrol_awaiting_archive_v2.json
	// waited for the archiver (internal/dev TestFollowUpWaitsForTheArchiver).
	for _, file := range []string{"testdata/patrol_recovered.json", "testdata/patrol_recovered_v1.json",
		"testdata/patrol_no_attempt_v1.json", "testdata/patrol_recovered_v2.json", "testdata/patrol_no_attempt_v2.json",
		"testdata/patrol_awaiting_archive_v2.json", "testdata/analytics.json"} {
		t.Run(file, func(t *testing.T) {
			r := worker.NewWorkflowReplayer()
			workers.RegisterWorkflows(r)
			if err := r.ReplayWorkflowHistoryFromJSONFile(nil, file); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestRecordedHistoriesHaveTheirShapes: the dev stack's patrol endpoint
// fails at random, so a re-recorded history may not have the shape its
// file stands for; this says so instead of losing that shape's replay.
func TestRecordedHistoriesHaveTheirShapes(t *testing.T) {
	for file, fallback := range map[string]bool{"testdata/patrol_recovered_v1.json": true, "testdata/patrol_no_attempt_v1.json": false,
		"testdata/patrol_recovered_v2.json": true, "testdata/patrol_no_attempt_v2.json": false} {
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var h struct {
			Events []struct {
				EventType string `json:"eventType"`
			} `json:"events"`
		}
		if err := json.Unmarshal(raw, &h); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		var types []string
		for _, e := range h.Events {
			types = append(types, e.EventType)
		}
		if got := slices.Contains(types, "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED"); got != fallback {
			t.Errorf("%s: notification activity scheduled %v, want %v (re-record until the first attempt %s)",
				file, got, fallback, map[bool]string{true: "fails", false: "succeeds"}[fallback])
		}
	}
}
