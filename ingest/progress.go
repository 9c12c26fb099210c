package ingest

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// ArchiveProgress tells how far the archiver has got: the follow-up check
// of a deployment reads the archive only once the archiver has committed
// (so written) every result appended to the results topic before the
// check's deadline. Without it, an archiver stopped or catching up (or a
// Cassandra down) makes a student's retake invisible, and the outcome
// recorded for ever would be a guess.
type ArchiveProgress struct {
	adm          *kadm.Client
	cl           *kgo.Client
	topic, group string
}

// NewArchiveProgress returns the archiver group's progress on the results
// topic of brokers. Close it.
func NewArchiveProgress(brokers []string) (*ArchiveProgress, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return nil, fmt.Errorf("creating Kafka client: %w", err)
	}
	return &ArchiveProgress{adm: kadm.NewClient(cl), cl: cl, topic: ResultsTopic, group: ArchiveGroup}, nil
}

// Close closes the Kafka client.
func (p *ArchiveProgress) Close() { p.cl.Close() }

// EndOffsets are the results topic's end offsets now, per partition: every
// result appended so far is below them.
func (p *ArchiveProgress) EndOffsets(ctx context.Context) (map[int32]int64, error) {
	ends, err := p.adm.ListEndOffsets(ctx, p.topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("end offsets of %s: %w", p.topic, err)
	}
	out := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
	if len(out) == 0 {
		return nil, fmt.Errorf("end offsets of %s: no partitions (does the topic exist?)", p.topic)
	}
	return out, nil
}

// Behind returns how many of the results below ends the archiver group has
// not committed yet (0: the archive holds all of them).
func (p *ArchiveProgress) Behind(ctx context.Context, ends map[int32]int64) (int64, error) {
	resp, err := p.adm.FetchOffsets(ctx, p.group)
	if err == nil {
		err = resp.Error()
	}
	switch {
	case errors.Is(err, kerr.GroupIDNotFound):
		resp, err = nil, nil // no archiver has committed yet
	case err != nil:
		return 0, fmt.Errorf("committed offsets of %s: %w", p.group, err)
	}
	var behind int64
	for part, end := range ends {
		at := int64(0)
		if o, ok := resp.Lookup(p.topic, part); ok && o.At > 0 {
			at = o.At
		}
		behind += max(end-at, 0)
	}
	return behind, nil
}
