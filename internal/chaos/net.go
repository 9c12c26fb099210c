package chaos

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"

	sdklog "go.temporal.io/sdk/log"
	"go.uber.org/zap"
)

// chainPrefix names the iptables chain that holds every rule of the
// nemesis, jumped to from OUTPUT: flushing it heals every partition at once.
const chainPrefix = "ACU-CHAOS"

// All traffic between the nodes is loopback traffic whose source address
// is 127.0.0.1 whatever address a node listens on, so a rule cannot tell
// the sender by its address. It tells it by its cgroup instead (each node
// runs in its own), and the receiver by its destination address.

func iptables(args ...string) error {
	cmd := exec.Command("iptables", append([]string{"-w"}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("iptables %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}

// ensureChain creates the chain and the jump to it, once.
func (c *Cluster) ensureChain() error {
	chain := c.chain()
	if iptables("-n", "-L", chain) != nil {
		if err := iptables("-N", chain); err != nil {
			return err
		}
	}
	if iptables("-C", "OUTPUT", "-j", chain) != nil {
		return iptables("-I", "OUTPUT", "1", "-j", chain)
	}
	return nil
}

// removeChain removes the jump and the chain (after HealAll).
func (c *Cluster) removeChain() error {
	chain := c.chain()
	if iptables("-n", "-L", chain) != nil {
		return nil // never created
	}
	for iptables("-C", "OUTPUT", "-j", chain) == nil {
		if err := iptables("-D", "OUTPUT", "-j", chain); err != nil {
			return err
		}
	}
	return iptables("-X", chain)
}

// HealAll removes every partition rule.
func (c *Cluster) HealAll() error {
	chain := c.chain()
	if iptables("-n", "-L", chain) != nil {
		return nil
	}
	return iptables("-F", chain)
}

// Partition cuts every node of a from every node of b, both ways: packets
// sent by a process of one side to the address of the other are dropped.
// It returns the function that heals it.
func (c *Cluster) Partition(a, b []*Node) (heal func() error, err error) {
	chain := c.chain()
	if err := c.ensureChain(); err != nil {
		return nil, err
	}
	for _, n := range append(append([]*Node(nil), a...), b...) {
		// The cgroup match needs the cgroup to exist, also for a node
		// that has not run yet.
		if err := os.MkdirAll(n.cgroup(), 0o755); err != nil {
			return nil, err
		}
	}
	var rules [][]string
	for _, x := range a {
		for _, y := range b {
			rules = append(rules,
				[]string{"-m", "cgroup", "--path", x.CgroupPath(), "-d", y.Addr, "-j", "DROP"},
				[]string{"-m", "cgroup", "--path", y.CgroupPath(), "-d", x.Addr, "-j", "DROP"})
		}
	}
	heal = func() error {
		var first error
		for _, r := range rules {
			for iptables(append([]string{"-C", chain}, r...)...) == nil {
				if err := iptables(append([]string{"-D", chain}, r...)...); err != nil {
					if first == nil {
						first = err
					}
					break
				}
			}
		}
		return first
	}
	for _, r := range rules {
		if err := iptables(append([]string{"-A", chain}, r...)...); err != nil {
			_ = heal()
			return nil, err
		}
	}
	return heal, nil
}

// Others are the nodes of c not in ns.
func (c *Cluster) Others(ns ...*Node) []*Node {
	var out []*Node
	for _, n := range c.Nodes {
		in := false
		for _, x := range ns {
			in = in || x == n
		}
		if !in {
			out = append(out, n)
		}
	}
	return out
}

func zapNop() *zap.Logger { return zap.NewNop() }

// sdkNop is a Temporal SDK logger that discards.
type sdkNop struct{}

var _ sdklog.Logger = sdkNop{}

func (sdkNop) Debug(string, ...any) {}
func (sdkNop) Info(string, ...any)  {}
func (sdkNop) Warn(string, ...any)  {}
func (sdkNop) Error(string, ...any) {}
