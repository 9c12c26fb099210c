package produce

import (
	"container/heap"
	"encoding/hex"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/acu-patrol/acu/internal/event"
)

// retakeSuccess is the share of retakes that meet the threshold: most
// students recover after a visit from the patrol, not all of them.
const retakeSuccess = 0.6

// maxPendingRetakes bounds the retake queue. It only matters at extreme
// fail shares (above about 70 %), where failures come faster than passing
// slots can absorb their retakes; further retakes are then not scheduled.
const maxPendingRetakes = 1 << 20

// dupMaxDelay is the largest number of records between a record and its
// duplicate: copies arrive a little later, often in another poll batch,
// as a producer retry or a replayed buffer would deliver them.
const dupMaxDelay = 100

// MalformedKinds are the kinds of malformed records, in the order Run
// rotates through them. Each malformed record carries a header
// HeaderMalformed whose value is "<kind>/<variant>".
var MalformedKinds = []string{
	"bad-json",
	"metric-out-of-range",
	"missing-field",
	"bad-student-id",
	"oversized",
	"bad-timestamp",
	"wrong-type",
	"not-an-object",
	"position-out-of-range",
	"bad-exercise-id",
}

// HeaderMalformed is the record header that marks a deliberately malformed
// record (never set on valid records or their duplicates). Consumers must
// not depend on it; it helps debugging and tests.
const HeaderMalformed = "acu-sim-malformed"

type student struct {
	id       string
	lat, lon float64
}

type exercise struct {
	id        string
	threshold float64
}

// recKind says what a generated record is.
type recKind uint8

const (
	kindValid recKind = iota
	kindDuplicate
	kindMalformed
)

// recInfo describes a generated record for counting and tests.
type recInfo struct {
	kind   recKind
	fail   bool // valid event whose metric is below its threshold
	retake bool // valid event that retakes an earlier failure
}

type retake struct {
	due  int64 // event time (Unix ns) from which it may happen
	pair int   // student index * len(exercises) + exercise index
}

type retakeHeap []retake

