package chaos

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The kinds of fault the nemesis injects; the short schedule has each once.
const (
	KillAcu          = "kill-acu"          // SIGKILL one acu process, restart it
	KillCassandra    = "kill-cassandra"    // SIGKILL one Cassandra node, restart it
	KillKafka        = "kill-kafka"        // SIGKILL one Kafka broker, restart it
	KillEtcd         = "kill-etcd"         // SIGKILL one etcd member, restart it
	RestartTemporal  = "restart-temporal"  // SIGKILL the Temporal server, restart it
	PartitionEtcd    = "partition-etcd"    // an ingest and one etcd member cut from the etcd majority
	IsolateCassandra = "isolate-cassandra" // one Cassandra node cut from every other node
	PartitionKafka   = "partition-kafka"   // one Kafka broker cut from the other brokers
	PatrolFlaky      = "patrol-flaky"      // the patrol endpoint fails 30 % of requests
	PatrolDown       = "patrol-down"       // the patrol endpoint refuses connections
)

// FaultKinds lists every kind, in a fixed order.
var FaultKinds = []string{KillAcu, KillCassandra, KillKafka, KillEtcd, RestartTemporal,
	PartitionEtcd, IsolateCassandra, PartitionKafka, PatrolFlaky, PatrolDown}

// Fault is one planned fault and, once run, what happened.
type Fault struct {
	Kind    string
	Targets []string      // node names (kills, partitions: first side)
	Hold    time.Duration // how long it lasts

	// Injected: the fault began; Healed: its hold ended and healing began
	// (a restart, rules removed); Back: the healing returned (a restarted
	// node answers its readiness check); Recovered: both consumer groups
	// caught up.
	Injected, Healed, Back, Recovered time.Time
	Err                               error
	// CPU is the CPU time each node used from Injected to Recovered: on a
	// machine shared by every node, a slow recovery is often a saturated one.
	CPU map[string]time.Duration
}

// Busy renders the cores the nodes kept busy from injection to recovery,
// in all and the busiest node's share: "1.9 (cassandra1 0.5)".
func (f Fault) Busy() string {
	d := f.Recovered.Sub(f.Injected)
	if len(f.CPU) == 0 || d <= 0 {
		return "-"
	}
	var total time.Duration
	top := ""
	for _, n := range slices.Sorted(maps.Keys(f.CPU)) {
		total += f.CPU[n]
		if top == "" || f.CPU[n] > f.CPU[top] {
			top = n
		}
	}
	cores := func(t time.Duration) string { return strconv.FormatFloat(t.Seconds()/d.Seconds(), 'f', 1, 64) }
	return fmt.Sprintf("%s (%s %s)", cores(total), top, cores(f.CPU[top]))
}

func (f Fault) String() string {
	return fmt.Sprintf("%-17s %-28s hold %s", f.Kind, strings.Join(f.Targets, ","), f.Hold)
}

// Plan draws n faults from seed: every kind once in a seeded order, then
// kinds drawn at random. only restricts the kinds (none: FaultKinds).
func Plan(c *Cluster, seed uint64, n int, only ...string) []Fault {
	all := FaultKinds
	if len(only) > 0 {
		all = only
	}
	rng := rand.New(rand.NewPCG(seed, 0xac0))
	pick := func(k Kind) string {
		ns := c.Of(k)
		return ns[rng.IntN(len(ns))].Name
	}
	hold := func() time.Duration { return time.Duration(10+rng.IntN(16)) * time.Second }
	kinds := append([]string(nil), all...)
	rng.Shuffle(len(kinds), func(i, j int) { kinds[i], kinds[j] = kinds[j], kinds[i] })
	for len(kinds) < n {
		kinds = append(kinds, all[rng.IntN(len(all))])
	}
	var plan []Fault
	for _, k := range kinds[:max(n, 0)] {
		f := Fault{Kind: k, Hold: hold()}
		switch k {
		case KillAcu:
			acu := append(append(c.Of(Ingest), c.Of(Archive)...), c.Of(Worker)...)
			f.Targets = []string{acu[rng.IntN(len(acu))].Name}
		case KillCassandra:
			f.Targets = []string{pick(Cassandra)}
		case KillKafka, PartitionKafka:
			f.Targets = []string{pick(Kafka)}
		case KillEtcd:
			f.Targets = []string{pick(Etcd)}
		case RestartTemporal:
			f.Targets = []string{"temporal"}
		case PartitionEtcd:
			f.Targets = []string{pick(Etcd), pick(Ingest)}
		case IsolateCassandra:
			f.Targets = []string{pick(Cassandra)}
		case PatrolFlaky, PatrolDown:
			f.Targets = []string{"patrol"}
		}
		plan = append(plan, f)
	}
	return plan
}

// Nemesis runs faults against a cluster.
type Nemesis struct {
	C      *Cluster
	Patrol *PatrolEndpoint
	Rate   float64 // the simulator's, to judge when the consumers caught up
}

// Inject starts f and returns the function that heals it.
func (m *Nemesis) Inject(ctx context.Context, f *Fault) (heal func(context.Context) error, err error) {
	nodes := make([]*Node, 0, len(f.Targets))
	for _, t := range f.Targets {
		if n := m.C.Node(t); n != nil {
			nodes = append(nodes, n)
		}
	}
	switch f.Kind {
	case KillAcu, KillCassandra, KillKafka, KillEtcd, RestartTemporal:
		n := nodes[0]
		if err := n.Kill(ctx); err != nil {
			return nil, err
		}
		return n.Start, nil
	case PartitionEtcd:
		etcd, ingest := nodes[0], nodes[1]
		majority := m.C.Others(etcd)
		var rest []*Node
		for _, n := range majority {
			if n.Kind == Etcd {
				rest = append(rest, n)
			}
		}
		healNet, err := m.C.Partition([]*Node{etcd, ingest}, rest)
		if err != nil {
			return nil, err
		}
		return func(context.Context) error { return healNet() }, nil
	case IsolateCassandra:
		healNet, err := m.C.Partition(nodes, m.C.Others(nodes...))
		if err != nil {
			return nil, err
		}
		return func(context.Context) error { return healNet() }, nil
	case PartitionKafka:
		var rest []*Node
		for _, n := range m.C.Of(Kafka) {
			if n != nodes[0] {
				rest = append(rest, n)
			}
		}
		healNet, err := m.C.Partition(nodes, rest)
		if err != nil {
			return nil, err
		}
		return func(context.Context) error { return healNet() }, nil
	case PatrolFlaky:
		m.Patrol.SetFailShare(0.3)
		return func(context.Context) error { m.Patrol.SetFailShare(0); return nil }, nil
	case PatrolDown:
		if err := m.Patrol.Down(); err != nil {
			return nil, err
		}
		return func(context.Context) error { return m.Patrol.Up() }, nil
	}
	return nil, fmt.Errorf("unknown fault %q", f.Kind)
}
