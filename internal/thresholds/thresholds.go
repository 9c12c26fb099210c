// Package thresholds keeps the exercise failure thresholds held in etcd
// (DESIGN.md §2.2): keys "<prefix>thresholds/<exercise_id>", values decimal
// text in 0..100.
//
// A Cache is a watched local copy. Judging a result never talks to etcd;
// Sync, called once per poll batch, makes the copy catch up with etcd's
// linearizable current revision, so a threshold write that has returned is
// seen by every result judged after the next Sync.
package thresholds

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// DefaultPrefix is the default etcd key prefix.
const DefaultPrefix = "/acu/"

// KeyPrefix returns the key prefix of all thresholds under prefix.
func KeyPrefix(prefix string) string { return prefix + "thresholds/" }

// Key returns the etcd key of an exercise's threshold.
func Key(prefix, exerciseID string) string { return KeyPrefix(prefix) + exerciseID }

// ParseValue parses a threshold value: decimal text in 0..100.
func ParseValue(s string) (float64, error) {
	v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil {
		return 0, fmt.Errorf("threshold %q is not a decimal number", s)
	}
	if v != v || v < 0 || v > 100 {
		return 0, fmt.Errorf("threshold %q is outside 0..100", s)
	}
	return v, nil
}

// FormatValue writes a threshold as the shortest decimal text.
func FormatValue(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

// Observer receives the cache's events, for metrics. Any method may be
// called from the watch goroutine.
type Observer interface {
	// Malformed is called when a stored value is not a valid threshold.
	Malformed(exerciseID, value string)
	// Loaded reports how many valid and malformed thresholds the copy holds.
	Loaded(valid, malformed int)
}

// Cache is a watched, consistent local copy of the thresholds.
type Cache struct {
	cli    *clientv3.Client
	prefix string // full key prefix, "<prefix>thresholds/"
	log    *slog.Logger
	obs    Observer

	mu        sync.RWMutex
	values    map[string]float64
	malformed map[string]string
	rev       int64         // etcd revision the copy reflects
	changed   chan struct{} // closed and replaced whenever rev advances
	watchCtx  context.Context

	// Concurrent Syncs share revision reads (see currentRevision).
	readMu   sync.Mutex
	reading  bool     // a read is in flight
	nextRead *revRead // the read the callers since it started wait for
}

// revRead is one linearizable revision read shared by its callers.
type revRead struct {
	done    chan struct{}
	rev     int64
	err     error
	waiters int                // callers waiting; under readMu
	cancel  context.CancelFunc // set when the read starts; under readMu
}

// revisionTimeout bounds one shared revision read; the callers' own
// contexts bound their wait, and a read left by all of them ends sooner.
const revisionTimeout = 10 * time.Second

// NewCache returns a cache of the thresholds under prefix (e.g. "/acu/").
// Run must be running for Sync to return.
func NewCache(cli *clientv3.Client, prefix string, log *slog.Logger, obs Observer) *Cache {
	return &Cache{
		cli: cli, prefix: KeyPrefix(prefix), log: log, obs: obs,
		values: map[string]float64{}, malformed: map[string]string{},
		changed: make(chan struct{}),
	}
}

// Lookup returns the exercise's threshold and whether one is set (a
// malformed value counts as not set).
func (c *Cache) Lookup(exerciseID string) (float64, bool) {
	c.mu.RLock()
	v, ok := c.values[exerciseID]
	c.mu.RUnlock()
	return v, ok
}

// currentRevision returns the cluster's revision from a linearizable read
// that started after the call, so it covers every write that returned
// before it. Callers arriving while a read is in flight share the next
// one: with many partitions syncing at once, etcd sees at most one read in
// flight and one waiting, not one per batch. A read whose callers have all
// given up is cancelled.
func (c *Cache) currentRevision(ctx context.Context) (int64, error) {
	c.readMu.Lock()
	g := c.nextRead
	if g == nil {
		g = &revRead{done: make(chan struct{})}
		c.nextRead = g
	}
	g.waiters++
	if !c.reading {
		c.startRead()
	}
	c.readMu.Unlock()
	select {
	case <-g.done:
		return g.rev, g.err
	case <-ctx.Done():
		c.readMu.Lock()
		if g.waiters--; g.waiters == 0 {
			if g.cancel != nil {
				g.cancel()
			} else if c.nextRead == g {
				c.nextRead = nil
			}
		}
		c.readMu.Unlock()
		return 0, ctx.Err()
	}
}

// startRead starts the waiting read; readMu must be held.
func (c *Cache) startRead() {
	g := c.nextRead
	ctx, cancel := context.WithTimeout(context.Background(), revisionTimeout)
	c.nextRead, c.reading, g.cancel = nil, true, cancel
	go func() {
		// A linearizable count-only read returns the current revision.
		resp, err := c.cli.Get(ctx, c.prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
		cancel()
		if err == nil {
			g.rev = resp.Header.Revision
		}
		g.err = err
		close(g.done)
		c.readMu.Lock()
		c.reading = false
		if c.nextRead != nil {
			c.startRead()
		}
		c.readMu.Unlock()
	}()
}

// Snapshot returns a copy of the valid thresholds and the revision they reflect.
func (c *Cache) Snapshot() (map[string]float64, int64) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	m := make(map[string]float64, len(c.values))
	for k, v := range c.values {
		m[k] = v
	}
	return m, c.rev
}

// Run loads the thresholds and follows their changes until ctx ends. It
// reloads after a compaction or a broken watch, waiting and retrying while
// etcd is unreachable. It returns ctx's error.
func (c *Cache) Run(ctx context.Context) error {
	backoff := 100 * time.Millisecond
	for {
		err := c.follow(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		c.log.Warn("threshold watch interrupted; reloading", "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// follow loads a full copy, then applies watch events until the watch breaks.
func (c *Cache) follow(ctx context.Context) error {
	resp, err := c.cli.Get(ctx, c.prefix, clientv3.WithPrefix())
	if err != nil {
		return fmt.Errorf("loading thresholds: %w", err)
	}
	values := map[string]float64{}
	malformed := map[string]string{}
	for _, kv := range resp.Kvs {
		c.put(values, malformed, kv)
	}
	// The watch must run on its own context so that RequestProgress, which
	// addresses the watch stream of a context, reaches it.
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := c.cli.Watch(wctx, c.prefix, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1), clientv3.WithProgressNotify())
	c.mu.Lock()
	c.values, c.malformed, c.watchCtx = values, malformed, wctx
	c.advance(resp.Header.Revision)
	c.mu.Unlock()
	c.report(values, malformed)
	c.log.Info("thresholds loaded", "count", len(values), "malformed", len(malformed), "revision", resp.Header.Revision)

	for wresp := range wch {
		if err := wresp.Err(); err != nil {
			return fmt.Errorf("watching thresholds: %w", err)
		}
		if wresp.Canceled {
			return errors.New("watching thresholds: watch canceled")
		}
		c.mu.Lock()
		for _, ev := range wresp.Events {
			id := strings.TrimPrefix(string(ev.Kv.Key), c.prefix)
			switch ev.Type {
			case mvccpb.PUT:
				delete(c.values, id)
				delete(c.malformed, id)
				c.put(c.values, c.malformed, ev.Kv)
			case mvccpb.DELETE:
				delete(c.values, id)
				delete(c.malformed, id)
			}
		}
		// A response's header carries etcd's current revision, not that of
		// its events: a watch catching up (after falling behind) gets its
		// events in several responses, each with the same, latest, header.
		// The copy reflects etcd only up to the last event applied; only a
		// progress notification vouches for everything up to its header.
		if n := len(wresp.Events); n > 0 {
			c.advance(wresp.Events[n-1].Kv.ModRevision)
		} else if wresp.IsProgressNotify() {
			c.advance(wresp.Header.Revision)
		}
		nv, nm := len(c.values), len(c.malformed)
		c.mu.Unlock()
		if len(wresp.Events) > 0 && c.obs != nil {
			c.obs.Loaded(nv, nm)
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return errors.New("watching thresholds: watch channel closed")
}

func (c *Cache) report(values map[string]float64, malformed map[string]string) {
	if c.obs != nil {
		c.obs.Loaded(len(values), len(malformed))
	}
}

// put stores one key-value into the maps, logging a malformed value.
func (c *Cache) put(values map[string]float64, malformed map[string]string, kv *mvccpb.KeyValue) {
	id := strings.TrimPrefix(string(kv.Key), c.prefix)
	v, err := ParseValue(string(kv.Value))
	if err != nil || id == "" {
		malformed[id] = string(kv.Value)
		c.log.Warn("malformed threshold ignored", "exercise_id", id, "key", string(kv.Key), "err", err)
		if c.obs != nil {
			c.obs.Malformed(id, string(kv.Value))
		}
		return
	}
	values[id] = v
}

// advance records that the copy reflects etcd up to rev; c.mu must be held.
func (c *Cache) advance(rev int64) {
	if rev > c.rev {
		c.rev = rev
		close(c.changed)
		c.changed = make(chan struct{})
	}
}

// Revision returns the etcd revision the copy reflects (0 before loading).
func (c *Cache) Revision() int64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.rev
}

// Sync returns once the copy reflects every write that completed before
// Sync was called: it reads etcd's current revision with a linearizable
// request and waits for the watch to reach it, asking etcd for a progress
// notification when no threshold changed in between. It fails when etcd
// cannot be reached or ctx ends; the caller must then not judge.
func (c *Cache) Sync(ctx context.Context) error {
	target, err := c.currentRevision(ctx)
	if err != nil {
		return fmt.Errorf("reading etcd revision: %w", err)
	}
	ticker := time.NewTicker(50 * time.Millisecond)
	defer ticker.Stop()
	for {
		c.mu.RLock()
		rev, changed, wctx := c.rev, c.changed, c.watchCtx
		c.mu.RUnlock()
		if rev >= target {
			return nil
		}
		if wctx != nil {
			// Other keys moved the revision: ask for a progress notification,
			// which carries the revision up to which the watch is complete.
			// Errors here are retried on the next tick.
			_ = c.cli.RequestProgress(wctx)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for thresholds to reach revision %d (at %d): %w", target, rev, ctx.Err())
		case <-changed:
		case <-ticker.C:
		}
	}
}
