// Package sqlite is the SQLite backend of the long-term store: archived
// results and patrol deployment reports in one database file, through
// modernc.org/sqlite (pure Go, no cgo) and database/sql.
//
// The file is opened in WAL mode so that readers never block the writer and
// the writer never blocks readers. Several processes on one machine may open
// the same file: SQLite serializes their writes with file locks, and every
// connection waits up to busyTimeout for the write lock instead of failing
// with SQLITE_BUSY. The file must be on a local file system (WAL needs shared
// memory between the processes; network file systems are not supported).
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"modernc.org/sqlite" // registers the "sqlite" database/sql driver
	sqlite3 "modernc.org/sqlite/lib"
)

// busyTimeout is how long a connection waits for a lock held by another
// connection or process before giving up with SQLITE_BUSY.
const busyTimeout = 10 * time.Second

// readConns is the size of the read connection pool. In WAL mode readers run
// in parallel with each other and with the writer.
const readConns = 4

// Store is the SQLite long-term store. It is safe for concurrent use.
//
// It holds two connection pools on the same file: a writer with a single
// connection, so that the writes of this process queue in database/sql
// (honouring contexts) instead of fighting over the SQLite write lock, and
// whose transactions begin IMMEDIATE (they take the write lock up front, so
// a transaction never fails half-way with an unretryable lock upgrade); and
// a small pool of query-only readers.
type Store struct {
	w *sql.DB // one connection; all writes
	r *sql.DB // readConns connections; query_only

	// insert[i] inserts insertChunks[i] results with one statement.
	insert       []*sql.Stmt
	putDep       *sql.Stmt
	getResult    *sql.Stmt
	followUp     *sql.Stmt
	getDep       *sql.Stmt
	countResults *sql.Stmt
}

// Open opens, creating it if needed, the database file at path and brings
// its schema up to date. It is safe to open the same file from several
// processes (or several times in one process) at once.
func Open(ctx context.Context, path string) (*Store, error) {
	s, err := open(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("opening sqlite store %q: %w", path, err)
	}
	return s, nil
}

func open(ctx context.Context, path string) (_ *Store, err error) {
	if path == "" {
		return nil, errors.New("empty path")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	s := &Store{}
	defer func() {
		if err != nil {
			_ = s.Close()
		}
	}()

	busy := fmt.Sprintf("busy_timeout(%d)", busyTimeout.Milliseconds())
	// synchronous(FULL): in WAL mode the WAL is synced at every commit, so a
	// committed batch survives a power cut. The archiver acknowledges its
	// input after PutResults returns, and the cost is one fsync per batch.
	// cache_size: 32 MiB of page cache for the writer keeps the index pages
	// that random identities touch in memory.
	s.w, err = sql.Open("sqlite", dsn(abs, "immediate",
		busy, "journal_mode(WAL)", "synchronous(FULL)", "cache_size(-32768)"))
	if err != nil {
		return nil, err
	}
	s.w.SetMaxOpenConns(1)
	s.w.SetMaxIdleConns(1)
	s.w.SetConnMaxLifetime(0)
	s.w.SetConnMaxIdleTime(0)

	// The writer connection is created, and the file switched to WAL, by
	// the migration, before any reader connects. Two processes creating the
	// file at once can meet SQLITE_BUSY there without SQLite calling its busy
	// handler (switching a new file to WAL takes an exclusive lock): the
	// loser tries again, within the busy timeout.
	for wait, deadline := 5*time.Millisecond, time.Now().Add(busyTimeout); ; wait = min(2*wait, 100*time.Millisecond) {
		err := migrate(ctx, s.w)
		if err == nil {
			break
		}
		var se *sqlite.Error
		if !errors.As(err, &se) || se.Code()&0xff != sqlite3.SQLITE_BUSY || time.Now().After(deadline) {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(wait):
		}
	}

	s.r, err = sql.Open("sqlite", dsn(abs, "", busy, "query_only(1)"))
	if err != nil {
		return nil, err
	}
	s.r.SetMaxOpenConns(readConns)
	s.r.SetMaxIdleConns(readConns)
	s.r.SetConnMaxLifetime(0)
	s.r.SetConnMaxIdleTime(0)
	if err := s.r.PingContext(ctx); err != nil {
		return nil, err
	}

	if err := s.prepare(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// dsn is the modernc.org/sqlite data source name of the file at the absolute
// path abs. txlock, when not empty, is the BEGIN mode of transactions;
// pragmas run on every new connection (busy_timeout first).
func dsn(abs, txlock string, pragmas ...string) string {
	q := url.Values{}
	for _, p := range pragmas {
		q.Add("_pragma", p)
	}
	if txlock != "" {
		q.Set("_txlock", txlock)
	}
	// A file: URI, so that the path may hold '?' or '#' (escaped here; SQLite
	// decodes them) and the query string is never taken for part of it.
	esc := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(filepath.ToSlash(abs))
	return "file:" + esc + "?" + q.Encode()
}

func (s *Store) prepare(ctx context.Context) error {
	for _, n := range insertChunks {
		st, err := s.w.PrepareContext(ctx, insertResultsSQL(n))
		if err != nil {
			return fmt.Errorf("preparing insert of %d results: %w", n, err)
		}
		s.insert = append(s.insert, st)
	}
	for _, p := range []struct {
		db    *sql.DB
		st    **sql.Stmt
		query string
	}{
		{s.w, &s.putDep, putDeploymentSQL},
		{s.r, &s.getResult, getResultSQL},
		{s.r, &s.followUp, followUpSQL},
		{s.r, &s.getDep, getDeploymentSQL},
		{s.r, &s.countResults, countResultsSQL},
	} {
		st, err := p.db.PrepareContext(ctx, p.query)
		if err != nil {
			return fmt.Errorf("preparing %q: %w", p.query, err)
		}
		*p.st = st
	}
	return nil
}

// Close closes the store. Calls in progress finish first; later calls fail.
func (s *Store) Close() error {
	var errs []error
	for _, st := range append(s.insert, s.putDep, s.getResult, s.followUp, s.getDep, s.countResults) {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	if s.r != nil {
		errs = append(errs, s.r.Close())
	}
	if s.w != nil {
		errs = append(errs, s.w.Close())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("closing sqlite store: %w", err)
	}
	return nil
}

// toMS stores a time as Unix milliseconds, and the zero time as NULL (so that
// the Unix epoch itself stays representable).
func toMS(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixMilli(), Valid: true}
}

// fromMS is the inverse of toMS: a UTC time, or the zero time for NULL.
func fromMS(ms sql.NullInt64) time.Time {
	if !ms.Valid {
		return time.Time{}
	}
	return time.UnixMilli(ms.Int64).UTC()
}
