// Package cassandra is the production store: Apache Cassandra through gocql.
//
// Tables are designed from the queries (see schema.go): results by arrival
// time (incremental analytics), by exercise and day (analytics rebuilds and
// the canonical copy of each identity), by student and exercise (follow-up
// checks); deployments; analytics state and reports. Reads and writes use
// the configured consistency (QUORUM by default), routed token-aware.
//
// Idempotence without lightweight transactions: every write of a result is
// stamped with its arrival time and carries the cell timestamp
// invertedBase-arrival, so when an identity is written twice the earliest
// arrival wins everywhere, whatever order the writes land in — the first
// write wins, as in SQLite. The analytics count an identity only at its
// canonical (earliest) arrival. See results.go for the ordering that keeps
// this exact.
package cassandra

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gocql/gocql"
)

// Scheme is the URL scheme of the store setting.
const Scheme = "cassandra"

// DefaultPort is Cassandra's CQL port.
const DefaultPort = 9042

// Config is a parsed cassandra:// store setting:
//
//	cassandra://[user[:password]@]host1[:port],host2[:port]/keyspace?consistency=quorum
//
// Query parameters (all optional):
//   - consistency: of reads and writes: one, two, three, quorum (default),
//     local_quorum, each_quorum, all, local_one.
//   - replication: used when the keyspace is created: "SimpleStrategy:N" or
//     "dc1:3,dc2:3" (NetworkTopologyStrategy); default SimpleStrategy:1.
//   - local_dc: the data centre whose nodes are preferred (token-aware within
//     it); with local_quorum, lightweight transactions use LOCAL_SERIAL.
//   - timeout: per request (default 10s).
//   - settle: how far the analytics' arrival mark trails the clock (default
//     30s). A write attempt gives up after half of it; the other half must
//     cover the clock skew between archivers and workers and the servers'
//     write timeout.
type Config struct {
	Hosts       []string
	Keyspace    string
	Consistency gocql.Consistency
	Replication Replication
	// ReplicationSet tells whether the URL named a replication.
	ReplicationSet bool
	LocalDC        string
	Timeout        time.Duration
	Settle         time.Duration
	Username       string
	Password       string
}

// Replication is a keyspace's replication: Strategy SimpleStrategy with
// Factor, or NetworkTopologyStrategy with a factor per data centre.
type Replication struct {
	Strategy string
	Factor   int
	PerDC    map[string]int
}

// asMap is r as Cassandra reports a keyspace's replication
// (system_schema.keyspaces).
func (r Replication) asMap() map[string]string {
	if r.Strategy == "SimpleStrategy" {
		return map[string]string{"class": "org.apache.cassandra.locator.SimpleStrategy", "replication_factor": strconv.Itoa(r.Factor)}
	}
	m := map[string]string{"class": "org.apache.cassandra.locator.NetworkTopologyStrategy"}
	for dc, n := range r.PerDC {
		m[dc] = strconv.Itoa(n)
	}
	return m
}

// keyspaceReplication reads the keyspace's replication as Cassandra
// reports it.
func keyspaceReplication(ctx context.Context, session *gocql.Session, keyspace string) (map[string]string, error) {
	var repl map[string]string
	if err := session.Query(`SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = ?`, keyspace).
		WithContext(ctx).Scan(&repl); err != nil {
		return nil, fmt.Errorf("reading the replication of keyspace %s: %w", keyspace, err)
	}
	return repl, nil
}

// CQL renders r as a replication map literal.
func (r Replication) CQL() string {
	if r.Strategy == "SimpleStrategy" {
		return fmt.Sprintf("{'class': 'SimpleStrategy', 'replication_factor': %d}", r.Factor)
	}
	dcs := make([]string, 0, len(r.PerDC))
	for dc := range r.PerDC {
		dcs = append(dcs, dc)
	}
	sort.Strings(dcs)
	var b strings.Builder
	b.WriteString("{'class': 'NetworkTopologyStrategy'")
	for _, dc := range dcs {
		fmt.Fprintf(&b, ", '%s': %d", dc, r.PerDC[dc])
	}
	b.WriteString("}")
	return b.String()
}

