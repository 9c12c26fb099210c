// Package config holds the settings of the acu commands. Every setting is a
// flag with an ACU_* environment variable (the flag name upper-cased, dashes
// as underscores); a flag given on the command line wins over the variable.
// Defaults point at acu-dev on this machine.
package config

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/acu-patrol/acu/internal/store/cassandra"
)

// Config is every setting of the acu services. Zero values are invalid
// unless a field says otherwise; Register sets the defaults.
type Config struct {
	// Kafka is the comma-separated seed brokers; default 127.0.0.1:9092.
	Kafka string
	// KafkaInstanceID makes the process a static member of its consumer
	// groups (Kafka's group.instance.id); default empty: dynamic. It must
	// be unique among the processes of one service and stable across
	// restarts of the same one (a host or StatefulSet pod name).
	KafkaInstanceID string
	// Etcd is the comma-separated etcd endpoints; default 127.0.0.1:2379.
	Etcd string
	// EtcdPrefix prefixes every etcd key; default "/acu/". It must start
	// and end with "/".
	EtcdPrefix string
	// Temporal is the frontend host:port; default 127.0.0.1:7233.
	Temporal string
	// Namespace is the Temporal namespace; default "default".
	Namespace string
	// Store is the long-term store: "sqlite:<path>" or
	// "cassandra://host1,host2/keyspace?consistency=quorum"; default
	// sqlite:<temp dir>/acu-dev/acu.db, the store of acu-dev.
	Store string
	// HTTP is the listen address of /healthz, /readyz, /metrics (and acu-dev's patrol
	// endpoint); default 127.0.0.1:8080; empty disables it.
	HTTP string
	// PatrolURL is where patrol notifications are POSTed; default
	// http://127.0.0.1:8080/patrol, acu-dev's endpoint.
	PatrolURL string
	// PatrolTimeout bounds one notification attempt; default 10s.
	PatrolTimeout time.Duration
	// FollowUpAfter is the follow-up window of new deployments; default 30m.
	FollowUpAfter time.Duration
	// FollowUpSettle is the extra wait after the follow-up window before
	// its check, so results timestamped at its end are archived; default 10s.
	FollowUpSettle time.Duration
	// NotifyMaxAttempts bounds notification attempts; default 0, no limit.
	NotifyMaxAttempts int
	// MaxInFlight bounds concurrent workflow starts per ingest process;
	// default 256.
	MaxInFlight int
	// LogLevel is debug, info, warn or error; default info.
	LogLevel string
}

// DefaultStorePath is the SQLite file acu-dev uses without --data-dir.
func DefaultStorePath() string { return filepath.Join(os.TempDir(), "acu-dev", "acu.db") }

// Register adds the flags (with their defaults) to fs.
func (c *Config) Register(fs *flag.FlagSet) {
	fs.StringVar(&c.Kafka, "kafka", "127.0.0.1:9092", "Kafka seed brokers, comma-separated")
	fs.StringVar(&c.KafkaInstanceID, "kafka-instance-id", "", "static member ID in the consumer groups, stable across restarts (empty: dynamic)")
	fs.StringVar(&c.Etcd, "etcd", "127.0.0.1:2379", "etcd endpoints, comma-separated")
	fs.StringVar(&c.EtcdPrefix, "etcd-prefix", "/acu/", "prefix of every etcd key")
	fs.StringVar(&c.Temporal, "temporal", "127.0.0.1:7233", "Temporal frontend host:port")
	fs.StringVar(&c.Namespace, "namespace", "default", "Temporal namespace")
	fs.StringVar(&c.Store, "store", "sqlite:"+DefaultStorePath(), "long-term store: sqlite:<path> or cassandra://host1,host2/keyspace?consistency=quorum")
	fs.StringVar(&c.HTTP, "http", "127.0.0.1:8080", "listen address of /healthz, /readyz and /metrics (empty: off)")
	fs.StringVar(&c.PatrolURL, "patrol-url", "http://127.0.0.1:8080/patrol", "patrol endpoint notified of deployments")
	fs.DurationVar(&c.PatrolTimeout, "patrol-timeout", 10*time.Second, "timeout of one patrol notification attempt")
	fs.DurationVar(&c.FollowUpAfter, "follow-up-after", 30*time.Minute, "follow-up window of new deployments")
	fs.DurationVar(&c.FollowUpSettle, "follow-up-settle", 10*time.Second, "wait after the follow-up window before checking it")
	fs.IntVar(&c.NotifyMaxAttempts, "notify-max-attempts", 0, "patrol notification attempts before giving up (0: no limit)")
	fs.IntVar(&c.MaxInFlight, "max-in-flight", 256, "concurrent workflow starts per ingest process")
	fs.StringVar(&c.LogLevel, "log-level", "info", "log level: debug, info, warn, error")
}

