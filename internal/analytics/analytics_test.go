package analytics_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/acu-patrol/acu/internal/analytics"
	"github.com/acu-patrol/acu/internal/event"
	"github.com/acu-patrol/acu/internal/store"
)

// ---- An independent computation of the §2.4 report, for comparison. ----

// refGeohash is the textbook geohash: bisect longitude and latitude in
// turn, bit 1 for the upper half (value >= middle), 5 bits per base-32
// character. It returns the cell and its centre.
func refGeohash(lat, lon float64, chars int) (string, float64, float64) {
	const alphabet = "0123456789bcdefghjkmnpqrstuvwxyz"
	latLo, latHi, lonLo, lonHi := -90.0, 90.0, -180.0, 180.0
	out := make([]byte, 0, chars)
	ch, nbits, lonTurn := 0, 0, true
	for len(out) < chars {
		if lonTurn {
			if mid := (lonLo + lonHi) / 2; lon >= mid {
				ch, lonLo = ch<<1|1, mid
			} else {
				ch, lonHi = ch<<1, mid
			}
		} else {
			if mid := (latLo + latHi) / 2; lat >= mid {
				ch, latLo = ch<<1|1, mid
			} else {
				ch, latHi = ch<<1, mid
			}
		}
		lonTurn = !lonTurn
		if nbits++; nbits == 5 {
			out = append(out, alphabet[ch])
			ch, nbits = 0, 0
		}
	}
	return string(out), (latLo + latHi) / 2, (lonLo + lonHi) / 2
}

// The report as §2.4 spells it, declared again here.
type refReport struct {
	GeneratedAt string        `json:"generated_at"`
	Exercises   []refExercise `json:"exercises"`
	Hotspots    []refHotspots `json:"hotspots"`
	Recovery    refRecovery   `json:"recovery"`
}

type refExercise struct {
	ExerciseID string   `json:"exercise_id"`
	Results    int64    `json:"results"`
	MeanMetric float64  `json:"mean_metric"`
	PassRate   *float64 `json:"pass_rate"`
	Threshold  *float64 `json:"threshold"`
}

type refHotspots struct {
	ExerciseID string    `json:"exercise_id"`
	Cells      []refCell `json:"cells"`
}

type refCell struct {
	Geohash   string  `json:"geohash"`
	Latitude  float64 `json:"latitude"`
	Longitude float64 `json:"longitude"`
	Failures  int64   `json:"failures"`
}

type refRecovery struct {
	Deployments  int64           `json:"deployments"`
	Recovered    int64           `json:"recovered"`
	StillFailing int64           `json:"still_failing"`
	NoAttempt    int64           `json:"no_attempt"`
	Pending      int64           `json:"pending"`
	Rate         *float64        `json:"rate"`
	ByExercise   []refExRecovery `json:"by_exercise"`
}

type refExRecovery struct {
	ExerciseID   string   `json:"exercise_id"`
	Deployments  int64    `json:"deployments"`
	Recovered    int64    `json:"recovered"`
	StillFailing int64    `json:"still_failing"`
	NoAttempt    int64    `json:"no_attempt"`
	Pending      int64    `json:"pending"`
	Rate         *float64 `json:"rate"`
}

func ratio(num, den int64) *float64 {
	if den == 0 {
		return nil
	}
	r := float64(num) / float64(den)
	return &r
}

