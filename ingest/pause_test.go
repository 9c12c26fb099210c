package ingest

import (
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// fakeFetch is the client's pause state of one partition.
type fakeFetch struct {
	mu      sync.Mutex
	paused  bool
	drained chan struct{} // closed once the worker took every batch
}

func (f *fakeFetch) PauseFetchPartitions(map[string][]int32) map[string][]int32 {
	// The poll loop is slow to pause: give the worker the time to drain
	// the queue first, if it can.
	select {
	case <-f.drained:
	case <-time.After(20 * time.Millisecond):
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.paused = true
	return nil
}

func (f *fakeFetch) ResumeFetchPartitions(map[string][]int32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.paused = false
}

// TestPauseAndResumeDoNotRace: the poll loop queues batches (pausing the
// partition when its queue is full) while the worker drains it (resuming
// it). Once the queue is empty the partition must fetch again, whatever the
// interleaving: a pause applied after the resume it preceded would leave
// it paused with nothing queued, for good.
func TestPauseAndResumeDoNotRace(t *testing.T) {
	for range 20 {
		f := &fakeFetch{drained: make(chan struct{})}
		pt := &partition{p: 0, fetch: f, topic: "t", wake: make(chan struct{}, 1)}
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range maxQueued {
				pt.enqueue([]*kgo.Record{{}})
			}
		}()
		taken := 0
		for taken < maxQueued {
			if pt.dequeue() != nil {
				taken++
			} else {
				runtime.Gosched()
			}
		}
		close(f.drained)
		wg.Wait()
		f.mu.Lock()
		paused := f.paused
		f.mu.Unlock()
		if paused {
			t.Fatal("the partition is paused with nothing queued")
		}
	}
}
