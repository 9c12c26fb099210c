package main

import (
	"errors"
	"flag"
	"io"
	"testing"
	"time"
)

func TestEtcdConfigValidate(t *testing.T) {
	const cluster = "e1=http://127.0.0.41:2380,e2=http://127.0.0.42:2380,e3=http://127.0.0.43:2380"
	for _, tc := range []struct {
		name string
		args []string
		ok   bool
	}{
		{"valid", []string{"--name", "e2", "--dir", "d", "--client", "127.0.0.42:2379", "--peer", "127.0.0.42:2380", "--cluster", cluster}, true},
		{"missing dir", []string{"--name", "e2", "--client", "127.0.0.42:2379", "--peer", "127.0.0.42:2380", "--cluster", cluster}, false},
		{"name not in cluster", []string{"--name", "e4", "--dir", "d", "--client", "127.0.0.42:2379", "--peer", "127.0.0.42:2380", "--cluster", cluster}, false},
		{"peer differs from cluster", []string{"--name", "e2", "--dir", "d", "--client", "127.0.0.42:2379", "--peer", "127.0.0.42:2381", "--cluster", cluster}, false},
		{"host name, not IP", []string{"--name", "e2", "--dir", "d", "--client", "localhost:2379", "--peer", "127.0.0.42:2380", "--cluster", cluster}, false},
		{"port 0", []string{"--name", "e2", "--dir", "d", "--client", "127.0.0.42:0", "--peer", "127.0.0.42:2380", "--cluster", cluster}, false},
		{"bad cluster entry", []string{"--name", "e2", "--dir", "d", "--client", "127.0.0.42:2379", "--peer", "127.0.0.42:2380", "--cluster", "e2=http://127.0.0.42:2380,junk"}, false},
		{"bad log level", []string{"--name", "e2", "--dir", "d", "--client", "127.0.0.42:2379", "--peer", "127.0.0.42:2380", "--cluster", cluster, "--log-level", "loud"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c etcdConfig
			fs := flag.NewFlagSet("etcd", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			c.register(fs)
			if err := parseFlags(fs, tc.args); err != nil {
				t.Fatal(err)
			}
			_, err := c.validate()
			if (err == nil) != tc.ok {
				t.Fatalf("validate() = %v, want ok %v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, errUsage) {
				t.Errorf("validate() = %v, not a usage error", err)
			}
		})
	}
}

func TestTemporalConfigValidate(t *testing.T) {
	base := []string{"--postgres", "127.0.0.31:5432", "--address", "127.0.0.51"}
	for _, tc := range []struct {
		name  string
		extra []string
		ok    bool
		check func(t *testing.T, c temporalConfig)
	}{
		{"defaults", nil, true, nil},
		{"no UI", []string{"--ui-port", "0"}, true, nil},
		{"the fault suite's command line", []string{"--pg-user", "postgres", "--db", "temporal", "--visibility-db", "temporal_visibility",
			"--shards", "4", "--frontend-port", "7233", "--ui-port", "8233", "--namespace", "default", "--retention", "72h"}, true,
			func(t *testing.T, c temporalConfig) {
				o, _ := c.validate()
				if o.FrontendAddr != "127.0.0.51:7233" || o.UIAddr != "127.0.0.51:8233" || o.HistoryShards != 4 ||
					o.Retention != 72*time.Hour || o.Postgres.Addr != "127.0.0.31:5432" || o.Postgres.VisibilityDatabase != "temporal_visibility" {
					t.Errorf("options = %+v (postgres %+v)", o, *o.Postgres)
				}
			}},
		{"address not loopback", []string{"--address", "10.0.0.1"}, false, nil},
		{"address a host name", []string{"--address", "localhost"}, false, nil},
		{"two services on one port", []string{"--history-port", "7233"}, false, nil},
		{"zero shards", []string{"--shards", "0"}, false, nil},
		{"same database twice", []string{"--visibility-db", "temporal"}, false, nil},
		{"no retention", []string{"--retention", "0s"}, false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c temporalConfig
			fs := flag.NewFlagSet("temporal", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			c.register(fs)
			if err := parseFlags(fs, append(append([]string{}, base...), tc.extra...)); err != nil {
				t.Fatal(err)
			}
			_, err := c.validate()
			if (err == nil) != tc.ok {
				t.Fatalf("validate() = %v, want ok %v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, errUsage) {
				t.Errorf("validate() = %v, not a usage error", err)
			}
			if tc.check != nil {
				tc.check(t, c)
			}
		})
	}
}
