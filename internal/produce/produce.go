// Package produce is the laptop simulator behind `acu produce`: it writes
// result events (DESIGN.md §2.1) to Kafka at a steady rate, as the student
// laptops of a nationwide piscine would.
//
// The simulated population is realistic enough to exercise the whole
// pipeline: students sit in exam centres in real French cities and keep a
// stable position near their centre; scores follow a plausible
// distribution; an exact share of results fail their exercise's threshold;
// some failing students retake the exercise later and most of those
// recover; and on request some records are duplicated (byte-identical) or
// deliberately malformed, to exercise deduplication and the dead-letter
// queue.
package produce

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/acu-patrol/acu/internal/event"
)

// Defaults applied by Options.WithDefaults to zero fields.
const (
	DefaultTopic            = "piscine.results"
	DefaultRate             = 100.0
	DefaultStudents         = 500
	DefaultFailShare        = 0.05
	DefaultRetryShare       = 0.6
	DefaultRetryAfter       = 20 * time.Second
	DefaultOmitEventIDShare = 0.1
)

// Limits checked by Options.Validate.
const (
	MaxRate     = 1e9
	MaxStudents = 1_000_000
)

// None, as a share, asks for none at all. A zero share means "the
// default", which is not zero for FailShare, RetryShare and
// OmitEventIDShare; None is how to ask for no failures, no retakes or no
// id-less events. (It is accepted by every share field.)
const None = -1.0

// DrainTimeout is how long Run keeps waiting for buffered records to be
// acknowledged after ctx is cancelled, before giving up on them.
const DrainTimeout = 10 * time.Second

var drainTimeout = DrainTimeout // shortened by tests

// Options configure a simulation. Zero values select the defaults.
type Options struct {
	Topic    string        // default "piscine.results"
	Rate     float64       // records per second (all kinds together), > 0, at most MaxRate; default 100
	Count    int           // stop after this many records (all kinds); 0 = no limit
	Duration time.Duration // stop after this long; 0 = no limit. With neither, run until ctx is cancelled.
	Students int           // size of the student population, default 500, at most MaxStudents

	// Thresholds maps exercise id -> threshold (0..100): the exercises to
	// simulate. Required, non-empty. An exercise with threshold 0 cannot
	// fail; one with threshold 100 passes only with 100.
	Thresholds map[string]float64

	// FailShare is the share of valid events whose metric is below their
	// exercise's threshold, default 0.05 (None for 0). Each event is an
	// independent draw with that probability, retakes included.
	FailShare float64
	// RetryShare is the share of failures whose student retakes the same
	// exercise later, default 0.6 (None for 0). A retake passes with
	// probability 0.6; a failed retake may be retaken again.
	RetryShare float64
	// RetryAfter is the typical delay, in event time, before a retake
	// (log-normal jitter around it), default 20s.
	RetryAfter time.Duration
	// DuplicateShare is the share of valid events sent twice (same key and
	// value, up to 100 records later), default 0.
	DuplicateShare float64
	// MalformedShare is the share of records that are deliberately
	// malformed, rotating through MalformedKinds, default 0.
	MalformedShare float64
	// OmitEventIDShare is the share of valid events sent without event_id
	// (their identity is then the hash of student, exercise and
	// timestamp), default 0.1 (None for 0).
	OmitEventIDShare float64

	Seed int64            // PRNG seed; 0 = time-based (reported in Stats.Seed)
	Now  func() time.Time // clock for event timestamps, default time.Now; called once per record
}

// Stats summarise a run.
type Stats struct {
	// Sent counts the records acknowledged by Kafka, all kinds together.
	Sent int64
	// Failing, Duplicates, Malformed and Retries count the records handed
	// to the client: valid distinct events below their threshold, extra
	// copies, malformed records, and valid events that retake an earlier
	// failure. When Run returns no error they were all acknowledged.
	Failing, Duplicates, Malformed, Retries int64
	// Events counts the valid distinct events (not duplicates, not
	// malformed).
	Events int64
	// Elapsed runs from the first record to the end of the flush.
	Elapsed time.Duration
	// Seed is the PRNG seed used (the time-based one when Options.Seed is 0).
	Seed int64
}

