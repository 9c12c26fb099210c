package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/acu-patrol/acu/ingest"
	"github.com/acu-patrol/acu/internal/config"
	"github.com/acu-patrol/acu/internal/searchattr"
	"github.com/acu-patrol/acu/internal/store/cassandra"
	"github.com/acu-patrol/acu/schedules"
	"github.com/acu-patrol/acu/workflows"
)

// SearchAttributes are the custom search attributes of PatrolDeployment.
var SearchAttributes = map[string]enumspb.IndexedValueType{
	"StudentId":    enumspb.INDEXED_VALUE_TYPE_KEYWORD,
	"ExerciseId":   enumspb.INDEXED_VALUE_TYPE_KEYWORD,
	"Metric":       enumspb.INDEXED_VALUE_TYPE_DOUBLE,
	"Threshold":    enumspb.INDEXED_VALUE_TYPE_DOUBLE,
	"PatrolStatus": enumspb.INDEXED_VALUE_TYPE_KEYWORD,
}

// SetupOptions are the settings of acu setup beyond Config.
type SetupOptions struct {
	// Partitions of the results topic (and of the DLQ); default 6.
	Partitions int32
	// ReplicationFactor of the topics; default -1, the broker default.
	ReplicationFactor int16
	// Analytics is when the analytics schedule runs (schedules.ParseSpec).
	Analytics schedules.Spec
	// Precision is the geohash precision of the scheduled runs' hotspots.
	Precision int
}

// Setup provisions everything the services need, idempotently: the topics,
// the search attributes, the store schema and the analytics schedule.
func Setup(ctx context.Context, cfg *config.Config, o SetupOptions, tc client.Client, log *slog.Logger) error {
	if o.Partitions <= 0 {
		o.Partitions = 6
	}
	if o.ReplicationFactor == 0 {
		o.ReplicationFactor = -1
	}
	if err := CreateTopics(ctx, cfg.KafkaBrokers(), o.Partitions, o.ReplicationFactor, log); err != nil {
		return err
	}
	if err := RegisterSearchAttributes(ctx, tc, cfg.Namespace, log); err != nil {
		return err
	}
	st, err := OpenStore(ctx, cfg, true, log)
	if err != nil {
		return fmt.Errorf("store schema: %w", err)
	}
	log.Info("store schema ready", "store", cassandra.Redact(cfg.Store))
	if err := st.Close(); err != nil {
		return err
	}
	out, err := schedules.Apply(ctx, tc, schedules.Analytics(o.Analytics, workflows.AnalyticsInput{Precision: o.Precision}))
	if err != nil {
		return fmt.Errorf("analytics schedule: %w", err)
	}
	log.Info("analytics schedule "+string(out), "schedule_id", schedules.AnalyticsScheduleID, "every", o.Analytics.Every, "cron", o.Analytics.Cron)
	return nil
}

// CreateTopics creates the results topic and its DLQ unless they exist,
// with explicit configs (ingest.TopicConfigs), and makes sure the DLQ of
// existing topics takes any record the results topic takes, with room for
// the DLQ's headers: a reject that cannot be copied would hold its
// partition back (the consumer then truncates it).
func CreateTopics(ctx context.Context, brokers []string, partitions int32, rf int16, log *slog.Logger) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return fmt.Errorf("creating Kafka client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	for _, topic := range []string{ingest.ResultsTopic, ingest.DLQTopic} {
		configs := ingest.TopicConfigs(topic == ingest.DLQTopic)
		if rf >= 3 {
			// acks=all then survives one broker down and never acknowledges a
			// write held by a single replica.
			configs["min.insync.replicas"] = kadm.StringPtr("2")
		}
		r, err := adm.CreateTopic(ctx, partitions, rf, configs, topic)
		if err == nil {
			err = r.Err
		}
		switch {
		case err == nil:
			log.Info("topic created", "topic", topic, "partitions", partitions)
		case errors.Is(err, kerr.TopicAlreadyExists):
			log.Info("topic exists", "topic", topic)
		default:
			return fmt.Errorf("creating topic %s: %w", topic, err)
		}
	}
	results, err := maxMessageBytes(ctx, adm, ingest.ResultsTopic)
	if err != nil {
		return err
	}
	dlq, err := maxMessageBytes(ctx, adm, ingest.DLQTopic)
	if err != nil {
		return err
	}
	if want := results + ingest.DLQHeadroom; dlq < want {
		v := strconv.Itoa(want)
		resp, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Name: "max.message.bytes", Value: &v}}, ingest.DLQTopic)
		if err == nil {
			_, err = resp.On(ingest.DLQTopic, nil)
		}
		if err != nil {
			return fmt.Errorf("raising max.message.bytes of %s from %d to %s (%s takes %d): %w", ingest.DLQTopic, dlq, v, ingest.ResultsTopic, results, err)
		}
		log.Info("DLQ max.message.bytes raised to take any result", "topic", ingest.DLQTopic, "from", dlq, "to", want)
	}
	return nil
}

// maxMessageBytes is the topic's max.message.bytes, its own or inherited.
// A topic created a moment ago may not be known to the broker answering
// yet: that is retried for up to 30 s.
func maxMessageBytes(ctx context.Context, adm *kadm.Client, topic string) (int, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		n, err := describeMaxMessageBytes(ctx, adm, topic)
		if !errors.Is(err, kerr.UnknownTopicOrPartition) || time.Now().After(deadline) {
			return n, err
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("describing %s: %w", topic, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func describeMaxMessageBytes(ctx context.Context, adm *kadm.Client, topic string) (int, error) {
	rcs, err := adm.DescribeTopicConfigs(ctx, topic)
	if err != nil {
		return 0, fmt.Errorf("describing %s: %w", topic, err)
	}
	rc, err := rcs.On(topic, nil)
	if err == nil {
		err = rc.Err
	}
	if err != nil {
		return 0, fmt.Errorf("describing %s: %w", topic, err)
	}
	for _, c := range rc.Configs {
		if c.Key == "max.message.bytes" {
			n, err := strconv.Atoi(c.MaybeValue())
			if err != nil {
				return 0, fmt.Errorf("%s: max.message.bytes %q: %w", topic, c.MaybeValue(), err)
			}
			return n, nil
		}
	}
	return 0, fmt.Errorf("%s has no max.message.bytes", topic)
}

// RegisterSearchAttributes adds the custom search attributes missing from
// the namespace.
func RegisterSearchAttributes(ctx context.Context, tc client.Client, namespace string, log *slog.Logger) error {
	added, err := searchattr.Ensure(ctx, tc, namespace, SearchAttributes)
	if err != nil {
		return err
	}
	if added == 0 {
		log.Info("search attributes present")
	} else {
		log.Info("search attributes added", "count", added)
	}
	return nil
}
