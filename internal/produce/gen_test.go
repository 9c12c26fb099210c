package produce

import (
	"bytes"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/acu-patrol/acu/internal/event"
)

func testGenerator(t *testing.T, o Options, seed int64) *generator {
	t.Helper()
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	return newGenerator(o.WithDefaults(), seed, &counters{})
}

// TestGeneratorDistribution checks the shares over many events: failing
// share exactly controlled, retakes passing about 60 % of the time, score
// shapes, id-less identities unique.
func TestGeneratorDistribution(t *testing.T) {
	const n = 200_000
	g := testGenerator(t, Options{
		Thresholds: testThresholds, FailShare: 0.1, RetryShare: 0.6, RetryAfter: 20 * time.Second,
		Students: 100_000,                     // few (student, exercise) pairs with a retake already pending
		Now:      fakeClock(time.Millisecond), // 1000 events/s of event time
	}, 99)
	var fail, retakes, retakePass, pass, pass60to100, idless int
	var hist [101]int
	ids := map[string]bool{}
	for range n {
		rec, info := g.next()
		if info.kind != kindValid {
			t.Fatalf("kind %v without duplicates or malformed records", info.kind)
		}
		res, err := event.Parse(rec.Value)
		if err != nil {
			t.Fatalf("%v: %s", err, rec.Value)
		}
		if ids[res.ID] {
			t.Fatalf("identity %s seen twice", res.ID)
		}
		ids[res.ID] = true
		if res.EventID == "" {
			idless++
		}
		th := testThresholds[res.ExerciseID]
		if (res.Metric < th) != info.fail {
			t.Fatalf("metric %v threshold %v but fail=%v", res.Metric, th, info.fail)
		}
		if s := strconv.FormatFloat(res.Metric, 'f', -1, 64); strings.Contains(s, ".") && len(s)-strings.Index(s, ".") > 3 {
			t.Fatalf("metric %s has more than 2 decimals", s)
		}
		if info.fail {
			fail++
		} else {
			pass++
			if res.Metric >= 60 {
				pass60to100++
			}
			if th <= 50 {
				hist[int(res.Metric)]++
			}
		}
		if info.retake {
			retakes++
			if !info.fail {
				retakePass++
			}
		}
	}
	if share := float64(fail) / n; math.Abs(share-0.1) > 0.003 {
		t.Errorf("failing share %.4f, want 0.1", share)
	}
	if share := float64(idless) / n; math.Abs(share-0.1) > 0.005 {
		t.Errorf("id-less share %.4f, want 0.1", share)
	}
	// Each failure is retaken with probability 0.6: those of the last
	// RetryAfter or so are still pending when the run stops.
	if want, got := 0.6*float64(fail), retakes+len(g.retakes); math.Abs(float64(got)-want) > 0.03*want {
		t.Errorf("%d retakes + %d pending for %d failures, want about %.0f", retakes, len(g.retakes), fail, want)
	}
	if share := float64(retakePass) / float64(retakes); math.Abs(share-retakeSuccess) > 0.03 {
		t.Errorf("retakes pass %.3f of the time, want about %v", share, retakeSuccess)
	}
	if share := float64(pass60to100) / float64(pass); share < 0.9 {
		t.Errorf("only %.3f of passing scores are in 60..100", share)
	}
	mode := 60
	for i := 60; i < 100; i++ { // 100 itself holds the perfect scores
		if hist[i] > hist[mode] {
			mode = i
		}
	}
	if mode < 75 || mode > 85 {
		t.Errorf("passing score mode %d, want about 80", mode)
	}
}

func TestScoresAtEdgeThresholds(t *testing.T) {
	g := testGenerator(t, Options{Thresholds: testThresholds}, 5)
	for _, th := range []float64{0.001, 0.01, 0.07, 0.29, 1.005, 33.333, 50, 62.5, 99.99, 99.995, 100} {
		for range 20_000 {
			p, f := g.passScore(th), g.failScore(th)
			for _, v := range []float64{p, f} {
				// What a consumer sees is the parsed JSON text.
				back, _ := strconv.ParseFloat(strconv.FormatFloat(v, 'f', -1, 64), 64)
				if back != v || math.Round(v*100)/100 != v {
					t.Fatalf("threshold %v: %v is not a 2-decimal value", th, v)
				}
			}
			if p < th || p > 100 {
				t.Fatalf("threshold %v: passing score %v", th, p)
			}
			if f >= th || f < 0 {
				t.Fatalf("threshold %v: failing score %v", th, f)
			}
		}
	}
	if got := ceilCent(0.29); got != 0.29 {
		t.Errorf("ceilCent(0.29) = %v", got)
	}
	if got := floorCentBelow(0.29); got != 0.28 {
		t.Errorf("floorCentBelow(0.29) = %v", got)
	}
	if got := floorCentBelow(0.001); got != 0 {
		t.Errorf("floorCentBelow(0.001) = %v", got)
	}
}

