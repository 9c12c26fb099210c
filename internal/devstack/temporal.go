package devstack

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	uiserver "github.com/temporalio/ui-server/v2/server"
	uiconfig "github.com/temporalio/ui-server/v2/server/config"
	uiserveroptions "github.com/temporalio/ui-server/v2/server/server_options"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	sdkclient "go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/server/common/cluster"
	"go.temporal.io/server/common/config"
	"go.temporal.io/server/common/dynamicconfig"
	"go.temporal.io/server/common/membership/static"
	sqliteplugin "go.temporal.io/server/common/persistence/sql/sqlplugin/sqlite"
	"go.temporal.io/server/common/primitives"
	sqliteschema "go.temporal.io/server/schema/sqlite"
	"go.temporal.io/server/temporal"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/acu-patrol/acu/internal/searchattr"
)

const (
	// temporalClusterName is the (single) cluster name of the embedded server.
	temporalClusterName = "active"
	// temporalClusterID is fixed so that a persisted database (DataDir) does
	// not log a cluster metadata mismatch warning on every restart.
	temporalClusterID = "6e0c2e8a-3b8f-4c1e-9d7a-0ac0de7057ac"
	// temporalDBFileName is the SQLite file created inside DataDir.
	temporalDBFileName = "temporal.db"
	// temporalVisibilityDBFileName is the SQLite file of the visibility
	// store inside DataDir.
	temporalVisibilityDBFileName = "visibility.db"
	// temporalRetention is the default workflow retention of the namespace
	// we register.
	temporalRetention = 24 * time.Hour
	// temporalStartTimeout bounds StartTemporal when ctx has no earlier deadline.
	temporalStartTimeout = 2 * time.Minute
	// temporalPollInterval is the pause between readiness probes.
	temporalPollInterval = 50 * time.Millisecond
)

// temporalDBSeq makes in-memory database names unique within the process:
// the SQLite plugin shares connections between servers by DSN.
var temporalDBSeq atomic.Uint64

// TemporalOptions configures the embedded server.
type TemporalOptions struct {
	// FrontendAddr is host:port for the gRPC frontend, e.g. "127.0.0.1:7233".
	// The host must be a loopback IP or "localhost" (mapped to 127.0.0.1);
	// empty means "127.0.0.1:7233". Port 0 picks a free port, see
	// Temporal.FrontendAddr.
	FrontendAddr string
	// UIAddr is host:port for the Web UI, e.g. "127.0.0.1:8233"; empty means
	// no UI. Same host rules as FrontendAddr; port 0 picks a free port.
	UIAddr string
	// Namespace is registered at start; empty means "default".
	Namespace string
	// DataDir selects SQLite persistence: empty keeps everything in an
	// in-memory SQLite database that vanishes with the process; otherwise
	// the server uses the SQLite file DataDir/temporal.db (the directory is
	// created if needed, the schema only when the file is new). Must be
	// empty with Postgres.
	DataDir string
	// Postgres, when not nil, keeps execution and visibility in PostgreSQL
	// instead of SQLite: the databases are created and brought to the
	// schema version of this server at every start, and the namespace is
	// registered through the API (see TemporalPostgres). Default nil.
	Postgres *TemporalPostgres
	// HistoryShards is the number of history shards; zero means 1. The
	// count is fixed when the persistence is first used: a later start with
	// another count fails.
	HistoryShards int32
	// Retention is the workflow retention Namespace gets when StartTemporal
	// registers it; zero means 24 hours. An existing namespace keeps its
	// own.
	Retention time.Duration
	// HistoryPort, MatchingPort and WorkerPort are the gRPC ports of the
	// internal services, on the host of FrontendAddr; zero (the default)
	// picks free ports.
	HistoryPort, MatchingPort, WorkerPort int
	// SearchAttributes are custom search attributes registered on Namespace
	// at start, e.g. {"StudentId": Keyword, "Metric": Double}. Registration
	// is idempotent; an existing attribute with another type is an error.
	// SQL visibility (SQLite and PostgreSQL) has a fixed number of slots per
	// type: 10 Keyword and 3 each of Text, Int, Double, Bool, Datetime and
	// KeywordList.
	SearchAttributes map[string]enumspb.IndexedValueType
	// Logger receives server, SDK-client and UI-startup logs at Warn level and
	// above (the Temporal server is very chatty below Warn); nil discards.
	Logger *slog.Logger
}

