package schedules

import (
	"errors"
	"fmt"
	"math/bits"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
	"go.temporal.io/sdk/client"
)

// ErrInvalidSpec marks every error about a malformed Spec.
var ErrInvalidSpec = errors.New("invalid schedule spec")

// Spec is when a schedule runs: exactly one of Every and Cron.
type Spec struct {
	// Every runs the workflow at every multiple of this interval since the
	// Unix epoch (5m: at :00, :05, :10, ... UTC). At least MinEvery.
	Every time.Duration
	// Cron is a standard 5-field cron spec ("*/5 * * * *": minute, hour,
	// day of month, month, day of week) or one of @hourly, @daily,
	// @midnight, @weekly, @monthly, @yearly, @annually, evaluated in UTC.
	// It is parsed by robfig/cron (cron.ParseStandard) and has that
	// library's meaning, including the classic rule that when both day
	// fields are restricted a day matching either one runs. Not accepted:
	// time-zone prefixes (TZ=, CRON_TZ=) and @every (use Every).
	Cron string
}

// String is "every 5m0s" or "cron */5 * * * *".
func (s Spec) String() string {
	switch {
	case s.Every != 0 && s.Cron == "":
		return "every " + s.Every.String()
	case s.Cron != "" && s.Every == 0:
		return "cron " + s.Cron
	case s.Every == 0 && s.Cron == "":
		return "none"
	default:
		return fmt.Sprintf("every %v and cron %s (invalid)", s.Every, s.Cron)
	}
}

// ParseSpec builds a Spec from an interval and a cron spec, at most one of
// them set (zero and "" mean unset). With neither, the schedule runs every
// DefaultEvery. The cron spec is validated here, before it reaches Temporal;
// errors wrap ErrInvalidSpec and say what is wrong.
func ParseSpec(every time.Duration, cronSpec string) (Spec, error) {
	cronSpec = strings.TrimSpace(cronSpec)
	var s Spec
	switch {
	case every != 0 && cronSpec != "":
		return Spec{}, fmt.Errorf("%w: set either an interval (%v) or a cron spec (%q), not both", ErrInvalidSpec, every, cronSpec)
	case every == 0 && cronSpec == "":
		s = Spec{Every: DefaultEvery}
	case every != 0:
		s = Spec{Every: every}
	default:
		s = Spec{Cron: cronSpec}
	}
	if err := s.validate(); err != nil {
		return Spec{}, err
	}
	// Store the cron spec with its whitespace normalised: it is what the
	// schedule shows and what Apply compares.
	s.Cron = normalizeCron(s.Cron)
	return s, nil
}

// validate checks the Spec as ParseSpec would, without defaults.
func (s Spec) validate() error {
	_, err := s.scheduleSpec()
	return err
}

// scheduleSpec translates the Spec into the SDK's form.
//
// A cron spec is sent as structured calendars computed from robfig's parse,
// not as a cron string: Temporal has its own cron parser, which differs from
// robfig's (it rejects "?", accepts 7 for Sunday and requires BOTH day
// fields to match where classic cron and robfig require either), and it
// stores only the structured calendars it compiles a cron string into. With
// our own calendars robfig is the one definition of what a cron spec means,
// and what Describe returns can be compared with what we would send. The
// original text travels in the calendar comment, for people and for
// Describe.
func (s Spec) scheduleSpec() (client.ScheduleSpec, error) {
	switch {
	case s.Every != 0 && s.Cron != "":
		return client.ScheduleSpec{}, fmt.Errorf("%w: both an interval (%v) and a cron spec (%q) are set", ErrInvalidSpec, s.Every, s.Cron)
	case s.Every < 0:
		return client.ScheduleSpec{}, fmt.Errorf("%w: interval %v is negative", ErrInvalidSpec, s.Every)
	case s.Every > 0 && s.Every < MinEvery:
		return client.ScheduleSpec{}, fmt.Errorf("%w: interval %v is shorter than Temporal's minimum of %v", ErrInvalidSpec, s.Every, MinEvery)
	case s.Every > 0:
		return client.ScheduleSpec{Intervals: []client.ScheduleIntervalSpec{{Every: s.Every}}}, nil
	case s.Cron == "":
		return client.ScheduleSpec{}, fmt.Errorf("%w: neither an interval nor a cron spec is set", ErrInvalidSpec)
	}
	sched, err := parseCron(s.Cron)
	if err != nil {
		return client.ScheduleSpec{}, err
	}
	return client.ScheduleSpec{Calendars: calendars(sched, normalizeCron(s.Cron))}, nil
}

// cronFieldNames names the five fields of a standard cron spec.
var cronFieldNames = [5]string{"minute", "hour", "day-of-month", "month", "day-of-week"}

// maxCronLen is the longest cron spec we accept: it is stored as a calendar
// comment, which Temporal limits to 200 bytes.
const maxCronLen = 200

// normalizeCron collapses runs of white space to one space.
func normalizeCron(spec string) string { return strings.Join(strings.Fields(spec), " ") }