func (h retakeHeap) Len() int { return len(h) }
func (h retakeHeap) Less(i, j int) bool {
	if h[i].due != h[j].due {
		return h[i].due < h[j].due
	}
	return h[i].pair < h[j].pair
}
func (h retakeHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *retakeHeap) Push(x any)   { *h = append(*h, x.(retake)) }
func (h *retakeHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

type dup struct {
	due        int64 // slot number from which it is sent
	key, value []byte
}

// counters are written by the generator goroutine and read by the progress
// reporter, hence atomic.
type counters struct {
	valid, failing, duplicates, malformed, retries atomic.Int64
}

// generator builds the record sequence. It owns the PRNG and is used from
// one goroutine only. The sequence depends only on the seed, the options
// and the values returned by now (called once per record), never on
// wall-clock pacing, so a fixed seed and clock reproduce it exactly.
type generator struct {
	o         Options
	rng       *rand.Rand
	now       func() time.Time
	c         *counters
	students  []student
	exercises []exercise
	failable  []int // exercises with a threshold > 0 (a metric can be below it)

	// Retakes: a due retake is taken by a passing slot with probability
	// takePass and by a failing slot with probability takeFail. The
	// pass/fail decision of every slot stays an independent
	// Bernoulli(FailShare) draw, so the failing share is exactly
	// FailShare, while a retake passes with probability retakeSuccess:
	// P(pass | retake) = (1-f)·takePass / ((1-f)·takePass + f·takeFail).
	takePass, takeFail float64
	retakes            retakeHeap
	pending            map[int]struct{} // pairs with a scheduled retake

	dups []dup
	slot int64

	// Events without event_id are identified by (student, exercise,
	// timestamp ms): two of them for the same pair in the same
	// millisecond would be one event. idless holds the pairs that already
	// sent an id-less event in millisecond idlessMs; a colliding event
	// keeps its event_id instead.
	idlessMs int64
	idless   map[int]struct{}

	malformedN int

	// Europe/Paris summer time bounds for dstYear.
	dstYear          int
	dstStart, dstEnd time.Time
	hexBuf           [8]byte
}

func newGenerator(o Options, seed int64, c *counters) *generator {
	g := &generator{
		o:       o,
		rng:     rand.New(rand.NewPCG(uint64(seed), 0x9e3779b97f4a7c15)),
		now:     o.Now,
		c:       c,
		pending: make(map[int]struct{}),
		idless:  make(map[int]struct{}),
	}
	ids := make([]string, 0, len(o.Thresholds))
	for id := range o.Thresholds {
		ids = append(ids, id)
	}
	slices.Sort(ids) // map order is random; the sequence must not be
	for i, id := range ids {
		t := o.Thresholds[id]
		g.exercises = append(g.exercises, exercise{id, t})
		if t > 0 {
			g.failable = append(g.failable, i)
		}
	}
	g.students = g.population(o.Students)

	f := o.FailShare
	g.takePass, g.takeFail = 1, 1
	if f > 0 && f < 1 {
		a, b := retakeSuccess*f, (1-retakeSuccess)*(1-f)
		m := max(a, b)
		g.takePass, g.takeFail = a/m, b/m
	}
	return g
}

// population draws the students: a centre by weight, a stable position
// within ±jitterDeg of it, and an id numbered per centre.
func (g *generator) population(n int) []student {
	total := 0
	for _, c := range centres {
		total += c.Weight
	}
	seq := make([]int, len(centres))
	out := make([]student, n)
	for i := range out {
		w := g.rng.IntN(total)
		ci := 0
		for w >= centres[ci].Weight {
			w -= centres[ci].Weight
			ci++
		}
		c := centres[ci]
		seq[ci]++
		out[i] = student{
			id:  fmt.Sprintf("stu-%s-%04d", c.Slug, seq[ci]),
			lat: round6(c.Lat + jitterDeg*(2*g.rng.Float64()-1)),
			lon: round6(c.Lon + jitterDeg*(2*g.rng.Float64()-1)),
		}
	}
	return out
}

func round6(x float64) float64 { return math.Round(x*1e6) / 1e6 }

// next returns the next record and what it is.
func (g *generator) next() (*kgo.Record, recInfo) {
	g.slot++
	now := g.now()
	if g.o.MalformedShare > 0 && g.rng.Float64() < g.o.MalformedShare {
		return g.malformed(now), recInfo{kind: kindMalformed}
	}
	if r := g.dueDup(); r != nil {
		return r, recInfo{kind: kindDuplicate}
	}
	return g.valid(now)
}

func (g *generator) dueDup() *kgo.Record {
	best := -1
	for i, d := range g.dups {
		if d.due <= g.slot && (best < 0 || d.due < g.dups[best].due) {
			best = i
		}
	}
	if best < 0 {
		return nil
	}
	d := g.dups[best]
	g.dups = slices.Delete(g.dups, best, best+1)
	g.c.duplicates.Add(1)
	return &kgo.Record{Topic: g.o.Topic, Key: d.key, Value: d.value}
}

func (g *generator) valid(now time.Time) (*kgo.Record, recInfo) {
	fail := g.o.FailShare > 0 && g.rng.Float64() < g.o.FailShare
	nowNs := now.UnixNano()
	nEx := len(g.exercises)

	var si, ei int
	info := recInfo{kind: kindValid, fail: fail}
	if len(g.retakes) > 0 && g.retakes[0].due <= nowNs {
		p := g.takePass
		if fail {
			p = g.takeFail
		}
		if g.rng.Float64() < p {
			r := heap.Pop(&g.retakes).(retake)
			delete(g.pending, r.pair)
			si, ei = r.pair/nEx, r.pair%nEx
			info.retake = true
		}
	}
	if !info.retake {
		si = g.rng.IntN(len(g.students))
		if fail {
			ei = g.failable[g.rng.IntN(len(g.failable))]
		} else {
			ei = g.rng.IntN(nEx)
		}
	}
	pair := si*nEx + ei
	st, ex := g.students[si], g.exercises[ei]

	var metric float64
	if fail {
		metric = g.failScore(ex.threshold)
		if g.o.RetryShare > 0 && g.rng.Float64() < g.o.RetryShare {
			g.scheduleRetake(pair, nowNs)
		}
	} else {
		metric = g.passScore(ex.threshold)
	}

	eventID := true
	if g.o.OmitEventIDShare > 0 && g.rng.Float64() < g.o.OmitEventIDShare {
		ms := now.UnixMilli()
		if ms != g.idlessMs {
			g.idlessMs = ms
			clear(g.idless)
		}
		if _, taken := g.idless[pair]; !taken {
			g.idless[pair] = struct{}{}
			eventID = false
		}
	}

	v := make([]byte, 0, 224)
	v = append(v, '{')
	if eventID {
		v = append(v, `"event_id":"`...)
		v = g.appendEventID(v)
		v = append(v, `",`...)
	}
	v = append(v, `"timestamp":`...)
	v = g.appendTimestamp(v, now)
	v = append(v, `,"student_id":"`...)
	v = append(v, st.id...)
	v = append(v, `","latitude":`...)
	v = strconv.AppendFloat(v, st.lat, 'f', -1, 64)
	v = append(v, `,"longitude":`...)
	v = strconv.AppendFloat(v, st.lon, 'f', -1, 64)
	v = append(v, `,"exercise_id":"`...)
	v = append(v, ex.id...)
	v = append(v, `","metric":`...)
	v = strconv.AppendFloat(v, metric, 'f', -1, 64)
	v = append(v, '}')

	key := []byte(st.id)
	g.c.valid.Add(1)
	if fail {
		g.c.failing.Add(1)
	}
	if info.retake {
		g.c.retries.Add(1)
	}
	if g.o.DuplicateShare > 0 && g.rng.Float64() < g.o.DuplicateShare {
		g.dups = append(g.dups, dup{due: g.slot + 1 + int64(g.rng.IntN(dupMaxDelay)), key: key, value: v})
	}
	return &kgo.Record{Topic: g.o.Topic, Key: key, Value: v}, info
}

// scheduleRetake plans a retake of pair around RetryAfter from now
// (log-normal jitter: median RetryAfter, most within ×0.5–×2).
func (g *generator) scheduleRetake(pair int, nowNs int64) {
	if _, ok := g.pending[pair]; ok || len(g.retakes) >= maxPendingRetakes {
		return
	}
	f := math.Exp(0.35 * g.rng.NormFloat64())
	f = min(max(f, 0.25), 4)
	d := int64(float64(g.o.RetryAfter) * f)
	g.pending[pair] = struct{}{}
	heap.Push(&g.retakes, retake{due: nowNs + max(d, 1), pair: pair})
}

// passScore draws a metric at or above t: a normal around 80 (sd 10)
// truncated to [t, 100], with some perfect scores. Rounded to 2 decimals,
// never below t.
func (g *generator) passScore(t float64) float64 {
	if g.rng.Float64() < 0.05 {
		return 100
	}
	x := -1.0
	for range 12 {
		y := 80 + 10*g.rng.NormFloat64()
		if y >= t && y <= 100 {
			x = y
			break
		}
	}
	if x < 0 { // a threshold far above the mode: uniform on [t, 100]
		x = t + (100-t)*g.rng.Float64()
	}
	v := math.Round(x*100) / 100
	if v < t {
		v = ceilCent(t)
	}
	return min(v, 100)
}

// failScore draws a metric strictly below t (t > 0), never negative:
// mostly uniform on [0.4t, t) (near misses), sometimes on [0, t).
// Rounded down to 2 decimals, so rounding never reaches t.
func (g *generator) failScore(t float64) float64 {
	lo := 0.4 * t
	if g.rng.Float64() < 0.25 {
		lo = 0
	}
	x := lo + (t-lo)*g.rng.Float64()
	v := math.Floor(x*100) / 100
	if v >= t {
		v = floorCentBelow(t)
	}
	return max(v, 0)
}

// ceilCent is the smallest multiple of 0.01 (as parsed from its 2-decimal
// text) that is >= t, for 0 <= t <= 100.
func ceilCent(t float64) float64 {
	k := math.Floor(t * 100)
	for k/100 < t {
		k++
	}
	return k / 100
}

// floorCentBelow is the largest multiple of 0.01 strictly below t, or 0.
func floorCentBelow(t float64) float64 {
	k := math.Ceil(t * 100)
	for k > 0 && k/100 >= t {
		k--
	}
	return max(k, 0) / 100
}

func (g *generator) appendEventID(b []byte) []byte {
	u := g.rng.Uint64()
	for i := range g.hexBuf {
		g.hexBuf[i] = byte(u >> (56 - 8*i))
	}
	b = append(b, "evt-"...)
	return hex.AppendEncode(b, g.hexBuf[:])
}

var (
	zoneCET  = time.FixedZone("CET", 1*3600)
	zoneCEST = time.FixedZone("CEST", 2*3600)
)

// paris returns t in the Europe/Paris offset of that instant. The EU rule
// (summer time from the last Sunday of March to the last Sunday of
// October, 01:00 UTC) is computed here so that the output does not depend
// on the host's tzdata.
func (g *generator) paris(t time.Time) time.Time {
	u := t.UTC()
	if y := u.Year(); y != g.dstYear {
		g.dstYear = y
		g.dstStart = lastSunday(y, time.March)
		g.dstEnd = lastSunday(y, time.October)
	}
	if !u.Before(g.dstStart) && u.Before(g.dstEnd) {
		return t.In(zoneCEST)
	}
	return t.In(zoneCET)
}

// lastSunday is 01:00 UTC on the last Sunday of month m of year y.
func lastSunday(y int, m time.Month) time.Time {
	d := time.Date(y, m+1, 0, 1, 0, 0, 0, time.UTC) // last day of m
	return d.AddDate(0, 0, -int(d.Weekday()))
}

const rfc3339Milli = "2006-01-02T15:04:05.000Z07:00"

// appendTimestamp writes the JSON timestamp: RFC 3339 with milliseconds in
// the Paris offset (60 %) or UTC "Z" (25 %), or Unix epoch milliseconds
// (15 %) as some laptops send.
func (g *generator) appendTimestamp(b []byte, t time.Time) []byte {
	switch u := g.rng.Float64(); {
	case u < 0.60:
		b = append(b, '"')
		b = g.paris(t).AppendFormat(b, rfc3339Milli)
		return append(b, '"')
	case u < 0.85:
		b = append(b, '"')
		b = t.UTC().AppendFormat(b, rfc3339Milli)
		return append(b, '"')
	default:
		return strconv.AppendInt(b, t.UnixMilli(), 10)
	}
}

// field is one member of a JSON object under construction; raw is its
// encoded value.
type field struct {
	name string
	raw  string
}

func encodeObject(fs []field) []byte {
	var sb strings.Builder
	sb.WriteByte('{')
	for i, f := range fs {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(strconv.Quote(f.name))
		sb.WriteByte(':')
		sb.WriteString(f.raw)
	}
	sb.WriteByte('}')
	return []byte(sb.String())
}

func setField(fs []field, name, raw string) []field {
	for i := range fs {
		if fs[i].name == name {
			fs[i].raw = raw
			return fs
		}
	}
	return append(fs, field{name, raw})
}

func jsonString(s string) string { return `"` + s + `"` } // s needs no escaping

// malformed builds a record that breaks one rule of the contract, rotating
// through MalformedKinds (and, within a kind, through variants). It starts
// from a plausible event of a real student so that it looks like a buggy
// laptop, not noise. It does not touch the valid-event state (retakes,
// duplicates), so valid events are the same with or without malformed ones
// interleaved — apart from the PRNG draws they consume.
func (g *generator) malformed(now time.Time) *kgo.Record {
	kind := MalformedKinds[g.malformedN%len(MalformedKinds)]
	variant := g.malformedN / len(MalformedKinds)
	g.malformedN++

	st := g.students[g.rng.IntN(len(g.students))]
	ex := g.exercises[g.rng.IntN(len(g.exercises))]
	num := func(x float64) string { return strconv.FormatFloat(x, 'f', -1, 64) }
	fs := []field{
		{"event_id", jsonString(string(g.appendEventID(nil)))},
		{"timestamp", string(g.appendTimestamp(nil, now))},
		{"student_id", jsonString(st.id)},
		{"latitude", num(st.lat)},
		{"longitude", num(st.lon)},
		{"exercise_id", jsonString(ex.id)},
		{"metric", num(g.passScore(ex.threshold))},
	}
	var value []byte
	var name string
	pick := func(vs ...string) string { name = vs[variant%len(vs)]; return name }
	switch kind {
	case "bad-json":
		switch pick("truncated", "trailing-comma", "single-quotes", "nan") {
		case "truncated":
			v := encodeObject(fs)
			value = v[:len(v)*2/3]
		case "trailing-comma":
			v := encodeObject(fs)
			value = append(v[:len(v)-1], ",}"...)
		case "single-quotes":
			value = []byte(strings.ReplaceAll(string(encodeObject(fs)), `"`, `'`))
		case "nan":
			value = encodeObject(setField(fs, "metric", "NaN"))
		}
	case "metric-out-of-range":
		switch pick("above-100", "negative", "overflow") {
		case "above-100":
			fs = setField(fs, "metric", num(100.01+math.Round(g.rng.Float64()*15000)/100))
		case "negative":
			fs = setField(fs, "metric", num(-0.01-math.Round(g.rng.Float64()*5000)/100))
		case "overflow":
			fs = setField(fs, "metric", "1e999")
		}
	case "missing-field":
		names := []string{"timestamp", "student_id", "latitude", "longitude", "exercise_id", "metric"}
		miss := names[variant%len(names)]
		name = miss
		if variant/len(names)%2 == 1 {
			name += "-null"
			fs = setField(fs, miss, "null")
		} else {
			fs = slices.DeleteFunc(fs, func(f field) bool { return f.name == miss })
		}
	case "bad-student-id":
		slug := strings.TrimPrefix(st.id, "stu-")
		switch pick("space", "accent", "too-long", "empty", "slash") {
		case "space":
			fs = setField(fs, "student_id", jsonString(strings.ReplaceAll(st.id, "-", " ")))
		case "accent":
			fs = setField(fs, "student_id", jsonString("élève-"+slug))
		case "too-long":
			fs = setField(fs, "student_id", jsonString(st.id+"-"+strings.Repeat("x", max(65-len(st.id), 1))))
		case "empty":
			fs = setField(fs, "student_id", `""`)
		case "slash":
			fs = setField(fs, "student_id", jsonString("stu/"+slug))
		}
	case "oversized":
		name = "padding"
		fs = append(fs, field{"attachment", jsonString(strings.Repeat("A", event.MaxSize))})
	case "bad-timestamp":
		local := g.paris(now).Format("2006-01-02T15:04:05")
		switch pick("no-offset", "space-separated", "words", "fractional-ms", "boolean") {
		case "no-offset":
			fs = setField(fs, "timestamp", jsonString(local))
		case "space-separated":
			fs = setField(fs, "timestamp", jsonString(strings.Replace(local, "T", " ", 1)))
		case "words":
			fs = setField(fs, "timestamp", `"yesterday"`)
		case "fractional-ms":
			fs = setField(fs, "timestamp", strconv.FormatInt(now.UnixMilli(), 10)+".5")
		case "boolean":
			fs = setField(fs, "timestamp", "true")
		}
	case "wrong-type":
		switch pick("metric-string", "latitude-string", "student-number", "exercise-object") {
		case "metric-string":
			fs = setField(fs, "metric", strconv.Quote(num(g.passScore(ex.threshold))))
		case "latitude-string":
			fs = setField(fs, "latitude", strconv.Quote(num(st.lat)))
		case "student-number":
			fs = setField(fs, "student_id", "42")
		case "exercise-object":
			fs = setField(fs, "exercise_id", `{"id":`+jsonString(ex.id)+`}`)
		}
	case "not-an-object":
		switch pick("array", "string", "number", "null") {
		case "array":
			value = append(append([]byte("["), encodeObject(fs)...), ']')
		case "string":
			value = []byte(strconv.Quote(string(encodeObject(fs))))
		case "number":
			value = []byte(num(g.passScore(ex.threshold)))
		case "null":
			value = []byte("null")
		}
	case "position-out-of-range":
		switch pick("latitude", "longitude") {
		case "latitude":
			fs = setField(fs, "latitude", num(90.5+math.Round(g.rng.Float64()*8000)/100))
		case "longitude":
			fs = setField(fs, "longitude", num(-180.5-math.Round(g.rng.Float64()*8000)/100))
		}
	case "bad-exercise-id":
		switch pick("slash", "space", "too-long", "empty") {
		case "slash":
			fs = setField(fs, "exercise_id", jsonString("c-piscine/"+ex.id))
		case "space":
			fs = setField(fs, "exercise_id", jsonString(ex.id+" bis"))
		case "too-long":
			fs = setField(fs, "exercise_id", jsonString(ex.id+"-"+strings.Repeat("v", 65)))
		case "empty":
			fs = setField(fs, "exercise_id", `""`)
		}
	}
	if value == nil {
		value = encodeObject(fs)
	}
	g.c.malformed.Add(1)
	return &kgo.Record{
		Topic:   g.o.Topic,
		Key:     []byte(st.id),
		Value:   value,
		Headers: []kgo.RecordHeader{{Key: HeaderMalformed, Value: []byte(kind + "/" + name)}},
	}
}
