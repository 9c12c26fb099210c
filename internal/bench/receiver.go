package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// receiver is the patrol endpoint of a benchmark: it records when each
// Idempotency-Key first arrived and answers 201, as a patrol would.
type receiver struct {
	srv *http.Server
	url string

	mu       sync.Mutex
	first    map[string]time.Time
	requests int
	// pending are the keys waitAll waits for that have not arrived;
	// allIn is closed when the last of them arrives.
	pending map[string]struct{}
	allIn   chan struct{}
}

// startReceiver listens on addr (host:port; port 0 picks one) and serves
// POST /patrol until stop.
func startReceiver(addr string) (*receiver, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("patrol receiver: listening on %s: %w", addr, err)
	}
	r := &receiver{first: map[string]time.Time{}, url: "http://" + ln.Addr().String() + "/patrol"}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /patrol", r.notify)
	r.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = r.srv.Serve(ln) }()
	return r, nil
}

func (r *receiver) notify(w http.ResponseWriter, req *http.Request) {
	now := time.Now()
	key := req.Header.Get("Idempotency-Key")
	_, _ = io.Copy(io.Discard, io.LimitReader(req.Body, 1<<20))
	if key == "" {
		http.Error(w, "Idempotency-Key header required", http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	r.requests++
	if _, seen := r.first[key]; !seen {
		r.first[key] = now
		if _, ok := r.pending[key]; ok {
			delete(r.pending, key)
			if len(r.pending) == 0 {
				close(r.allIn)
			}
		}
	}
	r.mu.Unlock()
	w.WriteHeader(http.StatusCreated)
}

// arrival returns when key first arrived.
func (r *receiver) arrival(key string) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.first[key]
	return t, ok
}

// counts returns the requests received and the distinct keys among them.
func (r *receiver) counts() (requests, keys int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.requests, len(r.first)
}

// waitAll waits until every key of want has arrived, or until ctx ends.
// One waitAll at a time.
func (r *receiver) waitAll(ctx context.Context, want map[string]time.Time) error {
	r.mu.Lock()
	r.pending, r.allIn = map[string]struct{}{}, make(chan struct{})
	for k := range want {
		if _, ok := r.first[k]; !ok {
			r.pending[k] = struct{}{}
		}
	}
	if len(r.pending) == 0 {
		close(r.allIn)
	}
	allIn := r.allIn
	r.mu.Unlock()
	select {
	case <-allIn:
		return nil
	case <-ctx.Done():
		r.mu.Lock()
		missing := len(r.pending)
		r.pending = nil
		r.mu.Unlock()
		return fmt.Errorf("%d patrols not arrived: %w", missing, ctx.Err())
	}
}

func (r *receiver) stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.srv.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
