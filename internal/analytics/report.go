package analytics

import (
	"cmp"
	"fmt"
	"math/big"
	"slices"
	"time"

	"github.com/mmcloughlin/geohash"

	"github.com/acu-patrol/acu/internal/event"
	"github.com/acu-patrol/acu/internal/store"
)

// Report is the analytics report of DESIGN.md §2.4; encoding/json writes it
// with the fields in the order of §2.4 and null where §2.4 says null.
type Report struct {
	// GeneratedAt is written in RFC 3339, UTC.
	GeneratedAt time.Time `json:"generated_at"`
	// Exercises lists every exercise with results, by exercise id.
	Exercises []ExerciseStats `json:"exercises"`
	// Hotspots lists the exercises with at least one failure, by exercise
	// id.
	Hotspots []Hotspots     `json:"hotspots"`
	Recovery RecoveryReport `json:"recovery"`
}

// ExerciseStats is one exercise's line of the report.
type ExerciseStats struct {
	ExerciseID string `json:"exercise_id"`
	// Results is the number of distinct results.
	Results int64 `json:"results"`
	// MeanMetric is the exact mean of their metrics rounded to the nearest
	// float64.
	MeanMetric float64 `json:"mean_metric"`
	// PassRate is the share of results with metric >= Threshold; nil
	// (null) when the exercise has no threshold.
	PassRate *float64 `json:"pass_rate"`
	// Threshold is the exercise's current threshold; nil (null) when none.
	Threshold *float64 `json:"threshold"`
}

// Hotspots are the cells with most failures of one exercise.
type Hotspots struct {
	ExerciseID string `json:"exercise_id"`
	// Cells are the top cells by failures, most first, ties by geohash.
	Cells []HotCell `json:"cells"`
}

// HotCell is a geohash cell and its failures.
type HotCell struct {
	Geohash string `json:"geohash"`
	// Latitude and Longitude are the centre of the cell.
	Latitude  float64 `json:"latitude"`
	Longitude float64 `json:"longitude"`
	Failures  int64   `json:"failures"`
}

// DeploymentCounts counts patrol deployments by outcome.
type DeploymentCounts struct {
	// Deployments = Recovered + StillFailing + NoAttempt + Pending. A
	// notification the patrol rejected (notify-rejected) sent no patrol and
	// is not a deployment.
	Deployments  int64 `json:"deployments"`
	Recovered    int64 `json:"recovered"`
	StillFailing int64 `json:"still_failing"`
	NoAttempt    int64 `json:"no_attempt"`
	// Pending counts the deployments whose follow-up is not finished:
	// dispatching, dispatched or following-up.
	Pending int64 `json:"pending"`
	// Rate = Recovered / (Recovered + StillFailing); nil (null) when that
	// is 0.
	Rate *float64 `json:"rate"`
}

// RecoveryReport is the recovery section of the report.
type RecoveryReport struct {
	DeploymentCounts
	// ByExercise has the same counts per exercise with at least one
	// deployment, by exercise id.
	ByExercise []ExerciseRecovery `json:"by_exercise"`
}

// ExerciseRecovery is one exercise's deployment counts.
type ExerciseRecovery struct {
	ExerciseID string `json:"exercise_id"`
	DeploymentCounts
}

// count adds one deployment of the given status; it reports whether the
// status is a deployment's (notify-rejected, notify-exhausted and unknown
// statuses are not: no patrol went).
func (c *DeploymentCounts) count(status string) bool {
	switch status {
	case store.StatusRecovered:
		c.Recovered++
	case store.StatusStillFailing:
		c.StillFailing++
	case store.StatusNoAttempt:
		c.NoAttempt++
	case store.StatusDispatching, store.StatusDispatched, store.StatusFollowingUp, store.StatusAwaitingArchive:
		c.Pending++
	default: // notify-rejected, notify-exhausted, or a status this version does not know
		return false
	}
	c.Deployments++
	return true
}

func (c *DeploymentCounts) finish() {
	if n := c.Recovered + c.StillFailing; n > 0 {
		r := float64(c.Recovered) / float64(n)
		c.Rate = &r
	} else {
		c.Rate = nil
	}
}

