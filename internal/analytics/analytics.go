// Package analytics computes the analytics report of DESIGN.md §2.4 from
// archived results and patrol deployments. It is pure computation: no I/O,
// no clock, no Temporal, and every output is sorted, so it may run in
// activities or in deterministic workflow code alike.
//
// The cost of a run grows with the new data, not with all data: results are
// folded into partial aggregates that merge exactly.
//
//   - A Delta aggregates any chunk of results (Add). Deltas over disjoint
//     chunks merge into a State in any order and any chunking, and the
//     report built from the State is byte for byte the report of a full
//     recomputation (FullRecompute): counts add, the metric sum is kept as
//     an exact rational (so the mean is the exact mean correctly rounded,
//     whatever the order), and the failure cells are counts per geohash.
//   - Pass and failure counts depend on the threshold they were judged with,
//     recorded in each ExerciseAgg. When an exercise's threshold changes,
//     Stale names it and the caller rebuilds it from all its results and
//     Replaces it; Merge and Build refuse aggregates judged with another
//     threshold (a *StaleError), so a mixed report cannot be produced.
//
// Inputs are distinct results: removing duplicate deliveries of one event is
// the store's job (one row per event identity, DESIGN.md §2.1), and each
// stored result must be fed to exactly one Delta.
package analytics

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"slices"
	"strings"

	"github.com/mmcloughlin/geohash"

	"github.com/acu-patrol/acu/internal/event"
)

// DefaultPrecision is the default geohash precision of the failure cells, in
// characters (§2.4); MaxPrecision is the largest supported.
const (
	DefaultPrecision = 5
	MaxPrecision     = 12
)

// DefaultTop is the default number of hotspot cells per exercise (§2.4).
const DefaultTop = 10

// ErrInvalidPrecision is wrapped by the errors about a geohash precision
// outside 1..MaxPrecision, or cells of another precision than the state's.
var ErrInvalidPrecision = errors.New("invalid geohash precision")

// StaleError says that some exercises' aggregates were judged with another
// threshold than the one they are being combined or reported with. The
// caller recomputes each of them from all its results under the current
// thresholds (a Delta over them) and Replaces it.
type StaleError struct {
	// Exercises lists the exercise ids to rebuild, sorted.
	Exercises []string
}

func (e *StaleError) Error() string {
	return fmt.Sprintf("analytics: threshold changed for %s: rebuild from all their results", strings.Join(e.Exercises, ", "))
}

// Thresholds maps an exercise id to its failure threshold; an exercise that
// is absent has no threshold. A result fails iff metric < threshold.
type Thresholds map[string]float64

// ExerciseAgg is the partial aggregate of one exercise's results. It is
// plain JSON: it travels in Temporal payloads and is stored.
type ExerciseAgg struct {
	// Results is the number of results.
	Results int64 `json:"results"`
	// Sum is the exact sum of their metrics as big.Rat text ("245/4",
	// "61"); "" means 0. While a Delta is being filled, the sum of the
	// metrics added since is held apart for speed: JSON encoding, Flush,
	// Merge and Replace account for it, so read this field only after
	// Flush.
	Sum string `json:"sum"`
	// Threshold is the threshold the pass and failure counts were judged
	// with; nil means the exercise had none (Passed is 0, Failures empty).
	Threshold *float64 `json:"threshold"`
	// Passed counts the results with metric >= Threshold.
	Passed int64 `json:"passed"`
	// Failures counts the results with metric < Threshold per geohash cell
	// of the Delta's precision.
	Failures map[string]int64 `json:"failures,omitempty"`

	pending *pending // what Add keeps apart for speed; nil once settled
}

// pending is the part of an ExerciseAgg that only Delta.Add uses.
type pending struct {
	sum exactSum // metrics added since Sum was last written
	// cells interns the failure cells' text by integer geohash, so that a
	// failure in a known cell allocates nothing.
	cells map[uint64]string
}

// aggJSON is ExerciseAgg without its methods, for encoding.
type aggJSON ExerciseAgg

// MarshalJSON encodes the aggregate with the metrics still pending folded
// into sum (without changing a).
func (a ExerciseAgg) MarshalJSON() ([]byte, error) {
	if a.pending != nil {
		t, err := a.total()
		if err != nil {
			return nil, err
		}
		a.Sum = t.RatString()
	}
	return json.Marshal(aggJSON(a))
}

// total returns the exact sum: Sum plus what is pending.
func (a *ExerciseAgg) total() (*big.Rat, error) {
	r := new(big.Rat)
	if a.Sum != "" {
		if _, ok := r.SetString(a.Sum); !ok {
			return nil, fmt.Errorf("analytics: sum %q is not a rational number", a.Sum)
		}
	}
	if a.pending != nil {
		r.Add(r, a.pending.sum.rat())
	}
	return r, nil
}

