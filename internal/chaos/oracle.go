package chaos

// The oracle: what the contract (DESIGN.md §2) says the system must have
// done with a workload, computed again from the contract text and nothing
// else. It imports none of the system's parsing, identity, judgement or
// analytics code (internal/event, ingest, internal/analytics, workflows,
// activities): a bug there must not be copied here. Where the contract is
// silent, the comment says which rule was taken and where it was read.
//
// Clarity over speed: 300,000 records take about 1.5 s on two cores
// (BenchmarkOracle), most of it parsing.

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// Record is one record read back from the results topic, as produced.
type Record struct {
	Partition int32
	Offset    int64
	// Timestamp is the Kafka record timestamp (the producer's create time,
	// in milliseconds). The record cannot have been judged before it.
	Timestamp  time.Time
	Key, Value []byte
	// JudgedBy, when set, is a time by which the alert service had judged
	// the record for the last time: for instance when the alerts group was
	// seen to have committed past its offset (a committed record is not
	// consumed again). Zero means unknown: the record may have been judged
	// at any time after Timestamp, however late (consumer lag).
	JudgedBy time.Time
}

// ThresholdWrite is one write the workload made to etcd: Value nil is a
// delete. Started and Returned bracket the write call. A write whose outcome
// is unknown (the call failed or timed out) has Returned far in the future:
// it may then have taken effect at any time after Started, or never.
type ThresholdWrite struct {
	Exercise string
	Value    *float64
	Started  time.Time
	Returned time.Time
}

// Result is a valid result event (§2.1), as one record carried it.
type Result struct {
	// ID is the event identity: EventID when present, else the hash of
	// student, exercise and timestamp (see hashIdentity).
	ID         string
	EventID    string    // "" when absent
	Timestamp  time.Time // UTC, whole milliseconds
	StudentID  string
	ExerciseID string
	Latitude   float64
	Longitude  float64
	Metric     float64

	// The record that carried it.
	Partition int32
	Offset    int64
	Produced  time.Time // Record.Timestamp
	JudgedBy  time.Time // Record.JudgedBy
}

// sameContent reports whether two occurrences of an identity say the same
// thing (the bytes may differ: another timestamp form, key order...).
func sameContent(a, b Result) bool {
	return a.ID == b.ID && a.EventID == b.EventID && a.Timestamp.Equal(b.Timestamp) &&
		a.StudentID == b.StudentID && a.ExerciseID == b.ExerciseID &&
		a.Latitude == b.Latitude && a.Longitude == b.Longitude && a.Metric == b.Metric
}

// MalformedRecord is a record the contract sends to the DLQ.
type MalformedRecord struct {
	Partition int32
	Offset    int64
	Reason    string
}

// Judgement is one way the alert service may legitimately have judged an
// event failing: the occurrence it judged, the threshold in force then, and
// the follow-up outcome that leads to (§2.3).
type Judgement struct {
	Occurrence Result
	Threshold  float64
	// Status is the final PatrolStatus: recovered, still-failing or
	// no-attempt.
	Status string
	// FollowUps is the number of distinct results in the follow-up window.
	FollowUps int
}

// Expectation is a deployment the contract asks for (or allows).
type Expectation struct {
	// WorkflowID is "patrol-<identity>" (§2.3).
	WorkflowID string
	// Result is the event as archived: its first occurrence (its fields,
	// ExerciseID, Produced..., are the Expectation's).
	Result
	// Judgements are the legitimate failing judgements. The first is the
	// first occurrence judged with the threshold in force when it was
	// produced, when that fails.
	Judgements []Judgement
	// Statuses are the distinct final statuses of Judgements, sorted: the
	// acceptable outcomes. One unless a threshold write made the judgement
	// ambiguous (or copies of the event disagree).
	Statuses []string
}

// Follow-up outcomes (§2.3), the final PatrolStatus values.
const (
	statusRecovered    = "recovered"
	statusStillFailing = "still-failing"
	statusNoAttempt    = "no-attempt"
)

// defaultFollowUpAfter is §2.3's default follow-up-after.
const defaultFollowUpAfter = 30 * time.Minute

// workflowIDPrefix: the workflow ID is "patrol-<event identity>" (§2.3).
const workflowIDPrefix = "patrol-"

// Oracle holds what the contract says about one workload. Build it with
// NewOracle; it is read-only afterwards and safe for concurrent reads.
type Oracle struct {
	followUpAfter time.Duration
	initial       map[string]float64          // valid initial thresholds
	writes        map[string][]ThresholdWrite // by exercise, as given

	rejected    []MalformedRecord
	rejectedAt  map[recordPos]string
	occurrences map[string][]Result           // by identity, first occurrence first
	conflicts   map[string][]Result           // identities whose occurrences disagree
	byPair      map[studentExercise][]*Result // first occurrences
	byExercise  map[string][]*Result          // first occurrences
	must, may   map[string]Expectation
	notes       []string
}

type recordPos struct {
	partition int32
	offset    int64
}

type studentExercise struct{ student, exercise string }

