package thresholds_test

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/acu-patrol/acu/internal/devstack"
	"github.com/acu-patrol/acu/internal/thresholds"
)

type counter struct{ malformed atomic.Int64 }

func (c *counter) Malformed(string, string) { c.malformed.Add(1) }
func (c *counter) Loaded(int, int)          {}

func startEtcd(t *testing.T, addr, dir string) *devstack.Etcd {
	t.Helper()
	e, err := devstack.StartEtcd(addr, dir)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// TestCacheFollowsEtcd: writes, deletes and malformed values are seen after
// Sync; an etcd outage makes Sync fail (the caller must not judge) and the
// cache resumes on its own when etcd is back.
func TestCacheFollowsEtcd(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, err := devstack.FreeLoopbackAddr()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	etcd := startEtcd(t, addr, dir)
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{addr}, DialTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	adm := thresholds.NewAdmin(cli, "/acu/")
	obs := &counter{}
	cache := thresholds.NewCache(cli, "/acu/", slog.New(slog.NewTextHandler(io.Discard, nil)), obs)
	done := make(chan error, 1)
	go func() { done <- cache.Run(ctx) }()
	defer func() { cancel(); <-done }()

	sync := func() {
		t.Helper()
		sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
		defer scancel()
		if err := cache.Sync(sctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := adm.Set(ctx, "c00", 50); err != nil {
		t.Fatal(err)
	}
	sync()
	if v, ok := cache.Lookup("c00"); !ok || v != 50 {
		t.Fatalf("c00 = %v %v", v, ok)
	}
	// A malformed value replaces the valid one: treated as missing, counted.
	if _, err := cli.Put(ctx, "/acu/thresholds/c00", "fifty"); err != nil {
		t.Fatal(err)
	}
	sync()
	if _, ok := cache.Lookup("c00"); ok || obs.malformed.Load() != 1 {
		t.Fatalf("malformed value used (or not counted: %d)", obs.malformed.Load())
	}
	if err := adm.Set(ctx, "c01", 70); err != nil {
		t.Fatal(err)
	}
	if _, err := adm.Delete(ctx, "c01"); err != nil {
		t.Fatal(err)
	}
	sync()
	if _, ok := cache.Lookup("c01"); ok {
		t.Fatal("deleted threshold still judged")
	}

	// etcd down: Sync fails within its context, it never guesses.
	etcd.Stop()
	sctx, scancel := context.WithTimeout(ctx, 500*time.Millisecond)
	err = cache.Sync(sctx)
	scancel()
	if err == nil {
		t.Fatal("Sync succeeded with etcd down")
	}
	// etcd back (same data, same address): a write made now is seen.
	etcd = startEtcd(t, addr, dir)
	defer etcd.Stop()
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	for {
		if err := adm.Set(wctx, "c02", 62.5); err == nil {
			break
		} else if wctx.Err() != nil {
			t.Fatalf("etcd not back: %v", err)
		}
	}
	sync()
	if v, ok := cache.Lookup("c02"); !ok || v != 62.5 {
		t.Fatalf("after the outage c02 = %v %v", v, ok)
	}
}
