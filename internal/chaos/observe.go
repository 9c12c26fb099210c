package chaos

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/acu-patrol/acu/ingest"
	"github.com/acu-patrol/acu/workflows"
)

// What the checker reads back from the system, each from where an operator
// would look: the topics from Kafka, the deployments from Temporal's
// visibility, the archive from Cassandra through cqlsh.

// Lags is the consumer lag of each group on the results topic.
func Lags(ctx context.Context, adm *kadm.Client) (map[string]int64, error) {
	groups := []string{ingest.AlertsGroup, ingest.ArchiveGroup}
	lags, err := adm.Lag(ctx, groups...)
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for _, g := range groups {
		l, ok := lags[g]
		if !ok {
			return nil, fmt.Errorf("group %s: not described", g)
		}
		if l.Error() != nil {
			return nil, fmt.Errorf("group %s: %w", g, l.Error())
		}
		out[g] = l.Lag.TotalByTopic()[ingest.ResultsTopic].Lag
		if _, ok := l.Lag[ingest.ResultsTopic]; !ok {
			return nil, fmt.Errorf("group %s has no offsets on %s yet", g, ingest.ResultsTopic)
		}
	}
	return out, nil
}

// ReadTopic reads every record of topic, from the start to the end it has
// when the call begins.
func ReadTopic(ctx context.Context, brokers []string, topic string) ([]*kgo.Record, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, err
	}
	if err := ends.Error(); err != nil {
		return nil, err
	}
	want := map[int32]int64{}
	offsets := map[string]map[int32]kgo.Offset{topic: {}}
	for p, o := range ends[topic] {
		if o.Offset > 0 {
			want[p] = o.Offset
			offsets[topic][p] = kgo.NewOffset().AtStart()
		}
	}
	if len(want) == 0 {
		return nil, nil
	}
	rd, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumePartitions(offsets),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	var out []*kgo.Record
	for len(want) > 0 {
		fs := rd.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("reading %s: %w", topic, err)
		}
		fs.EachError(func(t string, p int32, e error) { err = errors.Join(err, fmt.Errorf("%s/%d: %w", t, p, e)) })
		if err != nil {
			return nil, err
		}
		fs.EachRecord(func(r *kgo.Record) {
			end, ok := want[r.Partition]
			if !ok || r.Offset >= end {
				return
			}
			out = append(out, r)
			if r.Offset+1 >= end {
				delete(want, r.Partition)
			}
		})
	}
	return out, nil
}

// Execution is one PatrolDeployment run as Temporal's visibility shows it.
type Execution struct {
	WorkflowID, RunID string
	Status            enumspb.WorkflowExecutionStatus
	PatrolStatus      string
	Threshold         float64 // the threshold it was judged with
}

// ListDeployments lists every PatrolDeployment run (open and closed).
func ListDeployments(ctx context.Context, tc client.Client) ([]Execution, error) {
	var out []Execution
	var token []byte
	for {
		resp, err := tc.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Query: "WorkflowType = '" + workflows.PatrolWorkflowType + "'", PageSize: 1000, NextPageToken: token})
		if err != nil {
			return nil, err
		}
		for _, e := range resp.Executions {
			x := Execution{WorkflowID: e.Execution.WorkflowId, RunID: e.Execution.RunId, Status: e.Status}
			fields := e.SearchAttributes.GetIndexedFields()
			if p, ok := fields[workflows.PatrolStatusKey.GetName()]; ok {
				_ = converter.GetDefaultDataConverter().FromPayload(p, &x.PatrolStatus)
			}
			if p, ok := fields[workflows.ThresholdKey.GetName()]; ok {
				_ = converter.GetDefaultDataConverter().FromPayload(p, &x.Threshold)
			}
			out = append(out, x)
		}
		token = resp.NextPageToken
		if len(token) == 0 {
			return out, nil
		}
	}
}

// ArchiveMarkEnds returns the results topic's end offsets a deployment's
// follow-up took as its archive mark: the result of its ArchiveMark local
// activity, read from the run's history as an operator would read it in
// the UI (a marker named LocalActivity). False when the run has none.
func ArchiveMarkEnds(ctx context.Context, tc client.Client, x Execution) (map[int32]int64, bool, error) {
	ends, found, err := archiveMarkIn(tc.GetWorkflowHistory(ctx, x.WorkflowID, x.RunID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT))
	if err != nil {
		return nil, false, fmt.Errorf("%s: %w", x.WorkflowID, err)
	}
	return ends, found, nil
}

