package ingest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/acu-patrol/acu/internal/event"
)

// Sizes of the topics, set explicitly by acu setup (TopicConfigs): the
// results topic takes what a Kafka broker takes by default, and the DLQ
// that plus room for the headers it adds, so that any record the results
// topic accepted can be copied to the DLQ whole.
const (
	// ResultsMaxMessageBytes is the results topic's max.message.bytes
	// (Kafka's default).
	ResultsMaxMessageBytes = 1048588
	// DLQHeadroom is what the DLQ takes beyond the results topic.
	DLQHeadroom = 64 << 10
	// DLQMaxMessageBytes is the DLQ's max.message.bytes.
	DLQMaxMessageBytes = ResultsMaxMessageBytes + DLQHeadroom
)

// Headers of a DLQ record whose original could not be copied whole: the
// size and SHA-256 (hex) of the original value (and key, when it too was
// cut), and what was kept of it.
const (
	HeaderValueSize   = "acu-value-size"
	HeaderValueSHA256 = "acu-value-sha256"
	HeaderKeySize     = "acu-key-size"
	HeaderKeySHA256   = "acu-key-sha256"
	HeaderTruncated   = "acu-truncated"
)

// truncatedKeep is how many bytes of an original key or value a truncated
// DLQ record keeps.
const truncatedKeep = 16 << 10

// maxErrorHeader bounds the acu-error header: a reason may quote the input.
const maxErrorHeader = 1024

// TopicConfigs are the explicit configs acu setup creates topic with:
// deletion by age, a week of results, four weeks of rejects, and the sizes
// above.
func TopicConfigs(dlq bool) map[string]*string {
	maxBytes, retention := strconv.Itoa(ResultsMaxMessageBytes), strconv.FormatInt((7*24*time.Hour).Milliseconds(), 10)
	if dlq {
		maxBytes, retention = strconv.Itoa(DLQMaxMessageBytes), strconv.FormatInt((28*24*time.Hour).Milliseconds(), 10)
	}
	return map[string]*string{
		"cleanup.policy":    kadm.StringPtr("delete"),
		"retention.ms":      kadm.StringPtr(retention),
		"max.message.bytes": kadm.StringPtr(maxBytes),
	}
}

func dlqRecord(group, dlqTopic string, r *kgo.Record, err error) *kgo.Record {
	return &kgo.Record{
		Topic: dlqTopic,
		Key:   r.Key,
		Value: r.Value,
		Headers: []kgo.RecordHeader{
			{Key: HeaderError, Value: []byte(cut(err.Error(), maxErrorHeader))},
			{Key: HeaderSource, Value: []byte(r.Topic + "/" + strconv.Itoa(int(r.Partition)) + "/" + strconv.FormatInt(r.Offset, 10))},
			{Key: HeaderGroup, Value: []byte(group)},
		},
	}
}

// cut shortens s to at most n bytes on a rune boundary, marking the cut.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n - len("…")
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}

// truncated is the DLQ record r without what made it too large: the first
// bytes of its value (and key), with their full size and digest.
func truncated(r *kgo.Record) *kgo.Record {
	t := &kgo.Record{Topic: r.Topic, Headers: append([]kgo.RecordHeader(nil), r.Headers...)}
	var kept []string
	// head keeps the first truncatedKeep bytes of b, adding b's size and
	// digest under the given headers.
	head := func(what string, b []byte, sizeHeader, digestHeader string) []byte {
		if len(b) <= truncatedKeep {
			return b
		}
		sum := sha256.Sum256(b)
		t.Headers = append(t.Headers,
			kgo.RecordHeader{Key: sizeHeader, Value: []byte(strconv.Itoa(len(b)))},
			kgo.RecordHeader{Key: digestHeader, Value: []byte(hex.EncodeToString(sum[:]))})
		kept = append(kept, fmt.Sprintf("%s: first %d of %d bytes", what, truncatedKeep, len(b)))
		return b[:truncatedKeep]
	}
	t.Value = head("value", r.Value, HeaderValueSize, HeaderValueSHA256)
	t.Key = head("key", r.Key, HeaderKeySize, HeaderKeySHA256)
	note := strings.Join(kept, "; ")
	if note == "" {
		note = "nothing cut: the record's own size is not what the DLQ refused"
	}
	t.Headers = append(t.Headers, kgo.RecordHeader{Key: HeaderTruncated, Value: []byte("too large for the DLQ whole; " + note)})
	return t
}