// checkCells makes sure every failure cell is a geohash of precision p.
func (a *ExerciseAgg) checkCells(p int) error {
	if _, err := resolvePrecision(p); err != nil || p == 0 {
		return fmt.Errorf("%w: failure cells of %d characters", ErrInvalidPrecision, p)
	}
	for c := range a.Failures {
		if len(c) != p || geohash.Validate(c) != nil {
			return fmt.Errorf("%w: failure cell %q is not a geohash of precision %d", ErrInvalidPrecision, c, p)
		}
	}
	return nil
}

// settled returns a copy of a that shares nothing with it, Sum written out.
func (a *ExerciseAgg) settled() (*ExerciseAgg, error) {
	t, err := a.total()
	if err != nil {
		return nil, err
	}
	c := &ExerciseAgg{Results: a.Results, Sum: t.RatString(), Passed: a.Passed}
	if a.Threshold != nil {
		v := *a.Threshold
		c.Threshold = &v
	}
	if len(a.Failures) > 0 {
		c.Failures = make(map[string]int64, len(a.Failures))
		for k, v := range a.Failures {
			c.Failures[k] = v
		}
	}
	return c, nil
}

// Delta is the partial aggregate of one chunk of results. The zero value
// and NewDelta are ready to use; a Delta is not safe for concurrent use.
type Delta struct {
	// Precision is the geohash precision of the failure cells, set by the
	// first Add; 0 while nothing was added.
	Precision int `json:"precision"`
	// Exercises holds one aggregate per exercise id seen.
	Exercises map[string]*ExerciseAgg `json:"exercises"`
	// Invalid is the reason of the first result Add refused, "" if none.
	// Merge refuses a Delta that refused a result, so that a caller who
	// forgot to check Add's error cannot report numbers missing results.
	Invalid string `json:"invalid,omitempty"`
}

// NewDelta returns an empty Delta.
func NewDelta() *Delta {
	return &Delta{Exercises: map[string]*ExerciseAgg{}}
}

// resolvePrecision applies the default to 0 and checks the range.
func resolvePrecision(p int) (int, error) {
	if p == 0 {
		return DefaultPrecision, nil
	}
	if p < 1 || p > MaxPrecision {
		return 0, fmt.Errorf("%w: %d is outside 1..%d", ErrInvalidPrecision, p, MaxPrecision)
	}
	return p, nil
}

// Add folds one result into the Delta: it is counted, its metric summed
// and, when th holds a threshold for its exercise, judged (passed, or a
// failure in its geohash cell of the given precision: 1..12 characters, 0
// means DefaultPrecision).
//
// Add refuses (returns an error, counts nothing, and marks the Delta
// Invalid) a precision outside 1..12 or other than the one of earlier
// Adds, a non-finite metric or threshold, a position outside the ranges of
// §2.1, and a threshold for the exercise other than the one earlier Adds
// to this Delta saw: one Delta is judged with one set of thresholds.
func (d *Delta) Add(r event.Result, th Thresholds, precision int) error {
	if err := d.add(r, th, precision); err != nil {
		if d.Invalid == "" {
			d.Invalid = err.Error()
		}
		return err
	}
	return nil
}

func (d *Delta) add(r event.Result, th Thresholds, precision int) error {
	p, err := resolvePrecision(precision)
	if err != nil {
		return err
	}
	if d.Precision == 0 {
		d.Precision = p
	} else if d.Precision != p {
		return fmt.Errorf("%w: result %s added at precision %d to a delta of precision %d", ErrInvalidPrecision, r.ID, p, d.Precision)
	}
	if math.IsInf(r.Metric, 0) || math.IsNaN(r.Metric) {
		return fmt.Errorf("analytics: result %s: metric %v is not finite", r.ID, r.Metric)
	}
	if !(r.Latitude >= -90 && r.Latitude <= 90 && r.Longitude >= -180 && r.Longitude <= 180) {
		return fmt.Errorf("analytics: result %s: position (%v, %v) is outside -90..90, -180..180", r.ID, r.Latitude, r.Longitude)
	}
	t, judged := th[r.ExerciseID]
	if judged && (math.IsInf(t, 0) || math.IsNaN(t)) {
		return fmt.Errorf("analytics: exercise %s: threshold %v is not finite", r.ExerciseID, t)
	}
	if d.Exercises == nil {
		d.Exercises = map[string]*ExerciseAgg{}
	}
	a := d.Exercises[r.ExerciseID]
	if a == nil {
		a = &ExerciseAgg{}
		if judged {
			v := t // only this copy escapes, not t on every call
			a.Threshold = &v
		}
		d.Exercises[r.ExerciseID] = a
	} else if !sameThreshold(a.Threshold, t, judged) {
		return fmt.Errorf("analytics: exercise %s: threshold %s in a delta judged with %s", r.ExerciseID, fmtThreshold(t, judged), fmtThreshold(deref(a.Threshold)))
	}
	if a.pending == nil {
		a.pending = &pending{}
	}
	a.Results++
	a.pending.sum.add(r.Metric)
	if judged {
		if r.Metric >= t {
			a.Passed++
		} else {
			if a.Failures == nil {
				a.Failures = map[string]int64{}
			}
			a.Failures[a.pending.cell(r.Latitude, r.Longitude, p)]++
		}
	}
	return nil
}