// archiveMarkIn is ArchiveMarkEnds over a history.
func archiveMarkIn(it client.HistoryEventIterator) (map[int32]int64, bool, error) {
	dc := converter.GetDefaultDataConverter()
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			return nil, false, err
		}
		m := ev.GetMarkerRecordedEventAttributes()
		if m == nil || m.MarkerName != "LocalActivity" {
			continue
		}
		var data struct{ ActivityType string }
		if err := dc.FromPayloads(m.Details["data"], &data); err != nil || data.ActivityType != "ArchiveMark" {
			continue
		}
		var mark struct{ Ends map[int32]int64 }
		if err := dc.FromPayloads(m.Details["result"], &mark); err != nil {
			return nil, false, fmt.Errorf("the ArchiveMark marker does not decode: %w", err)
		}
		return mark.Ends, true, nil
	}
	return nil, false, nil
}

// CountOpenDeployments counts the PatrolDeployment runs still running.
func CountOpenDeployments(ctx context.Context, tc client.Client) (int64, error) {
	resp, err := tc.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{
		Query: "WorkflowType = '" + workflows.PatrolWorkflowType + "' AND ExecutionStatus = 'Running'"})
	if err != nil {
		return 0, err
	}
	return resp.Count, nil
}

// Cqlsh runs a COPY … TO of columns of table through cqlsh (the operator's
// client) against host at QUORUM, and returns the rows.
func Cqlsh(ctx context.Context, dir, host, table string, columns ...string) ([][]string, error) {
	out := filepath.Join(dir, "cqlsh-"+strings.ReplaceAll(table, ".", "_")+".csv")
	_ = os.Remove(out)
	// COPY TO reads at the session's consistency.
	stmt := fmt.Sprintf("CONSISTENCY QUORUM; COPY %s (%s) TO '%s' WITH HEADER = false AND PAGETIMEOUT = 60;",
		table, strings.Join(columns, ", "), out)
	cmd := exec.CommandContext(ctx, "cqlsh", host, "9042", "--request-timeout", "60", "-e", stmt)
	var msg bytes.Buffer
	cmd.Stdout, cmd.Stderr = &msg, &msg
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("cqlsh %s: %w\n%s", stmt, err, lastLines(msg.String(), 20))
	}
	f, err := os.Open(out)
	if err != nil {
		return nil, fmt.Errorf("cqlsh wrote no file: %w\n%s", err, lastLines(msg.String(), 20))
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", out, err)
	}
	return rows, nil
}

// waitFor polls cond every interval until it holds or ctx or the timeout
// ends; the last error cond gave is returned with the timeout.
func waitFor(ctx context.Context, timeout, every time.Duration, cond func(context.Context) (bool, error)) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		ok, err := cond(ctx)
		if ok {
			return nil
		}
		last = err
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s (last: %v)", timeout, last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(every):
		}
	}
}

// Evidence is what an operator would look at when the consumers do not
// catch up: each group's lag per partition with the member holding it, and
// the end of every acu service's log. A failed run prints it, so that a
// run nobody watched (CI) still says where it stood.
func Evidence(ctx context.Context, c *Cluster, adm *kadm.Client) string {
	var b strings.Builder
	lags, err := adm.Lag(ctx, ingest.AlertsGroup, ingest.ArchiveGroup)
	if err != nil {
		fmt.Fprintf(&b, "lag: %v\n", err)
	}
	for _, g := range []string{ingest.AlertsGroup, ingest.ArchiveGroup} {
		l, ok := lags[g]
		if !ok {
			continue
		}
		fmt.Fprintf(&b, "group %s (state %s):\n", g, l.State)
		for _, ml := range l.Lag.Sorted() {
			member := "(none)"
			if ml.Member != nil {
				member = ml.Member.ClientHost + " " + ml.Member.MemberID
			}
			fmt.Fprintf(&b, "  %s/%d lag %d commit %d end %d member %s", ml.Topic, ml.Partition, ml.Lag, ml.Commit.At, ml.End.Offset, member)
			if ml.Err != nil {
				fmt.Fprintf(&b, " err %v", ml.Err)
			}
			b.WriteByte('\n')
		}
	}
	for _, k := range []Kind{Ingest, Archive, Worker} {
		for _, n := range c.Of(k) {
			fmt.Fprintf(&b, "--- %s (%s), end of its log:\n%s\n", n.Name, n.Addr, n.Tail(25))
		}
	}
	return b.String()
}