// writeDLQ writes the rejects of b not written yet, each counted once
// written. A reject the DLQ refuses as too large is written again alone
// (its batch may have been the problem), then, refused again, truncated. A
// missing DLQ topic is created as acu setup creates it. It returns nil once
// every reject is written.
func (c *Consumer) writeDLQ(ctx context.Context, b *batch) error {
	alone := map[*kgo.Record]bool{}
	for round := 0; len(b.rejects) > 0; round++ {
		if round == 4 { // too-large, alone, truncated: three rounds settle any record
			return fmt.Errorf("writing %d records to %s: still refused after %d rounds", len(b.rejects), c.cfg.DLQTopic, round)
		}
		var res kgo.ProduceResults
		if len(alone) == 0 {
			res = c.cl.ProduceSync(ctx, b.rejects...)
		} else {
			for _, r := range b.rejects { // one request each
				res = append(res, c.cl.ProduceSync(ctx, r)...)
			}
		}
		var (
			rejects  []*kgo.Record
			reasons  []event.Reason
			firstErr error
			missing  bool
		)
		// Results come in the order the records completed, not as given.
		index := make(map[*kgo.Record]int, len(b.rejects))
		for i, r := range b.rejects {
			index[r] = i
		}
		for _, pr := range res {
			i, r := index[pr.Record], pr.Record
			switch {
			case pr.Err == nil:
				c.cfg.Metrics.Rejected.WithLabelValues(c.cfg.Group, string(b.reasons[i])).Inc()
				continue
			case errors.Is(pr.Err, kerr.MessageTooLarge) || errors.Is(pr.Err, kerr.RecordListTooLarge):
				if alone[r] || len(b.rejects) == 1 {
					c.log.Warn("DLQ record too large; writing it truncated", "source", header(r, HeaderSource), "value_bytes", len(r.Value), "err", pr.Err)
					r = truncated(r)
				}
				alone[r] = true
			case errors.Is(pr.Err, kerr.UnknownTopicOrPartition):
				missing = true
				firstErr = pr.Err
			default:
				if firstErr == nil {
					firstErr = pr.Err
				}
			}
			rejects, reasons = append(rejects, r), append(reasons, b.reasons[i])
		}
		b.rejects, b.reasons = rejects, reasons
		if missing {
			if err := c.createDLQ(ctx); err != nil {
				return fmt.Errorf("writing to %s: %w; creating it: %w", c.cfg.DLQTopic, firstErr, err)
			}
			continue
		}
		if firstErr != nil {
			return fmt.Errorf("writing %d records to %s: %w", len(b.rejects), c.cfg.DLQTopic, firstErr)
		}
	}
	return nil
}

// createDLQ creates the DLQ topic as acu setup does, with as many
// partitions as the results topic.
func (c *Consumer) createDLQ(ctx context.Context) error {
	adm := kadm.NewClient(c.cl)
	topics, err := adm.ListTopics(ctx, c.cfg.Topic)
	if err != nil {
		return err
	}
	partitions := int32(len(topics[c.cfg.Topic].Partitions))
	if partitions == 0 {
		partitions = -1
	}
	resp, err := adm.CreateTopic(ctx, partitions, -1, TopicConfigs(true), c.cfg.DLQTopic)
	if err == nil {
		err = resp.Err
	}
	switch {
	case errors.Is(err, kerr.TopicAlreadyExists): // another member created it
	case err != nil:
		return err
	default:
		c.log.Warn("the DLQ topic was missing; created it", "topic", c.cfg.DLQTopic, "partitions", partitions)
	}
	return nil
}

func header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}