// refCompute is the brute-force report: every number from the raw inputs.
func refCompute(results []event.Result, th analytics.Thresholds, deps []store.Deployment, precision, top int, at time.Time) []byte {
	if precision == 0 {
		precision = 5
	}
	if top <= 0 {
		top = 10
	}
	rep := refReport{GeneratedAt: at.UTC().Format(time.RFC3339Nano), Exercises: []refExercise{}, Hotspots: []refHotspots{}}
	byEx := map[string][]event.Result{}
	var ids []string
	for _, r := range results {
		if byEx[r.ExerciseID] == nil {
			ids = append(ids, r.ExerciseID)
		}
		byEx[r.ExerciseID] = append(byEx[r.ExerciseID], r)
	}
	slices.Sort(ids)
	for _, id := range ids {
		rs := byEx[id]
		sum := new(big.Rat)
		for _, r := range rs {
			sum.Add(sum, new(big.Rat).SetFloat64(r.Metric))
		}
		mean, _ := new(big.Rat).Quo(sum, big.NewRat(int64(len(rs)), 1)).Float64()
		ex := refExercise{ExerciseID: id, Results: int64(len(rs)), MeanMetric: mean}
		t, ok := th[id]
		if !ok {
			rep.Exercises = append(rep.Exercises, ex)
			continue
		}
		ex.Threshold = &t
		var passed int64
		type agg struct {
			n        int64
			lat, lon float64
		}
		cells := map[string]*agg{}
		for _, r := range rs {
			if r.Metric >= t {
				passed++
				continue
			}
			h, clat, clon := refGeohash(r.Latitude, r.Longitude, precision)
			if cells[h] == nil {
				cells[h] = &agg{lat: clat, lon: clon}
			}
			cells[h].n++
		}
		ex.PassRate = ratio(passed, int64(len(rs)))
		rep.Exercises = append(rep.Exercises, ex)
		if len(cells) == 0 {
			continue
		}
		var list []refCell
		for h, c := range cells {
			list = append(list, refCell{Geohash: h, Latitude: c.lat, Longitude: c.lon, Failures: c.n})
		}
		// Selection sort: most failures first, then geohash ascending.
		for i := range list {
			best := i
			for j := i + 1; j < len(list); j++ {
				if list[j].Failures > list[best].Failures ||
					list[j].Failures == list[best].Failures && list[j].Geohash < list[best].Geohash {
					best = j
				}
			}
			list[i], list[best] = list[best], list[i]
		}
		if len(list) > top {
			list = list[:top]
		}
		rep.Hotspots = append(rep.Hotspots, refHotspots{ExerciseID: id, Cells: list})
	}
	rec := &rep.Recovery
	rec.ByExercise = []refExRecovery{}
	per := map[string]*refExRecovery{}
	for _, d := range deps {
		var rec2 refExRecovery
		switch d.Status {
		case "recovered":
			rec2.Recovered = 1
		case "still-failing":
			rec2.StillFailing = 1
		case "no-attempt":
			rec2.NoAttempt = 1
		case "dispatching", "dispatched", "following-up":
			rec2.Pending = 1
		default:
			continue
		}
		e := per[d.ExerciseID]
		if e == nil {
			e = &refExRecovery{ExerciseID: d.ExerciseID}
			per[d.ExerciseID] = e
		}
		e.Deployments++
		e.Recovered += rec2.Recovered
		e.StillFailing += rec2.StillFailing
		e.NoAttempt += rec2.NoAttempt
		e.Pending += rec2.Pending
		rec.Deployments++
		rec.Recovered += rec2.Recovered
		rec.StillFailing += rec2.StillFailing
		rec.NoAttempt += rec2.NoAttempt
		rec.Pending += rec2.Pending
	}
	rec.Rate = ratio(rec.Recovered, rec.Recovered+rec.StillFailing)
	var exIDs []string
	for id := range per {
		exIDs = append(exIDs, id)
	}
	slices.Sort(exIDs)
	for _, id := range exIDs {
		e := per[id]
		e.Rate = ratio(e.Recovered, e.Recovered+e.StillFailing)
		rec.ByExercise = append(rec.ByExercise, *e)
	}
	b, err := json.Marshal(rep)
	if err != nil {
		panic(err)
	}
	return b
}

// ---- Random datasets. ----

var centres = []struct{ lat, lon float64 }{
	{48.8566, 2.3522},   // Paris
	{45.7640, 4.8357},   // Lyon
	{43.2965, 5.3698},   // Marseille
	{50.6292, 3.0573},   // Lille
	{43.6047, 1.4442},   // Toulouse
	{-21.1151, 55.5364}, // Saint-Denis (Réunion)
}

// edges are points on the borders of the geohash grid.
var edges = []struct{ lat, lon float64 }{
	{90, 180}, {-90, -180}, {90, -180}, {-90, 180}, {0, 0}, {45, 90}, {-45, -22.5},
}

// decimal returns the float64 nearest to a decimal number with d decimals,
// as a producer writing JSON would send it.
func decimal(rng *rand.Rand, lo, hi float64, d int) float64 {
	x := lo + rng.Float64()*(hi-lo)
	v, err := strconv.ParseFloat(strconv.FormatFloat(x, 'f', d, 64), 64)
	if err != nil {
		panic(err)
	}
	return min(max(v, lo), hi)
}

type dataset struct {
	results   []event.Result
	th        analytics.Thresholds
	deps      []store.Deployment
	precision int
	top       int
	at        time.Time
}

var statuses = []string{"dispatching", "dispatched", "following-up", "recovered", "still-failing", "no-attempt", "notify-rejected", "", "lost"}

func randomThreshold(rng *rand.Rand) float64 {
	switch rng.IntN(6) {
	case 0:
		return 50
	case 1:
		return 62.5
	case 2:
		return 33.33
	case 3:
		return []float64{0, 100}[rng.IntN(2)]
	default:
		return decimal(rng, 0, 100, rng.IntN(3))
	}
}

