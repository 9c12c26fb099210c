//go:build integration

package dev_test

import (
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/acu-patrol/acu/internal/config"
	"github.com/acu-patrol/acu/internal/dev"
	"github.com/acu-patrol/acu/internal/testkit"
)

// TestEndToEndOnRealServers runs TestEndToEnd's scenario on a real Kafka
// broker and a real Cassandra (scripts/integration.sh starts them; Temporal
// and etcd are embedded): one patrol per distinct failing event, every
// result archived once, the follow-up outcomes, the DLQ, and an analytics
// report equal to the expected one and to a full recomputation.
func TestEndToEndOnRealServers(t *testing.T) {
	seeds := testkit.RealKafka(t)
	addr, ks := testkit.CassandraKeyspace(t)
	var cfg config.Config
	cfg.Register(flag.NewFlagSet("test", flag.ContinueOnError))
	cfg.Kafka = strings.Join(seeds, ",")
	cfg.Etcd, cfg.Temporal, cfg.HTTP = testkit.FreeAddr(t), testkit.FreeAddr(t), testkit.FreeAddr(t)
	cfg.Store = "cassandra://" + addr + "/" + ks + "?settle=3s"
	cfg.PatrolURL = "http://" + cfg.HTTP + "/patrol"
	cfg.FollowUpAfter = 4 * time.Second
	cfg.FollowUpSettle = time.Second
	cfg.LogLevel = "warn"
	endToEnd(t, dev.Options{Config: cfg, ExternalKafka: true})
}
