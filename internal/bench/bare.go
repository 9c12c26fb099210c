package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/acu-patrol/acu/activities"
	"github.com/acu-patrol/acu/internal/event"
	"github.com/acu-patrol/acu/workflows"
)

// The bare pipeline: the least a system of this shape can do per failing
// result (consume, parse, start a workflow whose only step is the POST to
// the patrol), on the same servers, so the project's figures read as a
// ratio to it.
const (
	bareTopic        = "acu.bench.bare"
	bareTaskQueue    = "acu-bench-bare"
	bareWorkflowType = "AcuBenchBare"
	bareIDPrefix     = "bench-bare-"
	bareInFlight     = 256
)

// bareWorkflow POSTs the notification, in the cheapest form Temporal has
// (a local activity, in the first workflow task), and ends.
func bareWorkflow(ctx workflow.Context, n activities.NotifyInput) error {
	ctx = workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy:         workflows.NotifyRetryPolicy(0),
	})
	return workflow.ExecuteLocalActivity(ctx, workflows.NotifyActivity, n).Get(ctx, nil)
}

// bare runs the bare worker and consumer until stop.
type bare struct {
	w      worker.Worker
	cl     *kgo.Client
	cancel context.CancelFunc
	done   chan error
}

func startBare(tc client.Client, brokers []string, group, patrolURL string, log *slog.Logger) (*bare, error) {
	w := worker.New(tc, bareTaskQueue, worker.Options{})
	w.RegisterWorkflowWithOptions(bareWorkflow, workflow.RegisterOptions{Name: bareWorkflowType})
	p := &activities.Patrol{HTTP: &http.Client{Timeout: 10 * time.Second}, URL: patrolURL}
	w.RegisterActivityWithOptions(p.NotifyPatrol, activity.RegisterOptions{Name: workflows.NotifyActivity})
	if err := w.Start(); err != nil {
		return nil, fmt.Errorf("bare worker: %w", err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumerGroup(group), kgo.ConsumeTopics(bareTopic),
		kgo.DisableAutoCommit(), kgo.BlockRebalanceOnPoll(), kgo.FetchMaxWait(500*time.Millisecond))
	if err != nil {
		w.Stop()
		return nil, fmt.Errorf("bare consumer: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &bare{w: w, cl: cl, cancel: cancel, done: make(chan error, 1)}
	go func() { b.done <- b.consume(ctx, tc, log) }()
	return b, nil
}

// consume polls, starts one workflow per valid record concurrently, and
// commits once every start of the poll is acknowledged.
func (b *bare) consume(ctx context.Context, tc client.Client, log *slog.Logger) error {
	sem := make(chan struct{}, bareInFlight)
	for {
		fs := b.cl.PollRecords(ctx, 5000)
		if ctx.Err() != nil || fs.IsClientClosed() {
			return nil
		}
		var wg sync.WaitGroup
		fs.EachRecord(func(r *kgo.Record) {
			res, err := event.Parse(r.Value)
			if err != nil || res.Metric >= threshold {
				return
			}
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				id := bareIDPrefix + res.EventID
				for ctx.Err() == nil {
					_, err := tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
						ID: id, TaskQueue: bareTaskQueue, EnableEagerStart: true,
						WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
					}, bareWorkflowType, activities.NotifyInput{Notification: activities.Notification{
						DeploymentID: id, EventID: res.EventID, StudentID: res.StudentID, ExerciseID: res.ExerciseID,
						Metric: res.Metric, Latitude: res.Latitude, Longitude: res.Longitude, FailedAt: res.Timestamp,
					}})
					var already *serviceerror.WorkflowExecutionAlreadyStarted
					if err == nil || errors.As(err, &already) {
						return
					}
					log.Warn("bare pipeline: start failed; retrying", "workflow_id", id, "err", err)
				}
			}()
		})
		wg.Wait()
		if err := b.cl.CommitUncommittedOffsets(ctx); err != nil && ctx.Err() == nil {
			log.Warn("bare pipeline: commit failed", "err", err)
		}
		b.cl.AllowRebalance()
	}
}

func (b *bare) stop() {
	b.cancel()
	<-b.done
	b.cl.AllowRebalance() // the group cannot be left while a poll blocks rebalances
	b.cl.Close()
	b.w.Stop()
}
