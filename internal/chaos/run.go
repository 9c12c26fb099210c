package chaos

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.temporal.io/sdk/client"
)

// Options of a run.
type Options struct {
	Seed uint64
	// Duration of the faulty part; 0: every kind of fault once.
	Duration time.Duration
	Rate     float64 // simulator results per second
	Out      io.Writer
	Keep     bool // leave the topology running after the run
	// Kinds restricts the schedule to these kinds of fault (nil: all).
	Kinds []string
}

// Calm stretches around the faults: the first measures calm latency.
const (
	calmLead = 30 * time.Second
	calmGap  = 10 * time.Second
)

// Up starts the whole topology and sets it up; on failure it tears down
// what it started.
func Up(ctx context.Context, c *Cluster) (err error) {
	defer func() {
		if err != nil {
			if derr := c.Down(context.Background()); derr != nil {
				err = errors.Join(err, fmt.Errorf("tearing down: %w", derr))
			}
		}
	}()
	if err := c.Down(ctx); err != nil { // what an earlier run left
		return err
	}
	if err := os.RemoveAll(c.Dir); err != nil {
		return err
	}
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return err
	}
	if err := c.ensureChain(); err != nil {
		return fmt.Errorf("iptables (the nemesis cuts links with it): %w", err)
	}
	var servers []*Node
	for _, k := range []Kind{Kafka, Cassandra, Postgres, Etcd} {
		servers = append(servers, c.Of(k)...)
	}
	if err := c.StartAll(ctx, servers, c.Of(Temporal)); err != nil {
		return err
	}
	if err := c.acu(ctx, "setup", "--partitions", "6", "--replication-factor", "3"); err != nil {
		return err
	}
	var services []*Node
	for _, k := range []Kind{Ingest, Archive, Worker} {
		services = append(services, c.Of(k)...)
	}
	return c.StartAll(ctx, services)
}

// acu runs one acu command against the topology.
func (c *Cluster) acu(ctx context.Context, args ...string) error {
	cmd := exec.CommandContext(ctx, filepath.Join(c.Bin, "acu"), args...)
	cmd.Env = append(append(os.Environ(), c.AcuEnv()...), "ACU_HTTP=")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("acu %v: %w\n%s", args, err, lastLines(out.String(), 30))
	}
	return nil
}

// acuOutput runs one acu command and returns its standard output.
func (c *Cluster) acuOutput(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(c.Bin, "acu"), args...)
	cmd.Env = append(append(os.Environ(), c.AcuEnv()...), "ACU_HTTP=")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("acu %v: %w\n%s", args, err, lastLines(stderr.String(), 30))
	}
	return stdout.Bytes(), nil
}

// Run starts the topology, runs the workload under the nemesis, checks the
// outcome and tears everything down. The summary is printed to o.Out; the
// error says whether any promise was broken.
func Run(ctx context.Context, o Options, c *Cluster) (sum *Summary, err error) {
	kinds := o.Kinds
	if len(kinds) == 0 {
		kinds = FaultKinds
	}
	faults := len(kinds)
	if o.Duration > 0 {
		// A fault takes on average its hold (17.5 s), its recovery and a gap.
		faults = max(faults, int(o.Duration/(40*time.Second)))
	}
	plan := Plan(c, o.Seed, faults, kinds...)
	fmt.Fprintf(o.Out, "chaos: seed %d, %d faults, simulator at %.0f results/s; schedule:\n", o.Seed, len(plan), o.Rate)
	for i, f := range plan {
		fmt.Fprintf(o.Out, "  %2d  %s\n", i+1, f)
	}
	patrol, err := NewPatrolEndpoint(c.PatrolAddr(), o.Seed)
	if err != nil {
		return nil, fmt.Errorf("patrol endpoint on %s: %w", c.PatrolAddr(), err)
	}
	defer patrol.Close(context.Background())
	began := time.Now()
	if err := Up(ctx, c); err != nil {
		return nil, err
	}
	if !o.Keep {
		defer func() {
			if derr := c.Down(context.Background()); derr != nil {
				err = errors.Join(err, fmt.Errorf("tearing down: %w", derr))
			}
		}()
	}
	fmt.Fprintf(o.Out, "chaos: topology up in %s\n", time.Since(began).Round(time.Second))
	w := &Workload{C: c, Rate: o.Rate, Seed: o.Seed}
	if err := w.SetInitial(ctx); err != nil {
		return nil, err
	}
	if err := w.StartSimulator(0); err != nil {
		return nil, err
	}
	pctx, stopProbes := context.WithCancel(ctx)
	probes := make(chan error, 1)
	go func() { probes <- w.RunProbes(pctx, 15*time.Second) }()

	m := &Nemesis{C: c, Patrol: patrol, Rate: o.Rate}
	runErr := m.RunPlan(ctx, plan, o.Out)
	stopProbes()
	perr := <-probes
	_ = w.sim.Process.Signal(syscall.SIGTERM)
	serr := w.WaitSimulator(ctx)
	if err := errors.Join(runErr, perr, serr); err != nil {
		return nil, err
	}
	fmt.Fprintf(o.Out, "chaos: workload done; waiting until every record is consumed and every deployment final\n")
	quiet := time.Now()
	if err := Quiesce(ctx, c); err != nil {
		return nil, err
	}
	sum, err = Check(ctx, c, w, patrol, plan)
	if err != nil {
		return nil, err
	}
	sum.Quiesce = time.Since(quiet)
	sum.Print(o.Out)
	if bad := sum.Broken(); len(bad) > 0 {
		return sum, fmt.Errorf("promises broken: %v", bad)
	}
	return sum, nil
}

