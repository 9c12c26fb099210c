// Package chaos runs the production topology on one machine — three
// Cassandra nodes, three Kafka brokers, three etcd members, a Temporal
// server on PostgreSQL and the acu services as separate processes, each
// node on its own loopback address and in its own cgroup — and proves the
// system's promises under faults: a nemesis kills and partitions nodes on a
// seeded schedule while a workload runs, and a checker compares what the
// system did with an independent computation from what was produced.
package chaos

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.temporal.io/sdk/client"
	"golang.org/x/sync/errgroup"
)

// Kind is what a node runs.
type Kind string

// The kinds of node of the topology.
const (
	Kafka     Kind = "kafka"
	Cassandra Kind = "cassandra"
	Postgres  Kind = "postgres"
	Etcd      Kind = "etcd"
	Temporal  Kind = "temporal"
	Ingest    Kind = "ingest"
	Archive   Kind = "archive"
	Worker    Kind = "worker"
)

// The fixed parts of the topology: one loopback address per node, in
// 127.0.N.0/24 (N is the cluster's Net, 0 by default), its cgroups.
const (
	cgroupRoot   = "/sys/fs/cgroup/unified"
	cgroupPrefix = "acu-chaos"
	// The Kafka cluster id every broker is formatted with (22 characters
	// of base64, as kafka-storage random-uuid prints).
	kafkaClusterID = "YWN1LWNoYW9zLWNsdXN0ZQ"
	// FollowUpAfter is the follow-up window of the deployments the run
	// makes: short, so that every deployment reaches a final status.
	FollowUpAfter  = 20 * time.Second
	followUpSettle = 5 * time.Second
)

var cassandraTokens = []string{"-9223372036854775808", "-3074457345618258603", "3074457345618258602"}

// Node is one process of the topology.
type Node struct {
	Name string // kafka1, cassandra2, ingest1, …
	Kind Kind
	Addr string // its loopback address
	Dir  string // its state: data, logs, pid files
	ID   int    // 1-based index among the nodes of its kind

	c *Cluster

	mu     sync.Mutex
	exited chan struct{} // closed when the process launched by us exits
}

// Cluster is the whole topology.
type Cluster struct {
	Dir   string // state root
	Repo  string // the repository (deploy/local scripts)
	Bin   string // where acu and acu-node are
	Net   int    // the third byte of every address
	Nodes []*Node
	Log   *slog.Logger
}

// NewCluster lays out the topology under dir, on 127.0.net.0/24.
func NewCluster(dir, repo, bin string, net int, log *slog.Logger) *Cluster {
	c := &Cluster{Dir: dir, Repo: repo, Bin: bin, Net: net, Log: log}
	add := func(kind Kind, n int, base int) {
		for i := 1; i <= n; i++ {
			name := fmt.Sprintf("%s%d", kind, i)
			if n == 1 {
				name = string(kind)
			}
			c.Nodes = append(c.Nodes, &Node{Name: name, Kind: kind, ID: i, Addr: fmt.Sprintf("127.0.%d.%d", net, base+i-1),
				Dir: filepath.Join(dir, name), c: c})
		}
	}
	add(Kafka, 3, 11)
	add(Cassandra, 3, 21)
	add(Postgres, 1, 31)
	add(Etcd, 3, 41)
	add(Temporal, 1, 51)
	add(Ingest, 2, 61)
	add(Archive, 2, 63)
	add(Worker, 2, 65)
	return c
}

// Of returns the nodes of kind k.
func (c *Cluster) Of(k Kind) []*Node {
	var ns []*Node
	for _, n := range c.Nodes {
		if n.Kind == k {
			ns = append(ns, n)
		}
	}
	return ns
}

