package thresholds

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/acu-patrol/acu/internal/event"
)

// Admin reads and writes thresholds in etcd, with linearizable reads.
type Admin struct {
	cli    *clientv3.Client
	prefix string
}

// NewAdmin returns an Admin for the thresholds under prefix (e.g. "/acu/").
func NewAdmin(cli *clientv3.Client, prefix string) *Admin { return &Admin{cli: cli, prefix: prefix} }

// Entry is one stored threshold; Err is set when the value is malformed.
type Entry struct {
	ExerciseID string
	Raw        string
	Value      float64
	Err        error
}

// Set writes an exercise's threshold after validating both.
func (a *Admin) Set(ctx context.Context, exerciseID string, value float64) error {
	if err := event.ValidIdent(exerciseID); err != nil {
		return fmt.Errorf("exercise id %q: %w", exerciseID, err)
	}
	if _, err := ParseValue(FormatValue(value)); err != nil {
		return err
	}
	if _, err := a.cli.Put(ctx, Key(a.prefix, exerciseID), FormatValue(value)); err != nil {
		return fmt.Errorf("writing threshold of %s: %w", exerciseID, err)
	}
	return nil
}

// ReadThreshold returns the exercise's threshold (linearizable read); a
// malformed value reads as not set.
func (a *Admin) ReadThreshold(ctx context.Context, exerciseID string) (float64, bool, error) {
	e, ok, err := a.Get(ctx, exerciseID)
	if err != nil || !ok || e.Err != nil {
		return 0, false, err
	}
	return e.Value, true, nil
}

// Get returns the stored entry of an exercise.
func (a *Admin) Get(ctx context.Context, exerciseID string) (Entry, bool, error) {
	resp, err := a.cli.Get(ctx, Key(a.prefix, exerciseID))
	if err != nil {
		return Entry{}, false, fmt.Errorf("reading threshold of %s: %w", exerciseID, err)
	}
	if len(resp.Kvs) == 0 {
		return Entry{}, false, nil
	}
	e := Entry{ExerciseID: exerciseID, Raw: string(resp.Kvs[0].Value)}
	e.Value, e.Err = ParseValue(e.Raw)
	return e, true, nil
}

// List returns every stored threshold, by exercise id.
func (a *Admin) List(ctx context.Context) ([]Entry, error) {
	resp, err := a.cli.Get(ctx, KeyPrefix(a.prefix), clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("listing thresholds: %w", err)
	}
	out := make([]Entry, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		e := Entry{ExerciseID: strings.TrimPrefix(string(kv.Key), KeyPrefix(a.prefix)), Raw: string(kv.Value)}
		e.Value, e.Err = ParseValue(e.Raw)
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ExerciseID < out[j].ExerciseID })
	return out, nil
}

// Delete removes an exercise's threshold and reports whether it existed.
func (a *Admin) Delete(ctx context.Context, exerciseID string) (bool, error) {
	resp, err := a.cli.Delete(ctx, Key(a.prefix, exerciseID))
	if err != nil {
		return false, fmt.Errorf("deleting threshold of %s: %w", exerciseID, err)
	}
	return resp.Deleted > 0, nil
}

// ParseCSV reads "exercise_id,threshold" lines (an optional header line
// naming those columns is skipped) and validates every line; the error
// names each bad line.
func ParseCSV(r io.Reader) (map[string]float64, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	cr.Comment = '#'
	out := map[string]float64{}
	var errs []error
	for line := 1; ; line++ {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading CSV: %w", err)
		}
		ln, _ := cr.FieldPos(0)
		if len(rec) != 2 {
			errs = append(errs, fmt.Errorf("line %d: want 2 fields exercise_id,threshold, got %d", ln, len(rec)))
			continue
		}
		id, val := strings.TrimSpace(rec[0]), strings.TrimSpace(rec[1])
		if line == 1 && id == "exercise_id" {
			continue
		}
		if err := event.ValidIdent(id); err != nil {
			errs = append(errs, fmt.Errorf("line %d: exercise id %q: %w", ln, id, err))
			continue
		}
		v, err := ParseValue(val)
		if err != nil {
			errs = append(errs, fmt.Errorf("line %d: %w", ln, err))
			continue
		}
		if _, dup := out[id]; dup {
			errs = append(errs, fmt.Errorf("line %d: exercise %s appears twice", ln, id))
			continue
		}
		out[id] = v
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// maxTxnOps is etcd's default --max-txn-ops.
const maxTxnOps = 128

// Import writes all thresholds, in one etcd transaction when there are at
// most 128.
func (a *Admin) Import(ctx context.Context, values map[string]float64) error {
	ops := make([]clientv3.Op, 0, len(values))
	ids := make([]string, 0, len(values))
	for id := range values {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		ops = append(ops, clientv3.OpPut(Key(a.prefix, id), FormatValue(values[id])))
	}
	// etcd bounds the operations of one transaction (128 by default):
	// larger imports are written in chunks, each all or nothing.
	for len(ops) > 0 {
		n := min(len(ops), maxTxnOps)
		if _, err := a.cli.Txn(ctx).Then(ops[:n]...).Commit(); err != nil {
			return fmt.Errorf("importing %d thresholds (%d written before): %w", len(values), len(values)-len(ops), err)
		}
		ops = ops[n:]
	}
	return nil
}
