// Package event decodes and validates the result events of the contract
// (DESIGN.md §2.1) and computes their identity.
//
// It is the per-record hot path of both consumers: Parse does one JSON
// decode, no reflection-heavy map work and no allocation beyond the strings
// it keeps.
package event

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
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

// wire mirrors the JSON object; pointers tell a missing field from a zero one.
type wire struct {
	EventID    json.RawMessage `json:"event_id"`
	Timestamp  json.RawMessage `json:"timestamp"`
	StudentID  json.RawMessage `json:"student_id"`
	Latitude   json.RawMessage `json:"latitude"`
	Longitude  json.RawMessage `json:"longitude"`
	ExerciseID json.RawMessage `json:"exercise_id"`
	Metric     json.RawMessage `json:"metric"`
}

// Parse decodes and validates one record value. A returned error is always
// an *Error that says which rule was broken.
func Parse(value []byte) (Result, error) {
	var r Result
	if len(value) > MaxSize {
		return r, &Error{Reason: ReasonTooLarge, Msg: fmt.Sprintf("record is %d bytes, more than the %d allowed", len(value), MaxSize)}
	}
	var w wire
	if err := json.Unmarshal(value, &w); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return r, &Error{Reason: ReasonMalformed, Msg: "record is not a JSON object"}
		}
		return r, &Error{Reason: ReasonMalformed, Msg: "invalid JSON: " + err.Error()}
	}
	var err error
	if r.EventID, err = optString(w.EventID, "event_id", 128); err != nil {
		return r, err
	}
	if r.StudentID, err = ident(w.StudentID, "student_id"); err != nil {
		return r, err
	}
	if r.ExerciseID, err = ident(w.ExerciseID, "exercise_id"); err != nil {
		return r, err
	}
	if r.Timestamp, err = timestamp(w.Timestamp); err != nil {
		return r, err
	}
	if r.Latitude, err = number(w.Latitude, "latitude", -90, 90); err != nil {
		return r, err
	}
	if r.Longitude, err = number(w.Longitude, "longitude", -180, 180); err != nil {
		return r, err
	}
	if r.Metric, err = number(w.Metric, "metric", 0, 100); err != nil {
		return r, err
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

func isNull(raw json.RawMessage) bool { return len(raw) == 0 || string(raw) == "null" }

// str decodes a JSON string without reflection when it has no escapes.
func str(raw json.RawMessage, field string) (string, error) {
	if len(raw) == 0 || raw[0] != '"' {
		return "", fieldErr(ReasonType, field, "must be a string")
	}
	inner := raw[1 : len(raw)-1]
	simple := true
	for _, c := range inner {
		if c == '\\' || c < 0x20 {
			simple = false
			break
		}
	}
	if simple {
		return string(inner), nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fieldErr(ReasonType, field, "must be a string")
	}
	return s, nil
}

func optString(raw json.RawMessage, field string, maxLen int) (string, error) {
	if isNull(raw) {
		return "", nil
	}
	s, err := str(raw, field)
	if err != nil {
		return "", err
	}
	if n := len([]rune(s)); n < 1 || n > maxLen {
		return "", fieldErr(ReasonRange, field, "must be 1 to %d characters, got %d", maxLen, n)
	}
	return s, nil
}

// ident validates a required identifier: 1–64 chars of [A-Za-z0-9._:-].
func ident(raw json.RawMessage, field string) (string, error) {
	if isNull(raw) {
		return "", fieldErr(ReasonMissing, field, "is required")
	}
	s, err := str(raw, field)
	if err != nil {
		return "", err
	}
	if err := ValidIdent(s); err != nil {
		return "", fieldErr(ReasonFormat, field, "%s", err.Error())
	}
	return s, nil
}

// ValidIdent checks the contract's identifier rule (student and exercise ids):
// 1 to 64 characters of [A-Za-z0-9._:-].
func ValidIdent(s string) error {
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

func number(raw json.RawMessage, field string, lo, hi float64) (float64, error) {
	if isNull(raw) {
		return 0, fieldErr(ReasonMissing, field, "is required")
	}
	c := raw[0]
	if c != '-' && (c < '0' || c > '9') {
		return 0, fieldErr(ReasonType, field, "must be a number")
	}
	v, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, fieldErr(ReasonRange, field, "must be a finite number")
	}
	if v < lo || v > hi {
		return 0, fieldErr(ReasonRange, field, "%v is outside %v..%v", v, lo, hi)
	}
	return v, nil
}

func timestamp(raw json.RawMessage) (time.Time, error) {
	const field = "timestamp"
	if isNull(raw) {
		return time.Time{}, fieldErr(ReasonMissing, field, "is required")
	}
	switch c := raw[0]; {
	case c == '"':
		s, err := str(raw, field)
		if err != nil {
			return time.Time{}, err
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return time.Time{}, fieldErr(ReasonFormat, field, "%q is not RFC 3339 with an offset", s)
		}
		return t.UTC().Truncate(time.Millisecond), nil
	case c == '-' || (c >= '0' && c <= '9'):
		ms, err := strconv.ParseInt(string(raw), 10, 64)
		if err != nil {
			return time.Time{}, fieldErr(ReasonFormat, field, "%s is not an integer of Unix epoch milliseconds", raw)
		}
		return time.UnixMilli(ms).UTC(), nil
	default:
		return time.Time{}, fieldErr(ReasonType, field, "must be an RFC 3339 string or Unix epoch milliseconds")
	}
}