// Flush writes the pending sums into the Sum fields. JSON encoding, Merge
// and Replace do not need it; call it before reading Sum directly.
func (d *Delta) Flush() error {
	for id, a := range d.Exercises {
		if a == nil || a.pending == nil {
			continue
		}
		t, err := a.total()
		if err != nil {
			return fmt.Errorf("exercise %s: %w", id, err)
		}
		a.Sum, a.pending = t.RatString(), nil
	}
	return nil
}

// edgeMargin keeps points on the north and east edges (latitude 90,
// longitude 180) in the top cell, as the standard bisection places them:
// the library maps them past the range, onto the south or west edge. Any
// point within this margin of those edges is in the top cell at every
// precision up to 12 characters (cells are at least 1.6e-7° high and
// 3.3e-7° wide there).
const edgeMargin = 1e-9

// Cell returns the standard base-32 geohash of (lat, lng) with precision
// characters (1..12). Cells are closed on the south and west, open on the
// north and east, except the ones on latitude 90 and longitude 180, which
// hold their edge.
func Cell(lat, lng float64, precision int) string {
	return geohash.EncodeWithPrecision(clampLat(lat), clampLng(lng), uint(precision))
}

// cell is Cell, interned.
func (pe *pending) cell(lat, lng float64, precision int) string {
	h := geohash.EncodeIntWithPrecision(clampLat(lat), clampLng(lng), uint(5*precision))
	if c, ok := pe.cells[h]; ok {
		return c
	}
	if pe.cells == nil {
		pe.cells = map[uint64]string{}
	}
	c := geohash.ConvertIntToString(h, uint(precision))
	pe.cells[h] = c
	return c
}

func clampLat(lat float64) float64 { return min(lat, 90-edgeMargin) }
func clampLng(lng float64) float64 { return min(lng, 180-edgeMargin) }

func sameThreshold(stored *float64, t float64, has bool) bool {
	if stored == nil {
		return !has
	}
	return has && *stored == t
}

func samePtr(a, b *float64) bool {
	if b == nil {
		return a == nil
	}
	return sameThreshold(a, *b, true)
}

func deref(p *float64) (float64, bool) {
	if p == nil {
		return 0, false
	}
	return *p, true
}

func fmtThreshold(t float64, has bool) string {
	if !has {
		return "none"
	}
	return fmt.Sprint(t)
}

// State is the merged aggregate of all results up to a watermark. It is
// plain JSON, stored between runs; it is not safe for concurrent use.
type State struct {
	// Watermark is the arrival sequence of the last result folded in.
	// Merge and Replace leave it alone: the caller advances it once every
	// chunk up to it has been merged.
	Watermark int64 `json:"watermark"`
	// Precision is the geohash precision of the failure cells. 0 means not
	// set yet: the first Merge or Replace that brings a delta or cells sets
	// it. Changing it means rebuilding every exercise: set it first, then
	// Replace them all.
	Precision int `json:"precision"`
	// Exercises holds one aggregate per exercise id, Sum written out.
	Exercises map[string]*ExerciseAgg `json:"exercises"`
}

// NewState returns an empty State for cells of the given precision (0
// means DefaultPrecision).
func NewState(precision int) (*State, error) {
	p, err := resolvePrecision(precision)
	if err != nil {
		return nil, err
	}
	return &State{Precision: p, Exercises: map[string]*ExerciseAgg{}}, nil
}