// NewOracle computes the expectations of a workload: the initial thresholds
// (set before any record was produced), the threshold writes made during
// the run, every record of the results topic, and the follow-up-after the
// alert service passes to its deployments (0: §2.3's default, 30m).
func NewOracle(initial map[string]float64, writes []ThresholdWrite, records []Record, followUpAfter time.Duration) *Oracle {
	if followUpAfter <= 0 {
		followUpAfter = defaultFollowUpAfter
	}
	o := &Oracle{
		followUpAfter: followUpAfter,
		initial:       map[string]float64{},
		writes:        map[string][]ThresholdWrite{},
		rejectedAt:    map[recordPos]string{},
		occurrences:   make(map[string][]Result, len(records)),
		conflicts:     map[string][]Result{},
		byPair:        make(map[studentExercise][]*Result, len(records)),
		byExercise:    map[string][]*Result{},
		must:          map[string]Expectation{},
		may:           map[string]Expectation{},
	}
	for ex, v := range initial {
		if validThreshold(v) {
			o.initial[ex] = v
		}
	}
	for _, w := range writes {
		o.writes[w.Exercise] = append(o.writes[w.Exercise], w)
	}

	type parsed struct {
		r      Result
		reason string
	}
	results := make([]parsed, len(records))
	parallel(len(records), func(i int) { results[i].r, results[i].reason = parseResult(records[i].Value) })
	for i, rec := range records {
		r, reason := results[i].r, results[i].reason
		if reason != "" {
			o.rejected = append(o.rejected, MalformedRecord{Partition: rec.Partition, Offset: rec.Offset, Reason: reason})
			o.rejectedAt[recordPos{rec.Partition, rec.Offset}] = reason
			continue
		}
		r.Partition, r.Offset, r.Produced, r.JudgedBy = rec.Partition, rec.Offset, rec.Timestamp, rec.JudgedBy
		o.occurrences[r.ID] = append(o.occurrences[r.ID], r)
	}
	slices.SortFunc(o.rejected, func(a, b MalformedRecord) int {
		return cmp.Or(cmp.Compare(a.Partition, b.Partition), cmp.Compare(a.Offset, b.Offset))
	})

	for id, occ := range o.occurrences {
		o.orderOccurrences(id, occ)
		first := &occ[0]
		k := studentExercise{first.StudentID, first.ExerciseID}
		o.byPair[k] = append(o.byPair[k], first)
		o.byExercise[first.ExerciseID] = append(o.byExercise[first.ExerciseID], first)
	}

	for id, occ := range o.occurrences {
		o.expect(id, occ)
	}
	for ex, ws := range o.writes {
		for _, w := range ws {
			if w.Value != nil && !validThreshold(*w.Value) {
				o.notes = append(o.notes, fmt.Sprintf("threshold write %s=%v is outside 0..100: counted as a delete (§2.2: a malformed value is treated as missing)", ex, *w.Value))
			}
		}
	}
	slices.Sort(o.notes)
	return o
}

// parallel calls fn(0) to fn(n-1), spread over the CPUs.
func parallel(n int, fn func(i int)) {
	workers := runtime.GOMAXPROCS(0)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				fn(i)
			}
		})
	}
	wg.Wait()
}

// orderOccurrences puts the occurrence that is archived first. §2.1: "two
// records with the same identity are the same event: ... one archived row";
// the store keeps the first write of an identity (internal/store Store doc),
// and a partition is consumed in offset order, so within one partition the
// lowest offset wins. Across partitions nothing orders the archivers: the
// earliest produced is taken, and if the contents differ the archived row
// is ambiguous (a note says so).
func (o *Oracle) orderOccurrences(id string, occ []Result) {
	if len(occ) == 1 {
		return
	}
	onePartition := true
	for _, r := range occ {
		onePartition = onePartition && r.Partition == occ[0].Partition
	}
	slices.SortStableFunc(occ, func(a, b Result) int {
		if onePartition {
			return cmp.Compare(a.Offset, b.Offset)
		}
		return cmp.Or(a.Produced.Compare(b.Produced), cmp.Compare(a.Partition, b.Partition), cmp.Compare(a.Offset, b.Offset))
	})
	var distinct []Result
	for _, r := range occ {
		if !slices.ContainsFunc(distinct, func(d Result) bool { return sameContent(d, r) }) {
			distinct = append(distinct, r)
		}
	}
	if len(distinct) > 1 {
		o.conflicts[id] = distinct
		if !onePartition {
			o.notes = append(o.notes, fmt.Sprintf("identity %s has different contents in several partitions: which one is archived (and reported) depends on the archivers' timing; the oracle takes the earliest produced (partition %d offset %d)", id, occ[0].Partition, occ[0].Offset))
		}
	}
}

// expect decides whether the event must, may or must not be deployed.
//
// §1 and §2.1: every failing result starts one workflow, and a second start
// with the same identity is a no-op. Every occurrence of an identity is a
// result the alert service consumes and judges (at its own time, so with the
// threshold in force then): the event must be deployed if some occurrence
// fails whatever the timing, may be if some occurrence fails under some
// legitimate timing, and must not be otherwise. (ingest/alerts.go does the
// same: a passing occurrence leaves no trace, a later failing one starts
// the workflow. When occurrences disagree in content, the patrol may thus
// follow an occurrence that is not the archived one; §2.1 does not say
// which content is "the event".)
func (o *Oracle) expect(id string, occ []Result) {
	var js []Judgement
	must, may := false, false
	for _, r := range occ {
		cands := o.candidates(r.ExerciseID, r.Produced, r.JudgedBy)
		allFail := len(cands) > 0
		for _, c := range cands {
			if !c.set || !(r.Metric < c.v) { // §2.2: fails iff metric < threshold; none: no alert
				allFail = false
				continue
			}
			may = true
			if slices.ContainsFunc(js, func(j Judgement) bool { return j.Threshold == c.v && sameContent(j.Occurrence, r) }) {
				continue
			}
			status, n := o.FollowUp(r, c.v)
			js = append(js, Judgement{Occurrence: r, Threshold: c.v, Status: status, FollowUps: n})
		}
		must = must || allFail
	}
	if !may {
		return
	}
	e := Expectation{WorkflowID: workflowIDPrefix + id, Result: occ[0], Judgements: js}
	for _, j := range js {
		if !slices.Contains(e.Statuses, j.Status) {
			e.Statuses = append(e.Statuses, j.Status)
		}
	}
	slices.Sort(e.Statuses)
	if must {
		o.must[e.WorkflowID] = e
	} else {
		o.may[e.WorkflowID] = e
	}
}

// threshold is an exercise's threshold at some point: set or not (never
// written, deleted, or malformed).
type threshold struct {
	set bool
	v   float64
}

// validThreshold: §2.2, decimal text in 0..100; anything else is treated as
// missing.
func validThreshold(v float64) bool { return v >= 0 && v <= 100 }

func writeValue(w ThresholdWrite) threshold {
	if w.Value == nil || !validThreshold(*w.Value) {
		return threshold{}
	}
	return threshold{set: true, v: *w.Value}
}