func randomDataset(rng *rand.Rand) dataset {
	ds := dataset{th: analytics.Thresholds{}}
	nex := 1 + rng.IntN(6)
	exercises := make([]string, nex)
	for i := range exercises {
		exercises[i] = fmt.Sprintf("ex-%02d", i+1)
		if rng.IntN(10) < 7 {
			ds.th[exercises[i]] = randomThreshold(rng)
		}
	}
	ds.th["ex-no-results"] = 40
	ds.precision = []int{0, 1, 2, 3, 4, 5, 5, 5, 6, 7, 8, 12}[rng.IntN(12)]
	ds.top = rng.IntN(13)
	spread := []float64{0.01, 0.05, 0.3, 2}[rng.IntN(4)]
	n := rng.IntN(1500)
	if rng.IntN(10) == 0 {
		n = rng.IntN(3)
	}
	base := time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)
	for i := range n {
		ex := exercises[rng.IntN(nex)]
		var lat, lon float64
		if rng.IntN(100) == 0 {
			e := edges[rng.IntN(len(edges))]
			lat, lon = e.lat, e.lon
		} else {
			c := centres[rng.IntN(len(centres))]
			d := rng.IntN(7)
			lat = decimal(rng, c.lat-spread, c.lat+spread, d)
			lon = decimal(rng, c.lon-spread, c.lon+spread, d)
		}
		metric := decimal(rng, 0, 100, rng.IntN(7))
		if t, ok := ds.th[ex]; ok && rng.IntN(7) == 0 {
			metric = t // exactly at the threshold: passes
		}
		ds.results = append(ds.results, event.Result{
			ID: fmt.Sprintf("r%d", i), Timestamp: base.Add(time.Duration(rng.IntN(3600)) * time.Second),
			StudentID: fmt.Sprintf("s%d", rng.IntN(200)), ExerciseID: ex,
			Latitude: lat, Longitude: lon, Metric: metric,
		})
	}
	for i := range rng.IntN(60) {
		ex := "ex-99"
		if rng.IntN(5) > 0 {
			ex = exercises[rng.IntN(nex)]
		}
		ds.deps = append(ds.deps, store.Deployment{
			WorkflowID: fmt.Sprintf("patrol-d%d", i), ExerciseID: ex, Status: statuses[rng.IntN(len(statuses))],
		})
	}
	ds.at = time.Date(2026, 11, 28, 11, 0, 0, rng.IntN(1e9), time.FixedZone("CET", 3600))
	return ds
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// roundTrip encodes v as JSON and decodes it into a new T, as a Temporal
// payload or the stored state would.
func roundTrip[T any](t *testing.T, v *T) *T {
	t.Helper()
	var out T
	if err := json.Unmarshal(mustJSON(t, v), &out); err != nil {
		t.Fatal(err)
	}
	return &out
}

func fullJSON(t *testing.T, ds dataset) []byte {
	t.Helper()
	rep, err := analytics.FullRecompute(ds.results, ds.th, ds.deps, ds.precision, ds.top, ds.at)
	if err != nil {
		t.Fatal(err)
	}
	return mustJSON(t, rep)
}

// incremental splits the results in random chunks, aggregates each in its
// own Delta, merges them in random order (Deltas and the State travelling
// through JSON now and then) and builds the report.
func incremental(t *testing.T, rng *rand.Rand, ds dataset) []byte {
	t.Helper()
	perm := rng.Perm(len(ds.results))
	nchunks := 1 + rng.IntN(8)
	cuts := []int{0, len(perm)}
	for range nchunks - 1 {
		cuts = append(cuts, rng.IntN(len(perm)+1))
	}
	slices.Sort(cuts)
	var deltas []*analytics.Delta
	for i := 0; i+1 < len(cuts); i++ {
		d := analytics.NewDelta()
		for _, k := range perm[cuts[i]:cuts[i+1]] {
			if err := d.Add(ds.results[k], ds.th, ds.precision); err != nil {
				t.Fatal(err)
			}
		}
		if rng.IntN(2) == 0 {
			d = roundTrip(t, d)
		}
		deltas = append(deltas, d)
	}
	rng.Shuffle(len(deltas), func(i, j int) { deltas[i], deltas[j] = deltas[j], deltas[i] })
	st := &analytics.State{}
	if rng.IntN(2) == 0 {
		var err error
		if st, err = analytics.NewState(ds.precision); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range deltas {
		if err := st.Merge(d); err != nil {
			t.Fatal(err)
		}
		if rng.IntN(3) == 0 {
			st = roundTrip(t, st)
		}
	}
	rep, err := analytics.Build(st, ds.th, ds.deps, ds.at, ds.top)
	if err != nil {
		t.Fatal(err)
	}
	return mustJSON(t, rep)
}

// TestRandomDatasets: on 200 random datasets, FullRecompute equals the
// brute-force report, and the incremental path in random chunks and order
// equals FullRecompute, byte for byte.
func TestRandomDatasets(t *testing.T) {
	rng := rand.New(rand.NewPCG(2026, 1128))
	for i := range 200 {
		ds := randomDataset(rng)
		full := fullJSON(t, ds)
		if want := refCompute(ds.results, ds.th, ds.deps, ds.precision, ds.top, ds.at); !bytes.Equal(full, want) {
			t.Fatalf("dataset %d: full recompute\n%s\nbrute force\n%s", i, full, want)
		}
		for k := range 3 {
			if inc := incremental(t, rng, ds); !bytes.Equal(inc, full) {
				t.Fatalf("dataset %d, split %d: incremental\n%s\nfull\n%s", i, k, inc, full)
			}
		}
	}
}

// ---- Threshold changes. ----

func res(id, ex string, metric, lat, lon float64) event.Result {
	return event.Result{ID: id, ExerciseID: ex, StudentID: "s-" + id, Metric: metric, Latitude: lat, Longitude: lon,
		Timestamp: time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)}
}

