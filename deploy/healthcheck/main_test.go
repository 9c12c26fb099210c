package main

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

func TestHealthURL(t *testing.T) {
	for _, tc := range []struct{ listen, want string }{
		{"", "http://127.0.0.1:8080/readyz"},
		{"0.0.0.0:8080", "http://127.0.0.1:8080/readyz"},
		{":9090", "http://127.0.0.1:9090/readyz"},
		{"[::]:8080", "http://127.0.0.1:8080/readyz"},
		{"10.0.0.7:8081", "http://10.0.0.7:8081/readyz"},
		{"localhost:8080", "http://localhost:8080/readyz"},
		{"[::1]:8080", "http://[::1]:8080/readyz"},
	} {
		got, err := healthURL(tc.listen)
		if err != nil || got != tc.want {
			t.Errorf("healthURL(%q) = %q, %v; want %q", tc.listen, got, err, tc.want)
		}
	}
	if _, err := healthURL("8080"); err == nil {
		t.Error(`healthURL("8080"): no error`)
	}
}

func TestCheck(t *testing.T) {
	var healthy atomic.Bool
	healthy.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" || !healthy.Load() {
			http.Error(w, "unhealthy", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	}))
	defer srv.Close()
	if err := check(srv.URL+"/readyz", time.Second); err != nil {
		t.Errorf("healthy service: %v", err)
	}
	healthy.Store(false)
	if err := check(srv.URL+"/readyz", time.Second); err == nil {
		t.Error("unhealthy service: no error")
	}
	srv.Close()
	if err := check(srv.URL+"/readyz", time.Second); err == nil {
		t.Error("no service: no error")
	}
}