// candidates returns the thresholds a record of the exercise, produced at
// produced and judged for the last time no later than judgedBy (zero:
// unknown), may legitimately have been judged with: distinct values, the one
// in force when it was produced first.
//
// §2.2: "once a write to a threshold has returned, every alert instance
// judges every result it consumes afterwards with the new value". A record
// is consumed at some time J after it was produced (and before judgedBy).
// At J every write that returned before J is visible, a write in flight may
// or may not be, a write not started yet is not. So:
//   - a write that returned no later than produced is certainly visible, and
//     so is every write that returned before some visible write started
//     (etcd is linearizable): those older values are superseded;
//   - every other write started before judgedBy may be the value at J;
//   - the initial value is a candidate only if no write returned before
//     produced.
//
// A tie between one write's return and another's start is taken as
// concurrent (both kept).
func (o *Oracle) candidates(exercise string, produced, judgedBy time.Time) []threshold {
	ws := o.writes[exercise]
	// The write in force at produced: the one that returned last before it.
	base := -1
	var latestStart time.Time // latest start among the writes certainly visible
	for i, w := range ws {
		if w.Returned.After(produced) {
			continue
		}
		if base < 0 || !w.Returned.Before(ws[base].Returned) {
			base = i
		}
		if w.Started.After(latestStart) {
			latestStart = w.Started
		}
	}
	var out []threshold
	add := func(t threshold) {
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	if base < 0 {
		v, ok := o.initial[exercise]
		add(threshold{set: ok, v: v})
	} else {
		add(writeValue(ws[base]))
	}
	for _, w := range ws {
		superseded := base >= 0 && latestStart.After(w.Returned)
		tooLate := !judgedBy.IsZero() && !w.Started.Before(judgedBy)
		if !superseded && !tooLate {
			add(writeValue(w))
		}
	}
	return out
}

// FollowUp returns the follow-up outcome of a deployment for result r judged
// with threshold th, and the number of results in its window (§2.3): the
// student's distinct valid results on the same exercise with timestamps in
// (failed_at, failed_at + follow-up-after]; recovered if any meets the
// threshold, still-failing if some exist and none does, no-attempt if none.
//
// "The threshold" is the deployment's, the one that judged it (its
// Threshold search attribute and the notification's threshold field): that
// is what workflows/patrol.go passes to the check (followUpInput with
// out.Threshold), not the value current at follow-up time. The results are
// the archived rows, one per identity: the first occurrences.
func (o *Oracle) FollowUp(r Result, th float64) (status string, results int) {
	from, until := r.Timestamp, r.Timestamp.Add(o.followUpAfter)
	passed := 0
	for _, f := range o.byPair[studentExercise{r.StudentID, r.ExerciseID}] {
		if f.Timestamp.After(from) && !f.Timestamp.After(until) {
			results++
			if f.Metric >= th {
				passed++
			}
		}
	}
	switch {
	case passed > 0:
		return statusRecovered, results
	case results > 0:
		return statusStillFailing, results
	default:
		return statusNoAttempt, results
	}
}

// FollowUpMarked returns the follow-up outcomes a deployment for result r
// judged with th may end in when its check saw the archive as of ends, the
// results topic's end offsets its ArchiveMark took: a result of the window
// below ends was archived before the check read (AwaitArchive waited for
// it), one at or above ends reached Kafka after the mark and may or may not
// have been archived by then (§2.3: the check sees what was sent by its
// deadline, and a record held up in a producer past it is not). The
// outcomes are sorted; FollowUp's is among them.
func (o *Oracle) FollowUpMarked(r Result, th float64, ends map[int32]int64) []string {
	var seen, passed, lateFail, latePass int
	for _, f := range o.byPair[studentExercise{r.StudentID, r.ExerciseID}] {
		if !f.Timestamp.After(r.Timestamp) || f.Timestamp.After(r.Timestamp.Add(o.followUpAfter)) {
			continue
		}
		below := f.Offset < ends[f.Partition]
		switch pass := f.Metric >= th; {
		case below && pass:
			passed++
		case below:
			seen++
		case pass:
			latePass++
		default:
			lateFail++
		}
	}
	if passed > 0 {
		return []string{statusRecovered}
	}
	var out []string
	if latePass > 0 {
		out = append(out, statusRecovered)
	}
	if seen > 0 || lateFail > 0 {
		out = append(out, statusStillFailing)
	}
	if seen == 0 {
		out = append(out, statusNoAttempt)
	}
	slices.Sort(out)
	return out
}

// Malformed returns the records that must be in the DLQ (§2.1: every
// record that breaks a rule), by partition and offset, each with the first
// rule it breaks.
func (o *Oracle) Malformed() []MalformedRecord { return slices.Clone(o.rejected) }

// IsMalformed reports whether the record at partition/offset must be in the
// DLQ, and why.
func (o *Oracle) IsMalformed(partition int32, offset int64) (reason string, ok bool) {
	reason, ok = o.rejectedAt[recordPos{partition, offset}]
	return reason, ok
}

// Valid returns the distinct valid results by identity: the first
// occurrence of each (§2.1: one archived row per identity).
func (o *Oracle) Valid() map[string]Result {
	out := make(map[string]Result, len(o.occurrences))
	for id, occ := range o.occurrences {
		out[id] = occ[0]
	}
	return out
}

// Occurrences returns every valid record of an identity, archived one first.
func (o *Oracle) Occurrences(id string) []Result { return slices.Clone(o.occurrences[id]) }

// Conflicts returns the identities whose occurrences differ in content
// (§2.1 calls them one event; the archive keeps the first), with the
// distinct contents, archived one first.
func (o *Oracle) Conflicts() map[string][]Result {
	out := make(map[string][]Result, len(o.conflicts))
	for id, rs := range o.conflicts {
		out[id] = slices.Clone(rs)
	}
	return out
}

// Deployments returns the deployments that must exist (exactly once each)
// and those that may exist (a threshold write made the judgement ambiguous),
// by workflow ID; the two sets are disjoint. Any other deployment is extra.
func (o *Oracle) Deployments() (must, may map[string]Expectation) {
	must = make(map[string]Expectation, len(o.must))
	for k, v := range o.must {
		must[k] = v
	}
	may = make(map[string]Expectation, len(o.may))
	for k, v := range o.may {
		may[k] = v
	}
	return must, may
}

// Notes are the ambiguities the oracle resolved by a choice, for the
// checker's log.
func (o *Oracle) Notes() []string { return slices.Clone(o.notes) }

// ---- §2.1: validating a record ----

// maxValueSize: "at most 64 KiB".
const maxValueSize = 64 << 10

// The timestamps accepted. §2.1 does not bound them; the system
// (internal/event) accepts what RFC 3339 can write in UTC, years 0000 to
// 9999, because failed_at is RFC 3339 in the notification (§2.3). Taken
// from there: a contract gap, not a contract rule.
var (
	minTimestamp = time.Date(0, time.January, 1, 0, 0, 0, 0, time.UTC)
	maxTimestamp = time.Date(9999, time.December, 31, 23, 59, 59, 999_000_000, time.UTC)
)

// identRE: "1–64 chars of [A-Za-z0-9._:-]".
var identRE = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,64}$`)

// rfc3339RE is RFC 3339 §5.6 date-time, time-offset required. §5.6 allows
// "t" and "z" in lower case. time-second may be 60 there (a leap second);
// it is refused here: Unix milliseconds (the identity's hash, the archive)
// cannot hold it, and internal/event refuses it too.
var rfc3339RE = regexp.MustCompile(`^([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?(?:[Zz]|([+-])([0-9]{2}):([0-9]{2}))$`)

// integerRE is a JSON number without fraction or exponent: "Unix epoch
// milliseconds" is an integer, and internal/event reads the literal as one
// (1.7e12 and 1700000000000.0 are refused there; taken from there).
var integerRE = regexp.MustCompile(`^-?(?:0|[1-9][0-9]*)$`)

// parseResult applies §2.1 to a record value: the result, or the reason it
// must go to the DLQ.
func parseResult(value []byte) (Result, string) {
	var r Result
	if len(value) > maxValueSize {
		return r, fmt.Sprintf("value is %d bytes, more than 64 KiB", len(value))
	}
	// "one JSON object, UTF-8": the whole value, unknown fields included.
	if !utf8.Valid(value) {
		return r, "value is not UTF-8"
	}
	if !json.Valid(value) {
		return r, "value is not JSON"
	}
	fields, ok := members(value)
	if !ok {
		return r, "value is not a JSON object"
	}

	// Optional: absent or null. (internal/event reads null as absent.)
	if raw, present := fields.get("event_id"); present && !isNull(raw) {
		s, err := jsonString(raw)
		if err != nil {
			return r, "event_id: " + err.Error()
		}
		// "1–128 chars": Unicode characters, as internal/event counts them.
		if n := utf8.RuneCountInString(s); n < 1 || n > 128 {
			return r, fmt.Sprintf("event_id: %d characters, not 1 to 128", n)
		}
		r.EventID = s
	}
	var reason string
	if r.StudentID, reason = ident(fields, "student_id"); reason != "" {
		return r, reason
	}
	if r.ExerciseID, reason = ident(fields, "exercise_id"); reason != "" {
		return r, reason
	}
	if r.Timestamp, reason = timestamp(fields); reason != "" {
		return r, reason
	}
	if r.Latitude, reason = number(fields, "latitude", -90, 90); reason != "" {
		return r, reason
	}
	if r.Longitude, reason = number(fields, "longitude", -180, 180); reason != "" {
		return r, reason
	}
	if r.Metric, reason = number(fields, "metric", 0, 100); reason != "" {
		return r, reason
	}
	r.ID = r.EventID
	if r.ID == "" {
		r.ID = hashIdentity(r.StudentID, r.ExerciseID, r.Timestamp)
	}
	return r, ""
}

// hashIdentity is §2.1's "deterministic hash of (student_id, exercise_id,
// timestamp in ms)". The bytes hashed are those of internal/event's HashID:
// SHA-256 of student, NUL, exercise, NUL, the Unix milliseconds in decimal;
// the identity is the first 16 bytes of the digest in lower-case hex.
func hashIdentity(student, exercise string, ts time.Time) string {
	sum := sha256.Sum256([]byte(student + "\x00" + exercise + "\x00" + strconv.FormatInt(ts.UnixMilli(), 10)))
	return hex.EncodeToString(sum[:16])
}

// fieldNames are the members of §2.1's table; unknown ones are ignored.
var fieldNames = [...]string{"event_id", "timestamp", "student_id", "latitude", "longitude", "exercise_id", "metric"}

// fields are the raw values of a record's members named in fieldNames, in
// that order; nil when absent.
type fields [len(fieldNames)][]byte

func (f *fields) get(name string) ([]byte, bool) {
	i := slices.Index(fieldNames[:], name)
	return f[i], f[i] != nil
}

// members returns the members of a JSON object value, already checked to
// be valid JSON, and false if it is not an object. Because the text is valid
// JSON, finding where each value ends only needs strings and nesting to be
// skipped. A name given twice keeps its first value: §2.1 does not say,
// RFC 8259 leaves it to the parser, and internal/event (fastjson's
// Object.Get) takes the first. A name that is no text (an unpaired
// surrogate escape) is no field of §2.1 and is ignored.
func members(value []byte) (*fields, bool) {
	s := bytes.TrimLeft(value, " \t\r\n")
	if len(s) == 0 || s[0] != '{' {
		return nil, false
	}
	var out fields
	i := 1
	for {
		i = skipSpace(s, i)
		if s[i] == '}' {
			return &out, true
		}
		if s[i] == ',' {
			i = skipSpace(s, i+1)
		}
		nameEnd := skipValue(s, i) // the name, a string
		name, err := jsonString(s[i:nameEnd])
		i = skipSpace(s, nameEnd)
		i = skipSpace(s, i+1) // the colon
		end := skipValue(s, i)
		if k := slices.Index(fieldNames[:], name); err == nil && k >= 0 && out[k] == nil {
			out[k] = s[i:end]
		}
		i = end
	}
}

func skipSpace(s []byte, i int) int {
	for s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n' {
		i++
	}
	return i
}

// skipValue returns the end of the valid JSON value starting at s[i].
func skipValue(s []byte, i int) int {
	depth := 0
	for ; ; i++ {
		switch c := s[i]; c {
		case '"':
			for i++; s[i] != '"'; i++ {
				if s[i] == '\\' {
					i++ // the escaped character: never the closing quote
				}
			}
			if depth == 0 {
				return i + 1
			}
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				return i + 1
			}
			if depth < 0 { // the end of a literal or number at the end of an object
				return i
			}
		case ',', ' ', '\t', '\r', '\n':
			if depth == 0 {
				return i
			}
		}
	}
}

func isNull(raw []byte) bool { return string(raw) == "null" }

// kind is the JSON type of a raw value by its first byte.
func kind(raw []byte) byte {
	switch c := raw[0]; {
	case c == '"':
		return 's'
	case c == '-' || (c >= '0' && c <= '9'):
		return 'n'
	default:
		return c // n(ull), t(rue), f(alse), {, [
	}
}

var errLoneSurrogate = errors.New(`contains an unpaired UTF-16 surrogate escape, which is no character`)

// jsonString decodes a JSON string (valid JSON). encoding/json would turn an
// unpaired surrogate escape (\ud800) into U+FFFD, changing an identity; it
// is refused instead: such a string is not text (RFC 8259 §8.2).
func jsonString(raw []byte) (string, error) {
	if kind(raw) != 's' {
		return "", errors.New("must be a string")
	}
	s := raw[1 : len(raw)-1]
	if bytes.IndexByte(s, '\\') < 0 {
		return string(s), nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			b.WriteByte(s[i])
			continue
		}
		i++
		switch s[i] {
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case 'u':
			r := hex4(s[i+1 : i+5])
			i += 4
			if utf16.IsSurrogate(r) {
				if i+6 < len(s) && s[i+1] == '\\' && s[i+2] == 'u' {
					if d := utf16.DecodeRune(r, hex4(s[i+3:i+7])); d != utf8.RuneError {
						b.WriteRune(d)
						i += 6
						continue
					}
				}
				return "", errLoneSurrogate
			}
			b.WriteRune(r)
		default: // '"', '\\', '/'
			b.WriteByte(s[i])
		}
	}
	return b.String(), nil
}

func hex4(h []byte) rune {
	v, _ := strconv.ParseUint(string(h), 16, 32) // valid JSON: four hex digits
	return rune(v)
}

// ident reads a required identifier (student_id, exercise_id).
func ident(fields *fields, name string) (string, string) {
	raw, ok := fields.get(name)
	if !ok || isNull(raw) {
		return "", name + ": missing"
	}
	s, err := jsonString(raw)
	if err != nil {
		return "", name + ": " + err.Error()
	}
	if !identRE.MatchString(s) {
		return "", fmt.Sprintf("%s: %q is not 1 to 64 characters of [A-Za-z0-9._:-]", name, s)
	}
	return s, ""
}

// number reads a required finite number in lo..hi. The value is the nearest
// float64 (strconv.ParseFloat, correctly rounded), and the range is checked
// on it: §2.1 says "number", and the threshold text of §2.2 is read the same
// way by the system (strconv in internal/thresholds).
func number(fields *fields, name string, lo, hi float64) (float64, string) {
	raw, ok := fields.get(name)
	if !ok || isNull(raw) {
		return 0, name + ": missing"
	}
	if kind(raw) != 'n' {
		return 0, name + ": not a number"
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return 0, name + ": not a number"
	}
	// ErrRange with ±Inf is an overflow (1e999: not finite); with a tiny
	// value it is an underflow to 0, a finite number.
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, name + ": not finite"
	}
	if f < lo || f > hi {
		return 0, fmt.Sprintf("%s: %v is outside %v..%v", name, f, lo, hi)
	}
	return f, ""
}

// timestamp reads the required timestamp: "RFC 3339 with offset, or Unix
// epoch milliseconds". The time is kept to the millisecond (the identity
// hashes milliseconds; finer digits are dropped, rounding towards the past).
func timestamp(fields *fields) (time.Time, string) {
	raw, ok := fields.get("timestamp")
	if !ok || isNull(raw) {
		return time.Time{}, "timestamp: missing"
	}
	var t time.Time
	switch kind(raw) {
	case 'n':
		if !integerRE.Match(raw) {
			return time.Time{}, fmt.Sprintf("timestamp: %s is not an integer", raw)
		}
		ms, err := strconv.ParseInt(string(raw), 10, 64)
		if err != nil {
			return time.Time{}, fmt.Sprintf("timestamp: %s ms is out of range", raw)
		}
		t = time.UnixMilli(ms).UTC()
	case 's':
		s, err := jsonString(raw)
		if err != nil {
			return time.Time{}, "timestamp: " + err.Error()
		}
		if t, ok = parseRFC3339(s); !ok {
			return time.Time{}, fmt.Sprintf("timestamp: %q is not RFC 3339 with an offset", s)
		}
	default:
		return time.Time{}, "timestamp: neither a string nor a number"
	}
	if t.Before(minTimestamp) || t.After(maxTimestamp) {
		return time.Time{}, fmt.Sprintf("timestamp: %s is outside years 0000..9999 UTC", raw)
	}
	return t, ""
}

// parseRFC3339 parses RFC 3339 §5.6 date-time with the ranges of §5.7, to
// the millisecond, in UTC.
func parseRFC3339(s string) (time.Time, bool) {
	m := rfc3339RE.FindStringSubmatch(s)
	if m == nil {
		return time.Time{}, false
	}
	n := func(i int) int { v, _ := strconv.Atoi(m[i]); return v }
	year, month, day, hour, minute, second := n(1), n(2), n(3), n(4), n(5), n(6)
	if month < 1 || month > 12 || hour > 23 || minute > 59 || second > 59 {
		return time.Time{}, false
	}
	if daysIn := time.Date(year, time.Month(month)+1, 0, 0, 0, 0, 0, time.UTC).Day(); day < 1 || day > daysIn {
		return time.Time{}, false
	}
	ms := 0
	if frac := m[7]; frac != "" {
		digits := (frac[1:] + "00")[:3] // the first three fraction digits
		ms, _ = strconv.Atoi(digits)
	}
	offset := 0
	if m[8] != "" {
		oh, om := n(9), n(10)
		if oh > 23 || om > 59 {
			return time.Time{}, false
		}
		offset = (oh*60 + om) * 60
		if m[8] == "-" {
			offset = -offset
		}
	}
	local := time.Date(year, time.Month(month), day, hour, minute, second, ms*1_000_000, time.UTC)
	return local.Add(-time.Duration(offset) * time.Second), true
}

// ---- §2.4: the analytics report ----

// Report is the document `acu report --json` prints (§2.4), without
// generated_at.
type Report struct {
	Exercises []ReportExercise `json:"exercises"`
	Hotspots  []ReportHotspots `json:"hotspots"`
	Recovery  ReportRecovery   `json:"recovery"`
}

// ReportExercise is one line of "exercises".
type ReportExercise struct {
	ExerciseID string   `json:"exercise_id"`
	Results    int64    `json:"results"`
	MeanMetric float64  `json:"mean_metric"`
	PassRate   *float64 `json:"pass_rate"`
	Threshold  *float64 `json:"threshold"`
}

// ReportHotspots is one exercise's cells.
type ReportHotspots struct {
	ExerciseID string       `json:"exercise_id"`
	Cells      []ReportCell `json:"cells"`
}

// ReportCell is a geohash cell with failures.
type ReportCell struct {
	Geohash   string  `json:"geohash"`
	Latitude  float64 `json:"latitude"`
	Longitude float64 `json:"longitude"`
	Failures  int64   `json:"failures"`
}

// ReportCounts are deployment counts.
type ReportCounts struct {
	Deployments  int64    `json:"deployments"`
	Recovered    int64    `json:"recovered"`
	StillFailing int64    `json:"still_failing"`
	NoAttempt    int64    `json:"no_attempt"`
	Pending      int64    `json:"pending"`
	Rate         *float64 `json:"rate"`
}

// ReportRecovery is "recovery".
type ReportRecovery struct {
	ReportCounts
	ByExercise []ReportExerciseCounts `json:"by_exercise"`
}

// ReportExerciseCounts is one line of "by_exercise".
type ReportExerciseCounts struct {
	ExerciseID string `json:"exercise_id"`
	ReportCounts
}

// ReportInput is what the report depends on beyond the workload.
type ReportInput struct {
	// At is when the analytics run that wrote the report read the
	// thresholds ("the current threshold", §2.4); zero means after every
	// write, a write of unknown outcome taken as applied.
	At time.Time
	// Deployed are the deployments that exist, by workflow ID, each with the
	// threshold it was judged with (its Threshold search attribute), all
	// with their follow-up finished. Leave out those that ended
	// notify-rejected or notify-exhausted: no patrol went, and
	// internal/analytics does not count them (§2.4 says "all deployments";
	// the code reads that as the patrols sent). Nil means the must
	// deployments, each judged as its first Judgement: right when no
	// Expectation is ambiguous (Deployments' may is empty and every
	// Statuses has one entry).
	Deployed map[string]float64
	// Outcomes are follow-up outcomes to count instead of the oracle's, by
	// workflow ID: those of deployments whose check legitimately missed a
	// result that reached the results topic after its mark (see
	// FollowUpMarked). Only for deployments in Deployed.
	Outcomes map[string]string
}

// Hotspot parameters: §2.4's defaults.
const (
	hotspotPrecision = 5
	hotspotTop       = 10
)

// exerciseView is one exercise's line and hotspot cells under a threshold.
type exerciseView struct {
	line  ReportExercise
	cells []ReportCell
}

// view computes an exercise's report line and hotspots (§2.4) under th:
// results and mean_metric over its distinct results; pass_rate the share
// meeting th (null, like threshold, when th is not set); cells the failures
// (metric < th) per geohash cell, the top 10 by failures, ties by geohash
// ascending, each with its centre.
//
// The numbers are exact: the mean is the exact mean correctly rounded to a
// float64 (so no summation order can change it), and the rates are one
// division of two integers. internal/analytics computes the same (exact
// rational sum, big.Rat.Float64; float64(passed)/float64(results)), so the
// comparison needs no tolerance; the contract's example shows rounded
// values, but it states no rounding.
func (o *Oracle) view(exercise string, th threshold) exerciseView {
	rs := o.byExercise[exercise]
	// Every metric is a finite float64 in [0, 100]: an integer number of
	// 2^-1074 below 2^7. 1200 bits hold the exact sum of up to 2^100 of
	// them, so the additions below never round.
	sum := new(big.Float).SetPrec(1200)
	var passed int64
	failures := map[string]int64{}
	for _, r := range rs {
		sum.Add(sum, new(big.Float).SetFloat64(r.Metric))
		if !th.set {
			continue
		}
		if r.Metric >= th.v {
			passed++
		} else {
			failures[geohashOf(r.Latitude, r.Longitude, hotspotPrecision)]++
		}
	}
	exact, _ := sum.Rat(nil)
	mean, _ := exact.Quo(exact, new(big.Rat).SetInt64(int64(len(rs)))).Float64()
	v := exerciseView{line: ReportExercise{ExerciseID: exercise, Results: int64(len(rs)), MeanMetric: mean}}
	if th.set {
		t, pr := th.v, float64(passed)/float64(len(rs))
		v.line.Threshold, v.line.PassRate = &t, &pr
	}
	for cell, n := range failures {
		lat, lon := geohashCentre(cell)
		v.cells = append(v.cells, ReportCell{Geohash: cell, Latitude: lat, Longitude: lon, Failures: n})
	}
	slices.SortFunc(v.cells, func(a, b ReportCell) int {
		return cmp.Or(cmp.Compare(b.Failures, a.Failures), cmp.Compare(a.Geohash, b.Geohash))
	})
	v.cells = v.cells[:min(len(v.cells), hotspotTop)]
	return v
}

// reportThresholds returns, per exercise with results, the thresholds the
// report may legitimately use: the analytics run reads them once, at its
// start (activities.PlanAnalytics), so they are the candidates at that time.
func (o *Oracle) reportThresholds(at time.Time) map[string][]threshold {
	if at.IsZero() {
		at = time.Unix(1<<62, 0) // after every write
	}
	out := map[string][]threshold{}
	for ex := range o.byExercise {
		out[ex] = o.candidates(ex, at, at)
	}
	return out
}

// geohashAlphabet is the standard base-32 geohash alphabet.
const geohashAlphabet = "0123456789bcdefghjkmnpqrstuvwxyz"

// geohashOf is the standard geohash: bits alternate longitude first, each
// halving the interval, a value at or above the middle taking the upper
// half (so latitude 90 and longitude 180 are in the top cells). The
// interval bounds are sums of halvings of 180 and 360: exact in float64.
func geohashOf(lat, lon float64, precision int) string {
	latLo, latHi, lonLo, lonHi := -90.0, 90.0, -180.0, 180.0
	var out []byte
	for bit, ch := 0, 0; len(out) < precision; bit++ {
		ch <<= 1
		if bit%2 == 0 {
			if mid := (lonLo + lonHi) / 2; lon >= mid {
				ch, lonLo = ch|1, mid
			} else {
				lonHi = mid
			}
		} else {
			if mid := (latLo + latHi) / 2; lat >= mid {
				ch, latLo = ch|1, mid
			} else {
				latHi = mid
			}
		}
		if bit%5 == 4 {
			out = append(out, geohashAlphabet[ch])
			ch = 0
		}
	}
	return string(out)
}

// geohashCentre is the centre of a geohash cell.
func geohashCentre(cell string) (lat, lon float64) {
	latLo, latHi, lonLo, lonHi := -90.0, 90.0, -180.0, 180.0
	bit := 0
	for i := range len(cell) {
		ch := strings.IndexByte(geohashAlphabet, cell[i])
		for k := 4; k >= 0; k-- {
			up := ch>>k&1 == 1
			if bit%2 == 0 {
				if mid := (lonLo + lonHi) / 2; up {
					lonLo = mid
				} else {
					lonHi = mid
				}
			} else {
				if mid := (latLo + latHi) / 2; up {
					latLo = mid
				} else {
					latHi = mid
				}
			}
			bit++
		}
	}
	return (latLo + latHi) / 2, (lonLo + lonHi) / 2
}

// deployedStatus is the follow-up outcome of an existing deployment judged
// with th: the first occurrence that fails under th is the one judged (the
// archived one if none does: an extra deployment, counted all the same).
func (o *Oracle) deployedStatus(workflowID string, th float64) (exercise, status string, ok bool) {
	r, ok := o.deployedResult(workflowID, th)
	if !ok {
		return "", "", false
	}
	status, _ = o.FollowUp(r, th)
	return r.ExerciseID, status, true
}

// deployedResult is the occurrence an existing deployment judged with th
// is of (see deployedStatus).
func (o *Oracle) deployedResult(workflowID string, th float64) (Result, bool) {
	id, found := strings.CutPrefix(workflowID, workflowIDPrefix)
	occ := o.occurrences[id]
	if !found || len(occ) == 0 {
		return Result{}, false
	}
	r := occ[0]
	if i := slices.IndexFunc(occ, func(r Result) bool { return r.Metric < th }); i >= 0 {
		r = occ[i]
	}
	return r, true
}

// DeployedMarked is FollowUpMarked for an existing deployment judged with
// th (see deployedStatus); false when it is of no valid result.
func (o *Oracle) DeployedMarked(workflowID string, th float64, ends map[int32]int64) ([]string, bool) {
	r, ok := o.deployedResult(workflowID, th)
	if !ok {
		return nil, false
	}
	return o.FollowUpMarked(r, th, ends), true
}

// recovery counts the deployments (§2.4): every one, its follow-up over, so
// pending is 0; rate = recovered / (recovered + still_failing), null when
// that is 0. It also returns the deployments it cannot place.
func (o *Oracle) recovery(in ReportInput) (ReportRecovery, []string) {
	deployed := in.Deployed
	type dep struct {
		exercise, status string
	}
	var deps []dep
	var unknown []string
	if deployed == nil {
		for _, e := range o.must {
			deps = append(deps, dep{e.Judgements[0].Occurrence.ExerciseID, e.Judgements[0].Status})
		}
	} else {
		for wid, th := range deployed {
			ex, status, ok := o.deployedStatus(wid, th)
			if !ok {
				unknown = append(unknown, wid)
				continue
			}
			if st, ok := in.Outcomes[wid]; ok {
				status = st
			}
			deps = append(deps, dep{ex, status})
		}
	}
	count := func(c *ReportCounts, status string) {
		c.Deployments++
		switch status {
		case statusRecovered:
			c.Recovered++
		case statusStillFailing:
			c.StillFailing++
		case statusNoAttempt:
			c.NoAttempt++
		}
	}
	finish := func(c *ReportCounts) {
		if n := c.Recovered + c.StillFailing; n > 0 {
			r := float64(c.Recovered) / float64(n)
			c.Rate = &r
		}
	}
	var rec ReportRecovery
	per := map[string]*ReportCounts{}
	for _, d := range deps {
		count(&rec.ReportCounts, d.status)
		if per[d.exercise] == nil {
			per[d.exercise] = &ReportCounts{}
		}
		count(per[d.exercise], d.status)
	}
	finish(&rec.ReportCounts)
	rec.ByExercise = []ReportExerciseCounts{}
	for ex, c := range per {
		finish(c)
		rec.ByExercise = append(rec.ByExercise, ReportExerciseCounts{ExerciseID: ex, ReportCounts: *c})
	}
	slices.SortFunc(rec.ByExercise, func(a, b ReportExerciseCounts) int { return cmp.Compare(a.ExerciseID, b.ExerciseID) })
	slices.Sort(unknown)
	return rec, unknown
}

// ExpectedReport returns the report §2.4 asks for, with lists sorted by
// exercise id as the system writes them. Where a threshold write makes an
// exercise's current threshold ambiguous, it takes the value in force at
// in.At (the last write returned by then) and says so in the notes, which
// also name the deployments it cannot place.
func (o *Oracle) ExpectedReport(in ReportInput) (Report, []string) {
	var notes []string
	rep := Report{Exercises: []ReportExercise{}, Hotspots: []ReportHotspots{}}
	ths := o.reportThresholds(in.At)
	for _, ex := range sortedKeys(ths) {
		if len(ths[ex]) > 1 {
			notes = append(notes, fmt.Sprintf("exercise %s: the report's threshold is ambiguous (%s): a write was in flight", ex, fmtThresholds(ths[ex])))
		}
		v := o.view(ex, ths[ex][0])
		rep.Exercises = append(rep.Exercises, v.line)
		if len(v.cells) > 0 {
			rep.Hotspots = append(rep.Hotspots, ReportHotspots{ExerciseID: ex, Cells: v.cells})
		}
	}
	var unknown []string
	rep.Recovery, unknown = o.recovery(in)
	for _, wid := range unknown {
		notes = append(notes, fmt.Sprintf("deployment %s is of no valid result: not counted", wid))
	}
	return rep, notes
}

// gotReport is the document as printed, generated_at included.
type gotReport struct {
	GeneratedAt json.RawMessage `json:"generated_at"`
	Report
}

// CompareReport is CompareReportWith the must deployments (ReportInput's
// zero value): right when no deployment is ambiguous.
func (o *Oracle) CompareReport(got []byte) []string { return o.CompareReportWith(got, ReportInput{}) }

// CompareReportWith compares the report printed by `acu report --json` (or
// `acu analytics run --json`) with the oracle's and returns the
// differences, empty when they agree. Lists are compared by exercise id
// (§2.4 fixes no order), hotspot cells in order (most failures first, ties
// by geohash). Counts, means and rates must be equal exactly (see view); a
// cell centre may differ by 1e-9 degrees (the system's geohash library
// computes it in another way). An exercise whose threshold is ambiguous at
// in.At agrees if it agrees under one of the candidates.
func (o *Oracle) CompareReportWith(got []byte, in ReportInput) []string {
	var g gotReport
	dec := json.NewDecoder(bytes.NewReader(got))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&g); err != nil {
		return []string{"report does not decode as §2.4's document: " + err.Error()}
	}
	var diffs []string
	if len(g.GeneratedAt) == 0 {
		diffs = append(diffs, "generated_at missing")
	}

	gotLines := map[string]ReportExercise{}
	for _, e := range g.Exercises {
		if _, dup := gotLines[e.ExerciseID]; dup {
			diffs = append(diffs, fmt.Sprintf("exercises: %s listed twice", e.ExerciseID))
		}
		gotLines[e.ExerciseID] = e
	}
	gotCells := map[string][]ReportCell{}
	for _, h := range g.Hotspots {
		if _, dup := gotCells[h.ExerciseID]; dup {
			diffs = append(diffs, fmt.Sprintf("hotspots: %s listed twice", h.ExerciseID))
		}
		gotCells[h.ExerciseID] = h.Cells
	}
	ths := o.reportThresholds(in.At)
	for _, ex := range sortedKeys(ths) {
		line, ok := gotLines[ex]
		if !ok {
			diffs = append(diffs, fmt.Sprintf("exercises: %s missing", ex))
		}
		var first []string
		agreed := false
		for i, th := range ths[ex] {
			v := o.view(ex, th)
			var d []string
			if ok {
				d = append(d, compareLine(line, v.line)...)
			}
			d = append(d, compareCells(ex, gotCells[ex], v.cells)...)
			if len(d) == 0 {
				agreed = true
				break
			}
			if i == 0 {
				first = d
			}
		}
		if !agreed {
			if len(ths[ex]) > 1 {
				first = append(first, fmt.Sprintf("exercise %s: also differs under every other legitimate threshold (%s)", ex, fmtThresholds(ths[ex])))
			}
			diffs = append(diffs, first...)
		}
		delete(gotLines, ex)
		delete(gotCells, ex)
	}
	for _, ex := range sortedKeys(gotLines) {
		diffs = append(diffs, fmt.Sprintf("exercises: %s has no valid result, but is listed", ex))
	}
	for _, ex := range sortedKeys(gotCells) {
		if len(gotCells[ex]) > 0 {
			diffs = append(diffs, fmt.Sprintf("hotspots: %s has no valid result, but is listed", ex))
		}
	}

	want, unknown := o.recovery(in)
	for _, wid := range unknown {
		diffs = append(diffs, fmt.Sprintf("recovery: deployment %s is of no valid result: the oracle cannot count it", wid))
	}
	diffs = append(diffs, compareCounts("recovery", g.Recovery.ReportCounts, want.ReportCounts)...)
	gotBy := map[string]ReportCounts{}
	for _, e := range g.Recovery.ByExercise {
		gotBy[e.ExerciseID] = e.ReportCounts
	}
	for _, e := range want.ByExercise {
		c, ok := gotBy[e.ExerciseID]
		if !ok {
			diffs = append(diffs, fmt.Sprintf("recovery.by_exercise: %s missing", e.ExerciseID))
			continue
		}
		diffs = append(diffs, compareCounts("recovery.by_exercise["+e.ExerciseID+"]", c, e.ReportCounts)...)
		delete(gotBy, e.ExerciseID)
	}
	for _, ex := range sortedKeys(gotBy) {
		diffs = append(diffs, fmt.Sprintf("recovery.by_exercise: %s has no deployment, but is listed", ex))
	}
	return diffs
}

func compareLine(got, want ReportExercise) []string {
	var d []string
	p := "exercises[" + want.ExerciseID + "]."
	if got.Results != want.Results {
		d = append(d, fmt.Sprintf("%sresults: got %d, want %d", p, got.Results, want.Results))
	}
	if got.MeanMetric != want.MeanMetric {
		d = append(d, fmt.Sprintf("%smean_metric: got %v, want %v", p, got.MeanMetric, want.MeanMetric))
	}
	if !sameOptional(got.PassRate, want.PassRate) {
		d = append(d, fmt.Sprintf("%spass_rate: got %s, want %s", p, fmtOptional(got.PassRate), fmtOptional(want.PassRate)))
	}
	if !sameOptional(got.Threshold, want.Threshold) {
		d = append(d, fmt.Sprintf("%sthreshold: got %s, want %s", p, fmtOptional(got.Threshold), fmtOptional(want.Threshold)))
	}
	return d
}

// centreTolerance is how far a cell centre may be from the exact one, in
// degrees: far below a precision-5 cell (about 0.04°), far above float64
// rounding.
const centreTolerance = 1e-9

func compareCells(exercise string, got, want []ReportCell) []string {
	var d []string
	p := "hotspots[" + exercise + "]"
	if len(got) != len(want) {
		d = append(d, fmt.Sprintf("%s: got %d cells, want %d", p, len(got), len(want)))
	}
	for i := range min(len(got), len(want)) {
		g, w := got[i], want[i]
		if g.Geohash != w.Geohash || g.Failures != w.Failures {
			d = append(d, fmt.Sprintf("%s cell %d: got %s with %d failures, want %s with %d", p, i, g.Geohash, g.Failures, w.Geohash, w.Failures))
			continue
		}
		if math.Abs(g.Latitude-w.Latitude) > centreTolerance || math.Abs(g.Longitude-w.Longitude) > centreTolerance {
			d = append(d, fmt.Sprintf("%s cell %s: centre got (%v, %v), want (%v, %v)", p, g.Geohash, g.Latitude, g.Longitude, w.Latitude, w.Longitude))
		}
	}
	return d
}

func compareCounts(p string, got, want ReportCounts) []string {
	var d []string
	for _, f := range []struct {
		name      string
		got, want int64
	}{
		{"deployments", got.Deployments, want.Deployments}, {"recovered", got.Recovered, want.Recovered},
		{"still_failing", got.StillFailing, want.StillFailing}, {"no_attempt", got.NoAttempt, want.NoAttempt},
		{"pending", got.Pending, want.Pending},
	} {
		if f.got != f.want {
			d = append(d, fmt.Sprintf("%s.%s: got %d, want %d", p, f.name, f.got, f.want))
		}
	}
	if !sameOptional(got.Rate, want.Rate) {
		d = append(d, fmt.Sprintf("%s.rate: got %s, want %s", p, fmtOptional(got.Rate), fmtOptional(want.Rate)))
	}
	return d
}

func sameOptional(a, b *float64) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return *a == *b
}

func fmtOptional(v *float64) string {
	if v == nil {
		return "null"
	}
	return strconv.FormatFloat(*v, 'g', -1, 64)
}

func fmtThresholds(ts []threshold) string {
	var s []string
	for _, t := range ts {
		if t.set {
			s = append(s, strconv.FormatFloat(t.v, 'g', -1, 64))
		} else {
			s = append(s, "none")
		}
	}
	return strings.Join(s, ", ")
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