// checkPrecision checks cells of precision p (0: not known, then the
// cells' own length is taken) against the state's precision, and returns
// the precision the state has once they are in.
func (s *State) checkPrecision(p int, aggs map[string]*ExerciseAgg) (int, error) {
	sp := s.Precision
	if sp != 0 {
		if _, err := resolvePrecision(sp); err != nil {
			return 0, fmt.Errorf("state: %w", err)
		}
	}
	if p != 0 {
		if _, err := resolvePrecision(p); err != nil {
			return 0, err
		}
		if sp != 0 && p != sp {
			return 0, fmt.Errorf("%w: cells of precision %d for a state of precision %d", ErrInvalidPrecision, p, sp)
		}
		sp = p
	}
	for id, a := range aggs {
		if a == nil || len(a.Failures) == 0 {
			continue
		}
		if sp == 0 {
			for c := range a.Failures {
				sp = len(c)
				break
			}
		}
		if err := a.checkCells(sp); err != nil {
			return 0, fmt.Errorf("exercise %s: %w", id, err)
		}
	}
	return sp, nil
}

// Merge adds a Delta over results not yet in the state. It is all or
// nothing: on error the state is unchanged. It returns a *StaleError when
// an exercise of d was judged with another threshold than the state's
// aggregate of it (rebuild those), and an error wrapping
// ErrInvalidPrecision when d's cells have another precision. Merge does
// not change d and keeps no reference to it.
func (s *State) Merge(d *Delta) error {
	if d == nil {
		return nil
	}
	if d.Invalid != "" {
		return fmt.Errorf("analytics: delta refused a result: %s", d.Invalid)
	}
	if len(d.Exercises) == 0 {
		return nil
	}
	p, err := s.checkPrecision(d.Precision, d.Exercises)
	if err != nil {
		return err
	}
	type merged struct {
		id  string
		agg *ExerciseAgg
		sum *big.Rat
	}
	var out []merged
	var stale []string
	for id, da := range d.Exercises {
		if da == nil || da.Results == 0 {
			continue
		}
		sum, err := da.total()
		if err != nil {
			return fmt.Errorf("delta exercise %s: %w", id, err)
		}
		sa := s.Exercises[id]
		if sa != nil {
			if !samePtr(sa.Threshold, da.Threshold) {
				stale = append(stale, id)
				continue
			}
			prev, err := sa.total()
			if err != nil {
				return fmt.Errorf("state exercise %s: %w", id, err)
			}
			sum.Add(sum, prev)
		}
		out = append(out, merged{id, da, sum})
	}
	if len(stale) > 0 {
		slices.Sort(stale)
		return &StaleError{Exercises: stale}
	}
	if s.Exercises == nil {
		s.Exercises = map[string]*ExerciseAgg{}
	}
	s.Precision = p
	for _, m := range out {
		sa := s.Exercises[m.id]
		if sa == nil {
			sa = &ExerciseAgg{}
			if m.agg.Threshold != nil {
				v := *m.agg.Threshold
				sa.Threshold = &v
			}
			s.Exercises[m.id] = sa
		}
		sa.Results += m.agg.Results
		sa.Passed += m.agg.Passed
		sa.Sum = m.sum.RatString()
		sa.pending = nil
		if len(m.agg.Failures) > 0 && sa.Failures == nil {
			sa.Failures = make(map[string]int64, len(m.agg.Failures))
		}
		for c, n := range m.agg.Failures {
			sa.Failures[c] += n
		}
	}
	return nil
}

// Replace sets an exercise's aggregate after a full rebuild (a Delta over
// all its results, up to the watermark, under the current thresholds); a
// nil agg or one without results removes the exercise. The state keeps a
// copy. It returns an error wrapping ErrInvalidPrecision when agg's cells
// have another precision than the state's, and the state is unchanged on
// error.
func (s *State) Replace(exerciseID string, agg *ExerciseAgg) error {
	if agg == nil || agg.Results == 0 {
		delete(s.Exercises, exerciseID)
		return nil
	}
	p, err := s.checkPrecision(0, map[string]*ExerciseAgg{exerciseID: agg})
	if err != nil {
		return err
	}
	c, err := agg.settled()
	if err != nil {
		return fmt.Errorf("exercise %s: %w", exerciseID, err)
	}
	if s.Exercises == nil {
		s.Exercises = map[string]*ExerciseAgg{}
	}
	s.Precision = p
	s.Exercises[exerciseID] = c
	return nil
}

// Stale returns, sorted, the exercises of the state whose aggregate was
// judged with another threshold than th's: a threshold added, removed or
// changed. The caller rebuilds them from all their results and Replaces
// them. Exercises of th the state has no results for need nothing.
func (s *State) Stale(th Thresholds) []string {
	var out []string
	for id, a := range s.Exercises {
		if a == nil {
			continue
		}
		t, has := th[id]
		if !sameThreshold(a.Threshold, t, has) {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}
