package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/acu-patrol/acu/ingest"
	"github.com/acu-patrol/acu/internal/thresholds"
)

// InitialThresholds are the exercises the simulator draws from; they do not
// change during the run (the probes change their own exercises).
var InitialThresholds = map[string]float64{"ex-01": 50, "ex-02": 60, "ex-03": 40, "ex-04": 55, "ex-05": 45}

// Workload is the simulator process and the threshold probes.
type Workload struct {
	C    *Cluster
	Rate float64
	Seed uint64

	mu     sync.Mutex
	writes []ThresholdWrite
	probes int
	// ambiguousWrites counts probe writes whose outcome is unknown.
	ambiguousWrites int
	judged          map[position]time.Time // probe results seen committed by the alert service, and when
	sim             *exec.Cmd
	simErr          chan error
}

// SetInitial writes the initial thresholds.
func (w *Workload) SetInitial(ctx context.Context) error {
	ec, err := w.etcd()
	if err != nil {
		return err
	}
	defer ec.Close()
	return thresholds.NewAdmin(ec, "/acu/").Import(ctx, InitialThresholds)
}

func (w *Workload) etcd() (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{Endpoints: w.C.EtcdEndpoints(), DialTimeout: 5 * time.Second, Logger: zapNop()})
}

// StartSimulator runs `acu produce` at w.Rate for d, with duplicates,
// malformed records and retakes.
func (w *Workload) StartSimulator(d time.Duration) error {
	logf, err := os.OpenFile(filepath.Join(w.C.Dir, "produce.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(filepath.Join(w.C.Bin, "acu"), "produce",
		"--rate", strconv.FormatFloat(w.Rate, 'f', -1, 64), "--duration", d.String(),
		"--seed", strconv.FormatUint(w.Seed, 10), "--students", "400", "--fail-share", "0.1",
		"--duplicate-share", "0.05", "--malformed-share", "0.02", "--omit-event-id-share", "0.2",
		"--retry-share", "0.7", "--retry-after", "5s", "--http", "")
	cmd.Env = append(os.Environ(), w.C.AcuEnv()...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	w.sim, w.simErr = cmd, make(chan error, 1)
	go func() { w.simErr <- cmd.Wait(); logf.Close() }()
	return nil
}

// WaitSimulator waits until the simulator has finished its run.
func (w *Workload) WaitSimulator(ctx context.Context) error {
	select {
	case err := <-w.simErr:
		if err != nil {
			return fmt.Errorf("acu produce: %w (see %s)", err, filepath.Join(w.C.Dir, "produce.log"))
		}
		return nil
	case <-ctx.Done():
		_ = w.sim.Process.Kill()
		return ctx.Err()
	}
}

// probeStep is one threshold write on a probe exercise and the metrics of
// the results sent right after it: each metric is judged differently by the
// value before and the value after the write.
type probeStep struct {
	op      string
	value   float64
	metrics []float64
}

var probeCycle = []probeStep{
	{"add", 50, []float64{40, 60}},   // new exercise: 40 fails, 60 passes
	{"raise", 70, []float64{60, 65}}, // both fail now, passed before
	{"lower", 30, []float64{40, 45}}, // both pass now, failed before
}

// RunProbes writes thresholds on probe exercises every interval until ctx
// ends: each write is followed by results that must be judged with the value
// just written, and the next write waits until the alert service has
// committed those results (so that no result is ever produced while two
// values are both legitimate for it).
func (w *Workload) RunProbes(ctx context.Context, every time.Duration) error {
	ec, err := w.etcd()
	if err != nil {
		return err
	}
	defer ec.Close()
	admin := thresholds.NewAdmin(ec, "/acu/")
	cl, err := kgo.NewClient(kgo.SeedBrokers(w.C.KafkaBrokers()...), kgo.RequiredAcks(kgo.AllISRAcks()))
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	t := time.NewTicker(every)
	defer t.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		step := probeCycle[i%len(probeCycle)]
		ex := fmt.Sprintf("probe-%02d", i/len(probeCycle))
		wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		started := time.Now()
		err := admin.Set(wctx, ex, step.value)
		returned := time.Now()
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			// The write may or may not have been applied (etcd may time out
			// under faults: "request timed out"): it stays in the log as
			// ambiguous for ever after (Returned at the end of time), which
			// makes every later judgement on its exercise ambiguous. The
			// probes go on with a fresh exercise.
			v := step.value
			w.record(ThresholdWrite{Exercise: ex, Value: &v, Started: started, Returned: time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)})
			w.mu.Lock()
			w.ambiguousWrites++
			w.mu.Unlock()
			i = (i/len(probeCycle)+1)*len(probeCycle) - 1
			continue
		}
		v := step.value
		w.record(ThresholdWrite{Exercise: ex, Value: &v, Started: started, Returned: returned})
		var recs []*kgo.Record
		for j, m := range step.metrics {
			body, _ := json.Marshal(map[string]any{
				"event_id": fmt.Sprintf("probe-%d-%d-%d", w.Seed, i, j), "timestamp": time.Now().UTC().Format(time.RFC3339Nano),
				"student_id": fmt.Sprintf("probe-student-%d", j), "exercise_id": ex, "metric": m,
				"latitude": 48.8566, "longitude": 2.3522})
			recs = append(recs, &kgo.Record{Topic: ingest.ResultsTopic, Key: []byte(fmt.Sprintf("probe-student-%d", j)), Value: body})
		}
		pctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		res := cl.ProduceSync(pctx, recs...)
		cancel()
		if err := res.FirstErr(); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("probe results for %s: %w", ex, err)
		}
		w.mu.Lock()
		w.probes += len(recs)
		w.mu.Unlock()
		if err := waitCommitted(ctx, adm, ingest.AlertsGroup, res); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		// A committed record is not judged again: the next write cannot
		// apply to these results.
		seen := time.Now()
		w.mu.Lock()
		if w.judged == nil {
			w.judged = map[position]time.Time{}
		}
		for _, r := range res {
			w.judged[position{r.Record.Partition, r.Record.Offset}] = seen
		}
		w.mu.Unlock()
	}
}

func (w *Workload) record(tw ThresholdWrite) {
	w.mu.Lock()
	w.writes = append(w.writes, tw)
	w.mu.Unlock()
}

// position is a record's place in the results topic.
type position struct {
	partition int32
	offset    int64
}

// JudgedBy is when the alert service was seen to have committed the probe
// result at p, if it is one.
func (w *Workload) JudgedBy(partition int32, offset int64) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.judged[position{partition, offset}]
}

// Writes are the threshold writes made so far.
func (w *Workload) Writes() []ThresholdWrite {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]ThresholdWrite(nil), w.writes...)
}

// waitCommitted waits until group has committed past every produced record.
func waitCommitted(ctx context.Context, adm *kadm.Client, group string, res kgo.ProduceResults) error {
	want := map[int32]int64{}
	for _, r := range res {
		want[r.Record.Partition] = max(want[r.Record.Partition], r.Record.Offset+1)
	}
	deadline := time.Now().Add(10 * time.Minute)
	for {
		offs, err := adm.FetchOffsets(ctx, group)
		if err == nil {
			done := true
			for p, o := range want {
				c, ok := offs.Lookup(ingest.ResultsTopic, p)
				done = done && ok && c.At >= o
			}
			if done {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("group %s has not committed the probe results within 10 min (last error %v)", group, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
