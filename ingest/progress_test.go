package ingest_test

import (
	"context"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/acu-patrol/acu/ingest"
)

// TestArchiveProgress: the end offsets taken at a deadline, and how many
// results below them the archiver group has not committed, partition by
// partition; results appended after the mark do not count.
func TestArchiveProgress(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	p, err := ingest.NewArchiveProgress(e.addrs)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var recs = e.produce(t, record(t, result("a", "s1", "ex", 1)), record(t, result("b", "s2", "ex", 1)),
		record(t, result("c", "s3", "ex", 1)), record(t, result("d", "s4", "ex", 1)))
	ends, err := p.EndOffsets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	behind := func(want int64) {
		t.Helper()
		got, err := p.Behind(ctx, ends)
		if err != nil || got != want {
			t.Fatalf("Behind = %d, %v; want %d", got, err, want)
		}
	}
	behind(4) // the archiver has committed nothing
	e.produce(t, record(t, result("late", "s5", "ex", 1)))
	behind(4) // appended after the mark
	commit := func(offsets kadm.Offsets) {
		t.Helper()
		resp, err := e.adm.CommitOffsets(ctx, ingest.ArchiveGroup, offsets)
		if err == nil {
			err = resp.Error()
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	first := kadm.Offsets{}
	first.AddOffset(ingest.ResultsTopic, recs[0].Partition, recs[0].Offset+1, -1)
	commit(first)
	behind(4 - (recs[0].Offset + 1))
	all := kadm.Offsets{}
	for part, end := range ends {
		all.AddOffset(ingest.ResultsTopic, part, end, -1)
	}
	commit(all)
	behind(0)
}