// Temporal is a running embedded Temporal server (frontend, history, matching
// and worker services in this process) with an optional Web UI.
type Temporal struct {
	server       temporal.Server
	ui           *uiserver.Server
	uiDone       chan struct{} // closed when the UI server goroutine returns
	uiErr        chan error    // receives the UI server's Start result
	frontendAddr string
	uiURL        string
	logLevel     *slog.LevelVar // minimum level of the server's logger
	tempDir      string         // the in-memory server's visibility file, removed at Stop

	stopOnce sync.Once
	stopErr  error
}

// StartTemporal starts the embedded Temporal server and, if o.UIAddr is set,
// the Web UI. It returns once the frontend accepts requests, o.Namespace
// exists, all o.SearchAttributes are registered on it and the UI (if any)
// answers HTTP. On error everything started so far is stopped again.
func StartTemporal(ctx context.Context, o TemporalOptions) (*Temporal, error) {
	ctx, cancel := context.WithTimeout(ctx, temporalStartTimeout)
	defer cancel()

	logger, logLevel := newTemporalLogger(o.Logger)
	if o.Namespace == "" {
		o.Namespace = "default"
	}
	if o.FrontendAddr == "" {
		o.FrontendAddr = "127.0.0.1:7233"
	}
	if o.Retention == 0 {
		o.Retention = temporalRetention
	}
	if o.HistoryShards == 0 {
		o.HistoryShards = 1
	}
	switch {
	case o.Postgres != nil && o.DataDir != "":
		return nil, fmt.Errorf("temporal: DataDir (SQLite) and Postgres are exclusive")
	case o.HistoryShards < 0 || o.Retention < 0:
		return nil, fmt.Errorf("temporal: negative history shards or retention")
	}

	// Resolve and check all addresses before doing any expensive work.
	ip, frontendPort, err := temporalResolveAddr(o.FrontendAddr)
	if err != nil {
		return nil, fmt.Errorf("frontend address: %w", err)
	}
	var uiIP string
	var uiPort int
	if o.UIAddr != "" {
		if uiIP, uiPort, err = temporalResolveAddr(o.UIAddr); err != nil {
			return nil, fmt.Errorf("UI address: %w", err)
		}
	}
	// Grab the internal service ports and the zero ports in one go, holding
	// all listeners open until every port is chosen so they are distinct.
	ports, err := temporalReservePorts([]temporalPortReq{
		{"frontend gRPC", ip, frontendPort},
		{"history gRPC", ip, o.HistoryPort},
		{"matching gRPC", ip, o.MatchingPort},
		{"worker gRPC", ip, o.WorkerPort},
		{"UI HTTP", uiIP, uiPort}, // skipped when uiIP is empty
	})
	if err != nil {
		return nil, err
	}
	frontendPort, uiPort = ports[0], ports[4]
	t := &Temporal{
		frontendAddr: net.JoinHostPort(ip, strconv.Itoa(frontendPort)),
		logLevel:     logLevel,
	}

	// Start the UI right away: it only dials the frontend on demand, and
	// binding its port now leaves the least time for anyone else to take it.
	if uiIP != "" {
		if err := t.startUI(uiIP, uiPort, o.Namespace); err != nil {
			return nil, err
		}
	}
	if err := t.startServer(ctx, ip, ports[:4], o, logger); err != nil {
		return nil, errors.Join(err, t.Stop())
	}
	if err := temporalSetup(ctx, t.frontendAddr, o.Namespace, o.Retention, o.SearchAttributes, logger); err != nil {
		return nil, errors.Join(err, t.Stop())
	}
	if t.ui != nil {
		if err := t.waitUI(ctx, uiIP, uiPort, o.Namespace); err != nil {
			return nil, errors.Join(err, t.Stop())
		}
	}
	return t, nil
}

