package chaos

// Tests of the oracle: each rule on its own (tables), then a cross-check
// against the system's own code (parsing, judgement, archive, follow-up and
// analytics over the SQLite store) on a few thousand simulated records.
// The tests may import the system; oracle.go may not.

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"math/big"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mmcloughlin/geohash"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"

	"github.com/acu-patrol/acu/activities"
	"github.com/acu-patrol/acu/ingest"
	"github.com/acu-patrol/acu/internal/analytics"
	"github.com/acu-patrol/acu/internal/event"
	"github.com/acu-patrol/acu/internal/produce"
	"github.com/acu-patrol/acu/internal/store"
	"github.com/acu-patrol/acu/internal/store/sqlite"
	"github.com/acu-patrol/acu/internal/testkit"
	"github.com/acu-patrol/acu/workflows"
)

// oracleT0 is the instant the hand-made workloads start at.
var oracleT0 = time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)

func oracleAt(ms int) time.Time { return oracleT0.Add(time.Duration(ms) * time.Millisecond) }

// oracleEvent writes a result event: the fields of a valid one, with
// overrides (raw JSON text; "" deletes the field).
func oracleEvent(over map[string]string) string {
	fields := []struct{ name, raw string }{
		{"event_id", `"evt-1"`}, {"timestamp", `"2026-11-28T10:00:00Z"`}, {"student_id", `"stu-1"`},
		{"latitude", "48.85"}, {"longitude", "2.35"}, {"exercise_id", `"ex-a"`}, {"metric", "40"},
	}
	var parts []string
	for _, f := range fields {
		raw, ok := over[f.name]
		if !ok {
			raw = f.raw
		}
		if raw != "" {
			parts = append(parts, strconv.Quote(f.name)+":"+raw)
		}
	}
	for name, raw := range over {
		if !slices.ContainsFunc(fields, func(f struct{ name, raw string }) bool { return f.name == name }) {
			parts = append(parts, strconv.Quote(name)+":"+raw)
		}
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// oracleRec is a record at partition 0 with the given offset, produced at ms.
func oracleRec(offset int64, ms int, value string) Record {
	return Record{Partition: 0, Offset: offset, Timestamp: oracleAt(ms), Value: []byte(value)}
}

// oracleResult is a valid event of a student on an exercise.
func oracleResult(id, student, exercise string, tsMs int, metric float64) string {
	return oracleEvent(map[string]string{
		"event_id": strconv.Quote(id), "student_id": strconv.Quote(student), "exercise_id": strconv.Quote(exercise),
		"timestamp": strconv.FormatInt(oracleAt(tsMs).UnixMilli(), 10), "metric": strconv.FormatFloat(metric, 'f', -1, 64),
	})
}

func ptr(v float64) *float64 { return &v }

// TestOracleMalformed: each rule of §2.1 on its own, and what the system's
// parser (internal/event) says of the same record. The disagreements the
// oracle knows of are findings, listed with the case.
func TestOracleMalformed(t *testing.T) {
	pad := func(total int) string { // a valid record of exactly total bytes
		v := oracleEvent(map[string]string{"pad": `""`})
		return oracleEvent(map[string]string{"pad": `"` + strings.Repeat("p", total-len(v)) + `"`})
	}
	cases := []struct {
		name    string
		value   string
		reject  bool
		finding string // why the system disagrees, when it does
	}{
		{"valid", oracleEvent(nil), false, ""},
		{"valid epoch ms", oracleEvent(map[string]string{"timestamp": "1764324000000"}), false, ""},
		{"valid negative epoch ms", oracleEvent(map[string]string{"timestamp": "-1"}), false, ""},
		{"valid offset", oracleEvent(map[string]string{"timestamp": `"2026-11-28T11:00:00.5+01:00"`}), false, ""},
		{"valid -00:00", oracleEvent(map[string]string{"timestamp": `"2026-11-28T10:00:00-00:00"`}), false, ""},
		{"valid many fraction digits", oracleEvent(map[string]string{"timestamp": `"2026-11-28T10:00:00.1234567890123Z"`}), false, ""},
		{"valid leap day", oracleEvent(map[string]string{"timestamp": `"2024-02-29T10:00:00Z"`}), false, ""},
		{"valid lower-case t and z", oracleEvent(map[string]string{"timestamp": `"2026-11-28t10:00:00z"`}), false, ""},
		{"valid year 9999", oracleEvent(map[string]string{"timestamp": `"9999-12-31T23:59:59.999Z"`}), false, ""},
		{"valid unknown fields", oracleEvent(map[string]string{"extra": `{"a":[1,2,{"b":null}]}`, "x": "true"}), false, ""},
		{"valid event_id null", oracleEvent(map[string]string{"event_id": "null"}), false, ""},
		{"valid event_id absent", oracleEvent(map[string]string{"event_id": ""}), false, ""},
		{"valid event_id 128 chars", oracleEvent(map[string]string{"event_id": `"` + strings.Repeat("é", 128) + `"`}), false, ""},
		{"valid event_id surrogate pair", oracleEvent(map[string]string{"event_id": `"\ud83d\ude00"`}), false, ""},
		{"valid whitespace", " \n" + strings.ReplaceAll(strings.ReplaceAll(oracleEvent(nil), `":`, `" :`+"\n"), `,"`, " ,\t\"") + "\t ", false, ""},
		{"valid 64 KiB", pad(64 << 10), false, ""},
		{"valid edges", oracleEvent(map[string]string{"latitude": "-90", "longitude": "180", "metric": "100"}), false, ""},
		{"valid other edges", oracleEvent(map[string]string{"latitude": "90", "longitude": "-180", "metric": "0"}), false, ""},
		{"valid minus zero", oracleEvent(map[string]string{"metric": "-0", "timestamp": "-0"}), false, ""},
		{"valid underflow", oracleEvent(map[string]string{"metric": "1e-400"}), false, ""},
		{"valid duplicate name, first kept", oracleEvent(map[string]string{"metric": `7,"metric":500`}), false, ""},
		{"valid escaped names", strings.Replace(oracleEvent(nil), `"metric"`, `"metr\u0069c"`, 1), false, ""},
		{"valid lone surrogate in an unknown field", oracleEvent(map[string]string{"x": `"\udc00"`}), false, ""},

		{"too large", pad(64<<10 + 1), true, ""},
		{"empty value", "", true, ""},
		{"truncated", oracleEvent(nil)[:40], true, ""},
		{"trailing comma", strings.TrimSuffix(oracleEvent(nil), "}") + ",}", true, ""},
		{"single quotes", strings.ReplaceAll(oracleEvent(nil), `"`, `'`), true, ""},
		{"NaN", oracleEvent(map[string]string{"metric": "NaN"}), true, ""},
		{"trailing garbage", oracleEvent(nil) + "x", true, ""},
		{"two objects", oracleEvent(nil) + oracleEvent(nil), true, ""},
		{"byte order mark", "\ufeff" + oracleEvent(nil), true, ""},
		{"raw control character", oracleEvent(map[string]string{"event_id": "\"a\tb\""}), true, ""},
		{"invalid UTF-8 in an unknown field", oracleEvent(map[string]string{"x": "\"\xff\""}), true, ""},
		{"array", "[" + oracleEvent(nil) + "]", true, ""},
		{"string", strconv.Quote(oracleEvent(nil)), true, ""},
		{"number", "42", true, ""},
		{"null", "null", true, ""},

		{"event_id empty", oracleEvent(map[string]string{"event_id": `""`}), true, ""},
		{"event_id 129 chars", oracleEvent(map[string]string{"event_id": `"` + strings.Repeat("e", 129) + `"`}), true, ""},
		{"event_id number", oracleEvent(map[string]string{"event_id": "12"}), true, ""},
		{"event_id lone surrogate", oracleEvent(map[string]string{"event_id": `"\ud800"`}), true, ""},

		{"student_id missing", oracleEvent(map[string]string{"student_id": ""}), true, ""},
		{"student_id null", oracleEvent(map[string]string{"student_id": "null"}), true, ""},
		{"student_id empty", oracleEvent(map[string]string{"student_id": `""`}), true, ""},
		{"student_id 65 chars", oracleEvent(map[string]string{"student_id": `"` + strings.Repeat("s", 65) + `"`}), true, ""},
		{"student_id 64 chars", oracleEvent(map[string]string{"student_id": `"` + strings.Repeat("s", 64) + `"`}), false, ""},
		{"student_id all allowed", oracleEvent(map[string]string{"student_id": `"AZaz09._:-"`}), false, ""},
		{"student_id space", oracleEvent(map[string]string{"student_id": `"stu 1"`}), true, ""},
		{"student_id slash", oracleEvent(map[string]string{"student_id": `"stu/1"`}), true, ""},
		{"student_id accent", oracleEvent(map[string]string{"student_id": `"élève"`}), true, ""},
		{"student_id escaped slash", oracleEvent(map[string]string{"student_id": `"stu\/1"`}), true, ""},
		{"student_id number", oracleEvent(map[string]string{"student_id": "42"}), true, ""},
		{"exercise_id missing", oracleEvent(map[string]string{"exercise_id": ""}), true, ""},
		{"exercise_id object", oracleEvent(map[string]string{"exercise_id": `{"id":"ex-a"}`}), true, ""},
		{"exercise_id bad char", oracleEvent(map[string]string{"exercise_id": `"ex a"`}), true, ""},

		{"timestamp missing", oracleEvent(map[string]string{"timestamp": ""}), true, ""},
		{"timestamp null", oracleEvent(map[string]string{"timestamp": "null"}), true, ""},
		{"timestamp boolean", oracleEvent(map[string]string{"timestamp": "true"}), true, ""},
		{"timestamp no offset", oracleEvent(map[string]string{"timestamp": `"2026-11-28T10:00:00"`}), true, ""},
		{"timestamp space separated", oracleEvent(map[string]string{"timestamp": `"2026-11-28 10:00:00Z"`}), true, ""},
		{"timestamp words", oracleEvent(map[string]string{"timestamp": `"yesterday"`}), true, ""},
		{"timestamp no seconds", oracleEvent(map[string]string{"timestamp": `"2026-11-28T10:00Z"`}), true, ""},
		{"timestamp offset without colon", oracleEvent(map[string]string{"timestamp": `"2026-11-28T10:00:00+0100"`}), true, ""},
		{"timestamp empty fraction", oracleEvent(map[string]string{"timestamp": `"2026-11-28T10:00:00.Z"`}), true, ""},
		{"timestamp not a leap day", oracleEvent(map[string]string{"timestamp": `"2026-02-29T10:00:00Z"`}), true, ""},
		{"timestamp hour 24", oracleEvent(map[string]string{"timestamp": `"2026-11-28T24:00:00Z"`}), true, ""},
		{"timestamp leap second", oracleEvent(map[string]string{"timestamp": `"2016-12-31T23:59:60Z"`}), true, ""},
		{"timestamp one-digit hour", oracleEvent(map[string]string{"timestamp": `"2026-11-28T1:00:00Z"`}), true, ""},
		{"timestamp comma fraction", oracleEvent(map[string]string{"timestamp": `"2026-11-28T10:00:00,5Z"`}), true, ""},
		{"timestamp offset hour 24", oracleEvent(map[string]string{"timestamp": `"2026-11-28T10:00:00+24:00"`}), true, ""},
		{"timestamp offset minute 60", oracleEvent(map[string]string{"timestamp": `"2026-11-28T10:00:00+01:60"`}), true, ""},
		{"timestamp before year 0000 in UTC", oracleEvent(map[string]string{"timestamp": `"0000-01-01T00:30:00+01:00"`}), true, ""},
		{"timestamp after year 9999", oracleEvent(map[string]string{"timestamp": "253402300800000"}), true, ""},
		{"timestamp fractional ms", oracleEvent(map[string]string{"timestamp": "1764324000000.5"}), true, ""},
		{"timestamp exponent", oracleEvent(map[string]string{"timestamp": "1.764324e12"}), true, ""},
		{"timestamp integer overflow", oracleEvent(map[string]string{"timestamp": "99999999999999999999"}), true, ""},

		{"latitude above", oracleEvent(map[string]string{"latitude": "90.5"}), true, ""},
		{"latitude string", oracleEvent(map[string]string{"latitude": `"48.85"`}), true, ""},
		{"latitude null", oracleEvent(map[string]string{"latitude": "null"}), true, ""},
		{"longitude below", oracleEvent(map[string]string{"longitude": "-180.5"}), true, ""},
		{"longitude missing", oracleEvent(map[string]string{"longitude": ""}), true, ""},
		{"metric above", oracleEvent(map[string]string{"metric": "100.01"}), true, ""},
		{"metric negative", oracleEvent(map[string]string{"metric": "-0.01"}), true, ""},
		{"metric overflow", oracleEvent(map[string]string{"metric": "1e999"}), true, ""},
		{"metric string", oracleEvent(map[string]string{"metric": `"50"`}), true, ""},
		{"metric array", oracleEvent(map[string]string{"metric": "[50]"}), true, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := NewOracle(nil, nil, []Record{oracleRec(7, 0, tc.value)}, 0)
			reason, rejected := o.IsMalformed(0, 7)
			if rejected != tc.reject {
				t.Fatalf("oracle rejects = %v (%s), want %v; value %.200q", rejected, reason, tc.reject, tc.value)
			}
			if n := len(o.Valid()); n == boolInt(tc.reject) {
				t.Fatalf("%d results for a record rejected=%v", n, tc.reject)
			}
			_, err := event.Parse([]byte(tc.value))
			switch sysRejects := err != nil; {
			case sysRejects != tc.reject && tc.finding == "":
				t.Errorf("internal/event disagrees (rejects = %v: %v), and no finding explains it", sysRejects, err)
			case sysRejects != tc.reject:
				t.Logf("finding, internal/event rejects = %v (%v): %s", sysRejects, err, tc.finding)
			case tc.finding != "":
				t.Errorf("internal/event now agrees: the finding %q is fixed, drop it", tc.finding)
			}
		})
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestOracleFieldValues: the values kept, and the identity with and without
// event_id (against internal/event's, which defines the hashed bytes).
func TestOracleFieldValues(t *testing.T) {
	idless := func(ts string) string {
		return oracleEvent(map[string]string{"event_id": "", "timestamp": ts, "student_id": `"stu-9"`, "exercise_id": `"c00-ex01"`})
	}
	sameInstant := []string{
		idless(`"2026-11-28T10:00:00.123Z"`),
		idless(`"2026-11-28T11:00:00.123456+01:00"`), // finer digits are dropped
		idless(`"2026-11-28T05:30:00.1239-04:30"`),
		idless(strconv.FormatInt(oracleT0.Add(123*time.Millisecond).UnixMilli(), 10)),
	}
	for i, v := range sameInstant {
		r, reason := parseResult([]byte(v))
		if reason != "" {
			t.Fatalf("%s: %s", v, reason)
		}
		want := event.HashID("stu-9", "c00-ex01", oracleT0.Add(123*time.Millisecond))
		if r.ID != want || !r.Timestamp.Equal(oracleT0.Add(123*time.Millisecond)) {
			t.Errorf("case %d: id %s at %v, want %s at %v", i, r.ID, r.Timestamp, want, oracleT0.Add(123*time.Millisecond))
		}
	}
	// The hash against the system's on random inputs, pre-1970 and year 0 too.
	rnd := rand.New(rand.NewPCG(1, 2))
	for range 1000 {
		ts := time.UnixMilli(rnd.Int64N(maxTimestamp.UnixMilli()-minTimestamp.UnixMilli()) + minTimestamp.UnixMilli()).UTC()
		s, e := fmt.Sprintf("s%d", rnd.IntN(1000)), fmt.Sprintf("e.%d", rnd.IntN(50))
		if got, want := hashIdentity(s, e, ts), event.HashID(s, e, ts); got != want {
			t.Fatalf("hash of %s %s %v: %s, internal/event %s", s, e, ts, got, want)
		}
	}

	r, _ := parseResult([]byte(oracleEvent(map[string]string{"event_id": `"evt-\u00e9"`, "metric": "62.5", "latitude": "-12.25", "longitude": "1e2"})))
	if r.ID != "evt-é" || r.EventID != "evt-é" || r.Metric != 62.5 || r.Latitude != -12.25 || r.Longitude != 100 || r.StudentID != "stu-1" || r.ExerciseID != "ex-a" {
		t.Errorf("fields %+v", r)
	}
	if r, _ := parseResult([]byte(oracleEvent(map[string]string{"metric": `7,"metric":500`}))); r.Metric != 7 {
		t.Errorf("duplicate name: metric %v, want the first (7)", r.Metric)
	}
}

// TestOracleMembers: the member scan against encoding/json's decoder (first
// value of a name kept) on random objects: nesting, escapes, strings that
// look like structure, repeated names, whitespace.
func TestOracleMembers(t *testing.T) {
	rnd := rand.New(rand.NewPCG(7, 8))
	names := append(fieldNames[:], "x", "metr\\u0069c", "a\\\"b", "")
	var value func(depth int) string
	value = func(depth int) string {
		switch k := rnd.IntN(9); {
		case k == 0 && depth < 3:
			var items []string
			for range rnd.IntN(4) {
				items = append(items, value(depth+1))
			}
			return "[" + strings.Join(items, " , ") + "]"
		case k == 1 && depth < 3:
			var items []string
			for range rnd.IntN(4) {
				items = append(items, `"`+names[rnd.IntN(len(names))]+`":`+value(depth+1))
			}
			return "{" + strings.Join(items, ",") + "}"
		case k == 2:
			return []string{`"}"`, `"]"`, `"\\"`, `"\""`, `","`, `"a\u0022b"`, `"\ud83d\ude00"`}[rnd.IntN(7)]
		case k == 3:
			return []string{"true", "false", "null"}[rnd.IntN(3)]
		case k == 4:
			return []string{"0", "-1.5e-3", "12", "1E9"}[rnd.IntN(4)]
		default:
			return strconv.Quote(fmt.Sprint(rnd.IntN(100)))
		}
	}
	for range 3000 {
		var parts []string
		for range rnd.IntN(10) {
			parts = append(parts, `"`+names[rnd.IntN(len(names))]+"\"\t:\n"+value(0))
		}
		v := " {" + strings.Join(parts, " ,") + "} "
		if !json.Valid([]byte(v)) {
			t.Fatalf("the test made invalid JSON: %s", v)
		}
		got, ok := members([]byte(v))
		if !ok {
			t.Fatalf("%s: not an object", v)
		}
		want := map[string]string{}
		dec := json.NewDecoder(strings.NewReader(v))
		dec.Token()
		for dec.More() {
			tok, _ := dec.Token()
			var raw json.RawMessage
			if err := dec.Decode(&raw); err != nil {
				t.Fatal(err)
			}
			if _, seen := want[tok.(string)]; !seen {
				want[tok.(string)] = string(raw)
			}
		}
		for i, name := range fieldNames {
			if w, ok := want[name]; string(got[i]) != w || (got[i] != nil) != ok {
				t.Fatalf("%s: %s = %s, encoding/json %s", v, name, got[i], w)
			}
		}
	}
}

// TestOracleNumberRounding: a JSON number is read as the nearest float64.
// internal/event reads numbers with an exponent through fastjson's
// fastfloat, which multiplies by a power of ten and rounds twice: 0.57e2 is
// 56.99999999999999 there, below a threshold of 57 that it equals. The
// patrol it sends is one §2.2 does not allow (finding).
func TestOracleNumberRounding(t *testing.T) {
	for _, lit := range []string{"0.57e2", "5.7e1", "57", "57.0", "5700e-2"} {
		v := oracleEvent(map[string]string{"metric": lit})
		r, reason := parseResult([]byte(v))
		if reason != "" || r.Metric != 57 {
			t.Fatalf("%s: oracle reads %v (%s), want 57", lit, r.Metric, reason)
		}
		o := NewOracle(map[string]float64{"ex-a": 57}, nil, []Record{oracleRec(0, 0, v)}, 0)
		if must, may := o.Deployments(); len(must)+len(may) != 0 {
			t.Errorf("%s: deployments %v %v for a metric equal to its threshold", lit, must, may)
		}
		if sys, err := event.Parse([]byte(v)); err != nil || sys.Metric != 57 {
			t.Logf("finding: internal/event reads metric %s as %v (err %v): below the threshold 57 it equals, a patrol is sent", lit, sys.Metric, err)
		}
	}
}

// oracleWrite is a write of v (nil: delete) to exercise ex between ms a and b.
func oracleWrite(ex string, v *float64, a, b int) ThresholdWrite {
	return ThresholdWrite{Exercise: ex, Value: v, Started: oracleAt(a), Returned: oracleAt(b)}
}

// TestOracleThresholdInForce: the thresholds a record may be judged with.
func TestOracleThresholdInForce(t *testing.T) {
	never := time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
	seq := []ThresholdWrite{oracleWrite("ex-a", ptr(60), 10, 20), oracleWrite("ex-a", ptr(70), 30, 40)}
	cases := []struct {
		name     string
		initial  map[string]float64
		writes   []ThresholdWrite
		produced int
		judgedBy int // 0: unknown
		want     string
	}{
		{"initial", map[string]float64{"ex-a": 50}, nil, 5, 0, "50"},
		{"never set", nil, nil, 5, 0, "none"},
		{"initial outside 0..100", map[string]float64{"ex-a": 150}, nil, 5, 0, "none"},
		{"other exercise written", map[string]float64{"ex-a": 50}, []ThresholdWrite{oracleWrite("ex-b", ptr(60), 1, 2)}, 5, 0, "50"},
		{"before a write, lag unknown", map[string]float64{"ex-a": 50}, seq[:1], 5, 0, "50, 60"},
		{"before a write, judged before it started", map[string]float64{"ex-a": 50}, seq[:1], 5, 8, "50"},
		{"before a write, judged as it started", map[string]float64{"ex-a": 50}, seq[:1], 5, 10, "50"},
		{"during a write", map[string]float64{"ex-a": 50}, seq[:1], 15, 16, "50, 60"},
		{"when it returned", map[string]float64{"ex-a": 50}, seq[:1], 20, 21, "60"},
		{"after it returned", map[string]float64{"ex-a": 50}, seq[:1], 25, 0, "60"},
		{"delete", map[string]float64{"ex-a": 50}, []ThresholdWrite{oracleWrite("ex-a", nil, 10, 20)}, 25, 0, "none"},
		{"during a delete", map[string]float64{"ex-a": 50}, []ThresholdWrite{oracleWrite("ex-a", nil, 10, 20)}, 15, 0, "50, none"},
		{"write outside 0..100 is missing", map[string]float64{"ex-a": 50}, []ThresholdWrite{oracleWrite("ex-a", ptr(101), 10, 20)}, 25, 0, "none"},
		{"between two writes, lag unknown", map[string]float64{"ex-a": 50}, seq, 25, 0, "60, 70"},
		{"between two writes, judged in time", map[string]float64{"ex-a": 50}, seq, 25, 28, "60"},
		{"during the second", map[string]float64{"ex-a": 50}, seq, 35, 36, "60, 70"},
		{"after both: the first is superseded", map[string]float64{"ex-a": 50}, seq, 45, 0, "70"},
		{"concurrent writes: either order", map[string]float64{"ex-a": 50},
			[]ThresholdWrite{oracleWrite("ex-a", ptr(60), 10, 30), oracleWrite("ex-a", ptr(70), 15, 25)}, 45, 0, "60, 70"},
		{"unknown outcome", map[string]float64{"ex-a": 50},
			[]ThresholdWrite{{Exercise: "ex-a", Value: ptr(60), Started: oracleAt(10), Returned: never}}, 45, 0, "50, 60"},
		{"unknown outcome, judged before it started", map[string]float64{"ex-a": 50},
			[]ThresholdWrite{{Exercise: "ex-a", Value: ptr(60), Started: oracleAt(10), Returned: never}}, 5, 6, "50"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := NewOracle(tc.initial, tc.writes, nil, 0)
			var by time.Time
			if tc.judgedBy != 0 {
				by = oracleAt(tc.judgedBy)
			}
			if got := fmtThresholds(o.candidates("ex-a", oracleAt(tc.produced), by)); got != tc.want {
				t.Errorf("candidates %s, want %s", got, tc.want)
			}
		})
	}
}

// TestOracleDeployments: must, may and none, from the candidates.
func TestOracleDeployments(t *testing.T) {
	initial := map[string]float64{"ex-a": 50}
	raise := []ThresholdWrite{oracleWrite("ex-a", ptr(60), 10, 20)}
	cases := []struct {
		name     string
		writes   []ThresholdWrite
		metric   float64
		produced int
		judgedBy int
		want     string // must, may or none
	}{
		{"fails", nil, 40, 5, 0, "must"},
		{"at the threshold passes", nil, 50, 5, 0, "none"},
		{"passes", nil, 70, 5, 0, "none"},
		{"fails before and after a raise", raise, 40, 5, 0, "must"},
		{"fails only after a raise, lag unknown", raise, 55, 5, 0, "may"},
		{"fails only after a raise, judged before it", raise, 55, 5, 8, "none"},
		{"fails only after a raise, produced during it", raise, 55, 15, 0, "may"},
		{"fails only after a raise, produced after it", raise, 55, 25, 0, "must"},
		{"deleted", []ThresholdWrite{oracleWrite("ex-a", nil, 10, 20)}, 10, 25, 0, "none"},
		{"fails only before a delete", []ThresholdWrite{oracleWrite("ex-a", nil, 10, 20)}, 10, 5, 0, "may"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := oracleRec(0, tc.produced, oracleResult("evt-1", "stu-1", "ex-a", 0, tc.metric))
			if tc.judgedBy != 0 {
				rec.JudgedBy = oracleAt(tc.judgedBy)
			}
			must, may := NewOracle(initial, tc.writes, []Record{rec}, 0).Deployments()
			got := ""
			if _, ok := must["patrol-evt-1"]; ok {
				got = "must"
			}
			if _, ok := may["patrol-evt-1"]; ok {
				got += "may"
			}
			if got == "" {
				got = "none"
			}
			if got != tc.want {
				t.Errorf("%s, want %s (must %v, may %v)", got, tc.want, must, may)
			}
		})
	}
}

// TestOracleDuplicates: one event per identity, whatever the deliveries.
func TestOracleDuplicates(t *testing.T) {
	initial := map[string]float64{"ex-a": 50}
	t.Run("identical copies", func(t *testing.T) {
		v := oracleResult("evt-1", "stu-1", "ex-a", 0, 40)
		o := NewOracle(initial, nil, []Record{oracleRec(3, 0, v), oracleRec(9, 5, v)}, 0)
		must, may := o.Deployments()
		if len(o.Valid()) != 1 || len(o.Occurrences("evt-1")) != 2 || len(must) != 1 || len(may) != 0 || len(o.Conflicts()) != 0 {
			t.Fatalf("results %v, must %v, may %v, conflicts %v", o.Valid(), must, may, o.Conflicts())
		}
		if e := must["patrol-evt-1"]; len(e.Judgements) != 1 || e.Result.Offset != 3 {
			t.Errorf("expectation %+v", e)
		}
	})
	t.Run("id-less copies in other timestamp forms", func(t *testing.T) {
		a := oracleEvent(map[string]string{"event_id": "", "timestamp": `"2026-11-28T10:00:00Z"`})
		b := oracleEvent(map[string]string{"event_id": "", "timestamp": `"2026-11-28T11:00:00.000+01:00"`})
		c := oracleEvent(map[string]string{"event_id": "", "timestamp": `"2026-11-28T10:00:00.001Z"`})
		o := NewOracle(initial, nil, []Record{oracleRec(0, 0, a), oracleRec(1, 0, b), oracleRec(2, 0, c)}, 0)
		if len(o.Valid()) != 2 || len(o.Conflicts()) != 0 {
			t.Fatalf("results %v, conflicts %v", o.Valid(), o.Conflicts())
		}
	})
	t.Run("same identity, other content: first kept, any failing copy deploys", func(t *testing.T) {
		pass := oracleResult("evt-1", "stu-1", "ex-a", 0, 80)
		fail := oracleResult("evt-1", "stu-1", "ex-a", 0, 10)
		o := NewOracle(initial, nil, []Record{oracleRec(4, 0, fail), oracleRec(2, 0, pass)}, 0)
		if r := o.Valid()["evt-1"]; r.Metric != 80 || r.Offset != 2 {
			t.Errorf("archived %+v, want the lowest offset (metric 80)", r)
		}
		if len(o.Conflicts()["evt-1"]) != 2 {
			t.Errorf("conflicts %v", o.Conflicts())
		}
		must, _ := o.Deployments()
		if e, ok := must["patrol-evt-1"]; !ok || e.Judgements[0].Occurrence.Metric != 10 {
			t.Errorf("must %+v: the failing copy is a failing result the alert service judges", must)
		}
		if len(o.Notes()) != 0 {
			t.Errorf("notes %v: one partition orders the copies", o.Notes())
		}
	})
	t.Run("other content in two partitions", func(t *testing.T) {
		a := Record{Partition: 1, Offset: 0, Timestamp: oracleAt(5), Value: []byte(oracleResult("evt-1", "stu-1", "ex-a", 0, 80))}
		b := Record{Partition: 0, Offset: 9, Timestamp: oracleAt(7), Value: []byte(oracleResult("evt-1", "stu-2", "ex-a", 0, 80))}
		o := NewOracle(initial, nil, []Record{b, a}, 0)
		if r := o.Valid()["evt-1"]; r.StudentID != "stu-1" || len(o.Notes()) != 1 {
			t.Errorf("archived %+v (want the earliest produced), notes %v", r, o.Notes())
		}
	})
}

// TestOracleFollowUp: §2.3's window and outcomes.
func TestOracleFollowUp(t *testing.T) {
	const f = 10 * 60 * 1000 // follow-up-after, ms
	initial := map[string]float64{"ex-a": 50, "ex-b": 50}
	failing := oracleResult("evt-0", "stu-1", "ex-a", 0, 30)
	cases := []struct {
		name   string
		others []string
		want   string
		n      int
	}{
		{"none", nil, "no-attempt", 0},
		{"retake passes", []string{oracleResult("r1", "stu-1", "ex-a", 5*60000, 60)}, "recovered", 1},
		{"retake at the threshold", []string{oracleResult("r1", "stu-1", "ex-a", 5*60000, 50)}, "recovered", 1},
		{"retake fails", []string{oracleResult("r1", "stu-1", "ex-a", 5*60000, 40)}, "still-failing", 1},
		{"one of two passes", []string{oracleResult("r1", "stu-1", "ex-a", 60000, 40), oracleResult("r2", "stu-1", "ex-a", 120000, 90)}, "recovered", 2},
		{"same instant is outside", []string{oracleResult("r1", "stu-1", "ex-a", 0, 90)}, "no-attempt", 0},
		{"window end is inside", []string{oracleResult("r1", "stu-1", "ex-a", f, 90)}, "recovered", 1},
		{"after the window", []string{oracleResult("r1", "stu-1", "ex-a", f+1, 90)}, "no-attempt", 0},
		{"before the failure", []string{oracleResult("r1", "stu-1", "ex-a", -1000, 90)}, "no-attempt", 0},
		{"another student", []string{oracleResult("r1", "stu-2", "ex-a", 1000, 90)}, "no-attempt", 0},
		{"another exercise", []string{oracleResult("r1", "stu-1", "ex-b", 1000, 90)}, "no-attempt", 0},
		{"a retake delivered twice counts once", []string{oracleResult("r1", "stu-1", "ex-a", 1000, 40), oracleResult("r1", "stu-1", "ex-a", 1000, 40)}, "still-failing", 1},
		{"a malformed retake does not count", []string{strings.Replace(oracleResult("r1", "stu-1", "ex-a", 1000, 90), `"metric":90`, `"metric":190`, 1)}, "no-attempt", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			recs := []Record{oracleRec(0, 0, failing)}
			for i, v := range tc.others {
				recs = append(recs, oracleRec(int64(i+1), 1, v))
			}
			must, _ := NewOracle(initial, nil, recs, 10*time.Minute).Deployments()
			e := must["patrol-evt-0"]
			if len(e.Judgements) != 1 || e.Judgements[0].Status != tc.want || e.Judgements[0].FollowUps != tc.n || !slices.Equal(e.Statuses, []string{tc.want}) {
				t.Errorf("expectation %+v, want %s with %d results", e, tc.want, tc.n)
			}
		})
	}

	t.Run("the deployment's threshold decides, not a later one", func(t *testing.T) {
		recs := []Record{
			{Offset: 0, Timestamp: oracleAt(1), JudgedBy: oracleAt(2), Value: []byte(failing)},
			{Offset: 1, Timestamp: oracleAt(10), Value: []byte(oracleResult("r1", "stu-1", "ex-a", 60000, 60))},
		}
		writes := []ThresholdWrite{oracleWrite("ex-a", ptr(70), 5, 6)}
		must, may := NewOracle(initial, writes, recs, 10*time.Minute).Deployments()
		if e := must["patrol-evt-0"]; !slices.Equal(e.Statuses, []string{"recovered"}) || e.Judgements[0].Threshold != 50 {
			t.Errorf("first deployment %+v: judged with 50, the retake (60) meets it", e)
		}
		if _, ok := must["patrol-r1"]; !ok || len(may) != 0 {
			t.Errorf("the retake fails 70 and is deployed itself: must %v may %v", must, may)
		}
	})
	t.Run("an ambiguous threshold allows both outcomes", func(t *testing.T) {
		recs := []Record{
			{Offset: 0, Timestamp: oracleAt(15), Value: []byte(failing)},
			{Offset: 1, Timestamp: oracleAt(100), Value: []byte(oracleResult("r1", "stu-1", "ex-a", 60000, 55))},
		}
		writes := []ThresholdWrite{oracleWrite("ex-a", ptr(60), 10, 20)}
		must, _ := NewOracle(initial, writes, recs, 10*time.Minute).Deployments()
		if e := must["patrol-evt-0"]; !slices.Equal(e.Statuses, []string{"recovered", "still-failing"}) || len(e.Judgements) != 2 {
			t.Errorf("expectation %+v", e)
		}
	})
}

