package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"time"
)

// Delivery is what the patrol endpoint saw of one Idempotency-Key.
type Delivery struct {
	First     time.Time // first accepted (2xx) request
	Accepted  int       // requests answered 2xx
	Requests  int       // requests received, refused ones included
	Body      map[string]any
	BadReason string // set when a request broke the contract
}

// PatrolEndpoint is the patrol endpoint of the run: it fails a share of the
// requests (503), can be taken down (its listener closed: connections are
// refused) and records every delivery by Idempotency-Key.
type PatrolEndpoint struct {
	addr     string
	mu       sync.Mutex
	fail     float64
	rng      *rand.Rand
	seen     map[string]*Delivery
	requests int
	ln       net.Listener
	srv      *http.Server
}

// NewPatrolEndpoint serves on addr.
func NewPatrolEndpoint(addr string, seed uint64) (*PatrolEndpoint, error) {
	p := &PatrolEndpoint{addr: addr, rng: rand.New(rand.NewPCG(seed, 0x9a7)), seen: map[string]*Delivery{}}
	return p, p.Up()
}

// Up starts listening (again).
func (p *PatrolEndpoint) Up() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		return nil
	}
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /patrol", p.serve)
	p.ln, p.srv = ln, &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = p.srv.Serve(ln) }()
	return nil
}

// Down closes the listener and every open connection.
func (p *PatrolEndpoint) Down() error {
	p.mu.Lock()
	srv := p.srv
	p.ln, p.srv = nil, nil
	p.mu.Unlock()
	if srv == nil {
		return nil
	}
	err := srv.Close()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// SetFailShare makes the endpoint answer 503 to that share of requests.
func (p *PatrolEndpoint) SetFailShare(f float64) {
	p.mu.Lock()
	p.fail = f
	p.mu.Unlock()
}

func (p *PatrolEndpoint) serve(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	key := r.Header.Get("Idempotency-Key")
	p.mu.Lock()
	defer p.mu.Unlock()
	p.requests++
	d := p.seen[key]
	if d == nil {
		d = &Delivery{}
		p.seen[key] = d
	}
	d.Requests++
	if p.rng.Float64() < p.fail {
		http.Error(w, "patrol dispatch busy", http.StatusServiceUnavailable)
		return
	}
	var doc map[string]any
	switch {
	case err != nil:
		d.BadReason = "body: " + err.Error()
	case key == "":
		d.BadReason = "no Idempotency-Key"
	case r.Header.Get("Content-Type") != "application/json":
		d.BadReason = "Content-Type " + r.Header.Get("Content-Type")
	case json.Unmarshal(body, &doc) != nil:
		d.BadReason = "body is not JSON"
	case doc["deployment_id"] != key:
		d.BadReason = "deployment_id differs from Idempotency-Key"
	}
	if d.Accepted == 0 {
		d.First, d.Body = now, doc
	}
	d.Accepted++
	w.WriteHeader(http.StatusOK)
}

// Deliveries is a copy of what the endpoint saw, by Idempotency-Key.
func (p *PatrolEndpoint) Deliveries() map[string]Delivery {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]Delivery, len(p.seen))
	for k, d := range p.seen {
		out[k] = *d
	}
	return out
}

// Close stops the endpoint.
func (p *PatrolEndpoint) Close(ctx context.Context) error {
	p.mu.Lock()
	srv := p.srv
	p.ln, p.srv = nil, nil
	p.mu.Unlock()
	if srv == nil {
		return nil
	}
	return srv.Shutdown(ctx)
}
