package app

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/acu-patrol/acu/internal/config"
	"github.com/acu-patrol/acu/internal/metrics"
)

// records keeps the messages logged.
type records struct {
	mu   sync.Mutex
	msgs []string
}

func (r *records) Enabled(context.Context, slog.Level) bool { return true }
func (r *records) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, rec.Message)
	return nil
}
func (r *records) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *records) WithGroup(string) slog.Handler      { return r }

// A service started while its Cassandra is unreachable waits and retries
// until its context ends, instead of exiting at the first failure.
func TestOpenStoreWaitingRetriesUntilTheContextEnds(t *testing.T) {
	var cfg config.Config
	cfg.Register(flag.NewFlagSet("t", flag.ContinueOnError))
	cfg.Store = "cassandra://127.0.0.1:1/acu?timeout=500ms" // nothing listens on port 1
	rec := &records{}
	ctx, cancel := context.WithTimeout(context.Background(), 2500*time.Millisecond)
	defer cancel()
	_, err := OpenStoreWaiting(ctx, &cfg, slog.New(rec), metrics.New(), "archive")
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Fatalf("error %v, want the context's end and the last connection error", err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	retries := 0
	for _, m := range rec.msgs {
		if m == "store unreachable; retrying" {
			retries++
		}
	}
	if retries < 2 {
		t.Errorf("logged %q, want at least two retries", rec.msgs)
	}
}