// TestOracleGeohash: the bisection against the library and the system's
// Cell (which clamps the north and east edges into the top cells).
func TestOracleGeohash(t *testing.T) {
	for _, tc := range []struct {
		lat, lon float64
		want     string
	}{
		{48.8566, 2.3522, "u09tv"}, {90, 180, "zzzzz"}, {-90, -180, "00000"}, {0, 0, "s0000"}, {90, 0, "upbpb"},
		{-0.0000001, -0.0000001, "7zzzz"},
	} {
		if got := geohashOf(tc.lat, tc.lon, 5); got != tc.want {
			t.Errorf("geohash(%v, %v) = %s, want %s", tc.lat, tc.lon, got, tc.want)
		}
	}
	rnd := rand.New(rand.NewPCG(3, 4))
	var points [][2]float64
	for range 20000 {
		points = append(points, [2]float64{rnd.Float64()*180 - 90, rnd.Float64()*360 - 180})
	}
	// Cell corners, where rounding would show: multiples of a cell's size.
	for range 20000 {
		points = append(points, [2]float64{-90 + float64(rnd.IntN(4097))*180/4096, -180 + float64(rnd.IntN(8193))*360/8192})
	}
	var libDiffers, centreInexact int
	for _, p := range points {
		got := geohashOf(p[0], p[1], 5)
		if sys := analytics.Cell(p[0], p[1], 5); sys != got {
			t.Fatalf("(%v, %v): oracle %s, system %s", p[0], p[1], got, sys)
		}
		if p[0] < 90 && p[1] < 180 && geohash.EncodeWithPrecision(p[0], p[1], 5) != got {
			libDiffers++
		}
		lat, lon := geohashCentre(got)
		llat, llon := geohash.DecodeCenter(got)
		if math.Abs(lat-llat) > centreTolerance || math.Abs(lon-llon) > centreTolerance {
			t.Fatalf("centre of %s: oracle (%v, %v), library (%v, %v)", got, lat, lon, llat, llon)
		}
		if lat != llat || lon != llon {
			centreInexact++
		}
		if geohashOf(lat, lon, 5) != got {
			t.Fatalf("centre (%v, %v) of %s is not in it", lat, lon, got)
		}
	}
	if libDiffers != 0 {
		t.Errorf("the library's encoding differs from the bisection at %d interior points", libDiffers)
	}
	t.Logf("library centres not bit-identical to the exact ones: %d of %d", centreInexact, len(points))
}

