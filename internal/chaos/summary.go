package chaos

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Summary is the outcome of a run.
type Summary struct {
	Faults []Fault

	Records    int // read back from the results topic
	Valid      int // distinct valid results
	Malformed  int // records that must be in the DLQ
	Expected   int // deployments that must exist
	Ambiguous  int // deployments that may exist (a threshold write in flight)
	Delivered  int // Idempotency-Keys the patrol endpoint accepted
	Redelivery int // accepted requests beyond the first per key (allowed: deduplicated by the key)
	// DLQRedelivery counts DLQ copies beyond the first per source and group
	// (allowed: deduplicated by acu-source).
	DLQRedelivery int
	Probes        int // probe results judged right after a threshold write
	// AmbiguousWrites are probe threshold writes etcd did not confirm (a
	// timeout): their exercises' judgements are ambiguous from then on.
	AmbiguousWrites int
	// LateFollowUps are deployments whose follow-up missed a result of its
	// window that reached the results topic after its archive mark (allowed:
	// §2.3's check sees what was sent by its deadline).
	LateFollowUps []string

	// The broken promises; every one must be 0.
	Lost       []string // deployments that must exist and were not delivered or not started
	Extra      []string // deliveries or deployments nobody should have made
	Doubled    []string // workflow IDs with more than one run
	Stale      []string // probe results judged with a threshold older than the last returned write
	Unarchived []string // distinct valid results missing from the archive
	ExtraRows  []string // archive rows of no valid result, or more than one row per result
	DLQMissing []string // malformed records not in the DLQ
	DLQExtra   []string // DLQ records that are not malformed, or there twice
	NotFinal   []string // deployments not in a final status (Temporal or the store)
	Report     []string // differences between the analytics report and the oracle

	// Failure → patrol latency: Calm when no fault was on between the
	// result's production and its delivery, Faulty otherwise.
	Calm, Faulty []time.Duration
	Quiesce      time.Duration

	slowCalm []slow
}

// slow is one delivery's latency, to show the slowest calm ones.
type slow struct {
	key      string
	produced time.Time
	latency  time.Duration
}

// Broken names the non-zero counts.
func (s *Summary) Broken() []string {
	var out []string
	for _, c := range s.counts() {
		if c.n > 0 {
			out = append(out, fmt.Sprintf("%s %d", c.name, c.n))
		}
	}
	return out
}

type count struct {
	name    string
	n       int
	example []string
}

func (s *Summary) counts() []count {
	return []count{
		{"lost", len(s.Lost), s.Lost}, {"extra", len(s.Extra), s.Extra}, {"doubled", len(s.Doubled), s.Doubled},
		{"stale", len(s.Stale), s.Stale}, {"unarchived", len(s.Unarchived), s.Unarchived},
		{"extra-rows", len(s.ExtraRows), s.ExtraRows}, {"dlq-missing", len(s.DLQMissing), s.DLQMissing},
		{"dlq-extra", len(s.DLQExtra), s.DLQExtra}, {"not-final", len(s.NotFinal), s.NotFinal},
		{"report-diffs", len(s.Report), s.Report},
	}
}

// Print writes the tables: faults with their healing times, records, the
// broken-promise counts with examples, and latencies.
func (s *Summary) Print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "fault\ttargets\thold\tback in\tcaught up in\tcores busy (busiest)\terror")
	since := func(later, earlier time.Time) string {
		if later.IsZero() || earlier.IsZero() {
			return "-"
		}
		return later.Sub(earlier).Round(100 * time.Millisecond).String()
	}
	for _, f := range s.Faults {
		e := ""
		if f.Err != nil {
			e = f.Err.Error()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", f.Kind, strings.Join(f.Targets, ","), f.Hold, since(f.Back, f.Healed), since(f.Recovered, f.Back), f.Busy(), e)
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "records\t%d\tdistinct valid\t%d\tmalformed\t%d\n", s.Records, s.Valid, s.Malformed)
	fmt.Fprintf(tw, "deployments expected\t%d\tambiguous\t%d\tdelivered\t%d\n", s.Expected, s.Ambiguous, s.Delivered)
	fmt.Fprintf(tw, "redeliveries (same key)\t%d\tprobe results\t%d\tquiesced in\t%s\n", s.Redelivery, s.Probes, s.Quiesce.Round(time.Second))
	fmt.Fprintf(tw, "DLQ redeliveries (same source)\t%d\tambiguous threshold writes\t%d\tfollow-ups past a late result\t%d\n", s.DLQRedelivery, s.AmbiguousWrites, len(s.LateFollowUps))
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "promise\tbroken\texamples")
	for _, c := range s.counts() {
		ex := c.example
		if len(ex) > 3 {
			ex = ex[:3]
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\n", c.name, c.n, strings.Join(ex, "; "))
	}
	tw.Flush()
	if len(s.LateFollowUps) > 0 {
		fmt.Fprintf(w, "follow-ups that missed a result reaching Kafka after their archive mark (allowed): %s\n", strings.Join(s.LateFollowUps, ", "))
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "failure → patrol latency (producer to patrol endpoint): calm (no fault between production and delivery) %s; under faults %s\n",
		Percentiles(s.Calm), Percentiles(s.Faulty))
	slices.SortFunc(s.slowCalm, func(a, b slow) int { return int(b.latency - a.latency) })
	for _, x := range s.slowCalm[:min(5, len(s.slowCalm))] {
		fmt.Fprintf(w, "  slow in calm: %s produced %s took %s\n", x.key, x.produced.UTC().Format("15:04:05.000"), x.latency.Round(time.Millisecond))
	}
}

// Percentiles renders the p50, p99 and max of ds.
func Percentiles(ds []time.Duration) string {
	if len(ds) == 0 {
		return "n=0"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	q := func(p float64) time.Duration { return s[min(len(s)-1, int(p*float64(len(s))))] }
	r := func(d time.Duration) string { return d.Round(time.Millisecond).String() }
	return fmt.Sprintf("n=%d p50 %s p99 %s max %s", len(s), r(q(0.50)), r(q(0.99)), r(s[len(s)-1]))
}