// parseCron validates a cron spec with robfig/cron's standard parser.
func parseCron(spec string) (*cron.SpecSchedule, error) {
	spec = normalizeCron(spec)
	invalid := func(format string, args ...any) error {
		return fmt.Errorf("%w: cron %q: "+format, append([]any{ErrInvalidSpec, spec}, args...)...)
	}
	switch {
	case spec == "":
		return nil, invalid("empty")
	case len(spec) > maxCronLen:
		return nil, invalid("longer than %d bytes", maxCronLen)
	case strings.HasPrefix(spec, "TZ=") || strings.HasPrefix(spec, "CRON_TZ="):
		// Also keeps robfig/cron v3.0.1 from panicking on "TZ=UTC"
		// (robfig/cron#554).
		return nil, invalid("time zone prefixes are not supported; schedules run in UTC")
	case strings.HasPrefix(spec, "@every"):
		return nil, invalid("@every is an interval, not a cron spec; set the interval instead")
	}
	sched, err := parseStandard(spec)
	if err != nil {
		fields := strings.Fields(spec)
		if len(fields) != len(cronFieldNames) {
			if strings.HasPrefix(spec, "@") {
				return nil, invalid("%w", err)
			}
			return nil, invalid("%w (want 5 fields: %s)", err, strings.Join(cronFieldNames[:], " "))
		}
		// robfig does not say which field is wrong: find it by parsing
		// each field alone, the others being "*".
		for i, f := range fields {
			probe := []string{"*", "*", "*", "*", "*"}
			probe[i] = f
			if _, ferr := parseStandard(strings.Join(probe, " ")); ferr != nil {
				return nil, invalid("%s field %q: %w", cronFieldNames[i], f, ferr)
			}
		}
		return nil, invalid("%w", err)
	}
	spc, ok := sched.(*cron.SpecSchedule)
	if !ok {
		return nil, invalid("not a calendar spec (%T)", sched)
	}
	return spc, nil
}

// parseStandard is cron.ParseStandard with a panic turned into an error:
// robfig/cron is unmaintained and has panicked on odd input before.
func parseStandard(spec string) (s cron.Schedule, err error) {
	defer func() {
		if r := recover(); r != nil {
			s, err = nil, fmt.Errorf("cron parser panicked: %v", r)
		}
	}()
	return cron.ParseStandard(spec)
}

// cronStarBit is the bit robfig/cron sets in a field written "*" or "?"
// (its unexported starBit); it decides how the day fields combine.
const cronStarBit = 1 << 63

// Field bounds, as in robfig/cron and Temporal.
var (
	allDaysOfMonth = bitRange(1, 31)
	allDaysOfWeek  = bitRange(0, 6)
)

// calendars translates a parsed cron spec into Temporal calendars whose
// union matches exactly the times robfig's schedule matches.
func calendars(s *cron.SpecSchedule, comment string) []client.ScheduleCalendarSpec {
	dom, dow := s.Dom&^cronStarBit, s.Dow&^cronStarBit
	cal := func(dom, dow uint64) client.ScheduleCalendarSpec {
		return client.ScheduleCalendarSpec{
			Second:     bitsToRanges(s.Second &^ cronStarBit),
			Minute:     bitsToRanges(s.Minute &^ cronStarBit),
			Hour:       bitsToRanges(s.Hour &^ cronStarBit),
			DayOfMonth: bitsToRanges(dom),
			Month:      bitsToRanges(s.Month &^ cronStarBit),
			DayOfWeek:  bitsToRanges(dow),
			Comment:    comment,
		}
	}
	if s.Dom&cronStarBit == 0 && s.Dow&cronStarBit == 0 {
		// Both day fields restricted: robfig (like classic cron) runs on
		// days matching either; a Temporal calendar needs both, so take the
		// union of two calendars.
		return []client.ScheduleCalendarSpec{cal(dom, allDaysOfWeek), cal(allDaysOfMonth, dow)}
	}
	return []client.ScheduleCalendarSpec{cal(dom, dow)}
}

// bitRange returns the bits lo..hi.
func bitRange(lo, hi int) uint64 {
	var b uint64
	for v := lo; v <= hi; v++ {
		b |= 1 << v
	}
	return b
}

// bitsToRanges writes a set of values compactly: one stepped range when
// three or more values are evenly spaced ("*/5" → 0-55/5), else one range
// per run of consecutive values. Never nil: the SDK replaces a nil field
// with its default.
func bitsToRanges(b uint64) []client.ScheduleRange {
	var vals []int
	for x := b; x != 0; x &= x - 1 {
		vals = append(vals, bits.TrailingZeros64(x))
	}
	if len(vals) >= 3 {
		step, even := vals[1]-vals[0], true
		for i := 2; i < len(vals) && even; i++ {
			even = vals[i]-vals[i-1] == step
		}
		if even {
			return []client.ScheduleRange{{Start: vals[0], End: vals[len(vals)-1], Step: step}}
		}
	}
	rs := []client.ScheduleRange{}
	for i := 0; i < len(vals); {
		j := i
		for j+1 < len(vals) && vals[j+1] == vals[j]+1 {
			j++
		}
		rs = append(rs, client.ScheduleRange{Start: vals[i], End: vals[j], Step: 1})
		i = j + 1
	}
	return rs
}