// Node returns the node called name, or nil.
func (c *Cluster) Node(name string) *Node {
	for _, n := range c.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

func (c *Cluster) endpoints(k Kind, port int) []string {
	var es []string
	for _, n := range c.Of(k) {
		es = append(es, fmt.Sprintf("%s:%d", n.Addr, port))
	}
	return es
}

// KafkaBrokers, EtcdEndpoints, TemporalAddr and StoreURL are what clients
// of the topology are given.
func (c *Cluster) KafkaBrokers() []string  { return c.endpoints(Kafka, 9092) }
func (c *Cluster) EtcdEndpoints() []string { return c.endpoints(Etcd, 2379) }
func (c *Cluster) TemporalAddr() string    { return c.Of(Temporal)[0].Addr + ":7233" }
func (c *Cluster) CassandraHosts() []string {
	var hs []string
	for _, n := range c.Of(Cassandra) {
		hs = append(hs, n.Addr)
	}
	return hs
}
func (c *Cluster) StoreURL() string {
	return "cassandra://" + strings.Join(c.CassandraHosts(), ",") + "/acu?consistency=quorum&replication=SimpleStrategy:3"
}

// PatrolAddr is where the run serves the patrol endpoint the workers notify.
func (c *Cluster) PatrolAddr() string { return fmt.Sprintf("127.0.%d.70:8080", c.Net) }

// AcuEnv is the environment every acu process of the topology runs with.
func (c *Cluster) AcuEnv() []string {
	return []string{
		"ACU_KAFKA=" + strings.Join(c.KafkaBrokers(), ","),
		"ACU_ETCD=" + strings.Join(c.EtcdEndpoints(), ","),
		"ACU_TEMPORAL=" + c.TemporalAddr(),
		"ACU_STORE=" + c.StoreURL(),
		"ACU_PATROL_URL=http://" + c.PatrolAddr() + "/patrol",
		"ACU_FOLLOW_UP_AFTER=" + FollowUpAfter.String(),
		"ACU_FOLLOW_UP_SETTLE=" + followUpSettle.String(),
		"ACU_LOG_LEVEL=info",
	}
}

// cgroupName is the cgroup (under cgroupRoot) that holds the cluster's
// nodes, one child each.
func (c *Cluster) cgroupName() string {
	if c.Net == 0 {
		return cgroupPrefix
	}
	return fmt.Sprintf("%s-%d", cgroupPrefix, c.Net)
}

// chain is the iptables chain of the cluster's partitions.
func (c *Cluster) chain() string {
	if c.Net == 0 {
		return chainPrefix
	}
	return fmt.Sprintf("%s-%d", chainPrefix, c.Net)
}

func (n *Node) cgroup() string { return filepath.Join(cgroupRoot, n.c.cgroupName(), n.Name) }

// CgroupPath is the node's cgroup as iptables' cgroup match names it.
func (n *Node) CgroupPath() string { return n.c.cgroupName() + "/" + n.Name }

func (n *Node) logFile() string { return filepath.Join(n.Dir, n.Name+".log") }

// script is the deploy/local script that runs the node, and its server
// argument; empty for the nodes this package launches itself.
func (n *Node) script() (path, server string) {
	switch n.Kind {
	case Kafka, Cassandra:
		return filepath.Join(n.c.Repo, "deploy/local/servers.sh"), string(n.Kind)
	case Postgres:
		return filepath.Join(n.c.Repo, "deploy/local/postgres.sh"), ""
	}
	return "", ""
}

// scriptEnv is the environment of the node's deploy/local script.
func (n *Node) scriptEnv() []string {
	env := append(os.Environ(), "ACU_LOCAL_DIR="+n.Dir, "ACU_HOST="+n.Addr, "ACU_CGROUP="+n.cgroup())
	switch n.Kind {
	case Kafka:
		var voters []string
		for _, k := range n.c.Of(Kafka) {
			voters = append(voters, fmt.Sprintf("%d@%s:9093", k.ID, k.Addr))
		}
		env = append(env, "ACU_KAFKA_NODE_ID="+strconv.Itoa(n.ID), "ACU_KAFKA_VOTERS="+strings.Join(voters, ","),
			"ACU_KAFKA_CLUSTER_ID="+kafkaClusterID, "ACU_KAFKA_REPLICATION=3", "ACU_KAFKA_HEAP=384m",
			"ACU_KAFKA_TIMEOUT=180")
	case Cassandra:
		env = append(env, "ACU_CASSANDRA_SEEDS="+strings.Join(n.c.CassandraHosts(), ","),
			"ACU_CASSANDRA_INITIAL_TOKEN="+cassandraTokens[n.ID-1], "ACU_CASSANDRA_HEAP=768m",
			"ACU_CASSANDRA_TIMEOUT=300")
	case Postgres:
		env = append(env, "ACU_PG_HOST="+n.Addr, "ACU_PG_PORT=5432")
	}
	return env
}

// command is the program and arguments of a node this package launches.
func (n *Node) command() (string, []string, []string) {
	node := filepath.Join(n.c.Bin, "acu-node")
	acu := filepath.Join(n.c.Bin, "acu")
	switch n.Kind {
	case Etcd:
		var members []string
		for _, e := range n.c.Of(Etcd) {
			members = append(members, fmt.Sprintf("%s=http://%s:2380", e.Name, e.Addr))
		}
		return node, []string{"etcd", "--name", n.Name, "--dir", filepath.Join(n.Dir, "data"),
			"--client", n.Addr + ":2379", "--peer", n.Addr + ":2380", "--cluster", strings.Join(members, ",")}, nil
	case Temporal:
		return node, []string{"temporal", "--postgres", n.c.Of(Postgres)[0].Addr + ":5432", "--pg-user", "postgres",
			"--db", "temporal", "--visibility-db", "temporal_visibility", "--shards", "4",
			"--address", n.Addr, "--frontend-port", "7233", "--ui-port", "8233", "--namespace", "default",
			"--retention", "72h"}, nil
	case Ingest, Archive, Worker:
		// Each process is a host of its own: its name is its static
		// member ID in the consumer groups, so a restart takes its
		// partitions back without waiting for its old session to expire.
		return acu, []string{string(n.Kind)}, append(n.c.AcuEnv(), "ACU_HTTP="+n.Addr+":8080", "ACU_KAFKA_INSTANCE_ID="+n.Name)
	}
	panic("no command for " + n.Name)
}

// Launch starts the node's process, in its own session and cgroup, without
// waiting until it is ready.
func (n *Node) Launch(ctx context.Context) error {
	if err := os.MkdirAll(n.Dir, 0o755); err != nil {
		return err
	}
	if err := os.MkdirAll(n.cgroup(), 0o755); err != nil {
		return fmt.Errorf("%s: creating its cgroup: %w", n.Name, err)
	}
	if path, server := n.script(); path != "" {
		args := []string{path, "launch"}
		if server != "" {
			args = append(args, server)
		}
		if n.Kind == Postgres {
			args = []string{path, "start"}
		}
		return n.runScript(ctx, args...)
	}
	prog, args, env := n.command()
	logf, err := os.OpenFile(n.logFile(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cg, err := os.Open(n.cgroup())
	if err != nil {
		return err
	}
	defer cg.Close()
	cmd := exec.Command(prog, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, UseCgroupFD: true, CgroupFD: int(cg.Fd())}
	fmt.Fprintf(logf, "--- %s launched %s %s\n", time.Now().UTC().Format(time.RFC3339Nano), prog, strings.Join(args, " "))
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%s: %w", n.Name, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }() // reap it: a zombie would stay in the cgroup
	n.mu.Lock()
	n.exited = exited
	n.mu.Unlock()
	return nil
}

func (n *Node) runScript(ctx context.Context, args ...string) error {
	cmd := exec.CommandContext(ctx, "bash", args...)
	if n.Kind == Kafka || n.Kind == Cassandra {
		// The JVMs run at a lower CPU priority (nice 10). In production
		// every node has its own host; here two cores carry six JVMs, and a
		// Cassandra node's restart (commit log replay, hints, compaction)
		// starved every other process for a minute: Kafka commits, etcd
		// reads and the acu services timed out together, and the run
		// measured this machine's oversubscription, not the system. Between
		// the JVMs nothing changes; the small processes get the CPU first.
		cmd = exec.CommandContext(ctx, "nice", append([]string{"-n", "10", "bash"}, args...)...)
	}
	cmd.Env = n.scriptEnv()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %s: %w\n%s", n.Name, strings.Join(args[1:], " "), err, lastLines(out.String(), 30))
	}
	return nil
}

func lastLines(s string, k int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > k {
		lines = lines[len(lines)-k:]
	}
	return strings.Join(lines, "\n")
}

// CPUTime is the CPU time the node's processes have used since its cgroup
// was made (its cpu.stat usage_usec); 0 when it cannot be read.
func (n *Node) CPUTime() time.Duration {
	b, err := os.ReadFile(filepath.Join(n.cgroup(), "cpu.stat"))
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "usage_usec "); ok {
			us, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return time.Duration(us) * time.Microsecond
		}
	}
	return 0
}

