package workers_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"go.temporal.io/sdk/worker"

	"github.com/acu-patrol/acu/activities"
	"github.com/acu-patrol/acu/ingest"
	"github.com/acu-patrol/acu/internal/app"
	"github.com/acu-patrol/acu/internal/event"
	"github.com/acu-patrol/acu/internal/store/sqlite"
	"github.com/acu-patrol/acu/internal/testkit"
	"github.com/acu-patrol/acu/workers"
	"github.com/acu-patrol/acu/workflows"
)

// TestWorkerKilledMidDeployment stops the worker that dispatched a patrol
// while the deployment waits for its follow-up; a second worker, which
// never saw the workflow, finishes it from its history: the outcome is
// recorded and the patrol was notified once.
func TestWorkerKilledMidDeployment(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Temporal server")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := testkit.Temporal(t, app.SearchAttributes)
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "acu.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()

	var mu sync.Mutex
	requests := map[string]int{}
	patrol := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		requests[r.Header.Get("Idempotency-Key")]++
		mu.Unlock()
		w.WriteHeader(http.StatusCreated)
	}))
	defer patrol.Close()
	// The follow-up waits for the archiver: here, an empty results topic.
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, ingest.ResultsTopic))
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	progress, err := ingest.NewArchiveProgress(kc.ListenAddrs())
	if err != nil {
		t.Fatal(err)
	}
	defer progress.Close()
	newWorker := func() worker.Worker {
		w := worker.New(c, workflows.TaskQueue, worker.Options{})
		workers.Register(w, workers.Activities{
			Patrol:    &activities.Patrol{HTTP: patrol.Client(), URL: patrol.URL, Store: st, Archive: progress},
			Analytics: &activities.Analytics{Store: st},
		})
		if err := w.Start(); err != nil {
			t.Fatal(err)
		}
		return w
	}

	failed := event.Result{ID: "w1", StudentID: "s1", ExerciseID: "c00", Metric: 10, Timestamp: time.Now().UTC().Truncate(time.Millisecond)}
	// The follow-up finds a passing retake, archived before the check.
	if _, err := st.PutResults(ctx, []event.Result{{ID: "w1-retake", StudentID: "s1", ExerciseID: "c00", Metric: 90,
		Timestamp: failed.Timestamp.Add(time.Second)}}); err != nil {
		t.Fatal(err)
	}
	opts := ingest.StartOptions(ingest.Failing{Result: failed, Threshold: 50})
	first := newWorker()
	run, err := c.ExecuteWorkflow(ctx, opts, workflows.PatrolWorkflowType, workflows.PatrolInput{
		EventID: failed.ID, StudentID: failed.StudentID, ExerciseID: failed.ExerciseID, Metric: failed.Metric,
		FailedAt: failed.Timestamp, Threshold: 50, HasThreshold: true,
		FollowUpAfter: 3 * time.Second, FollowUpSettle: new(time.Duration), // none
	})
	if err != nil {
		t.Fatal(err)
	}
	// Kill the first worker once the deployment waits for its follow-up.
	for {
		d, ok, err := st.GetDeployment(ctx, opts.ID)
		if err != nil {
			t.Fatal(err)
		}
		if ok && d.Status == workflows.StatusFollowingUp {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("deployment never reached following-up")
		}
		time.Sleep(20 * time.Millisecond)
	}
	first.Stop()
	second := newWorker()
	defer second.Stop()

	var out workflows.PatrolResult
	if err := app.AwaitResult(ctx, c, run.GetID(), &out, nil); err != nil {
		t.Fatal(err)
	}
	if out.Status != workflows.StatusRecovered {
		t.Fatalf("outcome %s, want recovered", out.Status)
	}
	d, _, err := st.GetDeployment(ctx, opts.ID)
	if err != nil || d.Status != workflows.StatusRecovered {
		t.Fatalf("recorded deployment %+v, %v", d, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(requests) != 1 || requests[opts.ID] != 1 {
		t.Fatalf("patrol requests %v, want one for %s", requests, opts.ID)
	}
}
