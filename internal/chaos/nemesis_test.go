package chaos

import (
	"slices"
	"testing"
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
