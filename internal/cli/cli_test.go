package cli_test

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/acu-patrol/acu/internal/cli"
	"github.com/acu-patrol/acu/internal/store/sqlite"
)

func run(t *testing.T, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	return runCtx(context.Background(), env, args...)
}

func runCtx(ctx context.Context, env map[string]string, args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = cli.Main(ctx, args, cli.Env{
		Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb,
		Getenv: func(k string) string { return env[k] },
	})
	return code, out.String(), errb.String()
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no command", nil, 2, "Usage: acu"},
		{"unknown command", []string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{"threshold out of range", []string{"thresholds", "set", "c00", "101"}, 2, "outside 0..100"},
		{"bad exercise id", []string{"thresholds", "set", "a b", "50"}, 2, "allowed are"},
		{"thresholds without subcommand", []string{"thresholds"}, 2, "missing subcommand"},
		{"bad flag value", []string{"ingest", "--follow-up-after", "soon"}, 2, "follow-up-after"},
		{"bad cron", []string{"setup", "--analytics-cron", "61 * * * *"}, 2, `minute field "61"`},
		{"every and cron", []string{"setup", "--analytics-every", "1m", "--analytics-cron", "* * * * *"}, 2, "spec"},
		{"analytics subcommand", []string{"analytics", "explode"}, 2, "unknown subcommand"},
		{"analytics flags after the subcommand", []string{"analytics", "run", "--json", "--hotspot-precision", "0"}, 2, "--hotspot-precision must be"},
		{"analytics flags before the subcommand", []string{"analytics", "--hotspot-precision", "13", "run"}, 2, "--hotspot-precision must be"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := run(t, nil, tc.args...)
			if code != tc.code || !strings.Contains(stdout+stderr, tc.want) {
				t.Fatalf("exit %d, output %q; want exit %d mentioning %q", code, stdout+stderr, tc.code, tc.want)
			}
		})
	}
}

func TestReport(t *testing.T) {
	path := filepath.Join(t.TempDir(), "acu.db")
	env := map[string]string{"ACU_STORE": "sqlite:" + path}
	if code, _, stderr := run(t, env, "report"); code != 1 || !strings.Contains(stderr, "no analytics report yet") {
		t.Fatalf("empty store: exit %d, %q", code, stderr)
	}
	st, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	doc := `{"generated_at":"2026-11-28T10:00:00Z","exercises":[{"exercise_id":"ex-01","results":1200,"mean_metric":61.25,"pass_rate":0.71,"threshold":50},{"exercise_id":"ex-02","results":3,"mean_metric":40,"pass_rate":null,"threshold":null}],"hotspots":[{"exercise_id":"ex-01","cells":[{"geohash":"u09tv","latitude":48.84521484375,"longitude":2.35107421875,"failures":42}]}],"recovery":{"deployments":90,"recovered":40,"still_failing":20,"no_attempt":25,"pending":5,"rate":0.6666666666666666,"by_exercise":[{"exercise_id":"ex-01","deployments":30,"recovered":15,"still_failing":5,"no_attempt":8,"pending":2,"rate":0.75}]}}`
	if err := st.SaveAnalytics(context.Background(), "run-1", 0, []byte(`{}`), 1, []byte(doc), time.Now()); err != nil {
		t.Fatal(err)
	}
	st.Close()
	code, stdout, _ := run(t, env, "report", "--json")
	if code != 0 || strings.TrimSpace(stdout) != doc {
		t.Fatalf("--json: exit %d\n%s", code, stdout)
	}
	code, stdout, _ = run(t, env, "report")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"ex-01", "1200", "61.25", "71.0 %", "u09tv", "48.8452, 2.3511", "42", "66.7 %", "75.0 %", "ex-02"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("table lacks %q:\n%s", want, stdout)
		}
	}
}
