// Package cassandratest opens Cassandra stores on the real server of the
// integration tests. Only tests import it.
package cassandratest

import (
	"context"
	"testing"
	"time"

	"github.com/acu-patrol/acu/internal/store/cassandra"
	"github.com/acu-patrol/acu/internal/testkit"
)

// Settle is the stores' settle margin: short, so waiting for it is short.
const Settle = 3 * time.Second

// Open migrates a fresh keyspace on the Cassandra named by ACU_IT_CASSANDRA
// (skipped when unset, see testkit.CassandraKeyspace) and opens the store
// on it; the store is closed and the keyspace dropped when the test ends.
func Open(t testing.TB) *cassandra.Store {
	t.Helper()
	addr, ks := testkit.CassandraKeyspace(t)
	cfg, err := cassandra.ParseURL("cassandra://" + addr + "/" + ks + "?settle=" + Settle.String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := cassandra.Open(context.Background(), cfg, cassandra.Options{Migrate: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// WaitSettled waits until what was archived in s before the call is
// readable by its arrival reads, and returns the arrival mark.
func WaitSettled(t testing.TB, s *cassandra.Store) int64 {
	t.Helper()
	return testkit.Settle(t, s, 3*Settle)
}