// TestOracleHotspots: failures per cell under the final threshold, top 10,
// ties by geohash ascending.
func TestOracleHotspots(t *testing.T) {
	var recs []Record
	off := int64(0)
	add := func(lat, lon, metric float64) {
		v := oracleEvent(map[string]string{"event_id": fmt.Sprintf(`"e%d"`, off), "latitude": strconv.FormatFloat(lat, 'f', -1, 64),
			"longitude": strconv.FormatFloat(lon, 'f', -1, 64), "metric": strconv.FormatFloat(metric, 'f', -1, 64)})
		recs = append(recs, oracleRec(off, 0, v))
		off++
	}
	// 12 cells along a parallel, cell i with failures 12-i except two ties.
	failures := []int{5, 5, 4, 9, 3, 3, 3, 2, 2, 1, 1, 7}
	for i, n := range failures {
		for range n {
			add(10.01, -50+float64(i)*0.05, 20) // 0.05° apart: one cell each
		}
		add(10.01, -50+float64(i)*0.05, 80) // passes: not a failure
	}
	o := NewOracle(map[string]float64{"ex-a": 50}, []ThresholdWrite{oracleWrite("ex-a", ptr(30), 1, 2)}, recs, 0)
	rep, notes := o.ExpectedReport(ReportInput{})
	if len(notes) != 0 {
		t.Fatalf("notes %v", notes)
	}
	if len(rep.Hotspots) != 1 || len(rep.Hotspots[0].Cells) != 10 {
		t.Fatalf("hotspots %+v", rep.Hotspots)
	}
	cells := rep.Hotspots[0].Cells
	for i := 1; i < len(cells); i++ {
		a, b := cells[i-1], cells[i]
		if a.Failures < b.Failures || (a.Failures == b.Failures && a.Geohash >= b.Geohash) {
			t.Errorf("cells %d and %d out of order: %+v %+v", i-1, i, a, b)
		}
	}
	if cells[0].Failures != 9 || cells[1].Failures != 7 || cells[9].Failures != 2 {
		t.Errorf("cells %+v", cells)
	}
	// The final threshold is 30 (the write): 20 still fails, nothing else.
	if ex := rep.Exercises[0]; *ex.Threshold != 30 || *ex.PassRate != 12.0/float64(len(recs)) {
		t.Errorf("exercise %+v", ex)
	}
}

