package cassandra

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"

	"github.com/gocql/gocql"
)

// migrations[i] takes the schema from version i to version i+1. Every
// statement must be idempotent (IF NOT EXISTS) and every table gets a fixed
// ID (tableID): Cassandra 5.0 has no transactional schema, and two machines
// creating the same table at once with different IDs leave the cluster with a
// table ID mismatch; with the same ID the two creations are the same change.
// So acu setup may run from several machines at once. Append new migrations
// at the end; never edit one that has shipped. Placeholders: %[1]s is the
// keyspace; each CREATE TABLE ends with WITH ID = %[2]s (its tableID).
var migrations = [][]string{
	// 1: results, deployments, analytics.
	{
		// Where arrivals are: one row per minute that has any, partitioned by
		// 30-day buckets, so the analytics skip empty stretches.
		`CREATE TABLE IF NOT EXISTS %[1]s.arrival_minutes (
			bucket int,
			minute bigint,
			PRIMARY KEY (bucket, minute)
		) WITH ID = %[2]s`,
		// Every arrival of a result (a re-delivery arrives again), by arrival
		// minute and a shard of the identity so one minute's writes spread
		// over the cluster. arrival is Unix microseconds.
		`CREATE TABLE IF NOT EXISTS %[1]s.results_by_arrival (
			minute      bigint,
			shard       tinyint,
			arrival     bigint,
			id          text,
			exercise_id text,
			ts          bigint,
			PRIMARY KEY ((minute, shard), arrival, id)
		) WITH ID = %[2]s`,
		// Results by exercise and day of their timestamp (days since the Unix
		// epoch): analytics rebuilds read an exercise whole, the incremental
		// reads fetch their content here. Inverted cell timestamps: the
		// earliest arrival wins; arrival is that write's.
		`CREATE TABLE IF NOT EXISTS %[1]s.results_by_exercise (
			exercise_id text,
			day         int,
			id          text,
			event_id    text,
			ts          bigint,
			student_id  text,
			latitude    double,
			longitude   double,
			metric      double,
			arrival     bigint,
			PRIMARY KEY ((exercise_id, day), id)
		) WITH ID = %[2]s`,
		// The arbiter: one row per identity, written last by each attempt,
		// with inverted cell timestamps, so it holds the content key
		// (exercise, student, timestamp) and arrival of the earliest
		// complete attempt. An identity is counted, and read back, only where
		// it agrees. Partitioned by a hash of the identity (bucketOf), so that
		// lookups of many identities go as a few single-partition IN queries.
		`CREATE TABLE IF NOT EXISTS %[1]s.results_by_id (
			bucket      smallint,
			id          text,
			exercise_id text,
			student_id  text,
			ts          bigint,
			arrival     bigint,
			PRIMARY KEY (bucket, id)
		) WITH ID = %[2]s`,
		// The days each exercise has results on.
		`CREATE TABLE IF NOT EXISTS %[1]s.exercise_days (
			exercise_id text,
			day         int,
			PRIMARY KEY (exercise_id, day)
		) WITH ID = %[2]s`,
		// Follow-up checks: a student's results on an exercise in a time
		// window. Inverted cell timestamps, as above.
		`CREATE TABLE IF NOT EXISTS %[1]s.results_by_student (
			student_id  text,
			exercise_id text,
			ts          bigint,
			id          text,
			event_id    text,
			latitude    double,
			longitude   double,
			metric      double,
			arrival     bigint,
			PRIMARY KEY ((student_id, exercise_id), ts, id)
		) WITH ID = %[2]s`,
		// Times in Unix ms; null for the zero time.
		`CREATE TABLE IF NOT EXISTS %[1]s.deployments (
			workflow_id       text PRIMARY KEY,
			event_id          text,
			student_id        text,
			exercise_id       text,
			metric            double,
			threshold         double,
			latitude          double,
			longitude         double,
			failed_at         bigint,
			status            text,
			dispatched_at     bigint,
			follow_up_at      bigint,
			follow_up_results int,
			updated_at        bigint
		) WITH ID = %[2]s`,
		// One row (k = 'state'): the partial aggregates, their watermark, the
		// run that saved them and its report. Saved with a lightweight
		// transaction on the watermark.
		`CREATE TABLE IF NOT EXISTS %[1]s.analytics_state (
			k            text PRIMARY KEY,
			run_id       text,
			watermark    bigint,
			state        blob,
			report       blob,
			generated_at bigint
		) WITH ID = %[2]s`,
		// Every report, by the run that made it.
		`CREATE TABLE IF NOT EXISTS %[1]s.analytics_reports (
			run_id       text PRIMARY KEY,
			generated_at bigint,
			watermark    bigint,
			report       blob
		) WITH ID = %[2]s`,
	},
}

// versionTable records the schema version (one row, k = 'acu').
const versionTable = `CREATE TABLE IF NOT EXISTS %[1]s.schema_version (
	k       text PRIMARY KEY,
	version int
) WITH ID = %[2]s`

// tableID is the fixed ID of a table: name-based (SHA-256 of
// keyspace.table, formatted as a version-5-style UUID), the same on every
// machine.
func tableID(keyspace, table string) string {
	h := sha256.Sum256([]byte("acu:" + keyspace + "." + table))
	h[6] = h[6]&0x0f | 0x50
	h[8] = h[8]&0x3f | 0x80
	u, _ := gocql.UUIDFromBytes(h[:16])
	return u.String()
}

