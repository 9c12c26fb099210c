//go:build integration

package workflows_test

import (
	"context"
	"testing"
	"time"

	"github.com/acu-patrol/acu/internal/store/cassandra"
	"github.com/acu-patrol/acu/internal/testkit"
)

// TestAnalyticsIncrementalEqualsFullOnRealCassandra runs the analytics
// scenario (new, late and re-archived results, a threshold change,
// deployments, a precision change; each report equal to a full
// recomputation) on the Cassandra store: both backends give the same
// numbers.
func TestAnalyticsIncrementalEqualsFullOnRealCassandra(t *testing.T) {
	addr, ks := testkit.CassandraKeyspace(t)
	cfg, err := cassandra.ParseURL("cassandra://" + addr + "/" + ks + "?settle=3s")
	if err != nil {
		t.Fatal(err)
	}
	st, err := cassandra.Open(context.Background(), cfg, cassandra.Options{Migrate: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	analyticsIncrementalEqualsFull(t, st, func() {
		now := time.Now().UnixMicro()
		testkit.Eventually(t, 10*time.Second, func() bool {
			m, err := st.ArrivalMark(context.Background())
			return err == nil && m >= now
		}, func() string { return "arrival mark" })
	})
}