// TestOracleFollowUpMarked: a follow-up's check must have seen every
// result of its window below its archive mark, and may have seen those
// above; the report then counts the outcome the deployment recorded.
func TestOracleFollowUpMarked(t *testing.T) {
	initial := map[string]float64{"ex-a": 50}
	failing := oracleResult("evt-0", "stu-1", "ex-a", 0, 30)
	pass := oracleResult("r1", "stu-1", "ex-a", 5000, 60)
	fail := oracleResult("r2", "stu-1", "ex-a", 6000, 40)
	cases := []struct {
		name   string
		others []string
		ends   int64 // the mark on partition 0; the failing result is at offset 0
		want   []string
	}{
		{"nothing in the window", nil, 1, []string{"no-attempt"}},
		{"a pass below the mark", []string{pass}, 2, []string{"recovered"}},
		{"a pass at the mark", []string{pass}, 1, []string{"no-attempt", "recovered"}},
		{"a fail below, a pass above", []string{fail, pass}, 2, []string{"recovered", "still-failing"}},
		{"a pass below, a fail above", []string{pass, fail}, 2, []string{"recovered"}},
		{"a fail above", []string{fail}, 1, []string{"no-attempt", "still-failing"}},
		{"a fail and a pass above", []string{fail, pass}, 1, []string{"no-attempt", "recovered", "still-failing"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			recs := []Record{oracleRec(0, 0, failing)}
			for i, v := range tc.others {
				recs = append(recs, oracleRec(int64(i+1), 1, v))
			}
			o := NewOracle(initial, nil, recs, 10*time.Minute)
			got, ok := o.DeployedMarked("patrol-evt-0", 50, map[int32]int64{0: tc.ends})
			if !ok || !slices.Equal(got, tc.want) {
				t.Errorf("outcomes %v, want %v", got, tc.want)
			}
			// The mark past every result allows only the oracle's own outcome.
			_, only, _ := o.deployedStatus("patrol-evt-0", 50)
			if got, _ := o.DeployedMarked("patrol-evt-0", 50, map[int32]int64{0: 100}); !slices.Equal(got, []string{only}) {
				t.Errorf("past every result: %v, want [%s]", got, only)
			}
		})
	}

	t.Run("the report counts the recorded outcome", func(t *testing.T) {
		o := NewOracle(initial, nil, []Record{oracleRec(0, 0, failing), oracleRec(1, 1, pass)}, 10*time.Minute)
		lat, lon := geohash.DecodeCenter("u09tv")
		report := func(recovered, noAttempt int) []byte {
			return []byte(fmt.Sprintf(`{"generated_at":"2026-11-28T10:00:00Z","exercises":[{"exercise_id":"ex-a","results":2,"mean_metric":45,"pass_rate":0.5,"threshold":50}],`+
				`"hotspots":[{"exercise_id":"ex-a","cells":[{"geohash":"u09tv","latitude":%v,"longitude":%v,"failures":1}]}],`+
				`"recovery":{"deployments":1,"recovered":%d,"still_failing":0,"no_attempt":%d,"pending":0,"rate":%s,`+
				`"by_exercise":[{"exercise_id":"ex-a","deployments":1,"recovered":%[3]d,"still_failing":0,"no_attempt":%[4]d,"pending":0,"rate":%[5]s}]}}`,
				lat, lon, recovered, noAttempt, map[int]string{0: "null", 1: "1"}[recovered]))
		}
		deployed := map[string]float64{"patrol-evt-0": 50}
		if d := o.CompareReportWith(report(0, 1), ReportInput{Deployed: deployed}); len(d) == 0 {
			t.Error("no-attempt where the retake passes, with no outcome given: no difference found")
		}
		if d := o.CompareReportWith(report(0, 1), ReportInput{Deployed: deployed, Outcomes: map[string]string{"patrol-evt-0": "no-attempt"}}); len(d) != 0 {
			t.Errorf("the recorded no-attempt given: %v", d)
		}
		if d := o.CompareReportWith(report(1, 0), ReportInput{Deployed: deployed}); len(d) != 0 {
			t.Errorf("recovered: %v", d)
		}
	})
}

