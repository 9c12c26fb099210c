package ingest

import (
	"context"
	"fmt"

	"github.com/acu-patrol/acu/internal/event"
	"github.com/acu-patrol/acu/internal/metrics"
	"github.com/acu-patrol/acu/internal/store"
)

// ResultWriter is the part of the store the archiver uses: an idempotent
// batch write keyed by event identity. inserted is how many identities were
// new, or store.UnknownInserted if the backend cannot tell.
type ResultWriter interface {
	PutResults(ctx context.Context, rs []event.Result) (inserted int, err error)
}

// Archive writes every valid result to the store.
type Archive struct {
	w ResultWriter
	m *metrics.Metrics
}

// NewArchive returns the archiver's handler.
func NewArchive(w ResultWriter, m *metrics.Metrics) *Archive { return &Archive{w: w, m: m} }

// Handle implements Handler: one idempotent batch write.
func (a *Archive) Handle(ctx context.Context, results []event.Result) error {
	n, err := a.w.PutResults(ctx, results)
	if err != nil {
		return fmt.Errorf("archiving %d results: %w", len(results), err)
	}
	if n == store.UnknownInserted {
		// Cassandra: written idempotently, new or not unknown.
		a.m.Archived.WithLabelValues("written").Add(float64(len(results)))
		return nil
	}
	a.m.Archived.WithLabelValues("new").Add(float64(n))
	a.m.Archived.WithLabelValues("duplicate").Add(float64(len(results) - n))
	return nil
}
