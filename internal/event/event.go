// Package event decodes and validates the result events of the contract
// (DESIGN.md §2.1) and computes their identity.
//
// It is the per-record hot path of both consumers: Parse validates and
// parses with github.com/valyala/fastjson (pooled parsers, no reflection)
// and allocates little beyond the strings it keeps.
package event

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/valyala/fastjson"
)

// MaxSize is the largest accepted record value, in bytes.
const MaxSize = 64 << 10

// Result is one graded exercise, validated.
type Result struct {
	// ID is the event identity: EventID when present, else HashID of
	// (StudentID, ExerciseID, Timestamp in ms).
	ID string `json:"id"`
	// EventID is the producer's event_id, empty when absent.
	EventID    string    `json:"event_id,omitempty"`
	Timestamp  time.Time `json:"timestamp"`
	StudentID  string    `json:"student_id"`
	ExerciseID string    `json:"exercise_id"`
	Latitude   float64   `json:"latitude"`
	Longitude  float64   `json:"longitude"`
	Metric     float64   `json:"metric"`
}

// Reason classifies a rejected record; it is the label of the rejects metric.
type Reason string

// Rejection reasons.
const (
	ReasonTooLarge  Reason = "too_large"
	ReasonMalformed Reason = "malformed_json"
	ReasonMissing   Reason = "missing_field"
	ReasonType      Reason = "wrong_type"
	ReasonRange     Reason = "out_of_range"
	ReasonFormat    Reason = "bad_format"
)

// Error is a validation failure: a record that breaks a rule of the contract.
type Error struct {
	Reason Reason
	Field  string // the offending field, empty for whole-record errors
	Msg    string
}

func (e *Error) Error() string {
	if e.Field == "" {
		return e.Msg
	}
	return e.Field + ": " + e.Msg
}

func fieldErr(r Reason, field, format string, args ...any) *Error {
	return &Error{Reason: r, Field: field, Msg: fmt.Sprintf(format, args...)}
}

// parsers reuses fastjson parsers: Parse allocates only the strings it
// keeps.
var parsers fastjson.ParserPool

// Parse decodes and validates one record value. A returned error is always
// an *Error that says which rule was broken.
func Parse(value []byte) (Result, error) {
	var r Result
	if len(value) > MaxSize {
		return r, &Error{Reason: ReasonTooLarge, Msg: fmt.Sprintf("record is %d bytes, more than the %d allowed", len(value), MaxSize)}
	}
	// Strict validation first: the parser alone is lenient about some
	// malformed input. Neither checks UTF-8; the strings kept are checked.
	if err := fastjson.ValidateBytes(value); err != nil {
		return r, &Error{Reason: ReasonMalformed, Msg: "invalid JSON: " + err.Error()}
	}
	p := parsers.Get()
	defer parsers.Put(p)
	v, err := p.ParseBytes(value)
	if err != nil {
		return r, &Error{Reason: ReasonMalformed, Msg: "invalid JSON: " + err.Error()}
	}
	if v.Type() != fastjson.TypeObject {
		return r, &Error{Reason: ReasonMalformed, Msg: "record is not a JSON object"}
	}
	if r.EventID, err = optString(v.Get("event_id"), "event_id", 128); err != nil {
		return r, err
	}
	if r.EventID != "" && mayHoldSurrogateEscape(value) && loneSurrogate(value, "event_id") {
		return r, fieldErr(ReasonFormat, "event_id", `holds an unpaired UTF-16 surrogate escape (such as \ud800), which is no character`)
	}
	if r.StudentID, err = ident(v.Get("student_id"), "student_id"); err != nil {
		return r, err
	}
	if r.ExerciseID, err = ident(v.Get("exercise_id"), "exercise_id"); err != nil {
		return r, err
	}
	if r.Timestamp, err = timestamp(v.Get("timestamp")); err != nil {
		return r, err
	}
	if r.Latitude, err = number(v.Get("latitude"), "latitude", -90, 90); err != nil {
		return r, err
	}
	if r.Longitude, err = number(v.Get("longitude"), "longitude", -180, 180); err != nil {
		return r, err
	}
	if r.Metric, err = number(v.Get("metric"), "metric", 0, 100); err != nil {
		return r, err
	}
	// "one JSON object, UTF-8": unknown fields are ignored, but they are
	// part of the value (the fields read were checked on their own).
	if !utf8.Valid(value) {
		return r, &Error{Reason: ReasonMalformed, Msg: "record is not valid UTF-8 (outside the fields of the contract)"}
	}
	r.ID = r.EventID
	if r.ID == "" {
		r.ID = HashID(r.StudentID, r.ExerciseID, r.Timestamp)
	}
	return r, nil
}

// HashID is the identity of an event without event_id: the first 128 bits,
// in hex, of SHA-256 over student, exercise and the timestamp in Unix ms,
// separated by NUL (which no identifier may contain).
func HashID(studentID, exerciseID string, ts time.Time) string {
	buf := make([]byte, 0, len(studentID)+len(exerciseID)+24)
	buf = append(buf, studentID...)
	buf = append(buf, 0)
	buf = append(buf, exerciseID...)
	buf = append(buf, 0)
	buf = strconv.AppendInt(buf, ts.UnixMilli(), 10)
	sum := sha256.Sum256(buf)
	return hex.EncodeToString(sum[:16])
}