// startServer prepares persistence and starts the Temporal services on ip;
// ports holds the gRPC ports of frontend, history, matching and worker.
func (t *Temporal) startServer(ctx context.Context, ip string, ports []int, o TemporalOptions, logger *slog.Logger) error {
	var sqlConf, visConf *config.SQL
	var err error
	if o.Postgres != nil {
		sqlConf, visConf, err = temporalPostgresConfig(ctx, *o.Postgres, temporalServerLogger{l: logger})
	} else {
		sqlConf, visConf, t.tempDir, err = temporalSQLConfig(o)
	}
	if err != nil {
		return err
	}
	server, err := temporal.NewServer(
		temporal.WithConfig(temporalServerConfig(ip, ports, o.HistoryShards, sqlConf, visConf)),
		temporal.ForServices(temporal.DefaultServices),
		temporal.WithStaticHosts(temporalStaticHosts(ip, ports)),
		temporal.WithLogger(temporalServerLogger{l: logger}),
		temporal.WithDynamicConfigClient(temporalDynamicConfig()),
	)
	if err != nil {
		return fmt.Errorf("create temporal server: %w", err)
	}
	if err := temporalStartServer(ctx, server); err != nil {
		return err
	}
	t.server = server
	return nil
}

// FrontendAddr returns the host:port of the gRPC frontend (with the actual
// port if TemporalOptions.FrontendAddr asked for port 0).
func (t *Temporal) FrontendAddr() string { return t.frontendAddr }

// UIURL returns the base URL of the Web UI, e.g. "http://127.0.0.1:8233", or
// "" when the UI is disabled.
func (t *Temporal) UIURL() string { return t.uiURL }

// Stop stops the UI and the server. It is safe to call more than once; later
// calls return the first call's result.
//
// Server logging is silenced from here on: shutting down, the services log
// dozens of expected warnings and errors (cancelled polls, refused
// connections to services that already stopped).
func (t *Temporal) Stop() error {
	t.stopOnce.Do(func() {
		t.logLevel.Set(temporalLevelSilent)
		if t.ui != nil {
			// Closes the listener and makes Start return, even if Start
			// only begins after this (http.Server.Serve after Close
			// returns at once).
			t.ui.Stop()
			<-t.uiDone
		}
		if t.server != nil {
			if err := t.server.Stop(); err != nil {
				t.stopErr = fmt.Errorf("stop temporal server: %w", err)
			}
		}
		if t.tempDir != "" {
			t.stopErr = errors.Join(t.stopErr, os.RemoveAll(t.tempDir))
		}
	})
	return t.stopErr
}

// FreeLoopbackAddr returns "127.0.0.1:<port>" for a port that was free a
// moment ago (it listens on port 0 and closes the listener). Intended for
// tests; another process may grab the port before it is used.
func FreeLoopbackAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find free loopback port: %w", err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		return "", fmt.Errorf("find free loopback port: %w", err)
	}
	return addr, nil
}

// temporalResolveAddr splits a host:port and checks that the host is a
// loopback IP ("localhost" and an empty host mean 127.0.0.1). The server
// needs IP literals for binding and for its static membership.
func temporalResolveAddr(addr string) (string, int, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("parse %q: %w", addr, err)
	}
	if host == "" || host == "localhost" {
		host = "127.0.0.1"
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return "", 0, fmt.Errorf("%q: host must be a loopback IP or localhost", addr)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("%q: invalid port", addr)
	}
	return ip.String(), port, nil
}

// temporalPortReq asks for a TCP port on ip: port 0 means "any free port",
// otherwise the port must be free. An empty ip skips the request.
type temporalPortReq struct {
	name string // for error messages
	ip   string
	port int
}