func deltaOf(t *testing.T, rs []event.Result, th analytics.Thresholds, precision int) *analytics.Delta {
	t.Helper()
	d := analytics.NewDelta()
	for _, r := range rs {
		if err := d.Add(r, th, precision); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

func mustMerge(t *testing.T, st *analytics.State, ds ...*analytics.Delta) {
	t.Helper()
	for _, d := range ds {
		if err := st.Merge(d); err != nil {
			t.Fatal(err)
		}
	}
}

func build(t *testing.T, st *analytics.State, th analytics.Thresholds, deps []store.Deployment, at time.Time) []byte {
	t.Helper()
	rep, err := analytics.Build(st, th, deps, at, 0)
	if err != nil {
		t.Fatal(err)
	}
	return mustJSON(t, rep)
}

func full(t *testing.T, rs []event.Result, th analytics.Thresholds, deps []store.Deployment, at time.Time) []byte {
	t.Helper()
	rep, err := analytics.FullRecompute(rs, th, deps, 0, 0, at)
	if err != nil {
		t.Fatal(err)
	}
	return mustJSON(t, rep)
}

func randomResults(rng *rand.Rand, n int, exercises []string, prefix string) []event.Result {
	var out []event.Result
	for i := range n {
		c := centres[rng.IntN(len(centres))]
		out = append(out, res(fmt.Sprintf("%s%d", prefix, i), exercises[rng.IntN(len(exercises))],
			decimal(rng, 0, 100, 2), decimal(rng, c.lat-0.05, c.lat+0.05, 5), decimal(rng, c.lon-0.05, c.lon+0.05, 5)))
	}
	return out
}

// TestThresholdChange follows a run after thresholds changed: Stale names
// exactly the changed exercises, Build and Merge refuse to mix thresholds,
// and rebuilding the stale exercises gives the full recomputation's report.
func TestThresholdChange(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	at := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	exercises := []string{"ex-changed", "ex-removed", "ex-added", "ex-same", "ex-none"}
	old := randomResults(rng, 3000, exercises, "old")
	thOld := analytics.Thresholds{"ex-changed": 50, "ex-removed": 40, "ex-same": 50}
	thNew := analytics.Thresholds{"ex-changed": 60, "ex-added": 70, "ex-same": 50, "ex-without-results": 10}

	st, err := analytics.NewState(0)
	if err != nil {
		t.Fatal(err)
	}
	mustMerge(t, st, deltaOf(t, old[:1000], thOld, 0), deltaOf(t, old[1000:], thOld, 0))
	if got := build(t, st, thOld, nil, at); !bytes.Equal(got, full(t, old, thOld, nil, at)) {
		t.Fatalf("report under the old thresholds differs from the full one")
	}

	wantStale := []string{"ex-added", "ex-changed", "ex-removed"}
	if got := st.Stale(thNew); !slices.Equal(got, wantStale) {
		t.Fatalf("Stale = %v, want %v", got, wantStale)
	}
	var se *analytics.StaleError
	if _, err := analytics.Build(st, thNew, nil, at, 0); !errors.As(err, &se) || !slices.Equal(se.Exercises, wantStale) {
		t.Fatalf("Build under new thresholds: %v, want a StaleError for %v", err, wantStale)
	}

	// New results judged with the new thresholds do not merge into the
	// stale exercises, and the refused Merge changes nothing.
	newer := randomResults(rng, 1500, exercises, "new")
	before := mustJSON(t, st)
	if err := st.Merge(deltaOf(t, newer, thNew, 0)); !errors.As(err, &se) || !slices.Equal(se.Exercises, wantStale) {
		t.Fatalf("Merge of a delta under new thresholds: %v, want a StaleError for %v", err, wantStale)
	}
	if after := mustJSON(t, st); !bytes.Equal(before, after) {
		t.Fatalf("a refused Merge changed the state")
	}

	// The run: rebuild the stale exercises over all their results, merge
	// the new results of the others.
	all := append(slices.Clone(old), newer...)
	for _, id := range wantStale {
		var rs []event.Result
		for _, r := range all {
			if r.ExerciseID == id {
				rs = append(rs, r)
			}
		}
		d := roundTrip(t, deltaOf(t, rs, thNew, 0))
		if err := st.Replace(id, d.Exercises[id]); err != nil {
			t.Fatal(err)
		}
	}
	var rest []event.Result
	for _, r := range newer {
		if !slices.Contains(wantStale, r.ExerciseID) {
			rest = append(rest, r)
		}
	}
	mustMerge(t, st, deltaOf(t, rest, thNew, 0))
	if got := st.Stale(thNew); len(got) != 0 {
		t.Fatalf("Stale after the rebuild = %v", got)
	}
	got, want := build(t, st, thNew, nil, at), full(t, all, thNew, nil, at)
	if !bytes.Equal(got, want) {
		t.Fatalf("after rebuild\n%s\nfull recompute\n%s", got, want)
	}
	if !bytes.Equal(want, refCompute(all, thNew, nil, 0, 0, at)) {
		t.Fatalf("full recompute differs from brute force")
	}

	// An exercise whose rebuild found no results leaves the state.
	if err := st.Replace("ex-added", nil); err != nil {
		t.Fatal(err)
	}
	if _, ok := st.Exercises["ex-added"]; ok {
		t.Fatalf("Replace with nil kept the exercise")
	}
}

// TestLateData: results that reach the store after a report was built,
// with event timestamps older than everything before, are counted by the
// next run, whatever their timestamps.
func TestLateData(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	th := analytics.Thresholds{"ex-01": 50, "ex-02": 75}
	at1 := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	at2 := at1.Add(time.Hour)
	first := randomResults(rng, 2000, []string{"ex-01", "ex-02"}, "a")
	late := randomResults(rng, 500, []string{"ex-01", "ex-02", "ex-03"}, "late")
	for i := range late {
		late[i].Timestamp = time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC) // a day before
	}
	st, err := analytics.NewState(0)
	if err != nil {
		t.Fatal(err)
	}
	mustMerge(t, st, deltaOf(t, first, th, 0))
	st.Watermark = int64(len(first))
	r1 := build(t, st, th, nil, at1)
	if !bytes.Equal(r1, full(t, first, th, nil, at1)) {
		t.Fatalf("first report differs from the full one")
	}
	st = roundTrip(t, st) // stored between runs
	mustMerge(t, st, deltaOf(t, late[:200], th, 0), deltaOf(t, late[200:], th, 0))
	st.Watermark += int64(len(late))
	all := append(slices.Clone(first), late...)
	r2 := build(t, st, th, nil, at2)
	if want := full(t, all, th, nil, at2); !bytes.Equal(r2, want) {
		t.Fatalf("after late data\n%s\nfull\n%s", r2, want)
	}
	var rep analytics.Report
	if err := json.Unmarshal(r2, &rep); err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, e := range rep.Exercises {
		n += e.Results
	}
	if n != int64(len(all)) {
		t.Fatalf("report counts %d results, want %d", n, len(all))
	}
}

// ---- Edge cases. ----

func compact(t *testing.T, s string) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := json.Compact(&b, []byte(s)); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func dep(ex, status string) store.Deployment {
	return store.Deployment{WorkflowID: "patrol-" + ex + status, ExerciseID: ex, Status: status}
}

func TestEdgeCases(t *testing.T) {
	at := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	const genAt = `"generated_at":"2026-11-28T10:00:00Z"`
	const noRecovery = `"recovery":{"deployments":0,"recovered":0,"still_failing":0,"no_attempt":0,"pending":0,"rate":null,"by_exercise":[]}`
	paris := func(id string, metric float64) event.Result { return res(id, "ex", metric, 48.8566, 2.3522) }

	// 15 cells along a parallel near Paris, cell i with 15-i failures.
	var many []event.Result
	for i := range 15 {
		for k := range 15 - i {
			many = append(many, res(fmt.Sprintf("m%d-%d", i, k), "ex", 10, 48.85, 2.0+0.05*float64(i)))
		}
	}
	tests := []struct {
		name    string
		results []event.Result
		th      analytics.Thresholds
		deps    []store.Deployment
		top     int
		want    string // the whole document, or "" to compare with the brute force only
	}{
		{
			name: "empty",
			want: `{` + genAt + `,"exercises":[],"hotspots":[],` + noRecovery + `}`,
		},
		{
			name:    "exercise without threshold",
			results: []event.Result{paris("a", 10), paris("b", 20)},
			th:      analytics.Thresholds{"other": 50},
			want: `{` + genAt + `,"exercises":[{"exercise_id":"ex","results":2,"mean_metric":15,"pass_rate":null,"threshold":null}],` +
				`"hotspots":[],` + noRecovery + `}`,
		},
		{
			// (77.42 + 33.36 + 26.08) / 3 = 45.62; summing the float64s, or
			// rounding their exact sum before dividing, gives
			// 45.620000000000005.
			name:    "mean is the exact mean correctly rounded",
			results: []event.Result{paris("a", 77.42), paris("b", 33.36), paris("c", 26.08)},
			want: `{` + genAt + `,"exercises":[{"exercise_id":"ex","results":3,"mean_metric":45.62,"pass_rate":null,"threshold":null}],` +
				`"hotspots":[],` + noRecovery + `}`,
		},
		{
			name:    "threshold without failures; exactly at the threshold passes",
			results: []event.Result{paris("a", 50), paris("b", 100)},
			th:      analytics.Thresholds{"ex": 50},
			want: `{` + genAt + `,"exercises":[{"exercise_id":"ex","results":2,"mean_metric":75,"pass_rate":1,"threshold":50}],` +
				`"hotspots":[],` + noRecovery + `}`,
		},
		{
			name: "ties by geohash ascending",
			results: []event.Result{
				res("a", "ex", 1, 45.764, 4.8357), res("b", "ex", 1, 48.85, 2.38), res("c", "ex", 1, 48.85, 2.35),
				res("d", "ex", 1, 48.85, 2.38), res("e", "ex", 1, 48.85, 2.35),
			},
			th: analytics.Thresholds{"ex": 50},
			want: `{` + genAt + `,"exercises":[{"exercise_id":"ex","results":5,"mean_metric":1,"pass_rate":0,"threshold":50}],` +
				`"hotspots":[{"exercise_id":"ex","cells":[` +
				`{"geohash":"u09tv","latitude":48.84521484375,"longitude":2.35107421875,"failures":2},` +
				`{"geohash":"u09ty","latitude":48.84521484375,"longitude":2.39501953125,"failures":2},` +
				`{"geohash":"u05kq","latitude":45.76904296875,"longitude":4.85595703125,"failures":1}]}],` + noRecovery + `}`,
		},
		{name: "more than 10 cells: the top 10", results: many, th: analytics.Thresholds{"ex": 50}},
		{name: "more than 10 cells: top 3", results: many, th: analytics.Thresholds{"ex": 50}, top: 3},
		{
			name:    "grid edges: poles and antimeridian",
			results: []event.Result{paris("p", 1), res("n", "ex", 1, 90, 180), res("s", "ex", 1, -90, -180), res("w", "ex", 1, 90, -180), res("e", "ex", 1, -90, 180)},
			th:      analytics.Thresholds{"ex": 50},
		},
		{
			name: "recovery rate null with only no-attempt and pending",
			deps: []store.Deployment{dep("ex", "no-attempt"), dep("ex", "dispatching"), dep("ex", "dispatched"), dep("ex", "following-up")},
			want: `{` + genAt + `,"exercises":[],"hotspots":[],"recovery":{"deployments":4,"recovered":0,"still_failing":0,"no_attempt":1,"pending":3,"rate":null,` +
				`"by_exercise":[{"exercise_id":"ex","deployments":4,"recovered":0,"still_failing":0,"no_attempt":1,"pending":3,"rate":null}]}}`,
		},
		{
			name: "notify-rejected and unknown statuses are not deployments",
			deps: []store.Deployment{dep("a", "notify-rejected"), dep("b", "still-failing"), dep("b", "notify-rejected"), dep("c", ""), dep("b", "recovered")},
			want: `{` + genAt + `,"exercises":[],"hotspots":[],"recovery":{"deployments":2,"recovered":1,"still_failing":1,"no_attempt":0,"pending":0,"rate":0.5,` +
				`"by_exercise":[{"exercise_id":"b","deployments":2,"recovered":1,"still_failing":1,"no_attempt":0,"pending":0,"rate":0.5}]}}`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := analytics.FullRecompute(tc.results, tc.th, tc.deps, 0, tc.top, at)
			if err != nil {
				t.Fatal(err)
			}
			got := mustJSON(t, rep)
			if want := refCompute(tc.results, tc.th, tc.deps, 0, tc.top, at); !bytes.Equal(got, want) {
				t.Fatalf("got\n%s\nbrute force\n%s", got, want)
			}
			if tc.want != "" && !bytes.Equal(got, compact(t, tc.want)) {
				t.Fatalf("got\n%s\nwant\n%s", got, tc.want)
			}
		})
	}

	t.Run("top cells", func(t *testing.T) {
		for _, top := range []int{0, 3} {
			rep, err := analytics.FullRecompute(many, analytics.Thresholds{"ex": 50}, nil, 0, top, at)
			if err != nil {
				t.Fatal(err)
			}
			want := map[int]int{0: 10, 3: 3}[top]
			cells := rep.Hotspots[0].Cells
			if len(cells) != want {
				t.Fatalf("top %d: %d cells, want %d", top, len(cells), want)
			}
			for i, c := range cells {
				if c.Failures != int64(15-i) {
					t.Fatalf("top %d: cell %d has %d failures, want %d", top, i, c.Failures, 15-i)
				}
			}
		}
	})

	t.Run("nil and zero states", func(t *testing.T) {
		want := compact(t, `{`+genAt+`,"exercises":[],"hotspots":[],`+noRecovery+`}`)
		for _, st := range []*analytics.State{nil, {}} {
			if got := build(t, st, nil, nil, at); !bytes.Equal(got, want) {
				t.Fatalf("got %s, want %s", got, want)
			}
		}
	})
}

