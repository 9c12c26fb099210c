// Command acu runs the services of the ACU patrol platform and its operator
// tools. See the README, or run acu help.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/acu-patrol/acu/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], cli.Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv})
	stop()
	os.Exit(code)
}
