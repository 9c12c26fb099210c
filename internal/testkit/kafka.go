package testkit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// EnvKafka names the real Kafka (host:port,...) of the integration tests;
// scripts/integration.sh sets it.
const EnvKafka = "ACU_IT_KAFKA"

const kafkaHint = "ACU_LOCAL_DIR=/tmp/acu-it ACU_KAFKA_PORT=29092 ACU_KAFKA_CONTROLLER_PORT=29093 deploy/local/servers.sh start kafka"

var (
	kafkaOnce sync.Once
	kafkaErr  error
)

// RealKafka returns the seed brokers of the real Kafka named by
// ACU_IT_KAFKA. Unset: the test is skipped. Set but not answering: it fails.
func RealKafka(t testing.TB) []string {
	t.Helper()
	addr := strings.TrimSpace(os.Getenv(EnvKafka))
	if addr == "" {
		t.Skipf("%s is not set: this test needs a real Kafka. Start one with\n  %s\nthen run it with %s=127.0.0.1:29092 and -tags integration",
			EnvKafka, kafkaHint, EnvKafka)
	}
	seeds := strings.Split(addr, ",")
	kafkaOnce.Do(func() { kafkaErr = checkBroker(seeds) })
	if kafkaErr != nil {
		t.Fatalf("%s=%s but the broker does not answer: %v\n(start one with: %s)", EnvKafka, addr, kafkaErr, kafkaHint)
	}
	return seeds
}

func checkBroker(seeds []string) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.RequestRetries(1))
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	md, err := kadm.NewClient(cl).BrokerMetadata(ctx)
	if err != nil {
		return fmt.Errorf("no metadata within 10s: %w", err)
	}
	if len(md.Brokers) == 0 {
		return errors.New("metadata lists no broker")
	}
	return nil
}

// Committed returns group's committed offsets on topic, by partition; a
// partition without a commit is absent.
func Committed(adm *kadm.Client, group, topic string) (map[int32]int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		return nil, err
	}
	if err := resp.Error(); err != nil {
		return nil, err
	}
	out := map[int32]int64{}
	resp.Each(func(o kadm.OffsetResponse) {
		if o.Topic == topic && o.At >= 0 {
			out[o.Partition] = o.At
		}
	})
	return out, nil
}

// ReadRecords reads the first n records of topic from the brokers seeds,
// failing the test if they are not there within 20 s.
func ReadRecords(t testing.TB, seeds []string, topic string, n int64) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out []*kgo.Record
	for int64(len(out)) < n {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("read %d of the %d records of %s: %v", len(out), n, topic, err)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, p, err) })
		out = append(out, fs.Records()...)
	}
	return out
}