// TestOracleReport: a small report exactly, and what CompareReport flags.
func TestOracleReport(t *testing.T) {
	recs := []Record{
		oracleRec(0, 0, oracleResult("a1", "stu-1", "ex-a", 0, 40)),
		oracleRec(1, 0, oracleResult("a2", "stu-2", "ex-a", 0, 60)),
		oracleRec(2, 0, oracleResult("a3", "stu-3", "ex-a", 0, 80)),
		oracleRec(3, 0, oracleResult("a4", "stu-1", "ex-a", 1000, 20)), // the retake of a1, failing too
		oracleRec(4, 0, oracleResult("b1", "stu-1", "ex-b", 0, 0.1)),
		oracleRec(5, 0, oracleResult("b2", "stu-1", "ex-b", 1, 0.2)),
		oracleRec(6, 0, oracleResult("b3", "stu-1", "ex-b", 2, 0.3)),
		oracleRec(7, 0, `{"broken":`),
	}
	o := NewOracle(map[string]float64{"ex-a": 50}, nil, recs, 10*time.Minute)
	rep, notes := o.ExpectedReport(ReportInput{})
	if len(notes) != 0 {
		t.Fatalf("notes %v", notes)
	}
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	lat, lon := geohash.DecodeCenter("u09tv")
	cell := fmt.Sprintf(`{"geohash":"u09tv","latitude":%v,"longitude":%v,"failures":2}`, lat, lon)
	want := `{"exercises":[` +
		`{"exercise_id":"ex-a","results":4,"mean_metric":50,"pass_rate":0.5,"threshold":50},` +
		`{"exercise_id":"ex-b","results":3,"mean_metric":0.2,"pass_rate":null,"threshold":null}],` +
		`"hotspots":[{"exercise_id":"ex-a","cells":[` + cell + `]}],` +
		`"recovery":{"deployments":2,"recovered":0,"still_failing":1,"no_attempt":1,"pending":0,"rate":0,` +
		`"by_exercise":[{"exercise_id":"ex-a","deployments":2,"recovered":0,"still_failing":1,"no_attempt":1,"pending":0,"rate":0}]}}`
	if string(b) != want {
		t.Fatalf("report\n%s\nwant\n%s", b, want)
	}
	// The mean is exact: (0.1+0.2)+0.3 in float64 is 0.6000000000000001.
	exact := new(big.Rat)
	for _, m := range []float64{0.1, 0.2, 0.3} {
		exact.Add(exact, new(big.Rat).SetFloat64(m))
	}
	if m, _ := exact.Quo(exact, big.NewRat(3, 1)).Float64(); rep.Exercises[1].MeanMetric != m || m != 0.2 {
		t.Errorf("mean %v, exact %v", rep.Exercises[1].MeanMetric, m)
	}

	doc := func(edit func(m map[string]any)) []byte {
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		m["generated_at"] = "2026-11-28T12:00:00Z"
		if edit != nil {
			edit(m)
		}
		out, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	exercise := func(m map[string]any, i int) map[string]any { return m["exercises"].([]any)[i].(map[string]any) }
	firstCell := func(m map[string]any) map[string]any {
		return m["hotspots"].([]any)[0].(map[string]any)["cells"].([]any)[0].(map[string]any)
	}
	for _, tc := range []struct {
		name  string
		edit  func(m map[string]any)
		diffs int
	}{
		{"equal", nil, 0},
		{"lists in another order", func(m map[string]any) { slices.Reverse(m["exercises"].([]any)) }, 0},
		{"centre within tolerance", func(m map[string]any) { firstCell(m)["latitude"] = lat + 1e-10 }, 0},
		{"centre off", func(m map[string]any) { firstCell(m)["latitude"] = lat + 1e-6 }, 1},
		{"one result more", func(m map[string]any) { exercise(m, 0)["results"] = 5 }, 1},
		{"mean one ulp off", func(m map[string]any) { exercise(m, 1)["mean_metric"] = math.Nextafter(0.2, 1) }, 1},
		{"pass rate where none", func(m map[string]any) { exercise(m, 1)["pass_rate"] = 0 }, 1},
		{"exercise missing", func(m map[string]any) { m["exercises"] = m["exercises"].([]any)[:1] }, 1},
		{"hotspots missing", func(m map[string]any) { m["hotspots"] = []any{} }, 1},
		{"pending deployments", func(m map[string]any) { m["recovery"].(map[string]any)["pending"] = 1 }, 1},
		{"rate null", func(m map[string]any) { m["recovery"].(map[string]any)["rate"] = nil }, 1},
		{"unknown field", func(m map[string]any) { m["recovery"].(map[string]any)["stillFailing"] = 1 }, 1},
		{"no generated_at", func(m map[string]any) { delete(m, "generated_at") }, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			diffs := o.CompareReport(doc(tc.edit))
			if len(diffs) != tc.diffs {
				t.Errorf("%d differences, want %d: %q", len(diffs), tc.diffs, diffs)
			}
		})
	}
	t.Run("deployments given", func(t *testing.T) {
		// a4 deployed by the system, and an extra of a passing result.
		in := ReportInput{Deployed: map[string]float64{"patrol-a1": 50, "patrol-a4": 50, "patrol-a2": 65}}
		got, _ := o.ExpectedReport(in)
		if r := got.Recovery; r.Deployments != 3 || r.StillFailing != 1 || r.NoAttempt != 2 {
			t.Errorf("recovery %+v", r)
		}
		if d := o.CompareReportWith(doc(nil), ReportInput{Deployed: map[string]float64{"patrol-a1": 50, "patrol-a4": 50, "patrol-zz": 1}}); len(d) != 1 {
			t.Errorf("an unknown deployment: %q", d)
		}
	})
	t.Run("ambiguous final threshold", func(t *testing.T) {
		writes := []ThresholdWrite{{Exercise: "ex-a", Value: ptr(70), Started: oracleAt(10), Returned: time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)}}
		o := NewOracle(map[string]float64{"ex-a": 50}, writes, recs, 10*time.Minute)
		in := ReportInput{At: oracleAt(100)}
		if _, notes := o.ExpectedReport(in); len(notes) != 1 {
			t.Errorf("notes %v", notes)
		}
		if d := o.CompareReportWith(doc(nil), in); len(d) != 0 { // under 50
			t.Errorf("differences %q", d)
		}
		under70 := func(m map[string]any) {
			exercise(m, 0)["threshold"], exercise(m, 0)["pass_rate"] = 70, 0.25
			firstCell(m)["failures"] = 3
		}
		if d := o.CompareReportWith(doc(under70), in); len(d) != 0 {
			t.Errorf("differences %q", d)
		}
	})
}