// TestErrors covers what the package refuses.
func TestErrors(t *testing.T) {
	r := res("a", "ex", 10, 48.85, 2.35)
	th := analytics.Thresholds{"ex": 50}
	t.Run("precision", func(t *testing.T) {
		for _, p := range []int{-1, 13} {
			if _, err := analytics.NewState(p); !errors.Is(err, analytics.ErrInvalidPrecision) {
				t.Fatalf("NewState(%d): %v", p, err)
			}
			if _, err := analytics.FullRecompute(nil, nil, nil, p, 0, time.Time{}); !errors.Is(err, analytics.ErrInvalidPrecision) {
				t.Fatalf("FullRecompute(precision %d): %v", p, err)
			}
			d := analytics.NewDelta()
			if err := d.Add(r, th, p); !errors.Is(err, analytics.ErrInvalidPrecision) {
				t.Fatalf("Add(precision %d): %v", p, err)
			}
			st, _ := analytics.NewState(0)
			if err := st.Merge(d); err == nil {
				t.Fatalf("Merge accepted a delta that refused a result")
			}
		}
	})
	t.Run("mixed precisions", func(t *testing.T) {
		d := deltaOf(t, []event.Result{r}, th, 5)
		if err := d.Add(r, th, 6); !errors.Is(err, analytics.ErrInvalidPrecision) {
			t.Fatalf("Add at another precision: %v", err)
		}
		st, _ := analytics.NewState(6)
		if err := st.Merge(deltaOf(t, []event.Result{r}, th, 5)); !errors.Is(err, analytics.ErrInvalidPrecision) {
			t.Fatalf("Merge of precision 5 into 6: %v", err)
		}
		if err := st.Replace("ex", deltaOf(t, []event.Result{r}, th, 5).Exercises["ex"]); !errors.Is(err, analytics.ErrInvalidPrecision) {
			t.Fatalf("Replace with precision 5 cells into 6: %v", err)
		}
		if len(st.Exercises) != 0 {
			t.Fatalf("refused operations changed the state")
		}
	})
	t.Run("threshold changing within a delta", func(t *testing.T) {
		d := deltaOf(t, []event.Result{r}, th, 0)
		if err := d.Add(r, analytics.Thresholds{"ex": 60}, 0); err == nil {
			t.Fatalf("Add accepted another threshold")
		}
		if err := d.Add(r, nil, 0); err == nil {
			t.Fatalf("Add accepted no threshold after one")
		}
	})
	t.Run("bad values", func(t *testing.T) {
		nan := 0.0
		nan /= nan
		for _, bad := range []event.Result{
			res("m", "ex", nan, 0, 0), res("lat", "ex", 1, 90.5, 0), res("lon", "ex", 1, 0, -181), res("nlat", "ex", 1, nan, 0),
		} {
			if err := analytics.NewDelta().Add(bad, nil, 0); err == nil {
				t.Fatalf("Add accepted %+v", bad)
			}
		}
		if err := analytics.NewDelta().Add(r, analytics.Thresholds{"ex": nan}, 0); err == nil {
			t.Fatalf("Add accepted a NaN threshold")
		}
	})
	t.Run("corrupt sum", func(t *testing.T) {
		st := &analytics.State{Exercises: map[string]*analytics.ExerciseAgg{"ex": {Results: 1, Sum: "x"}}}
		if _, err := analytics.Build(st, nil, nil, time.Time{}, 0); err == nil {
			t.Fatalf("Build accepted a corrupt sum")
		}
	})
}

