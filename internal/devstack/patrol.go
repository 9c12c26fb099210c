package devstack

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"mime"
	"net/http"
	"sync"
	"time"
)

// Dispatch is one logical patrol dispatch received by the dev endpoint.
type Dispatch struct {
	IdempotencyKey string          `json:"idempotency_key"`
	Body           json.RawMessage `json:"body"`
	// Attempts counts the requests with this key, the first included.
	Attempts   int       `json:"attempts"`
	ReceivedAt time.Time `json:"received_at"`
}

// Patrol is acu-dev's patrol endpoint: it records and logs each dispatch,
// deduplicated by Idempotency-Key, and with FailRate answers 503 at random
// to show retries.
type Patrol struct {
	log      *slog.Logger
	failRate float64

	mu       sync.Mutex
	rnd      *rand.Rand
	order    []string
	byKey    map[string]*Dispatch
	requests int
	failed   int
}

// NewPatrol returns the endpoint; failRate in [0,1).
func NewPatrol(log *slog.Logger, failRate float64) *Patrol {
	return &Patrol{log: log, failRate: failRate, byKey: map[string]*Dispatch{},
		rnd: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))}
}

// Handle adds POST /patrol (notifications) and GET /patrol/dispatches (what
// was received, as JSON) to mux.
func (p *Patrol) Handle(mux *http.ServeMux) {
	mux.HandleFunc("POST /patrol", p.notify)
	mux.HandleFunc("GET /patrol/dispatches", p.list)
}

func (p *Patrol) notify(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get("Idempotency-Key")
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		http.Error(w, "Content-Type must be application/json", http.StatusUnsupportedMediaType)
		return
	}
	if key == "" {
		http.Error(w, "Idempotency-Key header required", http.StatusBadRequest)
		return
	}
	var body json.RawMessage
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&body); err != nil {
		http.Error(w, "body is not JSON: "+err.Error(), http.StatusBadRequest)
		return
	}
	p.mu.Lock()
	p.requests++
	if p.failRate > 0 && p.rnd.Float64() < p.failRate {
		p.failed++
		p.mu.Unlock()
		p.log.Info("patrol endpoint: simulated outage, answering 503", "idempotency_key", key)
		http.Error(w, "simulated outage", http.StatusServiceUnavailable)
		return
	}
	d, seen := p.byKey[key]
	if seen {
		d.Attempts++
	} else {
		d = &Dispatch{IdempotencyKey: key, Body: body, Attempts: 1, ReceivedAt: time.Now().UTC()}
		p.byKey[key] = d
		p.order = append(p.order, key)
	}
	p.mu.Unlock()
	if seen {
		p.log.Info("patrol endpoint: repeated dispatch acknowledged again", "idempotency_key", key)
		w.WriteHeader(http.StatusOK)
	} else {
		p.log.Info("PATROL DISPATCHED", "deployment_id", key, "body", string(body))
		w.WriteHeader(http.StatusCreated)
	}
	fmt.Fprintf(w, "{\"deployment_id\":%q}\n", key)
}

// Dispatches returns the distinct dispatches, in arrival order.
func (p *Patrol) Dispatches() []Dispatch {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Dispatch, 0, len(p.order))
	for _, k := range p.order {
		out = append(out, *p.byKey[k])
	}
	return out
}

// Requests returns how many notifications arrived and how many got a 503.
func (p *Patrol) Requests() (total, failed int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.requests, p.failed
}

func (p *Patrol) list(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(p.Dispatches())
}