// rangesToBits is the set of values (0..63) the ranges match, with
// Temporal's defaults: End < Start means End = Start, Step 0 means 1.
func rangesToBits(rs []client.ScheduleRange) uint64 {
	var b uint64
	for _, r := range rs {
		end, step := max(r.End, r.Start), max(r.Step, 1)
		for v := max(r.Start, 0); v <= min(end, 63); v += step {
			b |= 1 << v
		}
	}
	return b
}

// fieldText writes the values (within lo..hi) that ranges match as a
// canonical cron field: "*" for all of them, else "a", "a-b" and "a-b/s"
// joined by commas, as bitsToRanges groups them. Equal value sets give
// equal text whatever ranges express them.
func fieldText(rs []client.ScheduleRange, lo, hi int) string {
	b := rangesToBits(rs) & bitRange(lo, hi)
	switch b {
	case bitRange(lo, hi):
		return "*"
	case 0:
		return "none"
	}
	return rangesText(bitsToRanges(b))
}

// rangesText writes ranges as "a", "a-b" and "a-b/s" joined by commas.
func rangesText(rs []client.ScheduleRange) string {
	parts := make([]string, 0, len(rs))
	for _, r := range rs {
		end, step := max(r.End, r.Start), max(r.Step, 1)
		p := strconv.Itoa(r.Start)
		if end != r.Start {
			p += "-" + strconv.Itoa(end)
		}
		if step != 1 {
			p += "/" + strconv.Itoa(step)
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, ",")
}

// calendarText writes a calendar the way Temporal's 7-field cron strings
// read: second minute hour day-of-month month day-of-week year.
func calendarText(c client.ScheduleCalendarSpec) string {
	year := "*" // Temporal: no year ranges means every year
	if len(c.Year) > 0 {
		year = rangesText(c.Year)
	}
	return strings.Join([]string{
		fieldText(c.Second, 0, 59),
		fieldText(c.Minute, 0, 59),
		fieldText(c.Hour, 0, 23),
		fieldText(c.DayOfMonth, 1, 31),
		fieldText(c.Month, 1, 12),
		fieldText(c.DayOfWeek, 0, 6),
		year,
	}, " ")
}

// specKey renders a schedule spec canonically: two specs with the same key
// match the same times and show the same text. Calendar fields compare as
// value sets, so "0-55/5" equals twelve single values; the key is also the
// readable form of specs we did not write.
func specKey(s *client.ScheduleSpec) string {
	if s == nil {
		return "none"
	}
	var parts []string
	for _, iv := range s.Intervals {
		part := "every " + iv.Every.String()
		if iv.Offset != 0 {
			part += " offset " + iv.Offset.String()
		}
		parts = append(parts, part)
	}
	for _, c := range s.Calendars {
		parts = append(parts, calendarKey("calendar", c))
	}
	for _, c := range s.CronExpressions {
		parts = append(parts, "cron "+c)
	}
	for _, c := range s.Skip {
		parts = append(parts, calendarKey("skip", c))
	}
	if !s.StartAt.IsZero() {
		parts = append(parts, "from "+s.StartAt.UTC().Format(time.RFC3339))
	}
	if !s.EndAt.IsZero() {
		parts = append(parts, "until "+s.EndAt.UTC().Format(time.RFC3339))
	}
	if s.Jitter != 0 {
		parts = append(parts, "jitter "+s.Jitter.String())
	}
	if s.TimeZoneName != "" && s.TimeZoneName != "UTC" {
		parts = append(parts, "in "+s.TimeZoneName)
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, "; ")
}

func calendarKey(kind string, c client.ScheduleCalendarSpec) string {
	// The comment is part of the key: it is what Describe shows as the
	// cron spec, so a reworded but equivalent spec is still written.
	return fmt.Sprintf("%s %s # %s", kind, calendarText(c), c.Comment)
}

// specFromSchedule recovers the Spec a schedule was applied with. ok is
// false when the schedule's spec is not one Apply writes (edited by hand,
// say); the caller then shows specKey.
func specFromSchedule(s *client.ScheduleSpec) (Spec, bool) {
	if s == nil {
		return Spec{}, false
	}
	var candidate Spec
	switch {
	case len(s.Intervals) == 1 && len(s.Calendars) == 0:
		candidate = Spec{Every: s.Intervals[0].Every}
	case len(s.Intervals) == 0 && len(s.Calendars) > 0:
		candidate = Spec{Cron: s.Calendars[0].Comment}
	default:
		return Spec{}, false
	}
	want, err := candidate.scheduleSpec()
	if err != nil || specKey(&want) != specKey(s) {
		return Spec{}, false
	}
	return candidate, true
}
