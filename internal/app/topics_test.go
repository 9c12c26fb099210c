package app_test

import (
	"context"
	"log/slog"
	"strconv"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/acu-patrol/acu/ingest"
	"github.com/acu-patrol/acu/internal/app"
	"github.com/acu-patrol/acu/internal/testkit"
)

// TestCreateTopicsSizesTheDLQ: acu setup creates both topics with explicit
// configs, and raises the DLQ of topics that existed before (broker
// defaults: the DLQ takes no more than the results topic, so a large
// reject could never be copied) to take any result plus its headers.
func TestCreateTopicsSizesTheDLQ(t *testing.T) {
	ctx := context.Background()
	for _, existing := range []bool{false, true} {
		t.Run("existing="+strconv.FormatBool(existing), func(t *testing.T) {
			opts := []kfake.Opt{kfake.NumBrokers(1)}
			if existing {
				opts = append(opts, kfake.SeedTopics(2, ingest.ResultsTopic, ingest.DLQTopic))
			}
			c, err := kfake.NewCluster(opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			log := testkit.Logger(t, slog.LevelWarn)
			for range 2 { // idempotent
				if err := app.CreateTopics(ctx, c.ListenAddrs(), 3, 1, log); err != nil {
					t.Fatal(err)
				}
			}
			cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			rcs, err := kadm.NewClient(cl).DescribeTopicConfigs(ctx, ingest.ResultsTopic, ingest.DLQTopic)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]map[string]string{}
			for _, rc := range rcs {
				got[rc.Name] = map[string]string{}
				for _, cfg := range rc.Configs {
					got[rc.Name][cfg.Key] = cfg.MaybeValue()
				}
			}
			if v := got[ingest.ResultsTopic]["max.message.bytes"]; v != strconv.Itoa(ingest.ResultsMaxMessageBytes) {
				t.Errorf("results max.message.bytes = %q", v)
			}
			if v := got[ingest.DLQTopic]["max.message.bytes"]; v != strconv.Itoa(ingest.DLQMaxMessageBytes) {
				t.Errorf("DLQ max.message.bytes = %q, want %d", v, ingest.DLQMaxMessageBytes)
			}
			if !existing {
				for topic, want := range map[string]string{ingest.ResultsTopic: "604800000", ingest.DLQTopic: "2419200000"} {
					if v := got[topic]["retention.ms"]; v != want {
						t.Errorf("%s retention.ms = %q, want %s", topic, v, want)
					}
				}
			}
		})
	}
}