// EnvName is the environment variable of a flag.
func EnvName(flagName string) string {
	return "ACU_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// Parse parses args, then applies the ACU_* variables of flags not given
// on the command line. getenv is os.Getenv in production.
func Parse(fs *flag.FlagSet, args []string, getenv func(string) string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] {
			return
		}
		if v := getenv(EnvName(f.Name)); v != "" {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", EnvName(f.Name), v, err))
			}
		}
	})
	return errors.Join(errs...)
}

// Validate checks the settings and says what is wrong with each bad one.
func (c *Config) Validate() error {
	var errs []error
	bad := func(name, format string, args ...any) {
		errs = append(errs, fmt.Errorf("--%s (%s): %s", name, EnvName(name), fmt.Sprintf(format, args...)))
	}
	if len(c.KafkaBrokers()) == 0 {
		bad("kafka", "no broker given")
	}
	if id := c.KafkaInstanceID; id != "" && (len(id) > 249 || strings.Trim(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != "") {
		// Kafka's rule for group.instance.id, checked here rather than as
		// an error on every join.
		bad("kafka-instance-id", "%q: up to 249 of the characters a-z A-Z 0-9 . _ -", id)
	}
	if len(c.EtcdEndpoints()) == 0 {
		bad("etcd", "no endpoint given")
	}
	if !strings.HasPrefix(c.EtcdPrefix, "/") || !strings.HasSuffix(c.EtcdPrefix, "/") {
		bad("etcd-prefix", "%q must start and end with /", c.EtcdPrefix)
	}
	if c.Temporal == "" {
		bad("temporal", "empty")
	}
	if c.Namespace == "" {
		bad("namespace", "empty")
	}
	if err := c.checkStore(); err != nil {
		bad("store", "%v", err)
	}
	if u, err := url.Parse(c.PatrolURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("patrol-url", "%q is not an http(s) URL", c.PatrolURL)
	}
	if c.PatrolTimeout <= 0 {
		bad("patrol-timeout", "must be positive")
	}
	if c.FollowUpAfter <= 0 {
		bad("follow-up-after", "must be positive")
	}
	if c.FollowUpSettle < 0 {
		bad("follow-up-settle", "must not be negative")
	}
	if c.NotifyMaxAttempts < 0 {
		bad("notify-max-attempts", "must be 0 (no limit) or more")
	}
	if c.MaxInFlight <= 0 {
		bad("max-in-flight", "must be positive")
	}
	if _, err := c.SlogLevel(); err != nil {
		bad("log-level", "%v", err)
	}
	return errors.Join(errs...)
}

// KafkaBrokers splits Kafka.
func (c *Config) KafkaBrokers() []string { return splitList(c.Kafka) }

// EtcdEndpoints splits Etcd.
func (c *Config) EtcdEndpoints() []string { return splitList(c.Etcd) }

// IsCassandra tells whether Store names a Cassandra cluster.
func (c *Config) IsCassandra() bool { return strings.HasPrefix(c.Store, cassandra.Scheme+"://") }

// Cassandra parses a cassandra:// store.
func (c *Config) Cassandra() (cassandra.Config, error) { return cassandra.ParseURL(c.Store) }

func (c *Config) checkStore() error {
	if c.IsCassandra() {
		_, err := c.Cassandra()
		return err
	}
	_, err := c.SQLitePath()
	return err
}

// SQLitePath returns the file of a "sqlite:<path>" store.
func (c *Config) SQLitePath() (string, error) {
	path, ok := strings.CutPrefix(c.Store, "sqlite:")
	if !ok {
		return "", fmt.Errorf("%q: unsupported store, want sqlite:<path> or cassandra://host1,host2/keyspace", c.Store)
	}
	if path == "" {
		return "", errors.New("sqlite: needs a file path")
	}
	return path, nil
}

// SlogLevel parses LogLevel.
func (c *Config) SlogLevel() (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return 0, fmt.Errorf("%q is not debug, info, warn or error", c.LogLevel)
	}
	return l, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
