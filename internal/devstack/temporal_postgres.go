package devstack

import (
	"bytes"
	"context"
	"crypto/md5"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/lib/pq"
	"go.temporal.io/server/common/config"
	serverlog "go.temporal.io/server/common/log"
	"go.temporal.io/server/common/log/tag"
	"go.temporal.io/server/common/metrics"
	"go.temporal.io/server/common/persistence"
	persistencesql "go.temporal.io/server/common/persistence/sql"
	"go.temporal.io/server/common/persistence/sql/sqlplugin"
	postgresplugin "go.temporal.io/server/common/persistence/sql/sqlplugin/postgresql"
	"go.temporal.io/server/common/resolver"
	dbschemas "go.temporal.io/server/schema"
)

const (
	// temporalPostgresSchema and temporalPostgresVisibilitySchema name the
	// schemas embedded in go.temporal.io/server/schema that the databases
	// are brought to.
	temporalPostgresSchema           = "postgresql/v12/temporal"
	temporalPostgresVisibilitySchema = "postgresql/v12/visibility"
	// temporalPostgresMaxConns is the default of TemporalPostgres.MaxConns.
	temporalPostgresMaxConns = 20
)

// TemporalPostgres selects PostgreSQL persistence for the Temporal server
// (SQL plugin postgres12): executions and visibility in two databases of
// one PostgreSQL server.
type TemporalPostgres struct {
	// Addr is the PostgreSQL server's host:port, e.g. "127.0.0.31:5432".
	// Required.
	Addr string
	// User is the role the server connects as; empty means "postgres". It
	// must be allowed to create databases unless both exist already.
	User string
	// Password of User; empty means none (trust authentication).
	Password string
	// Database holds executions, shards, task queues and namespaces; empty
	// means "temporal".
	Database string
	// VisibilityDatabase holds the visibility store (workflow listings and
	// search attributes); empty means "temporal_visibility".
	VisibilityDatabase string
	// MaxConns bounds one connection pool. Each service (frontend, history,
	// matching, worker) has a pool per database, so the server opens up to
	// 8 × MaxConns connections; zero means 20.
	MaxConns int
}

// withDefaults returns p with its empty fields set to their defaults.
func (p TemporalPostgres) withDefaults() TemporalPostgres {
	if p.User == "" {
		p.User = "postgres"
	}
	if p.Database == "" {
		p.Database = "temporal"
	}
	if p.VisibilityDatabase == "" {
		p.VisibilityDatabase = "temporal_visibility"
	}
	if p.MaxConns == 0 {
		p.MaxConns = temporalPostgresMaxConns
	}
	return p
}

// sqlConfig is the persistence config of database db.
func (p TemporalPostgres) sqlConfig(db string) *config.SQL {
	return &config.SQL{
		PluginName:      postgresplugin.PluginName,
		ConnectAddr:     p.Addr,
		ConnectProtocol: "tcp",
		User:            p.User,
		Password:        p.Password,
		DatabaseName:    db,
		MaxConns:        p.MaxConns,
		MaxIdleConns:    p.MaxConns,
	}
}

// temporalPostgresConfig prepares both databases of p and returns their
// persistence configs. Preparing is idempotent, so the very first start
// and every restart take the same steps: create the database unless it
// exists, create the schema version tables unless they exist, and apply
// the versioned schema updates the database has not had yet (all of them
// on a new database), as temporal-sql-tool's create-database,
// setup-schema -v 0.0 and update-schema do. It waits, within ctx, for the
// PostgreSQL server to accept connections.
func temporalPostgresConfig(ctx context.Context, p TemporalPostgres, logger serverlog.Logger) (exec, vis *config.SQL, err error) {
	if p.Addr == "" {
		return nil, nil, fmt.Errorf("temporal postgres: no address")
	}
	p = p.withDefaults()
	if p.Database == p.VisibilityDatabase {
		return nil, nil, fmt.Errorf("temporal postgres: the visibility database must differ from %q", p.Database)
	}
	exec, vis = p.sqlConfig(p.Database), p.sqlConfig(p.VisibilityDatabase)
	for _, d := range []struct {
		conf   *config.SQL
		schema string
	}{{exec, temporalPostgresSchema}, {vis, temporalPostgresVisibilitySchema}} {
		if err := temporalPostgresPrepare(ctx, d.conf, d.schema, logger); err != nil {
			return nil, nil, err
		}
	}
	return exec, vis, nil
}