// CPUTimes are every node's CPUTime, by name.
func (c *Cluster) CPUTimes() map[string]time.Duration {
	out := map[string]time.Duration{}
	for _, n := range c.Nodes {
		out[n.Name] = n.CPUTime()
	}
	return out
}

// cpuSince is the CPU time each node used between two CPUTimes: a node
// whose cgroup was made again in between (its count restarted) is counted
// from zero.
func cpuSince(before, after map[string]time.Duration) map[string]time.Duration {
	out := map[string]time.Duration{}
	for n, a := range after {
		if b := before[n]; a >= b {
			out[n] = a - b
		} else {
			out[n] = a
		}
	}
	return out
}

// Pids are the processes in the node's cgroup.
func (n *Node) Pids() []int {
	b, err := os.ReadFile(filepath.Join(n.cgroup(), "cgroup.procs"))
	if err != nil {
		return nil
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		if p, err := strconv.Atoi(f); err == nil {
			pids = append(pids, p)
		}
	}
	return pids
}

// Kill SIGKILLs every process of the node and waits until they are gone.
func (n *Node) Kill(ctx context.Context) error {
	if _, err := os.Stat(n.cgroup()); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	// Not cgroup.kill: after it, a process cloned into the cgroup
	// (CLONE_INTO_CGROUP, as Launch does) is killed at birth on this kernel.
	for n.populated() {
		for _, pid := range n.Pids() {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: processes %v outlive SIGKILL: %w", n.Name, n.Pids(), ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	n.mu.Lock()
	exited := n.exited
	n.mu.Unlock()
	if exited != nil {
		<-exited
	}
	return nil
}

// Running tells whether the node has a live process.
func (n *Node) Running() bool { return len(n.Pids()) > 0 }

// populated tells whether any process, exiting ones included, is still in
// the node's cgroup (cgroup.events), which a restart must wait for: a dying
// process may still hold its ports.
func (n *Node) populated() bool {
	b, err := os.ReadFile(filepath.Join(n.cgroup(), "cgroup.events"))
	if err != nil {
		return false
	}
	return strings.Contains(string(b), "populated 1")
}

// Ready waits until the node answers a protocol round trip.
func (n *Node) Ready(ctx context.Context) error {
	if path, server := n.script(); path != "" {
		if n.Kind == Postgres {
			return n.runScript(ctx, path, "wait")
		}
		return n.runScript(ctx, path, "wait", server)
	}
	probe := n.probe()
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	var last error
	for {
		if !n.Running() {
			return fmt.Errorf("%s exited before it was ready:\n%s", n.Name, n.Tail(25))
		}
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		last = probe(pctx)
		cancel()
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %v (%w)\n%s", n.Name, last, ctx.Err(), n.Tail(25))
		case <-t.C:
		}
	}
}

func (n *Node) probe() func(context.Context) error {
	switch n.Kind {
	case Etcd:
		return func(ctx context.Context) error {
			ep := n.Addr + ":2379"
			cl, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 2 * time.Second, Logger: zapNop()})
			if err != nil {
				return err
			}
			defer cl.Close()
			st, err := cl.Status(ctx, ep)
			if err != nil {
				return err
			}
			if st.Leader == 0 {
				return errors.New("no leader")
			}
			return nil
		}
	case Temporal:
		return func(ctx context.Context) error {
			nc, err := client.NewNamespaceClient(client.Options{HostPort: n.c.TemporalAddr(), Logger: sdkNop{}})
			if err != nil {
				return err
			}
			defer nc.Close()
			_, err = nc.Describe(ctx, "default")
			return err
		}
	default: // the acu services: their readiness endpoint
		return func(ctx context.Context) error {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.Addr+":8080/readyz", nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return err
			}
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("readyz %d: %s", resp.StatusCode, bytes.TrimSpace(body))
			}
			return nil
		}
	}
}