var (
	identRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,47}$`)
	dcRE    = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)
)

// ParseURL parses a cassandra:// store setting; errors say which part is
// wrong.
func ParseURL(s string) (Config, error) {
	c := Config{Consistency: gocql.Quorum, Timeout: 10 * time.Second, Settle: 30 * time.Second,
		Replication: Replication{Strategy: "SimpleStrategy", Factor: 1}}
	u, err := url.Parse(s)
	if err != nil {
		// url.Error repeats the raw URL, password included: keep its reason.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return c, fmt.Errorf("cassandra store %q: %w", Redact(s), err)
	}
	if u.Scheme != Scheme {
		return c, fmt.Errorf("cassandra store %q: scheme must be cassandra://", Redact(s))
	}
	fail := func(format string, a ...any) (Config, error) {
		return c, fmt.Errorf("cassandra store %q: %s", Redact(s), fmt.Sprintf(format, a...))
	}
	if u.User != nil {
		c.Username = u.User.Username()
		c.Password, _ = u.User.Password()
	}
	if u.Host == "" {
		return fail("no hosts (want cassandra://host1,host2/keyspace)")
	}
	for h := range strings.SplitSeq(u.Host, ",") {
		if h == "" {
			return fail("empty host in the host list")
		}
		host, port, err := net.SplitHostPort(h)
		if err != nil {
			host, port = h, strconv.Itoa(DefaultPort)
		}
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 || host == "" {
			return fail("bad host %q (want host or host:port)", h)
		}
		c.Hosts = append(c.Hosts, net.JoinHostPort(host, port))
	}
	c.Keyspace = strings.TrimPrefix(u.Path, "/")
	if !identRE.MatchString(c.Keyspace) {
		return fail("keyspace %q must be a lowercase letter then lowercase letters, digits or _ (at most 48)", c.Keyspace)
	}
	q := u.Query()
	for k := range q {
		switch k {
		case "consistency", "replication", "local_dc", "timeout", "settle":
		default:
			return fail("unknown parameter %q (known: consistency, replication, local_dc, timeout, settle)", k)
		}
	}
	if v := q.Get("consistency"); v != "" {
		cons, err := gocql.ParseConsistencyWrapper(v)
		if err != nil || cons == gocql.Any {
			return fail("consistency %q: want one, two, three, quorum, local_quorum, each_quorum, all or local_one", v)
		}
		c.Consistency = cons
	}
	if v := q.Get("local_dc"); v != "" {
		if !dcRE.MatchString(v) {
			return fail("local_dc %q", v)
		}
		c.LocalDC = v
	}
	if (c.Consistency == gocql.LocalQuorum || c.Consistency == gocql.LocalOne) && c.LocalDC == "" {
		return fail("consistency %v needs local_dc (the data centre whose nodes are local)", c.Consistency)
	}
	if v := q.Get("replication"); v != "" {
		r, err := parseReplication(v)
		if err != nil {
			return fail("replication %q: %v", v, err)
		}
		c.Replication, c.ReplicationSet = r, true
	}
	for _, d := range []struct {
		name string
		to   *time.Duration
	}{{"timeout", &c.Timeout}, {"settle", &c.Settle}} {
		if v := q.Get(d.name); v != "" {
			t, err := time.ParseDuration(v)
			if err != nil || t <= 0 {
				return fail("%s %q: want a positive duration such as 10s", d.name, v)
			}
			*d.to = t
		}
	}
	return c, nil
}

func parseReplication(v string) (Replication, error) {
	if f, ok := strings.CutPrefix(v, "SimpleStrategy:"); ok {
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return Replication{}, errors.New("want SimpleStrategy:N with N >= 1")
		}
		return Replication{Strategy: "SimpleStrategy", Factor: n}, nil
	}
	r := Replication{Strategy: "NetworkTopologyStrategy", PerDC: map[string]int{}}
	for part := range strings.SplitSeq(v, ",") {
		dc, f, ok := strings.Cut(part, ":")
		n, err := strconv.Atoi(f)
		if !ok || !dcRE.MatchString(dc) || err != nil || n < 1 {
			return Replication{}, fmt.Errorf("%q: want SimpleStrategy:N or dc1:N,dc2:M", part)
		}
		r.PerDC[dc] = n
	}
	return r, nil
}

// Redact hides the password of a store setting, for logs and errors.
func Redact(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		// Unparsable: cut what sits between "://" and the last "@" of the
		// authority.
		scheme, rest, ok := strings.Cut(s, "://")
		if !ok {
			return s
		}
		auth, path, _ := strings.Cut(rest, "/")
		if i := strings.LastIndex(auth, "@"); i >= 0 {
			auth = "xxxxx" + auth[i:]
		}
		if strings.Contains(rest, "/") {
			return scheme + "://" + auth + "/" + path
		}
		return scheme + "://" + auth
	}
	if u.User == nil {
		return s
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}

// Store is the Cassandra store. It is safe for concurrent use.
type Store struct {
	cfg     Config
	session *gocql.Session
	serial  gocql.SerialConsistency

	// lastArrival keeps this process's arrival stamps strictly increasing.
	mu          sync.Mutex
	lastArrival int64
	// seen caches the index rows (exercise days, arrival minutes) this
	// process has written, so each is written once, not once per result.
	seen seenCache
	// clock is this process's last clock measurement against Cassandra's.
	clock clockCheck
}

// Options tune Open.
type Options struct {
	// Migrate creates the keyspace and brings the schema up to date (acu
	// setup, acu-dev). Without it Open only checks that the schema is
	// current and tells to run acu setup if not.
	Migrate bool
	// Logger receives gocql's own messages (connections lost and found) as
	// warnings; nil drops them.
	Logger *slog.Logger
}

// gocqlLogger hands gocql's messages to slog.
type gocqlLogger struct{ log *slog.Logger }

func (l gocqlLogger) Print(v ...any) { l.log.Warn(strings.TrimSpace(fmt.Sprint(v...))) }
func (l gocqlLogger) Printf(format string, v ...any) {
	l.log.Warn(strings.TrimSpace(fmt.Sprintf(format, v...)))
}
func (l gocqlLogger) Println(v ...any) { l.log.Warn(strings.TrimSpace(fmt.Sprintln(v...))) }

// Open connects to the cluster and checks (or migrates) the schema.
func Open(ctx context.Context, cfg Config, opt Options) (*Store, error) {
	if opt.Migrate {
		// Refuse an inexact level before creating anything with it.
		if err := overlaps(cfg.Consistency, cfg.LocalDC, cfg.Keyspace, cfg.Replication.asMap()); err != nil {
			return nil, err
		}
		if err := migrate(ctx, cfg, opt.Logger); err != nil {
			return nil, err
		}
	}
	cl := cluster(cfg, opt.Logger)
	cl.Keyspace = cfg.Keyspace
	session, err := cl.CreateSession()
	if err != nil {
		if missing, _ := keyspaceMissing(ctx, cfg, opt.Logger); missing {
			return nil, fmt.Errorf("keyspace %s does not exist: run acu setup: %w", cfg.Keyspace, ErrSchema)
		}
		return nil, fmt.Errorf("connecting to Cassandra %v keyspace %s: %w", cfg.Hosts, cfg.Keyspace, err)
	}
	s := &Store{cfg: cfg, session: session, serial: gocql.Serial}
	if cfg.LocalDC != "" && (cfg.Consistency == gocql.LocalQuorum || cfg.Consistency == gocql.LocalOne) {
		s.serial = gocql.LocalSerial
	}
	if err := s.checkVersion(ctx); err != nil {
		session.Close()
		return nil, err
	}
	if err := s.checkOverlap(ctx); err != nil {
		session.Close()
		return nil, err
	}
	return s, nil
}

// ErrInexact is wrapped by Open's error about a consistency level whose
// reads and writes need not overlap for the keyspace's replication: a read
// could miss an acknowledged write (a deployment recorded, a result
// archived), and the follow-up checks and analytics would guess.
var ErrInexact = errors.New("consistency cannot be exact for the keyspace's replication")

// checkOverlap refuses a consistency level whose reads and writes do not
// overlap: every read and write uses the same level, so with R = W replicas
// out of RF, an acknowledged write is seen by every later read only if
// 2 x R > RF (in the data centre that counts, for the LOCAL_ levels).
func (s *Store) checkOverlap(ctx context.Context) error {
	repl, err := keyspaceReplication(ctx, s.session, s.cfg.Keyspace)
	if err != nil {
		return err
	}
	return overlaps(s.cfg.Consistency, s.cfg.LocalDC, s.cfg.Keyspace, repl)
}

// overlaps is checkOverlap's rule on a keyspace's replication map.
func overlaps(c gocql.Consistency, localDC, keyspace string, repl map[string]string) error {
	total, local, localKnown := 0, 0, false
	for k, v := range repl {
		n, err := strconv.Atoi(v)
		if k == "class" || err != nil {
			continue
		}
		total += n
		if k == "replication_factor" || k == localDC {
			local, localKnown = n, true
		}
	}
	rf, replicas := total, 0
	switch c {
	case gocql.One:
		replicas = 1
	case gocql.Two:
		replicas = 2
	case gocql.Three:
		replicas = 3
	case gocql.LocalOne:
		replicas = 1
		if !localKnown && len(repl) > 2 {
			return fmt.Errorf("consistency LOCAL_ONE on keyspace %s (replication %v) without a local_dc: %w", keyspace, repl, ErrInexact)
		}
		if localKnown {
			rf = local
		}
	default: // QUORUM, LOCAL_QUORUM, EACH_QUORUM, ALL overlap by definition
		return nil
	}
	if 2*replicas <= rf {
		return fmt.Errorf("consistency %s on keyspace %s with %d replicas (replication %v): reads and writes of %d replicas each need not meet, use quorum: %w",
			c, keyspace, rf, repl, replicas, ErrInexact)
	}
	return nil
}

// ErrSchema is wrapped by Open's errors about a keyspace or schema this
// build cannot use as is (missing, older: run acu setup; newer: upgrade).
// Waiting does not mend them; connection errors may.
var ErrSchema = errors.New("schema not usable by this build")

// keyspaceMissing tells whether the cluster answers without cfg's keyspace.
func keyspaceMissing(ctx context.Context, cfg Config, log *slog.Logger) (bool, error) {
	session, err := cluster(cfg, log).CreateSession()
	if err != nil {
		return false, err
	}
	defer session.Close()
	var name string
	err = session.Query(`SELECT keyspace_name FROM system_schema.keyspaces WHERE keyspace_name = ?`, cfg.Keyspace).
		WithContext(ctx).Scan(&name)
	if errors.Is(err, gocql.ErrNotFound) {
		return true, nil
	}
	return false, err
}

// cluster is the gocql configuration of cfg, without a keyspace.
func cluster(cfg Config, log *slog.Logger) *gocql.ClusterConfig {
	cl := gocql.NewCluster(cfg.Hosts...)
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cl.Logger = gocqlLogger{log.With("component", "gocql")}
	cl.Consistency = cfg.Consistency
	cl.SerialConsistency = gocql.Serial
	cl.Timeout = cfg.Timeout
	cl.ConnectTimeout = cfg.Timeout
	cl.WriteTimeout = cfg.Timeout
	cl.ProtoVersion = 4
	// Token-aware: each statement goes to a replica of its partition, in the
	// local data centre when one is named.
	fallback := gocql.RoundRobinHostPolicy()
	if cfg.LocalDC != "" {
		fallback = gocql.DCAwareRoundRobinPolicy(cfg.LocalDC)
	}
	cl.PoolConfig.HostSelectionPolicy = gocql.TokenAwareHostPolicy(fallback)
	// A node that went down is tried again every few seconds (gocql's
	// default is a minute): the services resume soon after it is back.
	cl.ReconnectInterval = 3 * time.Second
	// Transient errors (timeouts, an unavailable replica) are retried a few
	// times with backoff here; beyond that the caller's own retry loop takes
	// over (the archiver re-polls, activities are retried by Temporal).
	cl.RetryPolicy = &gocql.ExponentialBackoffRetryPolicy{NumRetries: 3, Min: 100 * time.Millisecond, Max: 2 * time.Second}
	if cfg.Username != "" {
		cl.Authenticator = gocql.PasswordAuthenticator{Username: cfg.Username, Password: cfg.Password}
	}
	return cl
}

// Close closes the session.
func (s *Store) Close() error {
	s.session.Close()
	return nil
}

// Session is the store's gocql session (for tools and benchmarks).
func (s *Store) Session() *gocql.Session { return s.session }

// arrival returns a new arrival stamp in Unix microseconds, strictly after
// every earlier stamp of this process.
func (s *Store) arrival() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := max(time.Now().UnixMicro(), s.lastArrival+1)
	s.lastArrival = a
	return a
}

// seenCache is a set of index keys already written, reset when it grows
// past its bound (they are then written again: harmless, idempotent).
type seenCache struct {
	mu sync.Mutex
	m  map[string]struct{}
}

const seenCacheMax = 100_000

func (c *seenCache) has(k string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.m[k]
	return ok
}

func (c *seenCache) add(k string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= seenCacheMax {
		c.m = make(map[string]struct{})
	}
	c.m[k] = struct{}{}
}
