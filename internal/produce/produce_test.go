package produce

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/acu-patrol/acu/internal/event"
	"github.com/acu-patrol/acu/internal/testkit"
)

const testTopic = "piscine.results"

var testThresholds = map[string]float64{
	"c00-ex00": 50,
	"c00-ex01": 62.5,
	"c01-ex02": 70,
	"shell00":  33.333,
	"rush00":   99.995,
}

func newCluster(t *testing.T) (*kfake.Cluster, *kgo.Client) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, testTopic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return c, cl
}

// consumeAll reads n records of topic from the start.
func consumeAll(t *testing.T, c *kfake.Cluster, topic string, n int64) []*kgo.Record {
	t.Helper()
	out := testkit.ReadRecords(t, c.ListenAddrs(), topic, n)
	if int64(len(out)) != n {
		t.Fatalf("consumed %d records, want %d", len(out), n)
	}
	return out
}

// fakeClock advances by step at every call, from a fixed instant in the
// November exam session.
func fakeClock(step time.Duration) func() time.Time {
	start := time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)
	var n atomic.Int64
	return func() time.Time { return start.Add(time.Duration(n.Add(1)) * step) }
}

func distanceKm(lat1, lon1, lat2, lon2 float64) float64 {
	const r = 6371.0
	rad := math.Pi / 180
	dlat, dlon := (lat2-lat1)*rad, (lon2-lon1)*rad
	a := math.Sin(dlat/2)*math.Sin(dlat/2) + math.Cos(lat1*rad)*math.Cos(lat2*rad)*math.Sin(dlon/2)*math.Sin(dlon/2)
	return 2 * r * math.Asin(math.Sqrt(a))
}

var studentRE = regexp.MustCompile(`^stu-[a-z-]+-[0-9]{4,}$`)

