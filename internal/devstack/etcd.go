package devstack

import (
	"fmt"
	"net/url"
	"os"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// Etcd is an embedded single-member etcd server.
type Etcd struct {
	e   *embed.Etcd
	dir string
	tmp bool
}

// StartEtcd starts an etcd member serving clients on clientAddr (host:port)
// with its data in dataDir (a temporary directory, removed on Stop, when
// empty). The peer port is picked free on loopback. It returns once the
// member serves.
func StartEtcd(clientAddr, dataDir string) (*Etcd, error) {
	tmp := dataDir == ""
	if tmp {
		d, err := os.MkdirTemp("", "acu-etcd-")
		if err != nil {
			return nil, err
		}
		dataDir = d
	}
	peer, err := FreeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	cfg := embed.NewConfig()
	cfg.Name = "acu-dev"
	cfg.Dir = dataDir
	// The member logs errors as it shuts down; acu-dev's own logs say
	// what matters.
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	cu := url.URL{Scheme: "http", Host: clientAddr}
	pu := url.URL{Scheme: "http", Host: peer}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{cu}, []url.URL{cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{pu}, []url.URL{pu}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.ListenMetricsUrls = nil
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		if tmp {
			_ = os.RemoveAll(dataDir)
		}
		return nil, fmt.Errorf("starting etcd on %s: %w", clientAddr, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("etcd failed to start: %w", err)
	case <-time.After(60 * time.Second):
		e.Close()
		return nil, fmt.Errorf("etcd not ready after 60s")
	}
	return &Etcd{e: e, dir: dataDir, tmp: tmp}, nil
}

// Endpoint is the client URL.
func (e *Etcd) Endpoint() string { return e.e.Clients[0].Addr().String() }

// Stop stops the member and removes a temporary data directory.
func (e *Etcd) Stop() {
	e.e.Close()
	if e.tmp {
		_ = os.RemoveAll(e.dir)
	}
}