func isNull(v *fastjson.Value) bool { return v == nil || v.Type() == fastjson.TypeNull }

// str returns a JSON string's text, which must be valid UTF-8.
func str(v *fastjson.Value, field string) ([]byte, error) {
	if v.Type() != fastjson.TypeString {
		return nil, fieldErr(ReasonType, field, "must be a string")
	}
	b, _ := v.StringBytes()
	if !utf8.Valid(b) {
		return nil, fieldErr(ReasonFormat, field, "is not valid UTF-8")
	}
	return b, nil
}

func optString(v *fastjson.Value, field string, maxLen int) (string, error) {
	if isNull(v) {
		return "", nil
	}
	b, err := str(v, field)
	if err != nil {
		return "", err
	}
	if n := utf8.RuneCount(b); n < 1 || n > maxLen {
		return "", fieldErr(ReasonRange, field, "must be 1 to %d characters, got %d", maxLen, n)
	}
	return string(b), nil
}

// ident validates a required identifier: 1–64 chars of [A-Za-z0-9._:-].
func ident(v *fastjson.Value, field string) (string, error) {
	if isNull(v) {
		return "", fieldErr(ReasonMissing, field, "is required")
	}
	b, err := str(v, field)
	if err != nil {
		return "", err
	}
	if err := validIdent(b); err != nil {
		return "", fieldErr(ReasonFormat, field, "%s", err.Error())
	}
	return string(b), nil
}

// ValidIdent checks the contract's identifier rule (student and exercise ids):
// 1 to 64 characters of [A-Za-z0-9._:-].
func ValidIdent(s string) error { return validIdent([]byte(s)) }

func validIdent(s []byte) error {
	if len(s) < 1 || len(s) > 64 {
		return fmt.Errorf("must be 1 to 64 characters, got %d", len(s))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			c == '.', c == '_', c == ':', c == '-':
		default:
			return fmt.Errorf("has %q at byte %d; allowed are A-Z a-z 0-9 . _ : -", c, i)
		}
	}
	return nil
}

func number(v *fastjson.Value, field string, lo, hi float64) (float64, error) {
	if isNull(v) {
		return 0, fieldErr(ReasonMissing, field, "is required")
	}
	if v.Type() != fastjson.TypeNumber {
		return 0, fieldErr(ReasonType, field, "must be a number")
	}
	f, err := v.Float64()
	if raw := v.MarshalTo(nil); len(raw) > 15 || bytes.ContainsAny(raw, "eE") {
		// fastjson scales an exponent or a long mantissa by a second
		// rounding (0.57e2 reads as 56.99999999999999, below a threshold of
		// 57 that it equals); the correctly rounded value decides the alert.
		f, err = strconv.ParseFloat(string(raw), 64)
	}
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, fieldErr(ReasonRange, field, "must be a finite number")
	}
	if f < lo || f > hi {
		return 0, fieldErr(ReasonRange, field, "%v is outside %v..%v", f, lo, hi)
	}
	return f, nil
}

// The timestamps the system can represent: what RFC 3339 (the patrol
// notification's failed_at, the workflow's input) can write, years 0000 to
// 9999 in UTC. Any timestamp in that range is accepted, however far from
// the clock: a laptop whose clock is wrong still gets its patrol (the
// follow-up waits on the workflow's clock, not on failed_at). One outside it
// could be judged but never started or notified, so it is rejected here.
var (
	MinTimestamp = time.Date(0, time.January, 1, 0, 0, 0, 0, time.UTC)
	MaxTimestamp = time.Date(9999, time.December, 31, 23, 59, 59, 999_000_000, time.UTC)
)

const outsideRange = "outside 0000-01-01T00:00:00Z..9999-12-31T23:59:59.999Z, the times RFC 3339 can write"

func timestamp(v *fastjson.Value) (time.Time, error) {
	const field = "timestamp"
	if isNull(v) {
		return time.Time{}, fieldErr(ReasonMissing, field, "is required")
	}
	switch v.Type() {
	case fastjson.TypeString:
		b, err := str(v, field)
		if err != nil {
			return time.Time{}, err
		}
		t, ok := parseRFC3339(b)
		if !ok {
			return time.Time{}, fieldErr(ReasonFormat, field, "%q is not RFC 3339 with an offset (YYYY-MM-DDTHH:MM:SS[.fraction] then Z or ±HH:MM)", b)
		}
		// The offset can carry a time just inside year 9999 (or 0000)
		// outside it once in UTC.
		if t.Before(MinTimestamp) || t.After(MaxTimestamp) {
			return time.Time{}, fieldErr(ReasonRange, field, "%q is %s in UTC, %s", b, t.Format(time.RFC3339Nano), outsideRange)
		}
		return t, nil
	case fastjson.TypeNumber:
		raw := v.String()
		ms, err := strconv.ParseInt(raw, 10, 64)
		if err != nil {
			return time.Time{}, fieldErr(ReasonFormat, field, "%s is not an integer of Unix epoch milliseconds", raw)
		}
		if ms < MinTimestamp.UnixMilli() || ms > MaxTimestamp.UnixMilli() {
			return time.Time{}, fieldErr(ReasonRange, field, "%d ms since the epoch is %s", ms, outsideRange)
		}
		return time.UnixMilli(ms).UTC(), nil
	default:
		return time.Time{}, fieldErr(ReasonType, field, "must be an RFC 3339 string or Unix epoch milliseconds")
	}
}
