package sqlite

import (
	"context"
	"database/sql"
	"fmt"
)

// migrations[i] takes the schema from version i to version i+1; the version
// is kept in PRAGMA user_version (0 for a new file). Append new migrations at
// the end; never edit one that has shipped.
var migrations = [][]string{
	// 1: results and deployments.
	{
		// seq is an alias of the rowid (INTEGER PRIMARY KEY), and so the
		// arrival sequence of the archive:
		//   - it costs nothing: the table's B-tree is keyed by it, so new rows
		//     are appended at its right edge however random the identities;
		//   - unlike an implicit rowid, VACUUM never renumbers it;
		//   - AUTOINCREMENT guarantees it never goes back, even if retention
		//     deletes the newest rows (or all of them);
		//   - SQLite has one writer at a time and a transaction keeps the
		//     write lock from its first insert to its commit, so sequence
		//     numbers become visible in order: a reader that has seen seq N
		//     will never later see a new row with seq <= N. Incremental
		//     analytics can therefore read "WHERE seq > last ORDER BY seq"
		//     without missing rows.
		// The identity id is then a UNIQUE column rather than the PRIMARY
		// KEY, which is what PutResults' ON CONFLICT(id) relies on.
		// event_id is '' when the event had none.
		`CREATE TABLE results (
			seq            INTEGER PRIMARY KEY AUTOINCREMENT,
			id             TEXT    NOT NULL UNIQUE,
			event_id       TEXT    NOT NULL,
			ts_ms          INTEGER NOT NULL,
			student_id     TEXT    NOT NULL,
			exercise_id    TEXT    NOT NULL,
			latitude       REAL    NOT NULL,
			longitude      REAL    NOT NULL,
			metric         REAL    NOT NULL,
			archived_at_ms INTEGER NOT NULL
		)`,
		// Follow-up lookups.
		`CREATE INDEX results_student_exercise_ts ON results (student_id, exercise_id, ts_ms)`,
		// Analytics scans by exercise and time.
		`CREATE INDEX results_exercise_ts ON results (exercise_id, ts_ms)`,
		// Times are Unix ms, NULL for the zero time.
		`CREATE TABLE deployments (
			workflow_id       TEXT    NOT NULL PRIMARY KEY,
			event_id          TEXT    NOT NULL,
			student_id        TEXT    NOT NULL,
			exercise_id       TEXT    NOT NULL,
			metric            REAL    NOT NULL,
			threshold         REAL    NOT NULL,
			latitude          REAL    NOT NULL,
			longitude         REAL    NOT NULL,
			failed_at_ms      INTEGER,
			status            TEXT    NOT NULL,
			dispatched_at_ms  INTEGER,
			follow_up_at_ms   INTEGER,
			follow_up_results INTEGER NOT NULL,
			updated_at_ms     INTEGER
		)`,
	},
	// 2: analytics state and report history.
	{
		// One row: the partial aggregates and their watermark (the highest
		// results.seq they include), as the analytics package's JSON.
		`CREATE TABLE analytics_state (
			id    INTEGER PRIMARY KEY CHECK (id = 1),
			state TEXT    NOT NULL
		)`,
		// Every completed report, oldest first; run_id is the analytics
		// run that made it, so a retried commit finds its report.
		`CREATE TABLE analytics_reports (
			id              INTEGER PRIMARY KEY AUTOINCREMENT,
			run_id          TEXT    NOT NULL UNIQUE,
			generated_at_ms INTEGER NOT NULL,
			watermark       INTEGER NOT NULL,
			report          TEXT    NOT NULL
		)`,
	},
	// 3: the state's watermark and run as columns, for the conditional save.
	{
		`ALTER TABLE analytics_state ADD COLUMN watermark INTEGER NOT NULL DEFAULT 0`,
		`ALTER TABLE analytics_state ADD COLUMN run_id TEXT NOT NULL DEFAULT ''`,
		`UPDATE analytics_state SET
			watermark = coalesce(json_extract(state, '$.state.watermark'), 0),
			run_id = coalesce(json_extract(state, '$.run_id'), '')`,
	},
}

// migrate brings the schema of db up to the latest version. Concurrent
// callers (other processes opening the same file) are serialized by the
// IMMEDIATE transaction: the second one waits, then finds nothing to do.
func migrate(ctx context.Context, db *sql.DB) error {
	want := len(migrations)
	v, err := userVersion(ctx, db)
	if err != nil {
		return fmt.Errorf("reading schema version: %w", err)
	}
	if v == want {
		return nil // the common case: no write lock taken
	}
	if v > want {
		return fmt.Errorf("schema version %d is newer than this program's %d", v, want)
	}

	tx, err := db.BeginTx(ctx, nil) // BEGIN IMMEDIATE (the writer's _txlock)
	if err != nil {
		return fmt.Errorf("migrating schema: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	if v, err = userVersion(ctx, tx); err != nil {
		return fmt.Errorf("reading schema version: %w", err)
	}
	if v > want {
		return fmt.Errorf("schema version %d is newer than this program's %d", v, want)
	}
	for ; v < want; v++ {
		for _, stmt := range migrations[v] {
			if _, err := tx.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("migrating schema to version %d: %w", v+1, err)
			}
		}
	}
	// user_version lives in the database header: it is set, or not, with
	// the rest of the transaction.
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", want)); err != nil {
		return fmt.Errorf("setting schema version %d: %w", want, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("committing schema version %d: %w", want, err)
	}
	return nil
}

type queryRower interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func userVersion(ctx context.Context, q queryRower) (int, error) {
	var v int
	err := q.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v)
	return v, err
}
