package event_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/acu-patrol/acu/internal/event"
)

const valid = `{"event_id":"e-1","timestamp":"2026-11-28T10:00:00+01:00","student_id":"s.1","latitude":48.85,"longitude":2.35,"exercise_id":"ex-01","metric":42.5,"extra":{"x":[1,2]}}`

func TestParseValid(t *testing.T) {
	r, err := event.Parse([]byte(valid))
	if err != nil {
		t.Fatal(err)
	}
	want := event.Result{ID: "e-1", EventID: "e-1", Timestamp: time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC),
		StudentID: "s.1", ExerciseID: "ex-01", Latitude: 48.85, Longitude: 2.35, Metric: 42.5}
	if r != want {
		t.Fatalf("got %+v\nwant %+v", r, want)
	}
}

func TestIdentityWithoutEventID(t *testing.T) {
	a, err := event.Parse([]byte(`{"timestamp":1764320400000,"student_id":"s1","latitude":0,"longitude":0,"exercise_id":"ex","metric":0}`))
	if err != nil {
		t.Fatal(err)
	}
	// The same instant written as RFC 3339 in another offset is the same event.
	b, err := event.Parse([]byte(`{"timestamp":"2025-11-28T10:00:00.000+01:00","student_id":"s1","latitude":1,"longitude":1,"exercise_id":"ex","metric":99}`))
	if err != nil {
		t.Fatal(err)
	}
	if a.ID != b.ID || len(a.ID) != 32 {
		t.Fatalf("identities differ or wrong length: %q %q", a.ID, b.ID)
	}
	c, _ := event.Parse([]byte(`{"timestamp":1764320400001,"student_id":"s1","latitude":0,"longitude":0,"exercise_id":"ex","metric":0}`))
	if c.ID == a.ID {
		t.Fatal("a different millisecond must give a different identity")
	}
	if a.EventID != "" {
		t.Fatalf("EventID should be empty, got %q", a.EventID)
	}
}

