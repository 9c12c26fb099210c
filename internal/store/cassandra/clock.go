package cassandra

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// The settle margin rests on the clocks of the archivers (their arrival
// stamps) and of the workers (the analytics' mark) agreeing: an attempt
// gives up at half the margin after its stamp, and the other half covers
// both clocks' distance. So each process measures its clock against
// Cassandra's (the coordinator's now(), corrected by half the round trip)
// once a minute, and refuses to stamp or to mark while it is more than a
// quarter of the margin away: the archiver's batches and the analytics runs
// then fail visibly, and are retried, until the clock is fixed.

// ErrClock is wrapped by the errors of a process whose clock is too far
// from Cassandra's for the settle margin.
var ErrClock = errors.New("this machine's clock is too far from Cassandra's for the settle margin")

// clockRecheck is how long a clock measurement is trusted.
const clockRecheck = time.Minute

type clockCheck struct {
	mu        sync.Mutex
	checkedAt time.Time
	err       error
}

// checkClock returns nil while this process's clock is within a quarter of
// the settle margin of Cassandra's.
func (s *Store) checkClock(ctx context.Context) error {
	s.clock.mu.Lock()
	defer s.clock.mu.Unlock()
	if !s.clock.checkedAt.IsZero() && time.Since(s.clock.checkedAt) < clockRecheck {
		return s.clock.err
	}
	skew, err := s.measureSkew(ctx)
	if err != nil {
		return fmt.Errorf("measuring the clock against Cassandra's: %w", err)
	}
	s.clock.checkedAt, s.clock.err = time.Now(), skewError(skew, s.cfg.Settle)
	return s.clock.err
}

// measureSkew is Cassandra's clock minus this machine's.
func (s *Store) measureSkew(ctx context.Context) (time.Duration, error) {
	var remote time.Time
	before := time.Now()
	if err := s.session.Query(`SELECT toTimestamp(now()) FROM system.local`).WithContext(ctx).Scan(&remote); err != nil {
		return 0, err
	}
	after := time.Now()
	return remote.Sub(before.Add(after.Sub(before) / 2)), nil
}

// skewError is the refusal of a skew beyond a quarter of settle, nil within.
func skewError(skew, settle time.Duration) error {
	if limit := settle / 4; skew > limit || skew < -limit {
		return fmt.Errorf("%w: off by %s, more than a quarter of the settle margin (%s of %s): synchronise it (NTP)", ErrClock, skew.Round(time.Millisecond), limit, settle)
	}
	return nil
}