// WithDefaults returns o with defaults in place of zero values and None
// shares turned into 0. Seed is left as is.
func (o Options) WithDefaults() Options {
	if o.Topic == "" {
		o.Topic = DefaultTopic
	}
	if o.Rate == 0 {
		o.Rate = DefaultRate
	}
	if o.Students == 0 {
		o.Students = DefaultStudents
	}
	if o.RetryAfter == 0 {
		o.RetryAfter = DefaultRetryAfter
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	share := func(v, def float64) float64 {
		switch v {
		case 0:
			return def
		case None:
			return 0
		}
		return v
	}
	o.FailShare = share(o.FailShare, DefaultFailShare)
	o.RetryShare = share(o.RetryShare, DefaultRetryShare)
	o.OmitEventIDShare = share(o.OmitEventIDShare, DefaultOmitEventIDShare)
	o.DuplicateShare = share(o.DuplicateShare, 0)
	o.MalformedShare = share(o.MalformedShare, 0)
	return o
}

// Validate reports every bad value in o, each in its own line. Zero values
// are fine: they select the defaults.
func (o Options) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if o.Topic != "" {
		if err := validTopic(o.Topic); err != nil {
			bad("topic %q: %v", o.Topic, err)
		}
	}
	if math.IsNaN(o.Rate) || o.Rate < 0 || o.Rate > MaxRate {
		bad("rate %v: must be a number of records per second above 0 and at most %g", o.Rate, MaxRate)
	}
	if o.Count < 0 {
		bad("count %d: must be 0 (no limit) or more", o.Count)
	}
	if o.Duration < 0 {
		bad("duration %v: must be 0 (no limit) or more", o.Duration)
	}
	if o.Students < 0 || o.Students > MaxStudents {
		bad("students %d: must be between 1 and %d (0 for the default %d)", o.Students, MaxStudents, DefaultStudents)
	}
	if o.RetryAfter < 0 {
		bad("retry-after %v: must be 0 (default %v) or more", o.RetryAfter, DefaultRetryAfter)
	}
	for _, s := range []struct {
		name string
		v    float64
	}{
		{"fail-share", o.FailShare},
		{"retry-share", o.RetryShare},
		{"duplicate-share", o.DuplicateShare},
		{"malformed-share", o.MalformedShare},
		{"omit-event-id-share", o.OmitEventIDShare},
	} {
		if math.IsNaN(s.v) || s.v > 1 || (s.v < 0 && s.v != None) {
			bad("%s %v: must be a share between 0 and 1 (0 selects the default, produce.None asks for none)", s.name, s.v)
		}
	}
	if len(o.Thresholds) == 0 {
		bad("thresholds: at least one exercise is required")
	}
	ids := make([]string, 0, len(o.Thresholds))
	for id := range o.Thresholds {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	canFail := false
	for _, id := range ids {
		t := o.Thresholds[id]
		if err := event.ValidIdent(id); err != nil {
			bad("thresholds: exercise id %q: %v", id, err)
		}
		if math.IsNaN(t) || t < 0 || t > 100 {
			bad("thresholds: exercise %q: threshold %v must be between 0 and 100", id, t)
		} else if t > 0 {
			canFail = true
		}
	}
	if len(ids) > 0 && !canFail && o.FailShare != None {
		bad("thresholds: every threshold is 0, so no result can fail: set fail-share to none or give an exercise a threshold above 0")
	}
	return errors.Join(errs...)
}

func validTopic(t string) error {
	if len(t) > 249 {
		return fmt.Errorf("longer than 249 characters")
	}
	if t == "." || t == ".." {
		return fmt.Errorf("not a valid topic name")
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("has %q; allowed are A-Z a-z 0-9 . _ -", c)
		}
	}
	return nil
}

