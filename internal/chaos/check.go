package chaos

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/acu-patrol/acu/ingest"
	"github.com/acu-patrol/acu/internal/store"
)

// finalStatuses are the PatrolStatus values a finished deployment ends in
// (DESIGN §2.3).
var finalStatuses = []string{store.StatusRecovered, store.StatusStillFailing, store.StatusNoAttempt,
	store.StatusNotifyRejected, store.StatusNotifyExhausted}

// Check reads back what the system did and compares it with the oracle's
// computation from what the workload produced.
func Check(ctx context.Context, c *Cluster, w *Workload, patrol *PatrolEndpoint, plan []Fault) (*Summary, error) {
	s := &Summary{Faults: plan}
	raw, err := ReadTopic(ctx, c.KafkaBrokers(), ingest.ResultsTopic)
	if err != nil {
		return nil, fmt.Errorf("reading back %s: %w", ingest.ResultsTopic, err)
	}
	records := make([]Record, len(raw))
	for i, r := range raw {
		records[i] = Record{Partition: r.Partition, Offset: r.Offset, Timestamp: r.Timestamp, Key: r.Key, Value: r.Value,
			JudgedBy: w.JudgedBy(r.Partition, r.Offset)}
	}
	s.Records = len(records)
	o := NewOracle(InitialThresholds, w.Writes(), records, FollowUpAfter)
	must, may := o.Deployments()
	s.Valid, s.Expected, s.Ambiguous = len(o.Valid()), len(must), len(may)
	w.mu.Lock()
	s.Probes = w.probes
	s.AmbiguousWrites = w.ambiguousWrites
	w.mu.Unlock()
	probeExercise := func(id string) bool {
		e, ok := must[id]
		if !ok {
			e, ok = may[id]
		}
		return ok && strings.HasPrefix(e.ExerciseID, "probe-")
	}

	// The patrol endpoint: every key that must be there, no other.
	deliveries := patrol.Deliveries()
	for key, d := range deliveries {
		if d.Accepted == 0 {
			continue
		}
		s.Delivered++
		s.Redelivery += d.Accepted - 1
		if d.BadReason != "" {
			s.Extra = append(s.Extra, key+" (request broke the contract: "+d.BadReason+")")
		}
		_, m := must[key]
		_, a := may[key]
		if !m && !a {
			s.Extra = append(s.Extra, key+" (delivered)")
		}
	}
	for key, e := range must {
		d, ok := deliveries[key]
		if !ok || d.Accepted == 0 {
			s.Lost = append(s.Lost, key+" (not delivered)")
			continue
		}
		lat := d.First.Sub(e.Produced)
		if overlapsFault(plan, e.Produced, d.First) {
			s.Faulty = append(s.Faulty, lat)
		} else {
			s.Calm = append(s.Calm, lat)
			s.slowCalm = append(s.slowCalm, slow{key, e.Produced, lat})
		}
	}

	// Temporal: one run per workflow ID, each final.
	tc, err := client.DialContext(ctx, client.Options{HostPort: c.TemporalAddr(), Logger: sdkNop{}})
	if err != nil {
		return nil, err
	}
	defer tc.Close()
	execs, err := ListDeployments(ctx, tc)
	if err != nil {
		return nil, fmt.Errorf("listing deployments: %w", err)
	}
	runs := map[string]int{}
	for _, x := range execs {
		runs[x.WorkflowID]++
		if x.Status == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING || !slices.Contains(finalStatuses, x.PatrolStatus) {
			s.NotFinal = append(s.NotFinal, fmt.Sprintf("%s (%s, PatrolStatus %q)", x.WorkflowID, x.Status, x.PatrolStatus))
		}
	}
	for id, n := range runs {
		if n > 1 {
			s.Doubled = append(s.Doubled, fmt.Sprintf("%s (%d runs)", id, n))
		}
		_, m := must[id]
		_, a := may[id]
		if !m && !a {
			s.Extra = append(s.Extra, id+" (workflow)")
		}
	}
	for id := range must {
		if runs[id] == 0 {
			s.Lost = append(s.Lost, id+" (no workflow)")
		}
	}
	// Stale: a probe result judged against anything but the value just
	// written shows up as lost or extra on a probe exercise.
	for _, l := range [][]string{s.Lost, s.Extra} {
		for _, x := range l {
			if id, _, _ := strings.Cut(x, " "); probeExercise(id) {
				s.Stale = append(s.Stale, x)
			}
		}
	}

	// The store's deployments, read with cqlsh: each final.
	host := c.CassandraHosts()[0]
	rows, err := Cqlsh(ctx, c.Dir, host, "acu.deployments", "workflow_id", "status")
	if err != nil {
		return nil, err
	}
	stored := map[string]string{}
	for _, r := range rows {
		stored[r[0]] = r[1]
	}
	for _, x := range execs {
		st, ok := stored[x.WorkflowID]
		if !ok || !slices.Contains(finalStatuses, st) {
			s.NotFinal = append(s.NotFinal, fmt.Sprintf("%s (store status %q)", x.WorkflowID, st))
		}
	}

	// The DLQ: every malformed record once per consumer group (both the
	// alert service and the archiver reject it), nothing else. Delivery is
	// at least once, as everywhere: a batch whose commit failed after its
	// rejects were written writes them again when it is redelivered, with
	// the same acu-source, by which a reader deduplicates. Those copies are
	// counted apart, as the patrol's redeliveries are.
	dlq, err := ReadTopic(ctx, c.KafkaBrokers(), ingest.DLQTopic)
	if err != nil {
		return nil, fmt.Errorf("reading back %s: %w", ingest.DLQTopic, err)
	}
	malformed := o.Malformed()
	s.Malformed = len(malformed)
	groups := []string{ingest.AlertsGroup, ingest.ArchiveGroup}
	want := map[string]bool{}
	for _, r := range malformed {
		for _, g := range groups {
			want[fmt.Sprintf("%s/%d/%d by %s", ingest.ResultsTopic, r.Partition, r.Offset, g)] = true
		}
	}
	got := map[string]int{}
	for _, r := range dlq {
		var src, group string
		for _, h := range r.Headers {
			switch h.Key {
			case ingest.HeaderSource:
				src = string(h.Value)
			case ingest.HeaderGroup:
				group = string(h.Value)
			}
		}
		k := src + " by " + group
		got[k]++
		if !want[k] {
			s.DLQExtra = append(s.DLQExtra, k+" (not malformed)")
		} else if got[k] > 1 {
			s.DLQRedelivery++
		}
	}
	for k := range want {
		if got[k] == 0 {
			s.DLQMissing = append(s.DLQMissing, k)
		}
	}

	// The archive, read with cqlsh: every distinct valid result, once.
	rows, err = Cqlsh(ctx, c.Dir, host, "acu.results_by_id", "id")
	if err != nil {
		return nil, err
	}
	valid := o.Valid()
	seen := map[string]int{}
	for _, r := range rows {
		id := r[0]
		seen[id]++
		if _, ok := valid[id]; !ok {
			s.ExtraRows = append(s.ExtraRows, id+" (no such valid result)")
		} else if seen[id] == 2 {
			s.ExtraRows = append(s.ExtraRows, id+" (twice)")
		}
	}
	for id := range valid {
		if seen[id] == 0 {
			s.Unarchived = append(s.Unarchived, id)
		}
	}

	// The analytics report, computed now over everything, against the oracle.
	reportAt := time.Now() // after every threshold write
	actx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	doc, err := c.acuOutput(actx, "analytics", "--json", "run")
	cancel()
	if err != nil {
		return nil, err
	}
	deployed := map[string]float64{}
	for _, x := range execs {
		if x.PatrolStatus != store.StatusNotifyRejected && x.PatrolStatus != store.StatusNotifyExhausted {
			deployed[x.WorkflowID] = x.Threshold
		}
	}
	// A follow-up outcome other than the oracle's is legitimate only when a
	// result of its window reached the results topic after the check's
	// archive mark (a producer held up by a broker fault): the run's
	// history says where the mark was. Such deployments are counted with
	// the outcome they recorded; any other names the deployment.
	outcomes := map[string]string{}
	for _, x := range execs {
		th, ok := deployed[x.WorkflowID]
		st := stored[x.WorkflowID]
		if !ok || (st != store.StatusRecovered && st != store.StatusStillFailing && st != store.StatusNoAttempt) {
			continue
		}
		if _, want, known := o.deployedStatus(x.WorkflowID, th); !known || want == st {
			continue
		}
		ends, found, err := ArchiveMarkEnds(ctx, tc, x)
		if err != nil {
			return nil, fmt.Errorf("reading the archive mark of %s: %w", x.WorkflowID, err)
		}
		allowed, _ := o.DeployedMarked(x.WorkflowID, th, ends)
		if found && slices.Contains(allowed, st) {
			outcomes[x.WorkflowID] = st
			s.LateFollowUps = append(s.LateFollowUps, x.WorkflowID)
			continue
		}
		_, want, _ := o.deployedStatus(x.WorkflowID, th)
		s.Report = append(s.Report, fmt.Sprintf("%s follow-up %q, the oracle's %q (%v with the run's archive mark %v, found %v)",
			x.WorkflowID, st, want, allowed, ends, found))
	}
	s.Report = append(s.Report, o.CompareReportWith(doc, ReportInput{At: reportAt, Deployed: deployed, Outcomes: outcomes})...)
	for _, l := range [][]string{s.Lost, s.Extra, s.Doubled, s.Stale, s.Unarchived, s.ExtraRows, s.DLQMissing, s.DLQExtra, s.NotFinal, s.LateFollowUps} {
		slices.Sort(l)
	}
	return s, nil
}

// overlapsFault tells whether any fault was on (from its injection to the
// system's recovery from it) between a result's production and its
// delivery: only a delivery with none is calm. A result produced just
// before a fault and held up by it counts as under faults.
func overlapsFault(plan []Fault, produced, delivered time.Time) bool {
	for _, f := range plan {
		if f.Injected.IsZero() || !f.Injected.Before(delivered) {
			continue
		}
		if f.Recovered.IsZero() || produced.Before(f.Recovered) {
			return true
		}
	}
	return false
}
