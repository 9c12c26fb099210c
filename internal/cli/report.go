package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/acu-patrol/acu/internal/analytics"
	"github.com/acu-patrol/acu/internal/app"
	"github.com/acu-patrol/acu/internal/config"
)

func optional(v *float64, format func(float64) string) string {
	if v == nil {
		return "-"
	}
	return format(*v)
}

func percent(v float64) string { return strconv.FormatFloat(v*100, 'f', 1, 64) + " %" }

// printReport writes the report as readable tables.
func printReport(w io.Writer, doc []byte) error {
	var r analytics.Report
	if err := json.Unmarshal(doc, &r); err != nil {
		return fmt.Errorf("reading report: %w", err)
	}
	fmt.Fprintf(w, "Analytics report generated at %s\n\nMean success per exercise\n", r.GeneratedAt.Format(time.RFC3339))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "EXERCISE\tRESULTS\tMEAN\tTHRESHOLD\tPASS RATE\t")
	for _, e := range r.Exercises {
		fmt.Fprintf(tw, "%s\t%d\t%.2f\t%s\t%s\t\n", e.ExerciseID, e.Results, e.MeanMetric,
			optional(e.Threshold, func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }),
			optional(e.PassRate, percent))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nFailure hotspots (geohash cells with the most failures)")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "EXERCISE\tCELL\tCENTRE\tFAILURES\t")
	for _, h := range r.Hotspots {
		for _, c := range h.Cells {
			fmt.Fprintf(tw, "%s\t%s\t%.4f, %.4f\t%d\t\n", h.ExerciseID, c.Geohash, c.Latitude, c.Longitude, c.Failures)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	rec := r.Recovery
	fmt.Fprintln(w, "\nRecovery after intervention (rate = recovered / (recovered + still failing))")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "EXERCISE\tDEPLOYMENTS\tRECOVERED\tSTILL FAILING\tNO ATTEMPT\tPENDING\tRATE\t")
	row := func(name string, c analytics.DeploymentCounts) {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%s\t\n", name, c.Deployments, c.Recovered, c.StillFailing, c.NoAttempt, c.Pending, optional(c.Rate, percent))
	}
	for _, e := range rec.ByExercise {
		row(e.ExerciseID, e.DeploymentCounts)
	}
	row("all", rec.DeploymentCounts)
	return tw.Flush()
}

func runReport(ctx context.Context, args []string, env Env) error {
	var cfg config.Config
	var asJSON bool
	if _, err := parse("report", args, env, &cfg, func(fs *flag.FlagSet) {
		fs.BoolVar(&asJSON, "json", false, "print the report document (DESIGN.md §2.4) as stored")
	}); err != nil {
		return err
	}
	st, err := app.OpenStore(ctx, &cfg, false, nil)
	if err != nil {
		return err
	}
	defer st.Close()
	doc, ok, err := st.LatestReport(ctx)
	if err != nil {
		return err
	}
	if !ok {
		return errors.New("no analytics report yet: the schedule runs every few minutes, or run one now with acu analytics run")
	}
	if asJSON {
		_, err := fmt.Fprintln(env.Stdout, string(doc))
		return err
	}
	return printReport(env.Stdout, doc)
}