// minWait is the shortest pause between two bursts. At high rates the
// loop wakes up at most every minWait and sends every record that has
// become due since, instead of sleeping once per record.
const minWait = 2 * time.Millisecond

// chunk bounds the records sent between two checks of ctx and the clock.
const chunk = 1024

// runner holds what the produce callbacks and the progress reporter share
// with the generating goroutine.
type runner struct {
	c        counters
	acked    atomic.Int64
	failed   atomic.Bool
	errMu    sync.Mutex
	firstErr error
}

func (r *runner) promise(_ *kgo.Record, err error) {
	if err == nil {
		r.acked.Add(1)
		return
	}
	r.errMu.Lock()
	if r.firstErr == nil {
		r.firstErr = err
	}
	r.errMu.Unlock()
	r.failed.Store(true)
}

// Run produces records with cl (key = student id, value = the JSON event)
// at o.Rate until o.Count records, o.Duration or the cancellation of ctx,
// whichever comes first; then waits until every record is acknowledged
// (Flush) and returns the stats. Cancelling ctx is a normal way to stop
// (no error); buffered records are still delivered, for up to DrainTimeout.
// The first produce error stops the run and is returned.
//
// progress, if non-nil, gets a one-line progress update every 500 ms
// (rewritten in place with a carriage return) and a final summary line.
// It is written from one goroutine at a time.
func Run(ctx context.Context, cl *kgo.Client, o Options, progress io.Writer) (Stats, error) {
	if cl == nil {
		return Stats{}, errors.New("produce: no Kafka client")
	}
	if err := o.Validate(); err != nil {
		return Stats{}, fmt.Errorf("produce: invalid options:\n%w", err)
	}
	o = o.WithDefaults()
	seed := o.Seed
	if seed == 0 {
		seed = time.Now().UnixNano() | 1
	}
	r := &runner{}
	g := newGenerator(o, seed, &r.c)

	// Records are produced with pctx, not ctx: cancelling ctx stops the
	// generation but lets the records already buffered be delivered.
	// pctx is cancelled DrainTimeout after ctx, so that a dead cluster
	// cannot hold Run (in a blocked Produce or in Flush) forever.
	pctx, abort := context.WithCancel(context.WithoutCancel(ctx))
	defer abort()
	finished := make(chan struct{})
	go func() {
		select {
		case <-finished:
			return
		case <-ctx.Done():
		}
		t := time.NewTimer(drainTimeout)
		defer t.Stop()
		select {
		case <-finished:
		case <-t.C:
			abort()
		}
	}()

	start := time.Now()
	var rep *reporter
	if progress != nil {
		rep = newReporter(progress, r, start)
	}

	generated := r.pace(ctx, pctx, cl, g, o, start)

	ferr := cl.Flush(pctx)
	close(finished)
	st := r.stats(time.Since(start), seed)
	if rep != nil {
		rep.stop(st)
	}

	r.errMu.Lock()
	perr := r.firstErr
	r.errMu.Unlock()
	switch {
	case st.Sent < generated && pctx.Err() != nil:
		return st, fmt.Errorf("produce: %d of %d records not acknowledged within %v after cancellation",
			generated-st.Sent, generated, drainTimeout)
	case perr != nil:
		return st, fmt.Errorf("produce to %q: %w", o.Topic, perr)
	case ferr != nil:
		return st, fmt.Errorf("produce: flush: %w", ferr)
	}
	return st, nil
}

