package dev_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"

	"github.com/acu-patrol/acu/activities"
	"github.com/acu-patrol/acu/internal/app"
	"github.com/acu-patrol/acu/internal/config"
	"github.com/acu-patrol/acu/internal/event"
	"github.com/acu-patrol/acu/internal/testkit"
	"github.com/acu-patrol/acu/workers"
	"github.com/acu-patrol/acu/workflows"
)

// TestAnalyticsSpeed measures a full analytics run over ACU_ANALYTICS_SPEED
// stored results (e.g. 1000000) on the embedded Temporal server with a real
// worker, then an incremental run after 1 % more, and checks that the
// incremental run costs a small share of the full one. It is a
// measurement: it runs only when asked.
//
//	ACU_ANALYTICS_SPEED=1000000 go test ./internal/dev/ -run AnalyticsSpeed -v -timeout 30m
//
// On SQLite by default; ACU_ANALYTICS_STORE=cassandra://host/keyspace for a
// Cassandra store.
func TestAnalyticsSpeed(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("ACU_ANALYTICS_SPEED"))
	if n <= 0 {
		t.Skip("set ACU_ANALYTICS_SPEED=<number of results> to measure")
	}
	ctx := context.Background()
	c := testkit.Temporal(t, app.SearchAttributes)
	// ACU_ANALYTICS_STORE=cassandra://127.0.0.1:29042/speed?settle=3s
	// measures on a Cassandra store (a fresh keyspace name: it is filled).
	var cfg config.Config
	cfg.Store = "sqlite:" + filepath.Join(t.TempDir(), "acu.db")
	if u := os.Getenv("ACU_ANALYTICS_STORE"); u != "" {
		cfg.Store = u
	}
	st, err := app.OpenStore(ctx, &cfg, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	settled := func() {
		if !cfg.IsCassandra() {
			return
		}
		testkit.Settle(t, st, time.Minute)
	}
	th := testkit.Thresholds{}
	for i := range 10 {
		th[fmt.Sprintf("c%02d", i)] = float64(50 + 2*i)
	}
	w := worker.New(c, workflows.TaskQueue, worker.Options{})
	workers.Register(w, workers.Activities{Patrol: &activities.Patrol{}, Analytics: &activities.Analytics{Store: st, Thresholds: th}})
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	defer w.Stop()

	rnd := rand.New(rand.NewPCG(7, 7))
	cities := [][2]float64{{48.8566, 2.3522}, {45.764, 4.8357}, {43.2965, 5.3698}, {50.6292, 3.0573}, {43.6047, 1.4442}}
	fill := func(from, count int) {
		began := time.Now()
		batch := make([]event.Result, 0, 5000)
		for i := from; i < from+count; i++ {
			cty := cities[rnd.IntN(len(cities))]
			batch = append(batch, event.Result{
				ID: fmt.Sprintf("speed-%08d", i), StudentID: fmt.Sprintf("s%05d", rnd.IntN(20000)),
				ExerciseID: fmt.Sprintf("c%02d", rnd.IntN(10)), Metric: float64(rnd.IntN(10001)) / 100,
				Latitude: cty[0] + rnd.Float64()*0.04 - 0.02, Longitude: cty[1] + rnd.Float64()*0.04 - 0.02,
				Timestamp: time.UnixMilli(1_764_000_000_000 + int64(i)).UTC(),
			})
			if len(batch) == cap(batch) || i == from+count-1 {
				if _, err := st.PutResults(ctx, batch); err != nil {
					t.Fatal(err)
				}
				batch = batch[:0]
			}
		}
		t.Logf("archived %d results in %s", count, time.Since(began).Round(time.Millisecond))
	}
	run := func(name string) time.Duration {
		began := time.Now()
		r, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "speed-" + name, TaskQueue: workflows.TaskQueue},
			workflows.AnalyticsWorkflowType, workflows.AnalyticsInput{})
		if err != nil {
			t.Fatal(err)
		}
		var res workflows.AnalyticsResult
		if err := app.AwaitResult(ctx, c, r.GetID(), &res, nil); err != nil {
			t.Fatal(err)
		}
		// The run's own duration, from the server's start and close times
		// (the client's wait adds its polling interval).
		desc, err := c.DescribeWorkflowExecution(ctx, r.GetID(), "")
		if err != nil {
			t.Fatal(err)
		}
		info := desc.GetWorkflowExecutionInfo()
		d := info.GetCloseTime().AsTime().Sub(info.GetStartTime().AsTime())
		t.Logf("%s run: %s from the client's start to its result", name, time.Since(began).Round(time.Millisecond))
		t.Logf("%s run: results %d..%d in %s", name, res.From+1, res.To, d.Round(time.Millisecond))
		return d
	}
	fill(0, n)
	settled()
	full := run("full")
	fill(n, n/100)
	settled()
	incr := run("incremental")
	t.Logf("incremental/full = %.1f %%", 100*incr.Seconds()/full.Seconds())
	// Below some 500,000 results the runs' fixed costs (a few workflow
	// tasks, the plan and the commit) dominate and the ratio says nothing.
	if n >= 500_000 && incr > full/10 {
		t.Errorf("incremental run %s is more than 10 %% of the full run %s", incr, full)
	}
}
