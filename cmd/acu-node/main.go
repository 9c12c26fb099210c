// Command acu-node runs one server node of the multi-node fault suite as
// an OS process of its own, which the suite SIGKILLs and restarts:
//
//	acu-node etcd --name e2 --dir DIR --client 127.0.0.42:2379 --peer 127.0.0.42:2380 \
//	    --cluster e1=http://127.0.0.41:2380,e2=http://127.0.0.42:2380,e3=http://127.0.0.43:2380
//	acu-node temporal --postgres 127.0.0.31:5432 --address 127.0.0.51 [--shards 4 ...]
//
// etcd is one member of a static cluster; temporal is a Temporal server
// with all its services and the Web UI, on PostgreSQL. Each prints one
// line starting "acu-node: ready" on stdout once it serves, logs warnings
// and errors on stderr, and stops cleanly on SIGTERM or SIGINT (a second
// signal kills it). It is a test program: nothing in production runs it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// errUsage marks a command-line error (exit status 2).
var errUsage = errors.New("usage")

const usage = `usage:
  acu-node etcd --name NAME --dir DIR --client HOST:PORT --peer HOST:PORT --cluster NAME=URL,...
  acu-node temporal --postgres HOST:PORT --address IP [flags]
run "acu-node etcd -h" or "acu-node temporal -h" for the flags`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // a second signal takes the default action: the process dies
	}()
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "etcd":
		err = runEtcd(ctx, args[1:], stdout, stderr)
	case "temporal":
		err = runTemporal(ctx, args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprintln(stdout, usage)
		return 0
	default:
		err = fmt.Errorf("%w: unknown command %q", errUsage, args[0])
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintln(stderr, "acu-node:", err)
		fmt.Fprintln(stderr, usage)
		return 2
	default:
		fmt.Fprintln(stderr, "acu-node:", err)
		return 1
	}
}

// parseFlags parses args into fs, marking errors as usage errors.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	return nil
}