// temporalReservePorts checks or picks a port for every request and returns
// them in order (0 for skipped requests). All listeners stay open until the
// end so picked ports never collide with each other or with requested ones.
func temporalReservePorts(reqs []temporalPortReq) ([]int, error) {
	ports := make([]int, len(reqs))
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			_ = l.Close()
		}
	}()
	// Fixed ports first, so that picking free ones cannot take them.
	for pass := 0; pass < 2; pass++ {
		for i, r := range reqs {
			if r.ip == "" || (pass == 0) != (r.port != 0) {
				continue
			}
			addr := net.JoinHostPort(r.ip, strconv.Itoa(r.port))
			l, err := net.Listen("tcp", addr)
			if err != nil {
				return nil, fmt.Errorf("%s port not available: %w", r.name, err)
			}
			listeners = append(listeners, l)
			ports[i] = l.Addr().(*net.TCPAddr).Port
		}
	}
	return ports, nil
}

// temporalSQLConfig builds the SQLite persistence configs of execution and
// visibility, creates the schema for new database files and pre-registers
// the namespace (with its search attributes) directly in the database.
// Pre-registration makes a fresh server usable immediately instead of after
// namespace caches refresh; it is a no-op when the namespace already exists
// (temporalSetup then adds any missing search attributes through the
// operator API).
//
// Execution and visibility are two databases: the SQLite plugin gives each
// database one connection, which every persistence call of the server
// waits for, and visibility writes (one per start and per search-attribute
// upsert) then no longer queue behind the history service's transactions.
// A DataDir made before the split (temporal.db without visibility.db) keeps
// its single database, so its workflows stay listed.
func temporalSQLConfig(o TemporalOptions) (exec, vis *config.SQL, tempDir string, err error) {
	exec = &config.SQL{PluginName: sqliteplugin.PluginName}
	vis = &config.SQL{PluginName: sqliteplugin.PluginName}
	if o.DataDir == "" {
		exec.ConnectAttributes = map[string]string{"mode": "memory", "cache": "shared"}
		exec.DatabaseName = fmt.Sprintf("acu-devstack-%d-%d", os.Getpid(), temporalDBSeq.Add(1))
		// Visibility in a temporary file (removed at Stop) rather than in
		// memory, so that its schema can be trimmed before the server opens
		// it; nothing is synced to disk.
		dir, err := os.MkdirTemp("", "acu-devstack-visibility-")
		if err != nil {
			return nil, nil, tempDir, fmt.Errorf("temporal visibility dir: %w", err)
		}
		tempDir = dir
		vis.ConnectAttributes = map[string]string{"mode": "rwc", "synchronous": "off", "journal_mode": "memory"}
		vis.DatabaseName = filepath.Join(dir, temporalVisibilityDBFileName)
		if _, err := temporalNewFile(vis, o.SearchAttributes); err != nil {
			return nil, nil, tempDir, err
		}
	} else {
		dir, err := filepath.Abs(o.DataDir)
		if err != nil {
			return nil, nil, tempDir, fmt.Errorf("temporal data dir: %w", err)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, nil, tempDir, fmt.Errorf("create temporal data dir: %w", err)
		}
		exec.ConnectAttributes = map[string]string{"mode": "rwc"}
		exec.DatabaseName = filepath.Join(dir, temporalDBFileName)
		vis.ConnectAttributes = map[string]string{"mode": "rwc"}
		vis.DatabaseName = filepath.Join(dir, temporalVisibilityDBFileName)
		newExec, err := temporalNewFile(exec, nil)
		if err != nil {
			return nil, nil, tempDir, err
		}
		if !newExec {
			if _, err := os.Stat(vis.DatabaseName); errors.Is(err, os.ErrNotExist) {
				vis = exec // made before the split: one database
			}
		}
		if vis != exec {
			if _, err := temporalNewFile(vis, o.SearchAttributes); err != nil {
				return nil, nil, tempDir, err
			}
		}
	}

	ns, err := sqliteschema.NewNamespaceConfig(temporalClusterName, o.Namespace, false, o.SearchAttributes)
	if err != nil {
		return nil, nil, tempDir, fmt.Errorf("namespace %q config: %w", o.Namespace, err)
	}
	ns.Detail.Config.Retention = durationpb.New(o.Retention)
	if err := sqliteschema.CreateNamespaces(exec, ns); err != nil {
		return nil, nil, tempDir, fmt.Errorf("pre-register namespace %q: %w", o.Namespace, err)
	}
	return exec, vis, tempDir, nil
}