// RunPlan runs the faults one after the other, between calm stretches, and
// fills in each fault's times.
func (m *Nemesis) RunPlan(ctx context.Context, plan []Fault, out io.Writer) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(m.C.KafkaBrokers()...))
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	pause := func(d time.Duration) error {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(d): // the schedule's own time, not a wait on the system
			return nil
		}
	}
	if err := pause(calmLead); err != nil {
		return err
	}
	for i := range plan {
		f := &plan[i]
		cpu := m.C.CPUTimes()
		f.Injected = time.Now()
		heal, err := m.Inject(ctx, f)
		if err != nil {
			f.Err = err
			return fmt.Errorf("injecting %s: %w", f, err)
		}
		fmt.Fprintf(out, "  %s  inject %s\n", time.Now().UTC().Format("15:04:05"), f)
		if err := pause(f.Hold); err != nil {
			_ = heal(context.Background())
			return err
		}
		f.Healed = time.Now()
		hctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		err = heal(hctx)
		cancel()
		f.Back = time.Now()
		if err != nil {
			f.Err = err
			return fmt.Errorf("healing %s: %w", f, err)
		}
		// Recovered: both consumer groups back within two seconds of input.
		err = waitFor(ctx, 5*time.Minute, 250*time.Millisecond, func(ctx context.Context) (bool, error) {
			lags, err := Lags(ctx, adm)
			if err != nil {
				return false, err
			}
			for g, l := range lags {
				if float64(l) > 2*max(m.Rate, 10) {
					return false, fmt.Errorf("%s lag %d", g, l)
				}
			}
			return true, nil
		})
		f.Recovered = time.Now()
		f.CPU = cpuSince(cpu, m.C.CPUTimes())
		if err != nil {
			f.Err = err
			ectx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			fmt.Fprintf(out, "chaos: the consumers did not catch up; where they stand:\n%s", Evidence(ectx, m.C, adm))
			cancel()
			return fmt.Errorf("after %s: the consumers did not catch up: %w", f, err)
		}
		fmt.Fprintf(out, "  %s  back in %s, caught up %s later; cores busy meanwhile %s\n", time.Now().UTC().Format("15:04:05"),
			f.Back.Sub(f.Healed).Round(100*time.Millisecond), f.Recovered.Sub(f.Back).Round(100*time.Millisecond), f.Busy())
		if err := pause(calmGap); err != nil {
			return err
		}
	}
	return nil
}

// Quiesce waits until every produced record is consumed by both groups and
// no deployment is still running.
func Quiesce(ctx context.Context, c *Cluster) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.KafkaBrokers()...))
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	tc, err := client.DialContext(ctx, client.Options{HostPort: c.TemporalAddr(), Logger: sdkNop{}})
	if err != nil {
		return err
	}
	defer tc.Close()
	return waitFor(ctx, 10*time.Minute, time.Second, func(ctx context.Context) (bool, error) {
		lags, err := Lags(ctx, adm)
		if err != nil {
			return false, err
		}
		for g, l := range lags {
			if l > 0 {
				return false, fmt.Errorf("%s lag %d", g, l)
			}
		}
		open, err := CountOpenDeployments(ctx, tc)
		if err != nil {
			return false, err
		}
		if open > 0 {
			return false, fmt.Errorf("%d deployments still running", open)
		}
		return true, nil
	})
}