// temporalPostgresPrepare creates conf's database if needed and brings it
// to the newest version of the embedded schema schemaName.
func temporalPostgresPrepare(ctx context.Context, conf *config.SQL, schemaName string, logger serverlog.Logger) error {
	// CREATE DATABASE runs in the server's default database ("postgres").
	// Until the server answers, each attempt fails with two errors logged
	// by the plugin: not logged (the poll's error names the last failure).
	server := *conf
	server.DatabaseName = ""
	err := temporalPoll(ctx, "PostgreSQL at "+conf.ConnectAddr, func() error {
		admin, err := temporalOpenAdminDB(&server, serverlog.NewNoopLogger())
		if err != nil {
			return err
		}
		defer admin.Close()
		return admin.CreateDatabase(conf.DatabaseName) // a no-op when it exists
	})
	if err != nil {
		return fmt.Errorf("creating database %s: %w", conf.DatabaseName, err)
	}
	admin, err := temporalOpenAdminDB(conf, logger)
	if err != nil {
		return err
	}
	defer admin.Close()
	if err := temporalPostgresMigrate(admin, conf.DatabaseName, schemaName, logger); err != nil {
		return fmt.Errorf("bringing database %s to the schema %s: %w", conf.DatabaseName, schemaName, err)
	}
	return nil
}

func temporalOpenAdminDB(conf *config.SQL, logger serverlog.Logger) (sqlplugin.AdminDB, error) {
	db, err := persistencesql.NewSQLAdminDB(sqlplugin.DbKindUnknown, conf, resolver.NewNoopResolver(), logger, metrics.NoopMetricsHandler)
	if err != nil {
		return nil, fmt.Errorf("connecting to PostgreSQL at %s: %w", conf.ConnectAddr, err)
	}
	return db, nil
}

// temporalSchemaManifest is a schema version's manifest.json.
type temporalSchemaManifest struct {
	CurrVersion          string
	MinCompatibleVersion string
	Description          string
	SchemaUpdateCqlFiles []string
}

