package bench

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Failing and passing metrics of the benchmark's records, against the
// benchmark exercise's threshold.
const (
	failingMetric = 10
	passingMetric = 90
)

// load is one paced run of the producer: the records handed to the client,
// and when each failing one was.
type load struct {
	// handoff is, by deployment ID, when its failing record was handed to
	// the producer.
	handoff  map[string]time.Time
	failing  int
	passing  int
	errs     atomic.Int64
	firstErr atomic.Value
	began    time.Time
	ended    time.Time
}

// shape says what one phase sends.
type shape struct {
	topic        string
	run          string // unique per run: the event ids' prefix
	exercise     string
	idPrefix     string // the workflow ID prefix of the pipeline under test
	failingRate  float64
	passingRate  float64
	duration     time.Duration
	burst        int // failing records sent at once, before the paced part
	students     int
	positionSeed uint64
}

// produce sends sh's records and returns once every one is acknowledged
// by Kafka (or failed). Failing and passing records are interleaved so
// that every prefix of the stream has the configured share.
func produce(ctx context.Context, cl *kgo.Client, sh shape) (*load, error) {
	l := &load{handoff: map[string]time.Time{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	seq := 0
	send := func(fail bool) {
		seq++
		now := time.Now()
		rec, id := sh.record(seq, fail, now)
		if fail {
			mu.Lock()
			l.handoff[sh.idPrefix+id] = now
			mu.Unlock()
			l.failing++
		} else {
			l.passing++
		}
		wg.Add(1)
		cl.Produce(ctx, rec, func(_ *kgo.Record, err error) {
			defer wg.Done()
			if err != nil {
				if l.errs.Add(1) == 1 {
					l.firstErr.Store(err)
				}
			}
		})
	}
	l.began = time.Now()
	for range sh.burst {
		send(true)
	}
	total := sh.failingRate + sh.passingRate
	if total > 0 && sh.duration > 0 {
		start := time.Now()
		var sent, sentFail int64
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
	pace:
		for {
			elapsed := time.Since(start)
			if elapsed >= sh.duration {
				elapsed = sh.duration
			}
			due := int64(elapsed.Seconds() * total)
			for ; sent < due; sent++ {
				// The k-th record fails iff it crosses a multiple of the
				// failing share: exact shares in every prefix.
				fail := int64(float64(sent+1)*sh.failingRate/total) > sentFail
				if fail {
					sentFail++
				}
				send(fail)
			}
			if elapsed >= sh.duration {
				break
			}
			select {
			case <-ctx.Done():
				break pace
			case <-tick.C:
			}
		}
	}
	l.ended = time.Now()
	wg.Wait()
	if n := l.errs.Load(); n > 0 {
		return l, fmt.Errorf("%d records not acknowledged by Kafka: %v", n, l.firstErr.Load())
	}
	return l, ctx.Err()
}

// record is the seq-th result of the shape, with its event id.
func (sh shape) record(seq int, fail bool, now time.Time) (*kgo.Record, string) {
	id := sh.run + "-" + strconv.Itoa(seq)
	metric := passingMetric
	if fail {
		metric = failingMetric
	}
	student := "bench-s" + strconv.Itoa(seq%max(sh.students, 1))
	lat, lon := position(sh.positionSeed + uint64(seq))
	value := fmt.Appendf(nil, `{"event_id":%q,"timestamp":%q,"student_id":%q,"latitude":%.5f,"longitude":%.5f,"exercise_id":%q,"metric":%d}`,
		id, now.UTC().Format("2006-01-02T15:04:05.000Z07:00"), student, lat, lon, sh.exercise, metric)
	return &kgo.Record{Topic: sh.topic, Key: []byte(student), Value: value}, id
}

// position spreads the students over mainland France, deterministically.
func position(n uint64) (lat, lon float64) {
	n = n*6364136223846793005 + 1442695040888963407
	a := float64(n>>40) / float64(1<<24)
	b := float64((n>>16)&0xffffff) / float64(1<<24)
	return 43.3 + a*7.7, -1.5 + b*8.5
}
