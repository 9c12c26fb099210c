package devstack

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// etcdStartTimeout bounds StartEtcd's wait for the member to serve.
const etcdStartTimeout = 60 * time.Second

// EtcdOptions configures an embedded etcd member.
type EtcdOptions struct {
	// Name is the member name; empty means "acu-dev". With InitialCluster it
	// must be one of the names listed there.
	Name string
	// ClientAddr is host:port the member serves clients on (plain http),
	// e.g. "127.0.0.1:2379". Required.
	ClientAddr string
	// PeerAddr is host:port the member serves peers on (plain http); empty
	// picks a free port on 127.0.0.1, which only suits a single member.
	PeerAddr string
	// InitialCluster is the static membership of a new cluster, e.g.
	// "e1=http://127.0.0.41:2380,e2=http://127.0.0.42:2380"; empty means
	// this member alone. It is read only on the first start: a member whose
	// DataDir already holds a write-ahead log rejoins the cluster recorded
	// there.
	InitialCluster string
	// DataDir holds the member's data; empty means a temporary directory,
	// removed on Stop.
	DataDir string
	// Logger receives the member's logs; nil discards them. etcd logs a lot
	// at Info level, and errors while it shuts down.
	Logger *zap.Logger
}

// Etcd is an embedded etcd member.
type Etcd struct {
	e   *embed.Etcd
	dir string
	tmp bool
}

// StartEtcd starts a single-member etcd cluster serving clients on
// clientAddr (host:port) with its data in dataDir (a temporary directory,
// removed on Stop, when empty). The peer port is picked free on loopback.
// It returns once the member serves, or fails after a minute.
func StartEtcd(clientAddr, dataDir string) (*Etcd, error) {
	ctx, cancel := context.WithTimeout(context.Background(), etcdStartTimeout)
	defer cancel()
	return StartEtcdMember(ctx, EtcdOptions{ClientAddr: clientAddr, DataDir: dataDir})
}

// StartEtcdMember starts an etcd member and returns once it serves
// clients: for a member of a larger cluster, once a quorum of members runs
// and this one has joined. It fails when the member does, or when ctx ends
// first.
func StartEtcdMember(ctx context.Context, o EtcdOptions) (*Etcd, error) {
	if o.ClientAddr == "" {
		return nil, fmt.Errorf("etcd: no client address")
	}
	if o.Name == "" {
		o.Name = "acu-dev"
	}
	if o.PeerAddr == "" {
		peer, err := FreeLoopbackAddr()
		if err != nil {
			return nil, err
		}
		o.PeerAddr = peer
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	tmp := o.DataDir == ""
	if tmp {
		d, err := os.MkdirTemp("", "acu-etcd-")
		if err != nil {
			return nil, err
		}
		o.DataDir = d
	}
	cfg := embed.NewConfig()
	cfg.Name = o.Name
	cfg.Dir = o.DataDir
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(o.Logger)
	cu := url.URL{Scheme: "http", Host: o.ClientAddr}
	pu := url.URL{Scheme: "http", Host: o.PeerAddr}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{cu}, []url.URL{cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{pu}, []url.URL{pu}
	cfg.InitialCluster = o.InitialCluster
	if cfg.InitialCluster == "" {
		cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	}
	cfg.ListenMetricsUrls = nil
	fail := func(err error) (*Etcd, error) {
		if tmp {
			_ = os.RemoveAll(o.DataDir)
		}
		return nil, err
	}
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return fail(fmt.Errorf("starting etcd on %s: %w", o.ClientAddr, err))
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return fail(fmt.Errorf("etcd failed to start: %w", err))
	case <-e.Server.StopNotify():
		e.Close()
		return fail(fmt.Errorf("etcd stopped while starting"))
	case <-ctx.Done():
		e.Close()
		return fail(fmt.Errorf("etcd not ready: %w", ctx.Err()))
	}
	return &Etcd{e: e, dir: o.DataDir, tmp: tmp}, nil
}

// Endpoint is the client URL.
func (e *Etcd) Endpoint() string { return e.e.Clients[0].Addr().String() }

// Err receives an error when a listener of the member fails.
func (e *Etcd) Err() <-chan error { return e.e.Err() }

// Done is closed when the member's server stops (after Stop, or when it
// stops on its own, e.g. removed from the cluster).
func (e *Etcd) Done() <-chan struct{} { return e.e.Server.StopNotify() }

// Stop stops the member and removes a temporary data directory.
func (e *Etcd) Stop() {
	e.e.Close()
	if e.tmp {
		_ = os.RemoveAll(e.dir)
	}
}
