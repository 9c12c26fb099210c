package chaos

import (
	"slices"
	"testing"
	"time"
)

// The short schedule has every kind of fault once, and a seed gives the same
// schedule every time (a run can be repeated from the seed it printed).
func TestPlanIsSeededAndCoversEveryFault(t *testing.T) {
	c := NewCluster(t.TempDir(), ".", ".", 0, nil)
	a, b := Plan(c, 42, len(FaultKinds)), Plan(c, 42, len(FaultKinds))
	if !slices.EqualFunc(a, b, func(x, y Fault) bool { return x.String() == y.String() }) {
		t.Fatalf("same seed, two schedules:\n%v\n%v", a, b)
	}
	var kinds []string
	for _, f := range a {
		kinds = append(kinds, f.Kind)
		if len(f.Targets) == 0 || f.Hold <= 0 {
			t.Errorf("fault without target or hold: %v", f)
		}
		for _, name := range f.Targets {
			if name != "patrol" && c.Node(name) == nil {
				t.Errorf("%v targets unknown node %s", f, name)
			}
		}
	}
	slices.Sort(kinds)
	want := slices.Clone(FaultKinds)
	slices.Sort(want)
	if !slices.Equal(kinds, want) {
		t.Errorf("kinds %v, want each of %v once", kinds, want)
	}
	long := Plan(c, 42, 3*len(FaultKinds))
	if len(long) != 3*len(FaultKinds) {
		t.Errorf("long schedule has %d faults, want %d", len(long), 3*len(FaultKinds))
	}
	if other := Plan(c, 43, len(FaultKinds)); slices.EqualFunc(a, other, func(x, y Fault) bool { return x.String() == y.String() }) {
		t.Errorf("seeds 42 and 43 gave the same schedule")
	}
}

// A partition is a rule on a sender's cgroup and a receiver's address, so
// no two nodes may share either.
func TestNodesHaveTheirOwnAddressAndCgroup(t *testing.T) {
	c := NewCluster(t.TempDir(), ".", ".", 3, nil)
	addrs, groups := map[string]bool{}, map[string]bool{}
	for _, n := range c.Nodes {
		if addrs[n.Addr] || groups[n.CgroupPath()] {
			t.Errorf("%s shares its address %s or cgroup %s", n.Name, n.Addr, n.CgroupPath())
		}
		addrs[n.Addr], groups[n.CgroupPath()] = true, true
	}
	if got := len(c.Of(Kafka)) + len(c.Of(Cassandra)) + len(c.Of(Etcd)); got != 9 {
		t.Errorf("%d server nodes, want 3 of each", got)
	}
	if c.Node("kafka2").Addr != "127.0.3.12" {
		t.Errorf("kafka2 on %s, want 127.0.3.12", c.Node("kafka2").Addr)
	}
}

// A delivery is calm only when no fault was on between the result's
// production and its delivery.
func TestCalmMeansNoFaultBetweenProductionAndDelivery(t *testing.T) {
	at := func(s int) time.Time { return time.Unix(int64(s), 0) }
	plan := []Fault{{Injected: at(100), Recovered: at(130)}, {Injected: at(200)}}
	for _, tc := range []struct {
		produced, delivered int
		fault               bool
	}{
		{10, 20, false},   // before every fault
		{95, 99, false},   // delivered before the first injection
		{95, 101, true},   // produced before, held up by the fault
		{110, 115, true},  // inside
		{129, 140, true},  // produced before the recovery
		{130, 140, false}, // after the recovery
		{150, 199, false}, // between the two
		{190, 210, true},  // the second, never recovered
		{250, 260, true},
	} {
		if got := overlapsFault(plan, at(tc.produced), at(tc.delivered)); got != tc.fault {
			t.Errorf("produced %d delivered %d: under fault %v, want %v", tc.produced, tc.delivered, got, tc.fault)
		}
	}
}

// The cores busy during a fault: every node's CPU time over the fault's
// span, a node restarted meanwhile (its cgroup made again) counted from
// zero.
func TestFaultBusy(t *testing.T) {
	before := map[string]time.Duration{"cassandra1": 10 * time.Second, "kafka1": 50 * time.Second}
	after := map[string]time.Duration{"cassandra1": 25 * time.Second, "kafka1": 5 * time.Second, "worker1": time.Second}
	cpu := cpuSince(before, after)
	if cpu["cassandra1"] != 15*time.Second || cpu["kafka1"] != 5*time.Second || cpu["worker1"] != time.Second {
		t.Fatalf("cpu %v", cpu)
	}
	at := time.Unix(0, 0)
	f := Fault{Injected: at, Recovered: at.Add(10 * time.Second), CPU: cpu}
	if got := f.Busy(); got != "2.1 (cassandra1 1.5)" {
		t.Errorf("busy %q", got)
	}
	if got := (Fault{}).Busy(); got != "-" {
		t.Errorf("a fault not measured: %q", got)
	}
}