// TestDeltaJSON: a Delta's pending sums travel through JSON (the exact sum
// of the float64s 0.1 and 0.2 is 3 × 0x1999999999999A·2^-56), Flush writes
// them, and Merge does not keep references to the Delta.
func TestDeltaJSON(t *testing.T) {
	th := analytics.Thresholds{"ex": 50}
	d := deltaOf(t, []event.Result{res("a", "ex", 0.1, 48.85, 2.35), res("b", "ex", 0.2, 48.85, 2.35)}, th, 0)
	b := mustJSON(t, d)
	want := `{"precision":5,"exercises":{"ex":{"results":2,"sum":"10808639105689191/36028797018963968","threshold":50,"passed":0,"failures":{"u09tv":2}}}}`
	if string(b) != want {
		t.Fatalf("delta JSON\n%s\nwant\n%s", b, want)
	}
	if err := d.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := d.Exercises["ex"].Sum; got != "10808639105689191/36028797018963968" {
		t.Fatalf("flushed sum %s", got)
	}
	st, _ := analytics.NewState(0)
	mustMerge(t, st, d)
	d.Exercises["ex"].Failures["u09tv"] = 100
	*d.Exercises["ex"].Threshold = 1
	if st.Exercises["ex"].Failures["u09tv"] != 2 || *st.Exercises["ex"].Threshold != 50 {
		t.Fatalf("the state shares memory with a merged delta")
	}
}