// temporalPostgresMigrate applies to database db the versions of the
// embedded schema schemaName (its versioned/vX.Y directories) newer than
// the version recorded in the database, in order, recording each. This is
// what temporal-sql-tool's setup-schema -v 0.0 followed by update-schema
// does (go.temporal.io/server/tools/common/schema, which we do not import:
// it needs a command-line module this one does not otherwise use, and the
// tool exits the process on errors).
//
// A version's statements are not one transaction (some create indexes
// CONCURRENTLY), so a process killed in the middle of one leaves it half
// applied; as in temporal-sql-tool, the next run repeats the version and
// skips the statements that fail because they took effect already.
func temporalPostgresMigrate(admin sqlplugin.AdminDB, db, schemaName string, logger serverlog.Logger) error {
	if err := admin.CreateSchemaVersionTables(); err != nil {
		return fmt.Errorf("creating the schema version tables: %w", err)
	}
	current, err := admin.ReadSchemaVersion(db)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		current = "0.0"
	case err != nil:
		return fmt.Errorf("reading the schema version: %w", err)
	}
	have, err := temporalParseSchemaVersion(current)
	if err != nil {
		return fmt.Errorf("schema version recorded in the database: %w", err)
	}
	assets := dbschemas.Assets()
	pending, err := temporalPendingSchemaVersions(assets, schemaName, have)
	if err != nil {
		return err
	}
	for _, dir := range pending {
		blob, err := fs.ReadFile(assets, path.Join(dir, "manifest.json"))
		if err != nil {
			return fmt.Errorf("embedded schema: %w", err)
		}
		var m temporalSchemaManifest
		if err := json.Unmarshal(blob, &m); err != nil {
			return fmt.Errorf("embedded schema %s: %w", dir, err)
		}
		for _, file := range m.SchemaUpdateCqlFiles {
			sqlText, err := fs.ReadFile(assets, path.Join(dir, file))
			if err != nil {
				return fmt.Errorf("embedded schema: %w", err)
			}
			stmts, err := persistence.LoadAndSplitQueryFromReaders([]io.Reader{bytes.NewReader(sqlText)})
			if err != nil {
				return fmt.Errorf("embedded schema %s/%s: %w", dir, file, err)
			}
			for _, stmt := range stmts {
				err := admin.Exec(stmt)
				if temporalPostgresAlreadyApplied(err) {
					logger.Warn("schema statement took effect before, skipped (a previous update was interrupted)",
						tag.NewStringTag("db", db), tag.NewStringTag("version", m.CurrVersion), tag.Error(err))
					continue
				}
				if err != nil {
					return fmt.Errorf("version %s: %w", m.CurrVersion, err)
				}
			}
		}
		if err := admin.UpdateSchemaVersion(db, m.CurrVersion, m.MinCompatibleVersion); err != nil {
			return fmt.Errorf("recording version %s: %w", m.CurrVersion, err)
		}
		sum := md5.Sum(blob) // the manifest's checksum, as temporal-sql-tool records it
		if err := admin.WriteSchemaUpdateLog(current, m.CurrVersion, hex.EncodeToString(sum[:]), m.Description); err != nil {
			return fmt.Errorf("recording version %s: %w", m.CurrVersion, err)
		}
		current = m.CurrVersion
	}
	return nil
}

// temporalPendingSchemaVersions lists the version directories of schema
// schemaName in fsys (schemaName/versioned/vX.Y) newer than have, oldest
// first.
func temporalPendingSchemaVersions(fsys fs.FS, schemaName string, have [2]int) ([]string, error) {
	dir := path.Join(schemaName, "versioned")
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("embedded schema: %w", err)
	}
	type version struct {
		dir string
		v   [2]int
	}
	var pending []version
	for _, e := range entries {
		v, err := temporalParseSchemaVersion(strings.TrimPrefix(e.Name(), "v"))
		if !e.IsDir() || err != nil {
			continue
		}
		if temporalCompareSchemaVersions(v, have) > 0 {
			pending = append(pending, version{path.Join(dir, e.Name()), v})
		}
	}
	sort.Slice(pending, func(i, j int) bool { return temporalCompareSchemaVersions(pending[i].v, pending[j].v) < 0 })
	dirs := make([]string, len(pending))
	for i, p := range pending {
		dirs[i] = p.dir
	}
	return dirs, nil
}

// temporalPostgresAlreadyApplied reports whether err is PostgreSQL's
// answer to a schema statement that took effect before: what it creates
// exists, or what it drops is gone.
func temporalPostgresAlreadyApplied(err error) bool {
	var pqErr *pq.Error
	if !errors.As(err, &pqErr) {
		return false
	}
	switch pqErr.Code.Name() {
	case "duplicate_table", // tables and indexes
		"duplicate_column", "duplicate_object", "duplicate_function", "duplicate_schema",
		"unique_violation", // the one INSERT of the schema
		"undefined_table", "undefined_column", "undefined_object":
		return true
	}
	return false
}

// temporalParseSchemaVersion parses "major.minor".
func temporalParseSchemaVersion(s string) ([2]int, error) {
	var v [2]int
	major, minor, ok := strings.Cut(s, ".")
	var err1, err2 error
	v[0], err1 = strconv.Atoi(major)
	v[1], err2 = strconv.Atoi(minor)
	if !ok || err1 != nil || err2 != nil {
		return v, fmt.Errorf("schema version %q is not major.minor", s)
	}
	return v, nil
}

func temporalCompareSchemaVersions(a, b [2]int) int {
	if a[0] != b[0] {
		return a[0] - b[0]
	}
	return a[1] - b[1]
}
