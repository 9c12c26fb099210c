package devstack

import (
	"fmt"
	"net"
	"strconv"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Kafka is the in-process Kafka of acu-dev (franz-go's kfake): one broker
// speaking the Kafka protocol, usable by any Kafka client.
type Kafka struct{ c *kfake.Cluster }

// StartKafka starts the broker on addr (127.0.0.1:port) with topics created
// with partitions each. dataDir, when set, persists its state across runs.
func StartKafka(addr, dataDir string, partitions int32, topics ...string) (*Kafka, error) {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("kafka address %q: %w", addr, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return nil, fmt.Errorf("kafka address %q: bad port", addr)
	}
	opts := []kfake.Opt{
		kfake.NumBrokers(1), kfake.Ports(port), kfake.SeedTopics(partitions, topics...),
		kfake.DefaultNumPartitions(int(partitions)), kfake.AllowAutoTopicCreation(),
	}
	if dataDir != "" {
		opts = append(opts, kfake.DataDir(dataDir))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("starting in-process Kafka on %s: %w", addr, err)
	}
	return &Kafka{c: c}, nil
}

// Addr is the broker's host:port.
func (k *Kafka) Addr() string { return k.c.ListenAddrs()[0] }

// Stop stops the broker.
func (k *Kafka) Stop() { k.c.Close() }