// pace runs the generator at o.Rate and returns the number of records
// handed to the client. Record n (from 0) is due n/Rate seconds after
// base; the loop sends every due record, then sleeps until the next one is
// due (at least minWait), so its cost does not grow with the rate.
func (r *runner) pace(ctx, pctx context.Context, cl *kgo.Client, g *generator, o Options, start time.Time) int64 {
	var deadline time.Time
	if o.Duration > 0 {
		deadline = start.Add(o.Duration)
	}
	limit := int64(math.MaxInt64)
	if o.Count > 0 {
		limit = int64(o.Count)
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()

	base := start
	var generated int64
	for generated < limit && !r.failed.Load() && ctx.Err() == nil {
		now := time.Now()
		if !deadline.IsZero() && !now.Before(deadline) {
			break
		}
		due := int64(math.Min(o.Rate*now.Sub(base).Seconds(), math.MaxInt64/2)) + 1
		if due-generated > int64(o.Rate)+1 {
			// More than a second behind (the client blocked on a full
			// buffer, or the process was stopped): do not make up for it
			// with a burst, carry on at the rate from here.
			base = now.Add(-time.Duration(float64(generated) / o.Rate * float64(time.Second)))
			due = generated + 1
		}
		if n := min(due-generated, limit-generated, chunk); n > 0 {
			for range n {
				rec, _ := g.next()
				cl.Produce(pctx, rec, r.promise)
			}
			generated += n
			continue
		}
		next := base.Add(time.Duration(float64(generated) / o.Rate * float64(time.Second)))
		wait := max(next.Sub(now), minWait)
		if !deadline.IsZero() {
			wait = min(wait, deadline.Sub(now))
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
		case <-timer.C:
		}
	}
	return generated
}

func (r *runner) stats(elapsed time.Duration, seed int64) Stats {
	return Stats{
		Sent:       r.acked.Load(),
		Failing:    r.c.failing.Load(),
		Duplicates: r.c.duplicates.Load(),
		Malformed:  r.c.malformed.Load(),
		Retries:    r.c.retries.Load(),
		Events:     r.c.valid.Load(),
		Elapsed:    elapsed,
		Seed:       seed,
	}
}

// reporter writes the progress line every 500 ms from its own goroutine.
type reporter struct {
	w       io.Writer
	r       *runner
	start   time.Time
	quit    chan struct{}
	done    chan struct{}
	lastLen int
}

const progressEvery = 500 * time.Millisecond

func newReporter(w io.Writer, r *runner, start time.Time) *reporter {
	p := &reporter{w: w, r: r, start: start, quit: make(chan struct{}), done: make(chan struct{})}
	go p.loop()
	return p
}

func (p *reporter) loop() {
	defer close(p.done)
	t := time.NewTicker(progressEvery)
	defer t.Stop()
	lastSent, lastAt := int64(0), p.start
	for {
		select {
		case <-p.quit:
			return
		case now := <-t.C:
			sent := p.r.acked.Load()
			rate := float64(sent-lastSent) / now.Sub(lastAt).Seconds()
			lastSent, lastAt = sent, now
			p.line(fmt.Sprintf("sent %d  %.0f/s  failing %d  dup %d  malformed %d  retries %d  %s",
				sent, rate, p.r.c.failing.Load(), p.r.c.duplicates.Load(), p.r.c.malformed.Load(),
				p.r.c.retries.Load(), now.Sub(p.start).Truncate(100*time.Millisecond)), "")
		}
	}
}

// line rewrites the current line with s, padded to hide a longer previous
// one, followed by end.
func (p *reporter) line(s, end string) {
	pad := max(p.lastLen-len(s), 0)
	p.lastLen = len(s)
	fmt.Fprint(p.w, "\r"+s+strings.Repeat(" ", pad)+end)
}

func (p *reporter) stop(st Stats) {
	close(p.quit)
	<-p.done
	rate := 0.0
	if s := st.Elapsed.Seconds(); s > 0 {
		rate = float64(st.Sent) / s
	}
	p.line(fmt.Sprintf("sent %d records in %s (%.0f/s): %d events, %d failing, %d retries, %d duplicates, %d malformed (seed %d)",
		st.Sent, st.Elapsed.Round(time.Millisecond), rate, st.Events, st.Failing, st.Retries,
		st.Duplicates, st.Malformed, st.Seed), "\n")
}