// ---- the cross-check against the system ----

// systemJudge is the alert service's thresholds copy at one instant.
type systemJudge struct{ th map[string]float64 }

func (j *systemJudge) Sync(context.Context) error { return nil }
func (j *systemJudge) Lookup(ex string) (float64, bool) {
	v, ok := j.th[ex]
	return v, ok
}

// inForce is the thresholds after the writes returned by t (a plain replay
// of the log: the tests' writes are sequential per exercise).
func inForce(initial map[string]float64, writes []ThresholdWrite, t time.Time) map[string]float64 {
	th := map[string]float64{}
	for k, v := range initial {
		th[k] = v
	}
	for _, w := range writes {
		if w.Returned.After(t) {
			continue
		}
		if w.Value == nil {
			delete(th, w.Exercise)
		} else {
			th[w.Exercise] = *w.Value
		}
	}
	return th
}

// systemRun replays the workload through the system's own code: each
// partition in offset order, every record parsed by internal/event (the
// DLQ or the archive, in SQLite), judged by ingest's JudgeBatch with the
// thresholds judgeWith gives for it, one deployment per workflow ID (first
// failing start wins, as Temporal's ID reuse policy does), each followed up
// by the activity the workflow runs; then the Analytics workflow writes the
// report. It returns the store, the rejected records, the deployments and
// the report document.
func systemRun(t *testing.T, recs []Record, judgeWith func(Record) map[string]float64, followUp time.Duration, final map[string]float64) (
	*sqlite.Store, map[recordPos]bool, map[string]store.Deployment, []byte) {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "acu.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	sorted := slices.Clone(recs)
	slices.SortFunc(sorted, func(a, b Record) int {
		if a.Partition != b.Partition {
			return int(a.Partition - b.Partition)
		}
		return int(a.Offset - b.Offset)
	})
	judge := &systemJudge{}
	alerts := ingest.NewAlerts(ingest.AlertConfig{}, judge, nil, slog.New(slog.DiscardHandler), nil)
	rejected := map[recordPos]bool{}
	type failing struct {
		r  event.Result
		th float64
	}
	var started []failing
	seen := map[string]bool{}
	var batch []event.Result
	for i, rec := range sorted {
		r, err := event.Parse(rec.Value)
		if err != nil {
			rejected[recordPos{rec.Partition, rec.Offset}] = true
		} else {
			batch = append(batch, r)
			judge.th = judgeWith(rec)
			fs, _, _ := alerts.JudgeBatch([]event.Result{r})
			for _, f := range fs {
				if wid := workflows.PatrolWorkflowID(f.Result.ID); !seen[wid] {
					seen[wid] = true
					started = append(started, failing{f.Result, f.Threshold})
				}
			}
		}
		if len(batch) == 500 || i == len(sorted)-1 || sorted[i+1].Partition != rec.Partition {
			if _, err := st.PutResults(ctx, batch); err != nil {
				t.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	patrol := &activities.Patrol{Store: st}
	deps := map[string]store.Deployment{}
	for _, f := range started {
		fu, err := patrol.CheckFollowUp(ctx, activities.FollowUpInput{Threshold: f.th, Window: store.FollowUpWindow{
			StudentID: f.r.StudentID, ExerciseID: f.r.ExerciseID, After: f.r.Timestamp, Until: f.r.Timestamp.Add(followUp)}})
		if err != nil {
			t.Fatal(err)
		}
		status := workflows.StatusNoAttempt // workflows.outcome
		switch {
		case fu.Passed > 0:
			status = workflows.StatusRecovered
		case fu.Results > 0:
			status = workflows.StatusStillFailing
		}
		d := store.Deployment{WorkflowID: workflows.PatrolWorkflowID(f.r.ID), EventID: f.r.ID, StudentID: f.r.StudentID,
			ExerciseID: f.r.ExerciseID, Metric: f.r.Metric, Threshold: f.th, Latitude: f.r.Latitude, Longitude: f.r.Longitude,
			FailedAt: f.r.Timestamp, Status: status, DispatchedAt: f.r.Timestamp, FollowUpAt: f.r.Timestamp.Add(followUp), FollowUpResults: fu.Results}
		if err := st.PutDeployment(ctx, d); err != nil {
			t.Fatal(err)
		}
		deps[d.WorkflowID] = d
	}

	var s testsuite.WorkflowTestSuite
	s.SetLogger(sdklog.NewStructuredLogger(slog.New(slog.DiscardHandler)))
	env := s.NewTestWorkflowEnvironment()
	env.SetStartTime(time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC))
	env.SetStartWorkflowOptions(client.StartWorkflowOptions{ID: "oracle-analytics"})
	// The test environment runs activities on the workflow's goroutine: on a
	// loaded machine its 1 s deadlock detector fires during a commit.
	env.SetWorkerOptions(worker.Options{DeadlockDetectionTimeout: time.Minute})
	env.RegisterWorkflow(workflows.Analytics)
	env.RegisterActivity(&activities.Analytics{Store: st, Thresholds: testkit.Thresholds(final)})
	env.ExecuteWorkflow(workflows.Analytics, workflows.AnalyticsInput{ChunkSize: 1000})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	doc, ok, err := st.LatestReport(ctx) // what `acu report --json` prints
	if err != nil || !ok {
		t.Fatalf("no report: %v", err)
	}
	return st, rejected, deps, doc
}

// TestOracleCrossCheck: the simulator's records (duplicates, malformed,
// id-less, retakes) through the oracle and through the system; threshold
// writes in the middle of the run; the system judging each record either
// as it is produced or after every write (a consumer far behind): both are
// legitimate executions, and the oracle must accept both.
func TestOracleCrossCheck(t *testing.T) {
	const topic = "piscine.results"
	ctx := context.Background()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, topic))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	simulated := map[string]float64{"ex-01": 50, "ex-02": 62.5, "ex-03": 70, "ex-04": 33.333, "ex-05": 0, "ex-06": 45}
	initial := map[string]float64{"ex-01": 50, "ex-02": 62.5, "ex-03": 70, "ex-04": 33.333, "ex-05": 0} // ex-06 has none
	var tick atomic.Int64
	clock := func() time.Time { return oracleT0.Add(time.Duration(tick.Add(1)) * 10 * time.Millisecond) }
	const seed = 20261128
	t.Logf("seed %d", seed)
	st, err := produce.Run(ctx, cl, produce.Options{
		Topic: topic, Rate: 1e6, Count: 6000, Students: 150, Thresholds: simulated, FailShare: 0.25, RetryShare: 0.7,
		RetryAfter: 5 * time.Second, DuplicateShare: 0.05, MalformedShare: 0.03, OmitEventIDShare: 0.2, Seed: seed, Now: clock,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var recs []Record
	for _, r := range testkit.ReadRecords(t, c.ListenAddrs(), topic, st.Sent) {
		recs = append(recs, Record{Partition: r.Partition, Offset: r.Offset, Timestamp: r.Timestamp, Key: r.Key, Value: r.Value})
	}
	// A few hand-made records as well: a copy of a failing event with
	// other content, sent later in the same partition.
	recs = append(recs,
		Record{Partition: 0, Offset: 1 << 20, Timestamp: recs[0].Timestamp, Value: []byte(oracleResult("evt-conflict", "stu-x", "ex-01", 0, 90))},
		Record{Partition: 0, Offset: 1<<20 + 1, Timestamp: recs[0].Timestamp, Value: []byte(oracleResult("evt-conflict", "stu-x", "ex-01", 0, 10))})

	// Threshold writes between record timestamps (which are milliseconds).
	var stamps []time.Time
	for _, r := range recs {
		stamps = append(stamps, r.Timestamp)
	}
	slices.SortFunc(stamps, func(a, b time.Time) int { return a.Compare(b) })
	stamps = slices.CompactFunc(stamps, func(a, b time.Time) bool { return a.Equal(b) })
	if len(stamps) < 10 {
		t.Fatalf("only %d distinct record timestamps", len(stamps))
	}
	between := func(share float64) (time.Time, time.Time) {
		s := stamps[int(share*float64(len(stamps)-1))]
		return s.Add(300 * time.Microsecond), s.Add(600 * time.Microsecond)
	}
	var writes []ThresholdWrite
	for _, w := range []struct {
		share float64
		ex    string
		v     *float64
	}{{0.3, "ex-01", ptr(65)}, {0.5, "ex-06", ptr(45)}, {0.6, "ex-04", nil}, {0.8, "ex-02", ptr(40)}} {
		a, b := between(w.share)
		writes = append(writes, ThresholdWrite{Exercise: w.ex, Value: w.v, Started: a, Returned: b})
	}
	final := inForce(initial, writes, time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC))
	followUp := 10 * time.Second

	began := time.Now()
	o := NewOracle(initial, writes, recs, followUp)
	must, may := o.Deployments()
	t.Logf("oracle: %d records, %d rejected, %d distinct results, %d must, %d may deployments, %v",
		len(recs), len(o.Malformed()), len(o.Valid()), len(must), len(may), time.Since(began))
	statuses := map[string]int{}
	for _, e := range must {
		statuses[e.Judgements[0].Status]++
	}
	if len(must) < 100 || len(may) == 0 || statuses["recovered"] == 0 || statuses["still-failing"] == 0 || statuses["no-attempt"] == 0 {
		t.Fatalf("a workload that exercises too little: must %d, may %d, statuses %v", len(must), len(may), statuses)
	}
	if _, ok := must["patrol-evt-conflict"]; !ok {
		t.Errorf("the failing copy of evt-conflict is not deployed")
	}

	executions := map[string]func(Record) map[string]float64{
		"judged when produced": func(r Record) map[string]float64 { return inForce(initial, writes, r.Timestamp) },
		"judged after every write": func(Record) map[string]float64 {
			return final
		},
	}
	for name, judgeWith := range executions {
		t.Run(name, func(t *testing.T) {
			st, rejected, deps, doc := systemRun(t, recs, judgeWith, followUp, final)

			// The DLQ.
			for _, r := range recs {
				_, want := o.IsMalformed(r.Partition, r.Offset)
				if got := rejected[recordPos{r.Partition, r.Offset}]; got != want {
					t.Errorf("record %d/%d: system rejects %v, oracle %v: %.200s", r.Partition, r.Offset, got, want, r.Value)
				}
			}
			// The archive: one row per identity, the first occurrence.
			results := o.Valid()
			archived := testkit.Archived(t, st)
			if len(archived) != len(results) {
				t.Errorf("%d archived rows, %d distinct results", len(archived), len(results))
			}
			for _, a := range archived {
				w, ok := results[a.ID]
				if !ok || a.StudentID != w.StudentID || a.ExerciseID != w.ExerciseID || !a.Timestamp.Equal(w.Timestamp) ||
					a.Metric != w.Metric || a.Latitude != w.Latitude || a.Longitude != w.Longitude || a.EventID != w.EventID {
					t.Errorf("archived %+v, oracle %+v", a, w)
				}
			}
			// The deployments: every must, nothing outside must and may, and
			// a status the oracle allows.
			deployed := map[string]float64{}
			for wid, d := range deps {
				deployed[wid] = d.Threshold
				e, ok := must[wid]
				if !ok {
					e, ok = may[wid]
				}
				if !ok {
					t.Errorf("extra deployment %s (%+v)", wid, d)
					continue
				}
				if !slices.Contains(e.Statuses, d.Status) {
					t.Errorf("%s: status %s, oracle allows %v", wid, d.Status, e.Statuses)
				}
				if !slices.ContainsFunc(e.Judgements, func(j Judgement) bool { return j.Threshold == d.Threshold }) {
					t.Errorf("%s: judged with %v, oracle allows %+v", wid, d.Threshold, e.Judgements)
				}
			}
			for wid := range must {
				if _, ok := deps[wid]; !ok {
					t.Errorf("lost deployment %s", wid)
				}
			}
			// The report.
			if diffs := o.CompareReportWith(doc, ReportInput{Deployed: deployed}); len(diffs) > 0 {
				t.Errorf("report differs from the oracle's:\n%s\nsystem's report: %s", strings.Join(diffs, "\n"), doc)
			}
			var rep Report
			if err := json.Unmarshal(doc, &rep); err != nil {
				t.Fatal(err)
			}
			if len(rep.Exercises) != 6 || len(rep.Hotspots) < 4 || rep.Exercises[3].Threshold != nil || rep.Recovery.Rate == nil {
				t.Errorf("a report that checks too little: %s", doc)
			}
			t.Logf("%d deployments; report %s", len(deps), doc)
		})
	}

	// Told when each record was judged at the latest (just after it was
	// produced), the oracle leaves ambiguous only the records stamped in
	// the millisecond of a write.
	t.Run("judgement times known", func(t *testing.T) {
		timed := slices.Clone(recs)
		for i := range timed {
			timed[i].JudgedBy = timed[i].Timestamp.Add(time.Millisecond)
		}
		o := NewOracle(initial, writes, timed, followUp)
		must, may := o.Deployments()
		for wid, e := range may {
			inWriteMs := func(r Result) bool {
				return slices.ContainsFunc(writes, func(w ThresholdWrite) bool {
					return w.Exercise == r.ExerciseID && w.Started.Truncate(time.Millisecond).Equal(r.Produced)
				})
			}
			if !slices.ContainsFunc(o.Occurrences(e.Result.ID), inWriteMs) {
				t.Errorf("%s is ambiguous, but none of its copies was produced in a write's millisecond: %+v", wid, o.Occurrences(e.Result.ID))
			}
		}
		_, _, deps, _ := systemRun(t, timed, executions["judged when produced"], followUp, final)
		for wid := range must {
			if _, ok := deps[wid]; !ok {
				t.Errorf("lost deployment %s", wid)
			}
		}
		for wid := range deps {
			if _, ok := must[wid]; !ok {
				if _, ok := may[wid]; !ok {
					t.Errorf("extra deployment %s", wid)
				}
			}
		}
		t.Logf("%d must, %d may", len(must), len(may))
	})
}

// BenchmarkOracle: a few hundred thousand records (5 % copies, 2 %
// malformed, 20 % failing) on 20 exercises, two of which get ten threshold
// writes during the run, the report included.
func BenchmarkOracle(b *testing.B) {
	rnd := rand.New(rand.NewPCG(5, 6))
	recs := make([]Record, 0, 300_000)
	for i := 0; len(recs) < cap(recs); i++ {
		metric := 50 + float64(rnd.IntN(5001))/100
		if rnd.IntN(5) == 0 {
			metric = float64(rnd.IntN(4000)) / 100
		}
		v := oracleEvent(map[string]string{
			"event_id": fmt.Sprintf(`"e%d"`, i), "student_id": fmt.Sprintf(`"stu-%d"`, rnd.IntN(5000)),
			"exercise_id": fmt.Sprintf(`"ex-%d"`, rnd.IntN(20)), "metric": strconv.FormatFloat(metric, 'f', -1, 64),
			"timestamp": strconv.FormatInt(oracleAt(i).UnixMilli(), 10),
			"latitude":  strconv.FormatFloat(43+rnd.Float64()*6, 'f', 6, 64), "longitude": strconv.FormatFloat(rnd.Float64()*7, 'f', 6, 64),
		})
		if rnd.IntN(50) == 0 {
			v = v[:len(v)/2]
		}
		p := int32(rnd.IntN(6))
		recs = append(recs, Record{Partition: p, Offset: int64(len(recs)), Timestamp: oracleAt(i), Value: []byte(v)})
		if rnd.IntN(20) == 0 {
			recs = append(recs, Record{Partition: p, Offset: int64(len(recs)), Timestamp: oracleAt(i + 5), Value: []byte(v)})
		}
	}
	initial := map[string]float64{}
	var writes []ThresholdWrite
	for e := range 20 {
		initial[fmt.Sprintf("ex-%d", e)] = 50
	}
	for k := range 10 {
		for _, ex := range []string{"ex-0", "ex-1"} {
			at := 30_000 * k
			writes = append(writes, oracleWrite(ex, ptr(float64(40+2*k)), at, at+5))
		}
	}
	b.ResetTimer()
	for range b.N {
		o := NewOracle(initial, writes, recs, 30*time.Minute)
		o.ExpectedReport(ReportInput{})
	}
}
