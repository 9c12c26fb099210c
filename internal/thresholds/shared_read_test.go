package thresholds

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/acu-patrol/acu/internal/devstack"
)

// heldKV counts the revision reads (count-only Gets) and holds each one's
// answer until released.
type heldKV struct {
	clientv3.KV
	reads   atomic.Int64
	release chan struct{}
}

func (h *heldKV) Get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	op := clientv3.OpGet(key, opts...)
	resp, err := h.KV.Get(ctx, key, opts...)
	if !op.IsCountOnly() {
		return resp, err
	}
	h.reads.Add(1)
	select {
	case <-h.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return resp, err
}

// TestConcurrentSyncsShareRevisionReads: while one revision read is in
// flight, every Sync that arrives waits for a single next read (one that
// started after it, so it covers the writes that returned before it), and
// each of them then judges with the thresholds written before its call.
func TestConcurrentSyncsShareRevisionReads(t *testing.T) {
	ctx, cli, kv, cache := heldCache(t)
	adm := NewAdmin(cli, "/acu/")

	syncing := func(wg *sync.WaitGroup, errs chan<- error, check func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sctx, scancel := context.WithTimeout(ctx, 20*time.Second)
			defer scancel()
			if err := cache.Sync(sctx); err != nil {
				errs <- err
				return
			}
			errs <- check()
		}()
	}
	var wg sync.WaitGroup
	errs := make(chan error, 65)
	// The first Sync's read is in flight (its answer held) ...
	syncing(&wg, errs, func() error { return nil })
	waitFor(t, func() bool { return kv.reads.Load() == 1 })
	// ... when thresholds are written and 64 more Syncs arrive, each
	// expecting the threshold written before it.
	const n = 64
	for i := range n {
		ex := fmt.Sprintf("ex%02d", i)
		if err := adm.Set(ctx, ex, float64(i)); err != nil {
			t.Fatal(err)
		}
		syncing(&wg, errs, func() error {
			if v, ok := cache.Lookup(ex); !ok || v != float64(i) {
				return fmt.Errorf("%s judged with %v (set: %v), want %d", ex, v, ok, i)
			}
			return nil
		})
	}
	waitFor(t, func() bool {
		cache.readMu.Lock()
		defer cache.readMu.Unlock()
		return cache.nextRead != nil && cache.nextRead.waiters == n
	})
	close(kv.release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if got := kv.reads.Load(); got != 2 {
		t.Errorf("65 Syncs made %d revision reads, want 2 (one in flight, one shared by the 64 that came during it)", got)
	}
}

// TestAbandonedRevisionReadIsCancelled: a read whose every caller gave up
// does not hold back the next Sync.
func TestAbandonedRevisionReadIsCancelled(t *testing.T) {
	ctx, _, kv, cache := heldCache(t) // its reads never released

	sctx, scancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- cache.Sync(sctx) }()
	waitFor(t, func() bool { return kv.reads.Load() == 1 })
	scancel()
	if err := <-errc; err == nil {
		t.Fatal("Sync returned nil with its read held and its context cancelled")
	}
	// The held read is cancelled (heldKV returns on its context), so a new
	// Sync starts a read of its own at once.
	waitFor(t, func() bool {
		cache.readMu.Lock()
		defer cache.readMu.Unlock()
		return !cache.reading
	})
	kv.release = closedRelease()
	if err := cache.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if got := kv.reads.Load(); got != 2 {
		t.Fatalf("%d revision reads, want 2", got)
	}
}

// heldCache runs a Cache on an etcd of its own whose revision reads are
// counted and held (heldKV); everything stops when the test ends.
func heldCache(t *testing.T) (context.Context, *clientv3.Client, *heldKV, *Cache) {
	t.Helper()
	var kv *heldKV
	ctx, cli, cache := testCache(t, func(cli *clientv3.Client) {
		kv = &heldKV{KV: cli.KV, release: make(chan struct{})}
		cli.KV = kv
	})
	return ctx, cli, kv, cache
}

// testCache runs a Cache on an etcd of its own, its client first adjusted
// by wrap (a KV or Watcher standing between it and etcd); everything stops
// when the test ends.
func testCache(t *testing.T, wrap func(*clientv3.Client)) (context.Context, *clientv3.Client, *Cache) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addr, err := devstack.FreeLoopbackAddr()
	if err != nil {
		t.Fatal(err)
	}
	etcd, err := devstack.StartEtcd(addr, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(etcd.Stop)
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{addr}, DialTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	wrap(cli)
	cache := NewCache(cli, "/acu/", slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	done := make(chan error, 1)
	go func() { done <- cache.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return ctx, cli, cache
}

func closedRelease() chan struct{} { c := make(chan struct{}); close(c); return c }

// waitFor waits, up to 20 s, until cond holds.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 20 s")
		}
		time.Sleep(time.Millisecond)
	}
}