func TestMalformedAllRejected(t *testing.T) {
	g := testGenerator(t, Options{Thresholds: testThresholds, MalformedShare: 1}, 3)
	seen := map[string]int{}
	for range 600 {
		rec, info := g.next()
		if info.kind != kindMalformed {
			t.Fatalf("kind %v with MalformedShare 1", info.kind)
		}
		var kind string
		for _, h := range rec.Headers {
			if h.Key == HeaderMalformed {
				kind = string(h.Value)
			}
		}
		seen[strings.SplitN(kind, "/", 2)[0]]++
		if _, err := event.Parse(rec.Value); err == nil {
			t.Errorf("%s accepted: %.300s", kind, rec.Value)
		} else if testing.Verbose() && seen[strings.SplitN(kind, "/", 2)[0]] <= 6 {
			t.Logf("%-40s %v", kind, err)
		}
		if strings.HasPrefix(kind, "oversized") && len(rec.Value) <= event.MaxSize {
			t.Errorf("oversized record is %d bytes", len(rec.Value))
		}
	}
	for _, k := range MalformedKinds {
		if seen[k] != 60 {
			t.Errorf("kind %s seen %d times, want 60", k, seen[k])
		}
	}
}

func TestDuplicatesAndPopulation(t *testing.T) {
	g := testGenerator(t, Options{Thresholds: testThresholds, DuplicateShare: 0.3, Students: 2000}, 11)
	values := map[string]int{}
	var dups int
	for range 20_000 {
		rec, info := g.next()
		if info.kind == kindDuplicate {
			dups++
			if values[string(rec.Value)] == 0 {
				t.Fatalf("duplicate of a record never sent: %s", rec.Value)
			}
		}
		values[string(rec.Value)]++
	}
	if share := float64(dups) / float64(20_000-dups); math.Abs(share-0.3) > 0.02 {
		t.Errorf("duplicate share %.3f of events, want 0.3", share)
	}
	for _, n := range values {
		if n > 2 {
			t.Fatalf("a value was sent %d times", n)
		}
	}
	seenIDs := map[string]bool{}
	perCentre := map[string]int{}
	for _, s := range g.students {
		if seenIDs[s.id] {
			t.Fatalf("student id %s twice", s.id)
		}
		seenIDs[s.id] = true
		if err := event.ValidIdent(s.id); err != nil {
			t.Fatalf("student id %q: %v", s.id, err)
		}
		slug := s.id[len("stu-") : len(s.id)-len("-0000")]
		for _, c := range centres {
			if c.Slug == slug {
				perCentre[slug]++
				if math.Abs(s.lat-c.Lat) > jitterDeg+1e-9 || math.Abs(s.lon-c.Lon) > jitterDeg+1e-9 {
					t.Fatalf("%s at %v,%v is not within ±%v° of %s", s.id, s.lat, s.lon, jitterDeg, c.Name)
				}
			}
		}
	}
	if perCentre["paris"] < perCentre["lyon"] || perCentre["angouleme"] == 0 {
		t.Errorf("population per centre %v", perCentre)
	}
}

func TestGeneratorDeterministic(t *testing.T) {
	o := Options{Thresholds: testThresholds, FailShare: 0.3, DuplicateShare: 0.1, MalformedShare: 0.05,
		RetryAfter: 50 * time.Millisecond}
	seq := func(seed int64) []byte {
		o.Now = fakeClock(time.Millisecond)
		g := testGenerator(t, o, seed)
		var b bytes.Buffer
		for range 5000 {
			rec, _ := g.next()
			b.Write(rec.Key)
			b.WriteByte(0)
			b.Write(rec.Value)
			b.WriteByte('\n')
		}
		return b.Bytes()
	}
	if !bytes.Equal(seq(1), seq(1)) {
		t.Error("same seed, different sequences")
	}
	if bytes.Equal(seq(1), seq(2)) {
		t.Error("different seeds, same sequence")
	}
}

func TestParisOffset(t *testing.T) {
	loc, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Skipf("no tzdata: %v", err)
	}
	g := &generator{}
	r := rand.New(rand.NewPCG(1, 2))
	base := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	check := func(ts time.Time) {
		_, want := ts.In(loc).Zone()
		_, got := g.paris(ts).Zone()
		if got != want {
			t.Fatalf("%v: offset %d, Europe/Paris has %d", ts, got, want)
		}
	}
	for range 20_000 {
		check(base.Add(time.Duration(r.Int64N(int64(12 * 365 * 24 * time.Hour)))))
	}
	for _, y := range []int{2025, 2026, 2027} { // around the switches
		for _, m := range []time.Month{time.March, time.October} {
			s := lastSunday(y, m)
			for _, d := range []time.Duration{-time.Millisecond, 0, time.Millisecond} {
				check(s.Add(d))
			}
		}
	}
}
