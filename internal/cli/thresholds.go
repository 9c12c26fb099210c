package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"text/tabwriter"

	"github.com/acu-patrol/acu/internal/app"
	"github.com/acu-patrol/acu/internal/config"
	"github.com/acu-patrol/acu/internal/event"
	"github.com/acu-patrol/acu/internal/thresholds"
)

const thresholdsUsage = `usage:
  acu thresholds set <exercise_id> <threshold>   threshold: decimal in 0..100
  acu thresholds get <exercise_id>
  acu thresholds list
  acu thresholds delete <exercise_id>
  acu thresholds import <file.csv | ->             lines: exercise_id,threshold`

func runThresholds(ctx context.Context, args []string, env Env) error {
	var cfg config.Config
	fs, err := parse("thresholds", args, env, &cfg, nil)
	if err != nil {
		return err
	}
	rest := fs.Args()
	if len(rest) == 0 {
		return fmt.Errorf("%w: missing subcommand\n%s", errUsage, thresholdsUsage)
	}
	want := map[string]int{"set": 2, "get": 1, "list": 0, "delete": 1, "import": 1}
	n, ok := want[rest[0]]
	if !ok {
		return fmt.Errorf("%w: unknown subcommand %q\n%s", errUsage, rest[0], thresholdsUsage)
	}
	if len(rest)-1 != n {
		return fmt.Errorf("%w: %s takes %d argument(s)\n%s", errUsage, rest[0], n, thresholdsUsage)
	}
	// Validate before connecting, so bad input fails fast and clearly.
	if n > 0 && rest[0] != "import" {
		if err := event.ValidIdent(rest[1]); err != nil {
			return fmt.Errorf("%w: exercise id %q: %v", errUsage, rest[1], err)
		}
	}
	var value float64
	var imported map[string]float64
	switch rest[0] {
	case "set":
		if value, err = thresholds.ParseValue(rest[2]); err != nil {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
	case "import":
		var r io.Reader = env.Stdin
		if rest[1] != "-" {
			f, err := os.Open(rest[1])
			if err != nil {
				return err
			}
			defer f.Close()
			r = f
		}
		if imported, err = thresholds.ParseCSV(r); err != nil {
			return fmt.Errorf("%w: nothing imported:\n%v", errUsage, err)
		}
	}
	ec, err := app.Etcd(&cfg)
	if err != nil {
		return err
	}
	defer ec.Close()
	adm := thresholds.NewAdmin(ec, cfg.EtcdPrefix)
	switch rest[0] {
	case "set":
		if err := adm.Set(ctx, rest[1], value); err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "%s = %s\n", rest[1], thresholds.FormatValue(value))
	case "get":
		e, ok, err := adm.Get(ctx, rest[1])
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("no threshold for exercise %s (its results raise no alert)", rest[1])
		}
		if e.Err != nil {
			return fmt.Errorf("exercise %s has a malformed threshold %q, treated as missing: %v", rest[1], e.Raw, e.Err)
		}
		fmt.Fprintln(env.Stdout, thresholds.FormatValue(e.Value))
	case "list":
		es, err := adm.List(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "EXERCISE\tTHRESHOLD\t")
		for _, e := range es {
			v := thresholds.FormatValue(e.Value)
			if e.Err != nil {
				v = strconv.Quote(e.Raw) + " (malformed, ignored)"
			}
			fmt.Fprintf(tw, "%s\t%s\t\n", e.ExerciseID, v)
		}
		return tw.Flush()
	case "delete":
		ok, err := adm.Delete(ctx, rest[1])
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("no threshold for exercise %s", rest[1])
		}
		fmt.Fprintf(env.Stdout, "deleted %s\n", rest[1])
	case "import":
		if err := adm.Import(ctx, imported); err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "imported %d thresholds\n", len(imported))
	}
	return nil
}