// TestGolden checks a small handmade dataset against a report written by
// hand. Cells at precision 5 are 180/2^12 = 360/2^13 = 0.0439453125° on a
// side; Paris (48.8566, 2.3522) is in row floor(138.8566/0.0439453125) =
// 3159 and column floor(182.3522/0.0439453125) = 4149, centre
// (48.84521484375, 2.35107421875), geohash u09tv; the next column east is
// u09ty, centre longitude 2.39501953125; Lyon (45.764, 4.8357) is row 3089
// column 4206, u05kq, centre (45.76904296875, 4.85595703125).
func TestGolden(t *testing.T) {
	rs := []event.Result{
		res("0", "ex-00", 20, 48.85, 2.35), // passes: no hotspot for ex-00
		res("1", "ex-01", 40, 48.8566, 2.3522),
		res("2", "ex-01", 45.5, 48.85, 2.35),
		res("3", "ex-01", 30, 48.85, 2.38),    // u09ty
		res("4", "ex-01", 50, 45.764, 4.8357), // at the threshold: passes
		res("5", "ex-01", 80, 48.85, 2.35),
		res("6", "ex-01", 99.5, 48.85, 2.35),
		res("7", "ex-02", 62.5, 48.85, 2.35),
		res("8", "ex-02", 62.25, 45.764, 4.8357),
		res("9", "ex-02", 10, 48.86, 2.34),
		res("10", "ex-02", 90, 48.85, 2.35),
		res("11", "ex-02", 75.5, 48.85, 2.35),
		res("12", "ex-03", 0.1, 48.85, 2.35), // no threshold
		res("13", "ex-03", 0.2, 48.85, 2.35),
	}
	th := analytics.Thresholds{"ex-00": 10, "ex-01": 50, "ex-02": 62.5, "ex-04": 80}
	deps := []store.Deployment{
		dep("ex-01", "recovered"), dep("ex-01", "recovered"), dep("ex-01", "still-failing"), dep("ex-01", "no-attempt"),
		dep("ex-01", "following-up"), dep("ex-01", "notify-rejected"),
		dep("ex-02", "no-attempt"), dep("ex-02", "dispatched"),
		dep("ex-04", "notify-rejected"),
	}
	// ex-01: sum 345 over 6 = 57.5, 3 of 6 pass; ex-02: 300.25 / 5 = 60.05,
	// 3 of 5 pass; ex-03: the exact mean of the float64s 0.1 and 0.2 is
	// 1.5 × 0x1999999999999A·2^-56, a tie between two float64s broken to
	// the even one, 0.15000000000000002.
	want := `{
	  "generated_at": "2026-11-28T10:00:00Z",
	  "exercises": [
	    {"exercise_id": "ex-00", "results": 1, "mean_metric": 20, "pass_rate": 1, "threshold": 10},
	    {"exercise_id": "ex-01", "results": 6, "mean_metric": 57.5, "pass_rate": 0.5, "threshold": 50},
	    {"exercise_id": "ex-02", "results": 5, "mean_metric": 60.05, "pass_rate": 0.6, "threshold": 62.5},
	    {"exercise_id": "ex-03", "results": 2, "mean_metric": 0.15000000000000002, "pass_rate": null, "threshold": null}
	  ],
	  "hotspots": [
	    {"exercise_id": "ex-01", "cells": [
	      {"geohash": "u09tv", "latitude": 48.84521484375, "longitude": 2.35107421875, "failures": 2},
	      {"geohash": "u09ty", "latitude": 48.84521484375, "longitude": 2.39501953125, "failures": 1}
	    ]},
	    {"exercise_id": "ex-02", "cells": [
	      {"geohash": "u05kq", "latitude": 45.76904296875, "longitude": 4.85595703125, "failures": 1},
	      {"geohash": "u09tv", "latitude": 48.84521484375, "longitude": 2.35107421875, "failures": 1}
	    ]}
	  ],
	  "recovery": {"deployments": 7, "recovered": 2, "still_failing": 1, "no_attempt": 2, "pending": 2, "rate": 0.6666666666666666,
	    "by_exercise": [
	      {"exercise_id": "ex-01", "deployments": 5, "recovered": 2, "still_failing": 1, "no_attempt": 1, "pending": 1, "rate": 0.6666666666666666},
	      {"exercise_id": "ex-02", "deployments": 2, "recovered": 0, "still_failing": 0, "no_attempt": 1, "pending": 1, "rate": null}
	    ]}
	}`
	at := time.Date(2026, 11, 28, 11, 0, 0, 0, time.FixedZone("CET", 3600))
	rep, err := analytics.FullRecompute(rs, th, deps, 0, 0, at)
	if err != nil {
		t.Fatal(err)
	}
	if got := mustJSON(t, rep); !bytes.Equal(got, compact(t, want)) {
		t.Fatalf("got\n%s\nwant\n%s", got, compact(t, want))
	}
}