// temporalNewFile creates the schema in conf's database file unless the
// file exists, and reports whether it did. With searchAttrs (a visibility
// database), the visibility indexes that no query of this system needs are
// dropped.
func temporalNewFile(conf *config.SQL, searchAttrs map[string]enumspb.IndexedValueType) (bool, error) {
	_, err := os.Stat(conf.DatabaseName)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := sqliteschema.SetupSchema(conf); err != nil {
			return false, fmt.Errorf("create temporal schema in %s: %w", conf.DatabaseName, err)
		}
		if searchAttrs != nil {
			if err := temporalTrimVisibility(conf.DatabaseName, searchAttrs); err != nil {
				return false, err
			}
		}
		return true, nil
	case err != nil:
		return false, fmt.Errorf("temporal database file: %w", err)
	}
	return false, nil
}

// temporalVisibilityColumns are the visibility columns whose indexes stay:
// the UI's and the CLI's listings and filters (by start and close time,
// execution time, ID, type and status) and the schedules'.
var temporalVisibilityColumns = map[string]bool{
	"execution_time": true, "workflow_id": true, "workflow_type_name": true, "status": true,
	"TemporalScheduledStartTime": true, "TemporalScheduledById": true,
	"TemporalSchedulePaused": true, "TemporalNamespaceDivision": true,
}

// temporalIndexColumn finds the column an executions_visibility index
// sorts on after the namespace: "by_x ON executions_visibility
// (namespace_id, x, ...".
var temporalIndexColumn = regexp.MustCompile(`\(\s*namespace_id\s*,\s*([A-Za-z0-9_]+)\s*,`)