func TestRunKfake(t *testing.T) {
	c, cl := newCluster(t)
	o := Options{
		Rate:           20000,
		Count:          2000,
		Thresholds:     testThresholds,
		FailShare:      0.1,
		DuplicateShare: 0.05,
		MalformedShare: 0.02,
		RetryAfter:     5 * time.Millisecond, // so that retakes happen within the run
		Seed:           42,
	}
	var progress bytes.Buffer
	st, err := Run(context.Background(), cl, o, &progress)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("stats %+v", st)
	if st.Sent != 2000 {
		t.Fatalf("Sent = %d, want 2000", st.Sent)
	}
	if st.Events+st.Duplicates+st.Malformed != st.Sent {
		t.Errorf("events %d + duplicates %d + malformed %d != sent %d", st.Events, st.Duplicates, st.Malformed, st.Sent)
	}
	if st.Seed != 42 {
		t.Errorf("Seed = %d", st.Seed)
	}
	if !strings.HasSuffix(progress.String(), "\n") || !strings.Contains(progress.String(), "sent 2000 records") {
		t.Errorf("progress output %q", progress.String())
	}

	recs := consumeAll(t, c, testTopic, st.Sent)
	var malformed, withoutID, failing, distinct, dups int64
	// Retakes (a student's later result on an exercise they failed) fail
	// at their own rate, and how many fall within the run depends on the
	// wall clock (RetryAfter): the share is asserted on first attempts.
	var firstTries, firstFailing int64
	failed := map[[2]string]bool{}
	byID := map[string][]byte{}
	kinds := map[string]bool{}
	for _, r := range recs {
		var kind string
		for _, h := range r.Headers {
			if h.Key == HeaderMalformed {
				kind = string(h.Value)
			}
		}
		res, perr := event.Parse(r.Value)
		if kind != "" {
			malformed++
			kinds[strings.SplitN(kind, "/", 2)[0]] = true
			if perr == nil {
				t.Errorf("malformed record %s accepted by event.Parse: %.200s", kind, r.Value)
			}
			continue
		}
		if perr != nil {
			t.Errorf("valid record rejected: %v: %s", perr, r.Value)
			continue
		}
		if string(r.Key) != res.StudentID {
			t.Errorf("key %q != student_id %q", r.Key, res.StudentID)
		}
		if !studentRE.MatchString(res.StudentID) {
			t.Errorf("student id %q", res.StudentID)
		}
		th, ok := testThresholds[res.ExerciseID]
		if !ok {
			t.Errorf("unknown exercise %q", res.ExerciseID)
		}
		if res.EventID == "" {
			withoutID++
		} else if !regexp.MustCompile(`^evt-[0-9a-f]{16}$`).MatchString(res.EventID) {
			t.Errorf("event_id %q", res.EventID)
		}
		if prev, seen := byID[res.ID]; seen {
			dups++
			if !bytes.Equal(prev, r.Value) {
				t.Errorf("identity %s has two different values:\n%s\n%s", res.ID, prev, r.Value)
			}
			continue
		}
		byID[res.ID] = r.Value
		distinct++
		if res.Metric < th {
			failing++
		}
		if se := [2]string{res.StudentID, res.ExerciseID}; !failed[se] {
			firstTries++
			if res.Metric < th {
				firstFailing++
				failed[se] = true
			}
		}
		near := math.Inf(1)
		for _, ce := range centres {
			near = min(near, distanceKm(res.Latitude, res.Longitude, ce.Lat, ce.Lon))
		}
		if near > 2 {
			t.Errorf("position %v,%v is %.1f km from the nearest centre", res.Latitude, res.Longitude, near)
		}
	}
	if malformed != st.Malformed || malformed == 0 {
		t.Errorf("malformed records %d, Stats.Malformed %d", malformed, st.Malformed)
	}
	if len(kinds) < 4 {
		t.Errorf("malformed kinds %v: expected a rotation through several", kinds)
	}
	if dups != st.Duplicates || dups == 0 {
		t.Errorf("duplicate records %d, Stats.Duplicates %d", dups, st.Duplicates)
	}
	if distinct != st.Events {
		t.Errorf("distinct events %d, Stats.Events %d", distinct, st.Events)
	}
	if failing != st.Failing {
		t.Errorf("failing events %d, Stats.Failing %d", failing, st.Failing)
	}
	if share := float64(firstFailing) / float64(firstTries); math.Abs(share-0.1) > 0.025 {
		t.Errorf("failing share of first attempts %.3f, want about 0.1", share)
	}
	if share := float64(withoutID) / float64(distinct); math.Abs(share-0.1) > 0.03 {
		t.Errorf("share without event_id %.3f, want about 0.1", share)
	}
	if st.Retries == 0 {
		t.Errorf("no retakes")
	}
	if share := float64(malformed) / float64(st.Sent); math.Abs(share-0.02) > 0.01 {
		t.Errorf("malformed share %.3f, want about 0.02", share)
	}
}

func TestSameSeedSameSequence(t *testing.T) {
	run := func(seed int64) map[int32][]string {
		c, cl := newCluster(t)
		o := Options{
			Rate: 1e6, Count: 3000, Thresholds: testThresholds, Seed: seed,
			FailShare: 0.2, DuplicateShare: 0.05, MalformedShare: 0.02, RetryAfter: time.Second,
			Now: fakeClock(10 * time.Millisecond),
		}
		st, err := Run(context.Background(), cl, o, nil)
		if err != nil {
			t.Fatal(err)
		}
		if st.Retries == 0 {
			t.Errorf("seed %d: no retakes", seed)
		}
		out := map[int32][]string{}
		for _, r := range consumeAll(t, c, testTopic, st.Sent) {
			out[r.Partition] = append(out[r.Partition], string(r.Key)+"\x00"+string(r.Value))
		}
		return out
	}
	a, b, other := run(7), run(7), run(8)
	for p := range int32(3) {
		if len(a[p]) == 0 {
			t.Errorf("partition %d is empty", p)
		}
		if len(a[p]) != len(b[p]) {
			t.Fatalf("partition %d: %d vs %d records", p, len(a[p]), len(b[p]))
		}
		for i := range a[p] {
			if a[p][i] != b[p][i] {
				t.Fatalf("partition %d record %d differs:\n%s\n%s", p, i, a[p][i], b[p][i])
			}
		}
	}
	if fmt.Sprint(a[0][:10]) == fmt.Sprint(other[0][:10]) {
		t.Errorf("seeds 7 and 8 produced the same records")
	}
}