// ---- Benchmarks. ----

func benchResults(n int) ([]event.Result, analytics.Thresholds) {
	rng := rand.New(rand.NewPCG(3, 4))
	th := analytics.Thresholds{}
	var exercises []string
	for i := range 20 {
		id := fmt.Sprintf("ex-%02d", i)
		exercises = append(exercises, id)
		th[id] = 30 // about 30 % of the uniform metrics fail
	}
	out := make([]event.Result, 0, n)
	for i := range n {
		c := centres[rng.IntN(len(centres))]
		out = append(out, res(strconv.Itoa(i), exercises[rng.IntN(len(exercises))],
			float64(rng.IntN(10001))/100, c.lat+rng.Float64()*0.2-0.1, c.lon+rng.Float64()*0.2-0.1))
	}
	return out, th
}

// BenchmarkDeltaAdd aggregates 1e5 results (20 exercises, 30 % failing)
// into a Delta; "encode" adds the JSON encoding an activity's return does.
func BenchmarkDeltaAdd(b *testing.B) {
	rs, th := benchResults(100_000)
	for _, encode := range []bool{false, true} {
		name := "add"
		if encode {
			name = "add+encode"
		}
		b.Run(name, func(b *testing.B) {
			n := 0
			for b.Loop() {
				d := analytics.NewDelta()
				for _, r := range rs {
					if err := d.Add(r, th, 5); err != nil {
						b.Fatal(err)
					}
				}
				if encode {
					if _, err := json.Marshal(d); err != nil {
						b.Fatal(err)
					}
				}
				n += len(rs)
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// BenchmarkMerge merges a Delta of 1e5 results (decoded from JSON, as the
// commit activity receives it) into a State.
func BenchmarkMerge(b *testing.B) {
	rs, th := benchResults(100_000)
	d := analytics.NewDelta()
	for _, r := range rs {
		if err := d.Add(r, th, 5); err != nil {
			b.Fatal(err)
		}
	}
	enc, err := json.Marshal(d)
	if err != nil {
		b.Fatal(err)
	}
	var decoded analytics.Delta
	if err := json.Unmarshal(enc, &decoded); err != nil {
		b.Fatal(err)
	}
	st, _ := analytics.NewState(5)
	cells := 0
	for _, a := range decoded.Exercises {
		cells += len(a.Failures)
	}
	for b.Loop() {
		if err := st.Merge(&decoded); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(cells), "cells/delta")
}
