//go:build integration

package cassandra_test

import (
	"context"
	"testing"
	"time"

	"github.com/acu-patrol/acu/internal/store"
	"github.com/acu-patrol/acu/internal/store/cassandra"
	"github.com/acu-patrol/acu/internal/store/storetest"
	"github.com/acu-patrol/acu/internal/testkit"
)

// settle is the tests' arrival margin: short, so Settle waits little.
const settle = 3 * time.Second

// open migrates a fresh keyspace on the real Cassandra and opens it.
func open(t *testing.T, params string) *cassandra.Store {
	t.Helper()
	addr, ks := testkit.CassandraKeyspace(t)
	cfg, err := cassandra.ParseURL("cassandra://" + addr + "/" + ks + "?settle=" + settle.String() + params)
	if err != nil {
		t.Fatal(err)
	}
	s, err := cassandra.Open(context.Background(), cfg, cassandra.Options{Migrate: true})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestContractOnRealCassandra runs the store contract on a real Cassandra.
func TestContractOnRealCassandra(t *testing.T) {
	storetest.Run(t, storetest.Backend{
		Open: func(t *testing.T) store.Store { return open(t, "") },
		Settle: func(t *testing.T, s store.Store) {
			// Wait until the arrival mark passes the clock at the call.
			now := time.Now().UnixMicro()
			testkit.Eventually(t, 2*settle, func() bool {
				m, err := s.ArrivalMark(context.Background())
				return err == nil && m >= now
			}, func() string { return "arrival mark" })
		},
	})
}
