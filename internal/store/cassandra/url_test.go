package cassandra

import (
	"strings"
	"testing"
	"time"

	"github.com/gocql/gocql"
)

func TestParseURL(t *testing.T) {
	c, err := ParseURL("cassandra://h1,h2:9142,127.0.0.1:9043/acu")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(c.Hosts, " ") != "h1:9042 h2:9142 127.0.0.1:9043" || c.Keyspace != "acu" || c.Consistency != gocql.Quorum ||
		c.Timeout != 10*time.Second || c.Settle != 30*time.Second || c.ReplicationSet ||
		c.Replication.CQL() != "{'class': 'SimpleStrategy', 'replication_factor': 1}" {
		t.Errorf("defaults: %+v", c)
	}
	c, err = ParseURL("cassandra://u:p%40ss@h1/ks_1?consistency=local_quorum&local_dc=dc1&replication=dc2:2,dc1:3&timeout=3s&settle=1m")
	if err != nil {
		t.Fatal(err)
	}
	if c.Username != "u" || c.Password != "p@ss" || c.Consistency != gocql.LocalQuorum || c.LocalDC != "dc1" ||
		c.Timeout != 3*time.Second || c.Settle != time.Minute || !c.ReplicationSet ||
		c.Replication.CQL() != "{'class': 'NetworkTopologyStrategy', 'dc1': 3, 'dc2': 2}" {
		t.Errorf("all set: %+v", c)
	}
	if c, err := ParseURL("cassandra://h/acu?replication=SimpleStrategy:3"); err != nil || c.Replication.Factor != 3 {
		t.Errorf("SimpleStrategy:3: %+v %v", c, err)
	}
	for in, want := range map[string]string{
		"sqlite:/x":                                      "scheme",
		"cassandra:///acu":                               "no hosts",
		"cassandra://h,/acu":                             "empty host",
		"cassandra://h:99999/acu":                        "bad host",
		"cassandra://h":                                  "keyspace",
		"cassandra://h/1acu":                             "keyspace",
		"cassandra://h/acu;drop":                         "keyspace",
		"cassandra://h/acu?consistency=any":              "consistency",
		"cassandra://h/acu?consistency=most":             "consistency",
		"cassandra://h/acu?replication=SimpleStrategy:0": "replication",
		"cassandra://h/acu?replication=dc1":              "replication",
		"cassandra://h/acu?replication=dc'1:3":           "replication",
		"cassandra://h/acu?timeout=0s":                   "timeout",
		"cassandra://h/acu?settle=soon":                  "settle",
		"cassandra://h/acu?consistancy=one":              "unknown parameter",
		"cassandra://u:secret@h/acu?timeout=x":           "xxxxx",
		"cassandra://u:secret@h1:9042,h2:x/acu":          "invalid port",
		"cassandra://u:sec%zzret@h/acu":                  "escape",
		"cassandra://h/MyKeyspace":                       "lowercase",
		"cassandra://h/acu?consistency=local_quorum":     "local_dc",
	} {
		_, err := ParseURL(in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want it to mention %q", in, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("%s: the error shows the password: %v", in, err)
		}
	}
}

func TestTableIDsAreFixedAndDistinct(t *testing.T) {
	seen := map[string]string{}
	for _, step := range migrations {
		for _, stmt := range step {
			name := tableName(stmt)
			id := tableID("acu", name)
			if id != tableID("acu", name) {
				t.Fatalf("%s: ID not stable", name)
			}
			if other, dup := seen[id]; dup {
				t.Errorf("%s and %s share ID %s", name, other, id)
			}
			seen[id] = name
			if _, err := gocql.ParseUUID(id); err != nil {
				t.Errorf("%s: %v", name, err)
			}
			if !strings.Contains(render("acu", stmt), "CREATE TABLE IF NOT EXISTS acu."+name+" ") {
				t.Errorf("%s: rendered as %s", name, render("acu", stmt))
			}
		}
	}
	if tableID("acu", "results_by_arrival") == tableID("acu2", "results_by_arrival") {
		t.Error("the same table in two keyspaces shares an ID")
	}
}

func TestShardAndDay(t *testing.T) {
	counts := make([]int, shards)
	for i := range 8000 {
		counts[shardOf(strings.Repeat("x", i%7)+string(rune('a'+i%26))+time.Duration(i).String())]++
	}
	for i, n := range counts {
		if n < 500 {
			t.Errorf("shard %d got %d of 8000", i, n)
		}
	}
	for ms, want := range map[int64]int32{0: 0, dayMS - 1: 0, dayMS: 1, -1: -1, -dayMS: -1, -dayMS - 1: -2} {
		if got := dayOf(time.UnixMilli(ms)); got != want {
			t.Errorf("dayOf(%d) = %d, want %d", ms, got, want)
		}
	}
}