func TestParseRejects(t *testing.T) {
	base := map[string]string{
		"timestamp": `"2026-11-28T10:00:00Z"`, "student_id": `"s1"`, "latitude": `1`,
		"longitude": `2`, "exercise_id": `"ex"`, "metric": `50`,
	}
	build := func(override map[string]string) string {
		var parts []string
		for _, k := range []string{"event_id", "timestamp", "student_id", "latitude", "longitude", "exercise_id", "metric"} {
			v, ok := override[k]
			if !ok {
				v, ok = base[k]
			}
			if ok && v != "-" {
				parts = append(parts, `"`+k+`":`+v)
			}
		}
		return "{" + strings.Join(parts, ",") + "}"
	}
	tests := []struct {
		name   string
		value  string
		reason event.Reason
		field  string
	}{
		{"not json", `{"timestamp":`, event.ReasonMalformed, ""},
		{"array", `[1,2]`, event.ReasonMalformed, ""},
		{"empty", ``, event.ReasonMalformed, ""},
		{"too large", `{"pad":"` + strings.Repeat("x", event.MaxSize) + `"}`, event.ReasonTooLarge, ""},
		{"missing student", build(map[string]string{"student_id": "-"}), event.ReasonMissing, "student_id"},
		{"null metric", build(map[string]string{"metric": "null"}), event.ReasonMissing, "metric"},
		{"missing timestamp", build(map[string]string{"timestamp": "-"}), event.ReasonMissing, "timestamp"},
		{"student bad char", build(map[string]string{"student_id": `"a b"`}), event.ReasonFormat, "student_id"},
		{"student too long", build(map[string]string{"student_id": `"` + strings.Repeat("a", 65) + `"`}), event.ReasonFormat, "student_id"},
		{"exercise empty", build(map[string]string{"exercise_id": `""`}), event.ReasonFormat, "exercise_id"},
		{"student number", build(map[string]string{"student_id": `12`}), event.ReasonType, "student_id"},
		{"metric string", build(map[string]string{"metric": `"50"`}), event.ReasonType, "metric"},
		{"metric over", build(map[string]string{"metric": `100.01`}), event.ReasonRange, "metric"},
		{"metric under", build(map[string]string{"metric": `-0.5`}), event.ReasonRange, "metric"},
		{"metric overflow", build(map[string]string{"metric": `1e400`}), event.ReasonRange, "metric"},
		{"latitude", build(map[string]string{"latitude": `90.5`}), event.ReasonRange, "latitude"},
		{"longitude", build(map[string]string{"longitude": `-180.1`}), event.ReasonRange, "longitude"},
		{"timestamp no offset", build(map[string]string{"timestamp": `"2026-11-28T10:00:00"`}), event.ReasonFormat, "timestamp"},
		{"timestamp fractional ms", build(map[string]string{"timestamp": `1.5`}), event.ReasonFormat, "timestamp"},
		{"timestamp bool", build(map[string]string{"timestamp": `true`}), event.ReasonType, "timestamp"},
		{"epoch ms past year 9999", build(map[string]string{"timestamp": `253402300800000`}), event.ReasonRange, "timestamp"},
		{"epoch ms centuries past 9999", build(map[string]string{"timestamp": `9223372036854775807`}), event.ReasonRange, "timestamp"},
		{"epoch ms before year 0", build(map[string]string{"timestamp": `-62167219200001`}), event.ReasonRange, "timestamp"},
		{"RFC 3339 year 9999 whose offset puts it in 10000", build(map[string]string{"timestamp": `"9999-12-31T23:30:00-01:00"`}), event.ReasonRange, "timestamp"},
		{"RFC 3339 year 0000 whose offset puts it in -0001", build(map[string]string{"timestamp": `"0000-01-01T00:30:00+01:00"`}), event.ReasonRange, "timestamp"},
		{"event_id empty", build(map[string]string{"event_id": `""`}), event.ReasonRange, "event_id"},
		{"event_id long", build(map[string]string{"event_id": `"` + strings.Repeat("é", 129) + `"`}), event.ReasonRange, "event_id"},
		{"event_id number", build(map[string]string{"event_id": `7`}), event.ReasonType, "event_id"},
		{"event_id invalid UTF-8", build(map[string]string{"event_id": "\"a\xff\""}), event.ReasonFormat, "event_id"},
		// RFC 3339 §5.6 exactly: what time.Parse also takes is refused.
		{"timestamp one-digit hour", build(map[string]string{"timestamp": `"2026-11-28T1:00:00Z"`}), event.ReasonFormat, "timestamp"},
		{"timestamp comma fraction", build(map[string]string{"timestamp": `"2026-11-28T10:00:00,5Z"`}), event.ReasonFormat, "timestamp"},
		{"timestamp offset hour 24", build(map[string]string{"timestamp": `"2026-11-28T10:00:00+24:00"`}), event.ReasonFormat, "timestamp"},
		{"timestamp offset minute 60", build(map[string]string{"timestamp": `"2026-11-28T10:00:00+01:60"`}), event.ReasonFormat, "timestamp"},
		{"timestamp offset without colon", build(map[string]string{"timestamp": `"2026-11-28T10:00:00+0100"`}), event.ReasonFormat, "timestamp"},
		{"timestamp dot without digit", build(map[string]string{"timestamp": `"2026-11-28T10:00:00.Z"`}), event.ReasonFormat, "timestamp"},
		{"timestamp February 30", build(map[string]string{"timestamp": `"2026-02-30T10:00:00Z"`}), event.ReasonFormat, "timestamp"},
		{"timestamp leap second", build(map[string]string{"timestamp": `"2016-12-31T23:59:60Z"`}), event.ReasonFormat, "timestamp"},
		{"timestamp space separator", build(map[string]string{"timestamp": `"2026-11-28 10:00:00Z"`}), event.ReasonFormat, "timestamp"},
		// fastjson keeps "\ud800" as its six characters and reads
		// "\ud800\u0041" as U+FFFD, dropping the "A": not text, refused.
		{"event_id lone high surrogate", build(map[string]string{"event_id": `"\ud800"`}), event.ReasonFormat, "event_id"},
		{"event_id high surrogate then letter", build(map[string]string{"event_id": `"x\ud800\u0041"`}), event.ReasonFormat, "event_id"},
		{"event_id lone low surrogate", build(map[string]string{"event_id": `"\uDC00x"`}), event.ReasonFormat, "event_id"},
		{"event_id escaped name, lone surrogate", `{"event\u005fid":"\ud800",` + build(nil)[1:], event.ReasonFormat, "event_id"},
		{"invalid UTF-8 in an unknown field", `{"note":"` + "\xff" + `",` + build(nil)[1:], event.ReasonMalformed, ""},
		{"leading zero", build(map[string]string{"metric": `050`}), event.ReasonMalformed, ""},
		{"NaN literal", build(map[string]string{"metric": `NaN`}), event.ReasonMalformed, ""},
		{"trailing garbage", valid + `x`, event.ReasonMalformed, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := event.Parse([]byte(tc.value))
			var e *event.Error
			if !errors.As(err, &e) {
				t.Fatalf("want *event.Error, got %v", err)
			}
			if e.Reason != tc.reason || e.Field != tc.field {
				t.Fatalf("got reason %q field %q (%v), want %q %q", e.Reason, e.Field, err, tc.reason, tc.field)
			}
			if e.Error() == "" {
				t.Fatal("empty message")
			}
		})
	}
}

