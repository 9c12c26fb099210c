package cassandra

import (
	"errors"
	"testing"

	"github.com/gocql/gocql"
)

// TestConsistencyMustOverlap: the store refuses a level whose reads and
// writes need not share a replica for the keyspace's replication, and
// takes every level that is exact.
func TestConsistencyMustOverlap(t *testing.T) {
	simple := func(n string) map[string]string {
		return map[string]string{"class": "org.apache.cassandra.locator.SimpleStrategy", "replication_factor": n}
	}
	nts := map[string]string{"class": "org.apache.cassandra.locator.NetworkTopologyStrategy", "dc1": "3", "dc2": "3"}
	for _, tc := range []struct {
		c       gocql.Consistency
		localDC string
		repl    map[string]string
		exact   bool
	}{
		{gocql.Quorum, "", simple("3"), true},
		{gocql.All, "", simple("3"), true},
		{gocql.One, "", simple("1"), true},
		{gocql.One, "", simple("2"), false},
		{gocql.One, "", simple("3"), false},
		{gocql.Two, "", simple("3"), true},
		{gocql.Two, "", simple("4"), false},
		{gocql.Three, "", simple("5"), true},
		{gocql.LocalQuorum, "dc1", nts, true},
		{gocql.EachQuorum, "", nts, true},
		{gocql.LocalOne, "dc1", nts, false},
		{gocql.LocalOne, "dc1", map[string]string{"class": "NetworkTopologyStrategy", "dc1": "1", "dc2": "3"}, true},
		{gocql.LocalOne, "", nts, false},
		{gocql.Two, "", nts, false},
	} {
		err := overlaps(tc.c, tc.localDC, "acu", tc.repl)
		if tc.exact && err != nil {
			t.Errorf("%s on %v: %v, want accepted", tc.c, tc.repl, err)
		}
		if !tc.exact && !errors.Is(err, ErrInexact) {
			t.Errorf("%s on %v: %v, want ErrInexact", tc.c, tc.repl, err)
		}
	}
}
