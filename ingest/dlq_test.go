package ingest_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/acu-patrol/acu/ingest"
	"github.com/acu-patrol/acu/internal/event"
	"github.com/acu-patrol/acu/internal/testkit"
)

// bigRecord is a record of n bytes on key that the contract rejects
// (over 64 KiB): it must reach the DLQ. Its padding does not compress, so
// the broker sees its full size.
func bigRecord(key string, n int) *kgo.Record {
	pad := make([]byte, n)
	_, _ = rand.NewChaCha8([32]byte{byte(n)}).Read(pad)
	enc := base64.RawStdEncoding.EncodeToString(pad)[:n-len(`{"event_id":"big","pad":""}`)]
	return &kgo.Record{Key: []byte(key), Value: []byte(`{"event_id":"big","pad":"` + enc + `"}`)}
}

// TestDLQTakesEveryReject: a reject the DLQ cannot take as franz-go's
// producer is configured by default (a record of about 1 MiB, which the
// results topic accepts), one the DLQ topic refuses whole (its
// max.message.bytes set lower by someone), and a DLQ topic that does not
// exist: each reject still reaches the DLQ (whole when it fits, else
// truncated with its size and digest), and the next failing result on the
// same partition is started.
func TestDLQTakesEveryReject(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cases := []struct {
		name      string
		size      int
		prepare   func(t *testing.T, e *env)
		truncated bool
	}{
		{name: "1.01 MB record", size: 1_010_000},
		{name: "DLQ topic taking less than the record", size: 200_000, truncated: true, prepare: func(t *testing.T, e *env) {
			resp, err := e.adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Name: "max.message.bytes", Value: kadm.StringPtr("100000")}}, ingest.DLQTopic)
			if err == nil {
				err = resp[0].Err
			}
			if err != nil {
				t.Fatalf("lowering the DLQ's max.message.bytes: %v", err)
			}
		}},
		{name: "no DLQ topic", size: 100_000, prepare: func(t *testing.T, e *env) {
			resp, err := e.adm.DeleteTopics(ctx, ingest.DLQTopic)
			if err == nil {
				err = resp.Error()
			}
			if err != nil {
				t.Fatalf("deleting the DLQ topic: %v", err)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			f := newAlerts(t)
			if c.prepare != nil {
				c.prepare(t, f.env)
			}
			f.start(t)
			recs := f.produce(t, bigRecord("lea", c.size), record(t, result("ev-after", "lea", "c-piscine-sort", 1)))
			f.waitCommitted(t, f.group, recs)
			if ids := f.ids(); len(ids) != 1 || ids[0] != "patrol-ev-after" {
				t.Errorf("workflows %v, want patrol-ev-after", ids)
			}
			dlq := f.dlq(t)
			if len(dlq) != 1 {
				t.Fatalf("%d DLQ records, want 1", len(dlq))
			}
			d, orig := dlq[0], recs[0]
			if src, _ := testkit.Header(d, ingest.HeaderSource); src != fmt.Sprintf("piscine.results/%d/%d", orig.Partition, orig.Offset) {
				t.Errorf("%s = %q", ingest.HeaderSource, src)
			}
			if msg, _ := testkit.Header(d, ingest.HeaderError); !strings.Contains(msg, "bytes") {
				t.Errorf("%s = %q, want the size reason", ingest.HeaderError, msg)
			}
			if got := testkit.CounterValue(f.m.Rejected.WithLabelValues(f.group, string(event.ReasonTooLarge))); got != 1 {
				t.Errorf("Rejected{too_large} = %v, want 1", got)
			}
			if !bytes.Equal(d.Key, orig.Key) {
				t.Errorf("DLQ key %q, want %q", d.Key, orig.Key)
			}
			if !c.truncated {
				if !bytes.Equal(d.Value, orig.Value) {
					t.Errorf("DLQ value of %d bytes, want the original %d", len(d.Value), len(orig.Value))
				}
				return
			}
			sum := sha256.Sum256(orig.Value)
			size, _ := testkit.Header(d, ingest.HeaderValueSize)
			digest, _ := testkit.Header(d, ingest.HeaderValueSHA256)
			if size != strconv.Itoa(len(orig.Value)) || digest != hex.EncodeToString(sum[:]) {
				t.Errorf("%s = %q, %s = %q; want %d and %x", ingest.HeaderValueSize, size, ingest.HeaderValueSHA256, digest, len(orig.Value), sum)
			}
			if len(d.Value) == 0 || len(d.Value) >= 100000 || !bytes.HasPrefix(orig.Value, d.Value) {
				t.Errorf("truncated value of %d bytes is not a short prefix of the original", len(d.Value))
			}
			if note, ok := testkit.Header(d, ingest.HeaderTruncated); !ok || note == "" {
				t.Errorf("no %s header", ingest.HeaderTruncated)
			}
		})
	}
}