func TestRateRespected(t *testing.T) {
	_, cl := newCluster(t)
	st, err := Run(context.Background(), cl, Options{Rate: 400, Count: 200, Thresholds: testThresholds, Seed: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The first record goes at once, record n at n/400 s: 199/400 ≈ 0.5 s.
	if st.Elapsed < 450*time.Millisecond || st.Elapsed > 5*time.Second {
		t.Errorf("200 records at 400/s took %v, want about 0.5 s", st.Elapsed)
	}
	if st.Sent != 200 {
		t.Errorf("Sent = %d", st.Sent)
	}
}

func TestDurationAndCancel(t *testing.T) {
	_, cl := newCluster(t)
	st, err := Run(context.Background(), cl, Options{Rate: 1000, Duration: 300 * time.Millisecond, Thresholds: testThresholds}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.Sent < 150 || st.Sent > 400 {
		t.Errorf("Duration 300ms at 1000/s sent %d records", st.Sent)
	}
	if st.Seed == 0 {
		t.Errorf("time-based seed not reported")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	st, err = Run(ctx, cl, Options{Rate: 1000, Thresholds: testThresholds}, nil)
	if err != nil {
		t.Fatalf("cancellation should stop the run cleanly: %v", err)
	}
	if st.Sent < 150 || st.Sent > 400 {
		t.Errorf("300ms at 1000/s until cancelled sent %d records", st.Sent)
	}
}

func TestProduceErrorReturned(t *testing.T) {
	_, cl := newCluster(t)
	// kfake does not create unknown topics by default.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl2, err := kgo.NewClient(kgo.SeedBrokers(cl.OptValue(kgo.SeedBrokers).([]string)...), kgo.RecordDeliveryTimeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer cl2.Close()
	_, err = Run(ctx, cl2, Options{Topic: "no.such.topic", Rate: 100, Count: 10, Thresholds: testThresholds}, nil)
	t.Log(err)
	if err == nil || !strings.Contains(err.Error(), "no.such.topic") {
		t.Fatalf("err = %v, want a produce error naming the topic", err)
	}
}

func TestCancelWithDeadCluster(t *testing.T) {
	defer func(d time.Duration) { drainTimeout = d }(drainTimeout)
	drainTimeout = 300 * time.Millisecond
	c, cl := newCluster(t)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		time.Sleep(200 * time.Millisecond)
		c.Close() // the cluster dies, then the user presses Ctrl-C
		time.Sleep(200 * time.Millisecond)
		cancel()
	}()
	start := time.Now()
	st, err := Run(ctx, cl, Options{Rate: 2000, Thresholds: testThresholds}, nil)
	t.Logf("after %v: %+v, %v", time.Since(start), st, err)
	if err == nil || !strings.Contains(err.Error(), "not acknowledged") {
		t.Errorf("err = %v, want records not acknowledged", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Run took %v to give up", d)
	}
}

func TestValidate(t *testing.T) {
	th := map[string]float64{"ex-01": 50}
	cases := []struct {
		name string
		o    Options
		want string // substring of the error; "" for valid
	}{
		{"defaults", Options{Thresholds: th}, ""},
		{"full", Options{Topic: "t.1_x-y", Rate: 5000, Count: 10, Duration: time.Minute, Students: 42,
			Thresholds: th, FailShare: 1, RetryShare: None, RetryAfter: time.Second, DuplicateShare: 0.5,
			MalformedShare: 0.1, OmitEventIDShare: None, Seed: 3}, ""},
		{"no thresholds", Options{}, "at least one exercise"},
		{"negative rate", Options{Thresholds: th, Rate: -1}, "rate"},
		{"NaN rate", Options{Thresholds: th, Rate: math.NaN()}, "rate"},
		{"infinite rate", Options{Thresholds: th, Rate: math.Inf(1)}, "rate"},
		{"negative count", Options{Thresholds: th, Count: -1}, "count"},
		{"negative duration", Options{Thresholds: th, Duration: -time.Second}, "duration"},
		{"negative students", Options{Thresholds: th, Students: -5}, "students"},
		{"too many students", Options{Thresholds: th, Students: MaxStudents + 1}, "students"},
		{"negative retry-after", Options{Thresholds: th, RetryAfter: -1}, "retry-after"},
		{"fail share above 1", Options{Thresholds: th, FailShare: 1.5}, "fail-share"},
		{"negative dup share", Options{Thresholds: th, DuplicateShare: -0.1}, "duplicate-share"},
		{"NaN malformed share", Options{Thresholds: th, MalformedShare: math.NaN()}, "malformed-share"},
		{"retry share", Options{Thresholds: th, RetryShare: 2}, "retry-share"},
		{"omit share", Options{Thresholds: th, OmitEventIDShare: -0.5}, "omit-event-id-share"},
		{"bad topic", Options{Thresholds: th, Topic: "a/b"}, "topic"},
		{"bad exercise id", Options{Thresholds: map[string]float64{"ex 01": 50}}, "exercise id"},
		{"threshold above 100", Options{Thresholds: map[string]float64{"ex": 101}}, "between 0 and 100"},
		{"NaN threshold", Options{Thresholds: map[string]float64{"ex": math.NaN()}}, "between 0 and 100"},
		{"nothing can fail", Options{Thresholds: map[string]float64{"ex": 0}}, "no result can fail"},
		{"nothing fails on purpose", Options{Thresholds: map[string]float64{"ex": 0}, FailShare: None}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.o.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("unexpected error: %v", err)
			case tc.want != "" && err == nil:
				t.Errorf("no error, want one about %q", tc.want)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
		})
	}
	err := Options{Rate: -1, Count: -1}.Validate()
	if err == nil || strings.Count(err.Error(), "\n") < 2 {
		t.Errorf("want every problem reported, got %v", err)
	}
}

// TestMaxRate measures the sustained rate into kfake; it is slow, so it
// only runs with ACU_PRODUCE_MAXRATE=1 (go test -run MaxRate -v).
func TestMaxRate(t *testing.T) {
	if os.Getenv("ACU_PRODUCE_MAXRATE") == "" {
		t.Skip("set ACU_PRODUCE_MAXRATE=1 to measure")
	}
	_, cl := newCluster(t)
	st, err := Run(context.Background(), cl, Options{Rate: MaxRate, Count: 100000, Thresholds: testThresholds,
		FailShare: 0.1, DuplicateShare: 0.05, MalformedShare: 0.01, Seed: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d records in %v: %.0f records/s", st.Sent, st.Elapsed, float64(st.Sent)/st.Elapsed.Seconds())

	// CPU cost at a steady 20,000/s (this process, kfake included).
	var before, after syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	st, err = Run(context.Background(), cl, Options{Rate: 20000, Duration: 3 * time.Second, Thresholds: testThresholds, Seed: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &after)
	cpu := time.Duration(after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano())
	t.Logf("20000/s for %v: sent %d (%.0f/s), CPU %v (%.0f%% of one core, kfake included)",
		st.Elapsed, st.Sent, float64(st.Sent)/st.Elapsed.Seconds(), cpu, 100*cpu.Seconds()/st.Elapsed.Seconds())
}
