package thresholds

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// catchUpWatcher delivers the watch as etcd does to a watcher catching up:
// the first two event responses become one response holding the first
// one's events under the second one's header (etcd's current revision),
// and everything after it is held until release is closed.
type catchUpWatcher struct {
	clientv3.Watcher
	release chan struct{}
}

func (w *catchUpWatcher) Watch(ctx context.Context, key string, opts ...clientv3.OpOption) clientv3.WatchChan {
	in := w.Watcher.Watch(ctx, key, opts...)
	out := make(chan clientv3.WatchResponse)
	go func() {
		defer close(out)
		send := func(r clientv3.WatchResponse) bool {
			select {
			case out <- r:
				return true
			case <-ctx.Done():
				return false
			}
		}
		var first *clientv3.WatchResponse
		for r := range in {
			if first == nil {
				if len(r.Events) == 0 {
					if !send(r) {
						return
					}
					continue
				}
				first = &r
				continue
			}
			// The catch-up: the first events under the latest header, then
			// the rest once released.
			if !send(clientv3.WatchResponse{Header: r.Header, Events: first.Events}) {
				return
			}
			select {
			case <-w.release:
			case <-ctx.Done():
				return
			}
			if !send(r) {
				return
			}
			for r := range in {
				if !send(r) {
					return
				}
			}
			return
		}
	}()
	return out
}

// TestCatchUpAdvancesOnlyToTheEventsApplied: while the watch is catching up
// in several responses, each carrying etcd's current revision in its
// header, Sync must not take the header for what the copy reflects: after
// two threshold writes, a Sync returns only once both are applied.
func TestCatchUpAdvancesOnlyToTheEventsApplied(t *testing.T) {
	var w *catchUpWatcher
	ctx, cli, cache := testCache(t, func(cli *clientv3.Client) {
		w = &catchUpWatcher{Watcher: cli.Watcher, release: make(chan struct{})}
		cli.Watcher = w
	})
	waitFor(t, func() bool { return cache.Revision() > 0 })

	adm := NewAdmin(cli, "/acu/")
	if err := adm.Set(ctx, "ex-a", 10); err != nil {
		t.Fatal(err)
	}
	if err := adm.Set(ctx, "ex-b", 20); err != nil {
		t.Fatal(err)
	}
	// The first write's event has arrived under the second's revision.
	waitFor(t, func() bool { _, ok := cache.Lookup("ex-a"); return ok })
	sctx, scancel := context.WithTimeout(ctx, time.Second)
	err := cache.Sync(sctx)
	scancel()
	if v, ok := cache.Lookup("ex-b"); err == nil && (!ok || v != 20) {
		t.Fatalf("Sync returned with ex-b = %v, %v: it took a header's revision for the events applied", v, ok)
	}
	close(w.release)
	sctx, scancel = context.WithTimeout(ctx, 10*time.Second)
	defer scancel()
	if err := cache.Sync(sctx); err != nil {
		t.Fatal(err)
	}
	if v, ok := cache.Lookup("ex-b"); !ok || v != 20 {
		t.Fatalf("after the catch-up ex-b = %v, %v; want 20", v, ok)
	}
}
