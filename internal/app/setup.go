package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

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

// CreateTopics creates the results topic and its DLQ unless they exist.
func CreateTopics(ctx context.Context, brokers []string, partitions int32, rf int16, log *slog.Logger) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return fmt.Errorf("creating Kafka client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	resps, err := adm.CreateTopics(ctx, partitions, rf, nil, ingest.ResultsTopic, ingest.DLQTopic)
	if err != nil {
		return fmt.Errorf("creating topics: %w", err)
	}
	for _, r := range resps.Sorted() {
		switch {
		case r.Err == nil:
			log.Info("topic created", "topic", r.Topic, "partitions", partitions)
		case errors.Is(r.Err, kerr.TopicAlreadyExists):
			log.Info("topic exists", "topic", r.Topic)
		default:
			return fmt.Errorf("creating topic %s: %w", r.Topic, r.Err)
		}
	}
	return nil
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