// Tail is the end of the node's log.
func (n *Node) Tail(k int) string {
	file := n.logFile()
	switch n.Kind {
	case Kafka, Cassandra:
		file = filepath.Join(n.Dir, string(n.Kind), "logs", string(n.Kind)+".log")
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	return lastLines(string(b), k)
}

// Start launches the node and waits until it is ready.
func (n *Node) Start(ctx context.Context) error {
	if err := n.Launch(ctx); err != nil {
		return err
	}
	return n.Ready(ctx)
}

// Restart SIGKILLs the node if it runs, then starts it again on its data.
func (n *Node) Restart(ctx context.Context) error {
	if err := n.Kill(ctx); err != nil {
		return err
	}
	return n.Start(ctx)
}

// StartAll launches the nodes of each group at once and waits until all
// are ready, group after group.
func (c *Cluster) StartAll(ctx context.Context, groups ...[]*Node) error {
	for _, g := range groups {
		began := time.Now()
		for _, n := range g {
			if err := n.Launch(ctx); err != nil {
				return err
			}
		}
		eg, ectx := errgroup.WithContext(ctx)
		for _, n := range g {
			eg.Go(func() error { return n.Ready(ectx) })
		}
		if err := eg.Wait(); err != nil {
			return err
		}
		var names []string
		for _, n := range g {
			names = append(names, n.Name)
		}
		c.Log.Info("ready", "nodes", strings.Join(names, " "), "took", time.Since(began).Round(time.Millisecond))
	}
	return nil
}

// Down kills every node, removes the cgroups and the network rules, and
// stops PostgreSQL through its script. It tries everything and reports the
// first failure.
func (c *Cluster) Down(ctx context.Context) error {
	var errs []error
	if err := c.HealAll(); err != nil {
		errs = append(errs, err)
	}
	if err := c.removeChain(); err != nil {
		errs = append(errs, err)
	}
	for i := len(c.Nodes) - 1; i >= 0; i-- {
		n := c.Nodes[i]
		if n.Kind == Postgres {
			if path, _ := n.script(); path != "" {
				if _, err := os.Stat(n.Dir); err == nil {
					if err := n.runScript(ctx, path, "stop"); err != nil {
						errs = append(errs, err)
					}
				}
			}
		}
		if err := n.Kill(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if err := removeCgroupDir(filepath.Join(cgroupRoot, c.cgroupName())); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// removeCgroupDir removes the harness's cgroup directory and any child left
// by an earlier run (killing what is still in it).
func removeCgroupDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		sub := filepath.Join(dir, e.Name())
		_ = os.WriteFile(filepath.Join(sub, "cgroup.kill"), []byte("1"), 0o644) // it is removed next: no launch follows
		for i := 0; i < 250; i++ {
			if err = os.Remove(sub); err == nil || errors.Is(err, os.ErrNotExist) {
				break
			}
			time.Sleep(20 * time.Millisecond) // the kernel reaps asynchronously; nothing to wait on
		}
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("removing cgroup %s: %w", sub, err)
		}
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing cgroup %s: %w", dir, err)
	}
	return nil
}
