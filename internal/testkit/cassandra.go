package testkit

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gocql/gocql"
)

// EnvCassandra names the real Cassandra (host:port) of the integration
// tests; scripts/integration.sh sets it.
const EnvCassandra = "ACU_IT_CASSANDRA"

const cassandraHint = "ACU_LOCAL_DIR=/tmp/acu-it ACU_CASSANDRA_PORT=29042 ACU_CASSANDRA_STORAGE_PORT=27000 deploy/local/servers.sh start cassandra"

var (
	cassOnce sync.Once
	cassErr  error
	ksUnsafe = regexp.MustCompile(`[^a-z0-9_]+`)
)

// CassandraKeyspace returns the address of the real Cassandra named by
// ACU_IT_CASSANDRA and a fresh keyspace name for the test, dropped when the
// test ends. Unset: the test is skipped. Set but not answering: it fails.
func CassandraKeyspace(t testing.TB) (addr, keyspace string) {
	t.Helper()
	addr = strings.TrimSpace(os.Getenv(EnvCassandra))
	if addr == "" {
		t.Skipf("%s is not set: this test needs a real Cassandra. Start one with\n  %s\nthen run it with %s=127.0.0.1:29042 and -tags integration",
			EnvCassandra, cassandraHint, EnvCassandra)
	}
	cassOnce.Do(func() {
		s, err := cassandraSession(addr)
		if err == nil {
			s.Close()
		}
		cassErr = err
	})
	if cassErr != nil {
		t.Fatalf("%s=%s but Cassandra does not answer: %v\n(start one with: %s)", EnvCassandra, addr, cassErr, cassandraHint)
	}
	name := strings.ToLower(t.Name())
	name = ksUnsafe.ReplaceAllString(name, "_")
	if len(name) > 28 {
		name = name[:28]
	}
	keyspace = fmt.Sprintf("it_%s_%d", name, time.Now().UnixNano()%1e12)
	t.Cleanup(func() {
		s, err := cassandraSession(addr)
		if err != nil {
			t.Errorf("dropping keyspace %s: %v", keyspace, err)
			return
		}
		defer s.Close()
		if err := s.Query(`DROP KEYSPACE IF EXISTS ` + keyspace).Exec(); err != nil {
			t.Errorf("dropping keyspace %s: %v", keyspace, err)
		}
	})
	return addr, keyspace
}

func cassandraSession(addr string) (*gocql.Session, error) {
	cl := gocql.NewCluster(addr)
	cl.Timeout = 20 * time.Second
	cl.ConnectTimeout = 10 * time.Second
	return cl.CreateSession()
}
