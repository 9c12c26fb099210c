package metrics_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/acu-patrol/acu/internal/metrics"
)

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	body, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(body)
}

// /readyz answers 503 and what every waiting component waits for until all
// are ready, while /healthz (liveness) answers 200 throughout.
func TestReadiness(t *testing.T) {
	m := metrics.New()
	mux := http.NewServeMux()
	m.Handle(mux)
	steps := []struct {
		do       func()
		code     int
		body     string
		liveness int
	}{
		{func() {}, 200, "ready\n", 200},
		{func() { m.Waiting("worker", "starting"); m.Waiting("archive", "the store") }, 503,
			"waiting for archive: the store; worker: starting\n", 200},
		{func() { m.Ready("worker") }, 503, "waiting for archive: the store\n", 200},
		{func() { m.Waiting("archive", "the store, unreachable (attempt 2)") }, 503,
			"waiting for archive: the store, unreachable (attempt 2)\n", 200},
		{func() { m.Ready("archive") }, 200, "ready\n", 200},
		{func() { m.Ready("archive") }, 200, "ready\n", 200},
	}
	for i, s := range steps {
		s.do()
		if code, body := get(t, mux, "/readyz"); code != s.code || body != s.body {
			t.Errorf("step %d: /readyz %d %q, want %d %q", i, code, body, s.code, s.body)
		}
		if code, _ := get(t, mux, "/healthz"); code != s.liveness {
			t.Errorf("step %d: /healthz %d, want %d", i, code, s.liveness)
		}
	}
}
