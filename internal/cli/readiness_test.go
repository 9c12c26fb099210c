package cli_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/acu-patrol/acu/ingest"
	"github.com/acu-patrol/acu/internal/testkit"
)

// A service answers /healthz (liveness) from its start but /readyz only once
// it does its work; until then /readyz says what it waits for, so that an
// operator (and a Kubernetes readiness probe) sees an archiver waiting for
// its Cassandra or an alert service waiting for etcd.
func TestServiceReadiness(t *testing.T) {
	kafka, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, ingest.ResultsTopic, ingest.DLQTopic))
	if err != nil {
		t.Fatal(err)
	}
	defer kafka.Close()
	brokers := strings.Join(kafka.ListenAddrs(), ",")
	tests := []struct {
		name    string
		command string
		env     map[string]string
		code    int
		body    string
	}{
		{"archive waiting for Cassandra", "archive",
			map[string]string{"ACU_STORE": "cassandra://127.0.0.1:1/acu?timeout=300ms"},
			503, "waiting for archive: the store, unreachable (attempt 1): "},
		{"ingest waiting for etcd", "ingest",
			map[string]string{"ACU_ETCD": "127.0.0.1:1"},
			503, "waiting for ingest: the thresholds from etcd"},
		{"archive ready", "archive",
			map[string]string{"ACU_STORE": "sqlite:" + filepath.Join(t.TempDir(), "acu.db")},
			200, "ready\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			addr := testkit.FreeAddr(t)
			tc.env["ACU_HTTP"] = addr
			tc.env["ACU_KAFKA"] = brokers
			tc.env["ACU_TEMPORAL"] = "127.0.0.1:1"
			ctx, cancel := context.WithCancel(context.Background())
			exited := make(chan int, 1)
			go func() {
				code, _, _ := runCtx(ctx, tc.env, tc.command)
				exited <- code
			}()
			defer func() {
				cancel()
				select {
				case <-exited:
				case <-time.After(30 * time.Second):
					t.Errorf("acu %s did not stop within 30 s of its context's end", tc.command)
				}
			}()
			var code int
			var body string
			testkit.Eventually(t, 20*time.Second, func() bool {
				code, body = testkit.Get("http://" + addr + "/readyz")
				return code == tc.code && strings.HasPrefix(body, tc.body)
			}, func() string { return "last /readyz: " + body })
			if code, body := testkit.Get("http://" + addr + "/healthz"); code != 200 {
				t.Errorf("/healthz %d %q while /readyz says %q, want 200", code, body, tc.body)
			}
		})
	}
}
