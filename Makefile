# The two commands of the README:
#   go run ./cmd/acu-dev --produce   runs the whole system on embedded servers
#   make test                        runs every check and test
GO       ?= go
GOBIN    := $(shell $(GO) env GOPATH)/bin
export GOTOOLCHAIN := local

STATICCHECK_VERSION   := v0.8.2
WORKFLOWCHECK_VERSION := v0.6.0

.PHONY: test fast integration chaos chaos-short lint tools build bench bench-e2e run

## test: lint, the fast suite, the integration suite on real servers, then
## the short fault schedule on the multi-node topology (every fault once).
test: lint fast integration chaos-short

## fast: every in-process test with the race detector (the end-to-end test
## on the embedded dev stack included).
fast:
	$(GO) test -race -count=1 -timeout 20m ./...

## integration: the suites of build tag integration against a real Kafka
## broker and a real Cassandra node started from Maven Central artifacts
## (deploy/local): ingest and archive on Kafka, the store contract on
## Cassandra, the end-to-end scenario on both; Java 17 and Maven needed.
integration:
	bash scripts/integration.sh

## chaos: the production topology on this machine (3 Cassandra, 3 Kafka,
## 3 etcd, Temporal on PostgreSQL, 2 of each acu service) under a seeded
## nemesis, then the checker (cmd/acu-chaos); root, Java 17 and Maven needed.
DURATION ?= 30m
SEED     ?= 0
chaos:
	bash scripts/chaos.sh --duration $(DURATION) --seed $(SEED)

## chaos-short: the same with every kind of fault once (a few minutes).
chaos-short:
	bash scripts/chaos.sh --duration 0 --seed $(SEED)

## lint: gofmt, go vet, staticcheck and Temporal's workflowcheck.
lint: tools
	@out="$$(gofmt -l .)"; if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GOBIN)/staticcheck ./...
	$(GO) vet -tags integration ./...
	$(GOBIN)/staticcheck -tags integration ./...
	$(GOBIN)/workflowcheck ./workflows/...
	@# Production binaries link no server code (DESIGN.md §3).
	@if $(GO) list -deps ./cmd/acu | grep -E 'go.temporal.io/server|etcd/server|franz-go/pkg/kfake|temporalio/ui-server'; then \
		echo "cmd/acu links server code"; exit 1; fi

## tools: install the linters from the Go module proxy (pinned).
tools:
	@test -x $(GOBIN)/staticcheck || $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	@test -x $(GOBIN)/workflowcheck || $(GO) install go.temporal.io/sdk/contrib/tools/workflowcheck@$(WORKFLOWCHECK_VERSION)

## build: bin/acu and bin/acu-dev.
build:
	$(GO) build -o bin/ ./cmd/...

## bench: the hot-path benchmarks, one core.
bench:
	$(GO) test -run '^$$' -bench . -benchtime 2s -cpu 1 ./internal/event/ ./ingest/

## bench-e2e: failure → patrol latency measured from the producer to the
## patrol endpoint on a fresh acu-dev, with the bare pipeline beside it;
## ARGS are acu bench's flags, ACU_DEV_FLAGS acu-dev's (real servers).
bench-e2e:
	bash scripts/bench-e2e.sh $(ARGS)

## run: the whole system with the simulator.
run:
	$(GO) run ./cmd/acu-dev --produce
