//go:build integration

package cassandra_test

import (
	"testing"

	"github.com/acu-patrol/acu/internal/store"
	"github.com/acu-patrol/acu/internal/store/cassandra/cassandratest"
	"github.com/acu-patrol/acu/internal/store/storetest"
	"github.com/acu-patrol/acu/internal/testkit"
)

// TestContractOnRealCassandra runs the store contract on a real Cassandra.
func TestContractOnRealCassandra(t *testing.T) {
	storetest.Run(t, storetest.Backend{
		Open:   func(t *testing.T) store.Store { return cassandratest.Open(t) },
		Settle: func(t *testing.T, s store.Store) { testkit.Settle(t, s, 3*cassandratest.Settle) },
	})
}
