package cassandra

import (
	"errors"
	"testing"
	"time"
)

// TestSkewBeyondAQuarterOfSettleIsRefused: the settle margin covers an
// attempt's half and both clocks' quarters; a clock further away than that
// from Cassandra's is refused, whatever its direction.
func TestSkewBeyondAQuarterOfSettleIsRefused(t *testing.T) {
	settle := 30 * time.Second
	for _, tc := range []struct {
		skew time.Duration
		ok   bool
	}{
		{0, true}, {7 * time.Second, true}, {-7 * time.Second, true}, {7500 * time.Millisecond, true},
		{7501 * time.Millisecond, false}, {-8 * time.Second, false}, {time.Hour, false},
	} {
		err := skewError(tc.skew, settle)
		if tc.ok != (err == nil) || (err != nil && !errors.Is(err, ErrClock)) {
			t.Errorf("skew %s: %v, want ok=%v", tc.skew, err, tc.ok)
		}
	}
}