// tableName returns the table a CREATE TABLE statement creates.
func tableName(stmt string) string {
	rest := stmt[strings.Index(stmt, "%[1]s.")+len("%[1]s."):]
	return strings.Fields(rest)[0]
}

func render(keyspace, stmt string) string {
	return fmt.Sprintf(stmt, keyspace, tableID(keyspace, tableName(stmt)))
}

// SchemaVersion is the schema version this build writes and needs.
func SchemaVersion() int { return len(migrations) }

// migrate creates the keyspace (with cfg's replication) and applies the
// missing migrations, then records the version.
func migrate(ctx context.Context, cfg Config, log *slog.Logger) error {
	cl := cluster(cfg, log)
	// Schema changes and the version record want every node to agree.
	session, err := cl.CreateSession()
	if err != nil {
		return fmt.Errorf("connecting to Cassandra %v: %w", cfg.Hosts, err)
	}
	defer session.Close()
	ks := cfg.Keyspace
	ddl := func(stmt string) error {
		if err := session.Query(stmt).WithContext(ctx).Exec(); err != nil {
			return fmt.Errorf("schema of keyspace %s: %s: %w", ks, firstLine(stmt), err)
		}
		return nil
	}
	if err := ddl(fmt.Sprintf(`CREATE KEYSPACE IF NOT EXISTS %s WITH replication = %s`, ks, cfg.Replication.CQL())); err != nil {
		return err
	}
	if cfg.ReplicationSet {
		if err := checkReplication(ctx, session, cfg); err != nil {
			return err
		}
	}
	if err := ddl(render(ks, versionTable)); err != nil {
		return err
	}
	if err := session.AwaitSchemaAgreement(ctx); err != nil {
		return fmt.Errorf("schema of keyspace %s: waiting for the nodes to agree: %w", ks, err)
	}
	v, err := readVersion(ctx, session, ks)
	if err != nil {
		return err
	}
	if v > len(migrations) {
		return fmt.Errorf("keyspace %s has schema version %d, newer than this build's %d: upgrade acu", ks, v, len(migrations))
	}
	for _, step := range migrations[v:] {
		for _, stmt := range step {
			if err := ddl(render(ks, stmt)); err != nil {
				return err
			}
		}
	}
	if err := session.AwaitSchemaAgreement(ctx); err != nil {
		return fmt.Errorf("schema of keyspace %s: waiting for the nodes to agree: %w", ks, err)
	}
	// Record the version: only ever forward (a concurrent setup of an older
	// build cannot take it back).
	want := len(migrations)
	if _, err := session.Query(`INSERT INTO `+ks+`.schema_version (k, version) VALUES ('acu', ?) IF NOT EXISTS`, want).
		WithContext(ctx).SerialConsistency(gocql.Serial).ScanCAS(new(string), new(int)); err != nil {
		return fmt.Errorf("recording schema version %d of keyspace %s: %w", want, ks, err)
	}
	if _, err := session.Query(`UPDATE `+ks+`.schema_version SET version = ? WHERE k = 'acu' IF version < ?`, want, want).
		WithContext(ctx).SerialConsistency(gocql.Serial).ScanCAS(new(int)); err != nil {
		return fmt.Errorf("recording schema version %d of keyspace %s: %w", want, ks, err)
	}
	return nil
}

// checkReplication refuses a keyspace whose replication differs from the
// one asked for: setup does not silently keep (or change) it.
func checkReplication(ctx context.Context, session *gocql.Session, cfg Config) error {
	got, err := keyspaceReplication(ctx, session, cfg.Keyspace)
	if err != nil {
		return err
	}
	if want := cfg.Replication.asMap(); !maps.Equal(got, want) {
		return fmt.Errorf("keyspace %s exists with replication %v, not the %s asked for: change it with ALTER KEYSPACE (then repair) or ask for the existing one",
			cfg.Keyspace, got, cfg.Replication.CQL())
	}
	return nil
}

// readVersion returns the recorded schema version, 0 if none.
func readVersion(ctx context.Context, session *gocql.Session, ks string) (int, error) {
	var v int
	err := session.Query(`SELECT version FROM ` + ks + `.schema_version WHERE k = 'acu'`).WithContext(ctx).Scan(&v)
	if errors.Is(err, gocql.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("reading the schema version of keyspace %s: %w", ks, err)
	}
	return v, nil
}

// checkVersion tells the services to run acu setup when the schema is not
// the one this build needs.
func (s *Store) checkVersion(ctx context.Context) error {
	v, err := readVersion(ctx, s.session, s.cfg.Keyspace)
	var re gocql.RequestError
	if errors.As(err, &re) && re.Code() == gocql.ErrCodeInvalid {
		// No schema_version table: the keyspace was not made by acu setup.
		return fmt.Errorf("keyspace %s has no acu schema (%v): run acu setup: %w", s.cfg.Keyspace, err, ErrSchema)
	}
	if err != nil {
		return err
	}
	switch {
	case v < len(migrations):
		return fmt.Errorf("keyspace %s has schema version %d, this build needs %d: run acu setup: %w", s.cfg.Keyspace, v, len(migrations), ErrSchema)
	case v > len(migrations):
		return fmt.Errorf("keyspace %s has schema version %d, newer than this build's %d: upgrade acu: %w", s.cfg.Keyspace, v, len(migrations), ErrSchema)
	}
	return nil
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return strings.TrimSpace(line)
}