// Recovery counts deployments by outcome, over all and per exercise.
// Deployments with status notify-rejected, or with a status this version
// does not know, are left out.
func Recovery(deps []store.Deployment) RecoveryReport {
	var rep RecoveryReport
	per := map[string]*DeploymentCounts{}
	for _, d := range deps {
		c := per[d.ExerciseID]
		if c == nil {
			c = &DeploymentCounts{}
		}
		if !c.count(d.Status) {
			continue
		}
		per[d.ExerciseID] = c
		rep.count(d.Status)
	}
	rep.finish()
	rep.ByExercise = make([]ExerciseRecovery, 0, len(per))
	for id, c := range per {
		c.finish()
		rep.ByExercise = append(rep.ByExercise, ExerciseRecovery{ExerciseID: id, DeploymentCounts: *c})
	}
	slices.SortFunc(rep.ByExercise, func(a, b ExerciseRecovery) int { return cmp.Compare(a.ExerciseID, b.ExerciseID) })
	return rep
}

// Build writes the report of the state under the current thresholds th,
// with the recovery over deps. top is the number of hotspot cells per
// exercise; 0 or less means DefaultTop.
//
// It returns a *StaleError when some exercises of the state were judged
// with another threshold than th's (see State.Stale): §2.4 reports pass
// rates and hotspots under the current threshold.
func Build(st *State, th Thresholds, deps []store.Deployment, generatedAt time.Time, top int) (Report, error) {
	if top <= 0 {
		top = DefaultTop
	}
	rep := Report{
		GeneratedAt: generatedAt.UTC(),
		Exercises:   []ExerciseStats{},
		Hotspots:    []Hotspots{},
		Recovery:    Recovery(deps),
	}
	if st == nil {
		return rep, nil
	}
	if stale := st.Stale(th); len(stale) > 0 {
		return Report{}, &StaleError{Exercises: stale}
	}
	ids := make([]string, 0, len(st.Exercises))
	for id, a := range st.Exercises {
		if a != nil && a.Results > 0 {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	for _, id := range ids {
		a := st.Exercises[id]
		sum, err := a.total()
		if err != nil {
			return Report{}, fmt.Errorf("exercise %s: %w", id, err)
		}
		mean, _ := sum.Quo(sum, new(big.Rat).SetInt64(a.Results)).Float64()
		es := ExerciseStats{ExerciseID: id, Results: a.Results, MeanMetric: mean}
		if a.Threshold != nil {
			t := *a.Threshold
			pr := float64(a.Passed) / float64(a.Results)
			es.Threshold, es.PassRate = &t, &pr
		}
		rep.Exercises = append(rep.Exercises, es)
		if a.Threshold == nil {
			continue
		}
		if err := a.checkCells(cellPrecision(st, a)); err != nil {
			return Report{}, fmt.Errorf("exercise %s: %w", id, err)
		}
		if cells := hotCells(a.Failures, top); len(cells) > 0 {
			rep.Hotspots = append(rep.Hotspots, Hotspots{ExerciseID: id, Cells: cells})
		}
	}
	return rep, nil
}

// cellPrecision is the precision a's cells must have: the state's, or when
// unset the length of any of them (which checkCells then holds all to).
func cellPrecision(st *State, a *ExerciseAgg) int {
	if st.Precision != 0 {
		return st.Precision
	}
	for c := range a.Failures {
		return len(c)
	}
	return DefaultPrecision
}

// hotCells returns the top cells by failures, ties by geohash ascending.
func hotCells(failures map[string]int64, top int) []HotCell {
	cells := make([]HotCell, 0, len(failures))
	for c, n := range failures {
		if n > 0 {
			cells = append(cells, HotCell{Geohash: c, Failures: n})
		}
	}
	slices.SortFunc(cells, func(a, b HotCell) int {
		if a.Failures != b.Failures {
			return cmp.Compare(b.Failures, a.Failures)
		}
		return cmp.Compare(a.Geohash, b.Geohash)
	})
	cells = cells[:min(top, len(cells))]
	for i := range cells {
		cells[i].Latitude, cells[i].Longitude = geohash.DecodeCenter(cells[i].Geohash)
	}
	return cells
}

// FullRecompute is the report over all results at once: one Delta, merged
// into an empty State of the given precision (0 means DefaultPrecision),
// then Build. The incremental path gives the same report byte for byte.
func FullRecompute(results []event.Result, th Thresholds, deps []store.Deployment, precision, top int, generatedAt time.Time) (Report, error) {
	st, err := NewState(precision)
	if err != nil {
		return Report{}, err
	}
	d := NewDelta()
	for _, r := range results {
		if err := d.Add(r, th, st.Precision); err != nil {
			return Report{}, err
		}
	}
	if err := st.Merge(d); err != nil {
		return Report{}, err
	}
	return Build(st, th, deps, generatedAt, top)
}