// temporalTrimVisibility drops the executions_visibility indexes that no
// query of this system uses. The SQLite schema indexes every column, each
// through a JSON extraction of the search attributes, and every visibility
// write (a start, each search-attribute upsert, a close) updates all of
// them: with the 58 of the schema, visibility took 28 % of acu-dev's CPU,
// 17 % with these dropped (CPU profiles under acu bench at 100 failing
// results/s).
// Kept: the default listing, the columns of temporalVisibilityColumns, and
// every column slot of the types of the custom search attributes (which
// slot an attribute gets is chosen at registration). A query on another
// column still works, by a scan.
func temporalTrimVisibility(path string, searchAttrs map[string]enumspb.IndexedValueType) error {
	keepType := map[string]bool{}
	for _, t := range searchAttrs {
		switch t {
		case enumspb.INDEXED_VALUE_TYPE_KEYWORD:
			keepType["Keyword"] = true
		case enumspb.INDEXED_VALUE_TYPE_DOUBLE:
			keepType["Double"] = true
		case enumspb.INDEXED_VALUE_TYPE_INT:
			keepType["Int"] = true
		case enumspb.INDEXED_VALUE_TYPE_BOOL:
			keepType["Bool"] = true
		case enumspb.INDEXED_VALUE_TYPE_DATETIME:
			keepType["Datetime"] = true
		}
	}
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		return fmt.Errorf("opening the visibility database: %w", err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'executions_visibility' AND sql IS NOT NULL`)
	if err != nil {
		return fmt.Errorf("listing the visibility indexes: %w", err)
	}
	var drop []string
	for rows.Next() {
		var name, def string
		if err := rows.Scan(&name, &def); err != nil {
			rows.Close()
			return fmt.Errorf("listing the visibility indexes: %w", err)
		}
		m := temporalIndexColumn.FindStringSubmatch(def)
		if m == nil { // default_idx: (namespace_id, COALESCE(close_time ...
			continue
		}
		col := m[1]
		if temporalVisibilityColumns[col] || keepType[strings.TrimRight(col, "0123456789")] {
			continue
		}
		drop = append(drop, name)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("listing the visibility indexes: %w", err)
	}
	for _, name := range drop {
		if _, err := db.Exec(`DROP INDEX "` + name + `"`); err != nil {
			return fmt.Errorf("dropping visibility index %s: %w", name, err)
		}
	}
	return nil
}

// temporalServerConfig builds the static server configuration. ports holds
// the gRPC ports of frontend, history, matching and worker, in that order.
// The frontend HTTP API, metrics, pprof and ringpop membership are all left
// disabled so that the server opens no ports besides those four.
func temporalServerConfig(ip string, ports []int, shards int32, sqlConf, visConf *config.SQL) *config.Config {
	frontendAddr := net.JoinHostPort(ip, strconv.Itoa(ports[0]))
	conf := &config.Config{}
	conf.Global.Membership.MaxJoinDuration = 30 * time.Second
	conf.Global.Membership.BroadcastAddress = ip

	// The data stores are named after the plugin: "sqlite-default",
	// "postgres12-visibility".
	store, visStore := sqlConf.PluginName+"-default", visConf.PluginName+"-visibility"
	conf.Persistence.DefaultStore = store
	conf.Persistence.VisibilityStore = visStore
	conf.Persistence.NumHistoryShards = shards
	conf.Persistence.DataStores = map[string]config.DataStore{
		store:    {SQL: sqlConf},
		visStore: {SQL: visConf},
	}

	conf.ClusterMetadata = &cluster.Config{
		EnableGlobalNamespace:    false,
		FailoverVersionIncrement: 10,
		MasterClusterName:        temporalClusterName,
		CurrentClusterName:       temporalClusterName,
		ClusterInformation: map[string]cluster.ClusterInformation{
			temporalClusterName: {
				Enabled:                true,
				InitialFailoverVersion: 1,
				RPCAddress:             frontendAddr,
				ClusterID:              temporalClusterID,
			},
		},
	}
	conf.DCRedirectionPolicy.Policy = "noop"

	conf.Services = make(map[string]config.Service, len(ports))
	for i, name := range temporalServiceNames {
		var svc config.Service
		svc.RPC.GRPCPort = ports[i]
		svc.RPC.BindOnIP = ip
		conf.Services[string(name)] = svc
	}

	conf.Archival.History.State = "disabled"
	conf.Archival.Visibility.State = "disabled"
	conf.NamespaceDefaults.Archival.History.State = "disabled"
	conf.NamespaceDefaults.Archival.Visibility.State = "disabled"
	conf.PublicClient.HostPort = frontendAddr
	return conf
}

// temporalServiceNames lists the services we run, in the order of the ports
// passed to temporalServerConfig and temporalStaticHosts.
var temporalServiceNames = []primitives.ServiceName{
	primitives.FrontendService,
	primitives.HistoryService,
	primitives.MatchingService,
	primitives.WorkerService,
}

// temporalStaticHosts replaces ringpop membership (which would open one more
// port per service) with a fixed single-host address per service.
func temporalStaticHosts(ip string, ports []int) map[primitives.ServiceName]static.Hosts {
	hosts := make(map[primitives.ServiceName]static.Hosts, len(ports))
	for i, name := range temporalServiceNames {
		hosts[name] = static.SingleLocalHost(net.JoinHostPort(ip, strconv.Itoa(ports[i])))
	}
	return hosts
}

// temporalDynamicConfig returns dynamic config suited to a single-user dev
// box, modelled on the Temporal CLI's dev server defaults.
func temporalDynamicConfig() dynamicconfig.StaticClient {
	return dynamicconfig.StaticClient{
		// Newly registered search attributes are visible immediately instead
		// of after the search attribute cache refreshes.
		dynamicconfig.ForceSearchAttributesCacheRefreshOnRead.Key(): true,
		// The cache bypass costs persistence reads; raise the limits (keeping
		// the default frontend:history ratio) so it never throttles.
		dynamicconfig.FrontendPersistenceMaxQPS.Key(): 10000,
		dynamicconfig.HistoryPersistenceMaxQPS.Key():  45000,
		// The Web UI issues many list/count queries; the default of 10 RPS
		// per namespace makes it stutter.
		dynamicconfig.FrontendMaxNamespaceVisibilityRPSPerInstance.Key(): 100,
		// Host-level mutable state cache, as in the CLI dev server.
		dynamicconfig.HistoryCacheHostLevelMaxSize.Key(): 8096,
		// Schedules: the frontend RPCs and the worker-service scheduler that
		// runs them (both default to true; pinned because we rely on them).
		dynamicconfig.FrontendEnableSchedules.Key(): true,
		dynamicconfig.WorkerEnableScheduler.Key():   true,
		// The task queue and history scanners garbage-collect a long-lived
		// production database; a dev box does not need them, and their SDK
		// workers are not stopped by the server's Stop (they would keep
		// polling the stopped frontend).
		dynamicconfig.TaskQueueScannerEnabled.Key(): false,
		dynamicconfig.HistoryScannerEnabled.Key():   false,
		// One partition per task queue: on one host, more partitions only
		// split the pollers and forward tasks between partitions.
		dynamicconfig.MatchingNumTaskqueueReadPartitions.Key():  1,
		dynamicconfig.MatchingNumTaskqueueWritePartitions.Key(): 1,
	}
}

// temporalStartServer runs server.Start (which takes no context) while
// honouring ctx. If ctx ends first we still wait for Start to return so
// that whatever it started can be stopped again.
func temporalStartServer(ctx context.Context, server temporal.Server) error {
	done := make(chan error, 1)
	go func() { done <- server.Start() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("start temporal server: %w", err)
		}
		return nil
	case <-ctx.Done():
		if err := <-done; err == nil {
			_ = server.Stop()
		}
		return fmt.Errorf("start temporal server: %w", ctx.Err())
	}
}

// temporalSetup waits for the frontend, then makes sure the namespace and
// the search attributes exist, and waits until they are visible.
func temporalSetup(
	ctx context.Context,
	frontendAddr, namespace string,
	retention time.Duration,
	searchAttrs map[string]enumspb.IndexedValueType,
	logger *slog.Logger,
) error {
	var c sdkclient.Client
	err := temporalPoll(ctx, "temporal frontend to accept requests", func() error {
		dialCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		var err error
		c, err = sdkclient.DialContext(dialCtx, sdkclient.Options{
			HostPort:  frontendAddr,
			Namespace: namespace,
			Logger:    sdklog.NewStructuredLogger(logger),
		})
		if err != nil {
			return err
		}
		if _, err := c.CheckHealth(dialCtx, &sdkclient.CheckHealthRequest{}); err != nil {
			c.Close()
			return err
		}
		return nil
	})
	if err != nil {
		return err
	}
	defer c.Close()

	if err := temporalEnsureNamespace(ctx, c, namespace, retention); err != nil {
		return err
	}
	return temporalEnsureSearchAttributes(ctx, c, namespace, searchAttrs)
}

// temporalEnsureNamespace registers the namespace, with the workflow
// retention given, unless it already exists, and waits until the frontend
// can describe it.
func temporalEnsureNamespace(ctx context.Context, c sdkclient.Client, namespace string, retention time.Duration) error {
	ws := c.WorkflowService()
	_, err := ws.DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: namespace})
	var notFound *serviceerror.NamespaceNotFound
	switch {
	case err == nil:
		return nil
	case !errors.As(err, &notFound):
		return fmt.Errorf("describe namespace %q: %w", namespace, err)
	}
	_, err = ws.RegisterNamespace(ctx, &workflowservice.RegisterNamespaceRequest{
		Namespace:                        namespace,
		WorkflowExecutionRetentionPeriod: durationpb.New(retention),
	})
	var exists *serviceerror.NamespaceAlreadyExists
	if err != nil && !errors.As(err, &exists) {
		return fmt.Errorf("register namespace %q: %w", namespace, err)
	}
	// DescribeNamespace reads the database. Most other calls look the
	// namespace up in the frontend's namespace cache, which remembers a
	// miss for a second (our DescribeNamespace above was one): wait for
	// ListSearchAttributes, one of those, too.
	return temporalPoll(ctx, "namespace "+namespace+" to be registered", func() error {
		if _, err := ws.DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: namespace}); err != nil {
			return err
		}
		_, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: namespace})
		return err
	})
}

// temporalEnsureSearchAttributes adds the missing custom search attributes
// to the namespace and waits until all of them are listed with the wanted
// types. An attribute that exists with a different type is an error.
func temporalEnsureSearchAttributes(
	ctx context.Context,
	c sdkclient.Client,
	namespace string,
	want map[string]enumspb.IndexedValueType,
) error {
	if len(want) == 0 {
		return nil
	}
	if _, err := searchattr.Ensure(ctx, c, namespace, want); err != nil {
		return err
	}
	return temporalPoll(ctx, "search attributes to be registered", func() error {
		missing, err := searchattr.Missing(ctx, c, namespace, want)
		if err == nil && len(missing) > 0 {
			err = fmt.Errorf("%d search attributes not registered yet", len(missing))
		}
		return err
	})
}

// startUI launches the Web UI server on ip:port, pointed at the frontend.
// waitUI then waits until it answers.
//
// The ui-server package binds inside its blocking Start and, should binding
// fail, exits the process via its logger's Fatal. temporalReservePorts has
// checked the port moments before, which leaves only a tiny race window.
func (t *Temporal) startUI(ip string, port int, namespace string) error {
	ui, err := temporalNewUIServer(&uiconfig.Config{
		Host:                ip,
		Port:                port,
		TemporalGRPCAddress: t.frontendAddr,
		EnableUI:            true, // serve the assets embedded in the ui-server module
		DefaultNamespace:    namespace,
		CORS:                uiconfig.CORS{CookieInsecure: true}, // plain http on loopback
		HideLogs:            true,
		DisableNewsFetch:    true, // no internet needed
	})
	if err != nil {
		return err
	}
	t.ui = ui
	t.uiDone = make(chan struct{})
	t.uiErr = make(chan error, 1)
	go func() {
		defer close(t.uiDone)
		t.uiErr <- ui.Start() // blocks until Stop; nil after a clean Stop
	}()
	return nil
}

// waitUI polls the UI until it answers an API call (the namespace, which
// it asks the frontend for) with 200 OK, then sets the UI URL. Its health
// endpoint is not enough: the UI, started before the frontend listened,
// answered its first API requests after that with 503 for up to a second
// (its connection to the frontend in back-off after the refused first
// dial), and an operator opening it then saw an error page.
func (t *Temporal) waitUI(ctx context.Context, ip string, port int, namespace string) error {
	base := "http://" + net.JoinHostPort(ip, strconv.Itoa(port))
	target := base + "/api/v1/namespaces/" + url.PathEscape(namespace)
	httpClient := &http.Client{Timeout: 2 * time.Second}
	err := temporalPoll(ctx, "temporal UI at "+base, func() error {
		select {
		case err := <-t.uiErr:
			return temporalPermanent{fmt.Errorf("temporal UI server exited: %v", err)}
		default:
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
		if err != nil {
			return temporalPermanent{err}
		}
		resp, err := httpClient.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", target, resp.Status)
		}
		return nil
	})
	if err != nil {
		return err
	}
	t.uiURL = base
	return nil
}

// temporalNewUIServer wraps uiserver.NewServer, which panics on invalid
// configuration, turning such a panic into an error.
func temporalNewUIServer(cfg *uiconfig.Config) (s *uiserver.Server, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("temporal UI config: %w", err)
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("create temporal UI server: %v", r)
		}
	}()
	return uiserver.NewServer(uiserveroptions.WithConfigProvider(cfg)), nil
}

// temporalPermanent marks an error that temporalPoll must not retry.
type temporalPermanent struct{ error }

func (p temporalPermanent) Unwrap() error { return p.error }

// temporalPoll calls probe every temporalPollInterval until it returns nil,
// returns a temporalPermanent error, or ctx ends. The error then names what
// we were waiting for and the probe's last error.
func temporalPoll(ctx context.Context, what string, probe func() error) error {
	ticker := time.NewTicker(temporalPollInterval)
	defer ticker.Stop()
	for {
		err := probe()
		if err == nil {
			return nil
		}
		var perm temporalPermanent
		if errors.As(err, &perm) {
			return fmt.Errorf("waiting for %s: %w", what, perm.error)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w (last error: %v)", what, ctx.Err(), err)
		case <-ticker.C:
		}
	}
}