func TestParseAcceptsBoundsAndEscapes(t *testing.T) {
	for _, v := range []string{
		`{"event_id":"a\"b","timestamp":0,"student_id":"s","latitude":-90,"longitude":180,"exercise_id":"e","metric":100}`,
		`{"event_id":null,"timestamp":"2026-01-01T00:00:00.123456789-05:30","student_id":"s","latitude":90,"longitude":-180,"exercise_id":"e","metric":0}`,
		` {"timestamp":-1000,"student_id":"A.b_c:d-9","latitude":0.0,"longitude":1e1,"exercise_id":"e","metric":5e1} `,
		// The ends of what the system represents: a wrong clock loses no alert.
		`{"timestamp":253402300799999,"student_id":"s","latitude":0,"longitude":0,"exercise_id":"e","metric":0}`,
		`{"timestamp":-62167219200000,"student_id":"s","latitude":0,"longitude":0,"exercise_id":"e","metric":0}`,
		`{"timestamp":"9999-12-31T23:59:59.999+00:00","student_id":"s","latitude":0,"longitude":0,"exercise_id":"e","metric":0}`,
		// §5.6: "t" and "z" may be lower case; a fraction has any length;
		// February 29 of a leap year.
		`{"timestamp":"2024-02-29t10:00:00.1234567891234z","student_id":"s","latitude":0,"longitude":0,"exercise_id":"e","metric":0}`,
		// A surrogate pair is a character; an escaped backslash before "ud800"
		// is text; a lone surrogate in a field the contract ignores is ignored.
		`{"event_id":"\ud83d\ude00","timestamp":0,"student_id":"s","latitude":0,"longitude":0,"exercise_id":"e","metric":0}`,
		`{"event_id":"\\ud800","timestamp":0,"student_id":"s","latitude":0,"longitude":0,"exercise_id":"e","metric":0}`,
		`{"note":"\ud800","event_id":"e1","timestamp":0,"student_id":"s","latitude":0,"longitude":0,"exercise_id":"e","metric":0}`,
	} {
		if _, err := event.Parse([]byte(v)); err != nil {
			t.Errorf("%s: %v", v, err)
		}
	}
	// A number is read as its correctly rounded value, exponent or not: a
	// metric equal to the threshold passes it.
	for text, want := range map[string]float64{"0.57e2": 57, "5.7E1": 57, "57.000000000000000000001": 57,
		"0.1e1": 1, "123456789012345678e-16": 12.3456789012345678, "4.4e-322": 4.4e-322} {
		r, err := event.Parse([]byte(`{"timestamp":0,"student_id":"s","latitude":0,"longitude":0,"exercise_id":"e","metric":` + text + `}`))
		if err != nil || r.Metric != want {
			t.Errorf("metric %s read as %v (%v), want %v", text, r.Metric, err, want)
		}
	}
	for text, want := range map[string]time.Time{
		`"2024-02-29t10:00:00.1239z"`:     time.Date(2024, 2, 29, 10, 0, 0, 123_000_000, time.UTC),
		`"2026-11-28T10:00:00.5-01:30"`:   time.Date(2026, 11, 28, 11, 30, 0, 500_000_000, time.UTC),
		`"0000-01-01T00:00:00Z"`:          time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC),
		`"2026-11-28T23:59:59.999+23:59"`: time.Date(2026, 11, 28, 0, 0, 59, 999_000_000, time.UTC),
	} {
		r, err := event.Parse([]byte(`{"timestamp":` + text + `,"student_id":"s","latitude":0,"longitude":0,"exercise_id":"e","metric":1}`))
		if err != nil || !r.Timestamp.Equal(want) {
			t.Errorf("timestamp %s read as %v (%v), want %v", text, r.Timestamp, err, want)
		}
	}
	r, _ := event.Parse([]byte(`{"event_id":"a\"b","timestamp":0,"student_id":"s","latitude":0,"longitude":0,"exercise_id":"e","metric":1}`))
	if r.ID != `a"b` {
		t.Fatalf("escaped event_id decoded as %q", r.ID)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(valid))
	f.Add([]byte(`{"timestamp":1,"student_id":"s","latitude":0,"longitude":0,"exercise_id":"e","metric":0}`))
	f.Add([]byte(`{"timestamp":253402300799999,"student_id":"s","latitude":0,"longitude":0,"exercise_id":"e","metric":0}`))
	f.Add([]byte(`{"timestamp":"9999-12-31T23:59:59.999-00:01","student_id":"s","latitude":0,"longitude":0,"exercise_id":"e","metric":0}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := event.Parse(b)
		if err != nil {
			var e *event.Error
			if !errors.As(err, &e) {
				t.Fatalf("error of wrong type: %v", err)
			}
			return
		}
		if r.ID == "" || r.Metric < 0 || r.Metric > 100 || event.ValidIdent(r.StudentID) != nil {
			t.Fatalf("accepted invalid result %+v", r)
		}
		// Whatever is accepted is valid JSON by the standard library too.
		if !json.Valid(b) || !utf8.ValidString(r.EventID) {
			t.Fatalf("accepted %q, which is not valid JSON / UTF-8", b)
		}
		// And what is accepted can be started and notified: the workflow's
		// input and the notification encode it as JSON, failed_at as RFC 3339.
		enc, err := json.Marshal(r)
		if err != nil {
			t.Fatalf("accepted %q, whose result does not encode: %v", b, err)
		}
		var back event.Result
		if err := json.Unmarshal(enc, &back); err != nil || !back.Timestamp.Equal(r.Timestamp) {
			t.Fatalf("accepted %q, whose timestamp does not round-trip: %s, %v", b, enc, err)
		}
	})
}
