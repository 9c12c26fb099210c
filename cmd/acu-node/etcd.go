package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"strings"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/acu-patrol/acu/internal/devstack"
)

// etcdConfig is the configuration of acu-node etcd.
type etcdConfig struct {
	// Name is the member name, one of those in Cluster. Required.
	Name string
	// Dir is the data directory. A directory holding a write-ahead log
	// makes the member rejoin the cluster recorded there (Cluster is then
	// ignored); otherwise the member starts a new cluster with Cluster.
	// Required.
	Dir string
	// Client is the IP:port clients connect to (plain http); the member
	// listens there only. Required.
	Client string
	// Peer is the IP:port other members connect to (plain http); the member
	// listens there only. Required.
	Peer string
	// Cluster is the static membership, NAME=http://IP:PORT,... It must
	// list Name with Peer's URL. Required.
	Cluster string
	// LogLevel is the level of etcd's logs on stderr (debug, info, warn,
	// error); default warn.
	LogLevel string
}

func (c *etcdConfig) register(fs *flag.FlagSet) {
	fs.StringVar(&c.Name, "name", "", "member name, one of those in --cluster (required)")
	fs.StringVar(&c.Dir, "dir", "", "data directory; one with a WAL rejoins the cluster recorded there (required)")
	fs.StringVar(&c.Client, "client", "", "client listen address IP:PORT (required)")
	fs.StringVar(&c.Peer, "peer", "", "peer listen address IP:PORT (required)")
	fs.StringVar(&c.Cluster, "cluster", "", "initial cluster NAME=http://IP:PORT,... including this member (required)")
	fs.StringVar(&c.LogLevel, "log-level", "warn", "etcd log level on stderr: debug, info, warn or error")
}

// validate checks c and returns the log level.
func (c *etcdConfig) validate() (zapcore.Level, error) {
	for _, f := range []struct{ name, value string }{
		{"--name", c.Name}, {"--dir", c.Dir}, {"--client", c.Client}, {"--peer", c.Peer}, {"--cluster", c.Cluster},
	} {
		if f.value == "" {
			return 0, fmt.Errorf("%w: %s is required", errUsage, f.name)
		}
	}
	for _, a := range []struct{ name, value string }{{"--client", c.Client}, {"--peer", c.Peer}} {
		if err := checkIPPort(a.value); err != nil {
			return 0, fmt.Errorf("%w: %s: %v", errUsage, a.name, err)
		}
	}
	found := false
	for _, m := range strings.Split(c.Cluster, ",") {
		name, url, ok := strings.Cut(m, "=")
		if !ok || name == "" || url == "" {
			return 0, fmt.Errorf("%w: --cluster: %q is not NAME=URL", errUsage, m)
		}
		if name == c.Name {
			if url != "http://"+c.Peer {
				return 0, fmt.Errorf("%w: --cluster gives %s the URL %s, --peer says http://%s", errUsage, name, url, c.Peer)
			}
			found = true
		}
	}
	if !found {
		return 0, fmt.Errorf("%w: --cluster does not list --name %s", errUsage, c.Name)
	}
	level, err := zapcore.ParseLevel(c.LogLevel)
	if err != nil {
		return 0, fmt.Errorf("%w: --log-level: %v", errUsage, err)
	}
	return level, nil
}

// checkIPPort checks that addr is IP:PORT with a literal IP, so that the
// listener binds that address only.
func checkIPPort(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if net.ParseIP(host) == nil {
		return fmt.Errorf("%q: the host must be an IP address", addr)
	}
	if port == "" || port == "0" {
		return fmt.Errorf("%q: a port is required", addr)
	}
	return nil
}

func runEtcd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c etcdConfig
	fs := flag.NewFlagSet("acu-node etcd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	level, err := c.validate()
	if err != nil {
		return err
	}
	zc := zap.NewProductionConfig()
	zc.Level = zap.NewAtomicLevelAt(level)
	zc.OutputPaths, zc.ErrorOutputPaths = []string{"stderr"}, []string{"stderr"}
	zc.Sampling = nil
	lg, err := zc.Build()
	if err != nil {
		return fmt.Errorf("etcd logger: %w", err)
	}
	defer func() { _ = lg.Sync() }()

	// Until a quorum of members runs, the member is not ready: wait as long
	// as it takes (or until a signal).
	e, err := devstack.StartEtcdMember(ctx, devstack.EtcdOptions{
		Name: c.Name, ClientAddr: c.Client, PeerAddr: c.Peer, InitialCluster: c.Cluster, DataDir: c.Dir, Logger: lg,
	})
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintf(stdout, "acu-node: etcd member %s stopped before it was ready\n", c.Name)
			return nil
		}
		return err
	}
	fmt.Fprintf(stdout, "acu-node: ready: etcd member %s serves clients on http://%s\n", c.Name, c.Client)
	var runErr error
	select {
	case <-ctx.Done():
	case err := <-e.Err():
		runErr = fmt.Errorf("etcd member %s: %w", c.Name, err)
	case <-e.Done():
		runErr = fmt.Errorf("etcd member %s stopped on its own (removed from the cluster?)", c.Name)
	}
	// Closing, the member logs an error with a stack trace for each of its
	// listeners ("use of closed network connection"): all expected.
	zc.Level.SetLevel(zapcore.FatalLevel)
	e.Stop()
	if runErr == nil {
		fmt.Fprintf(stdout, "acu-node: etcd member %s stopped\n", c.Name)
	}
	return runErr
}
