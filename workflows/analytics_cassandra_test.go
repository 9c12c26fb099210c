//go:build integration

package workflows_test

import (
	"testing"

	"github.com/acu-patrol/acu/internal/store/cassandra/cassandratest"
)

// TestAnalyticsIncrementalEqualsFullOnRealCassandra runs the analytics
// scenario (new, late and re-archived results, a threshold change,
// deployments, a precision change; each report equal to a full
// recomputation) on the Cassandra store: both backends give the same
// numbers.
func TestAnalyticsIncrementalEqualsFullOnRealCassandra(t *testing.T) {
	st := cassandratest.Open(t)
	analyticsIncrementalEqualsFull(t, st, func() { cassandratest.WaitSettled(t, st) })
}
