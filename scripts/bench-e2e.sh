#!/usr/bin/env bash
# The failure → patrol latency benchmark, end to end: builds acu and
# acu-dev, starts acu-dev with its patrol notifications pointed at the
# benchmark's endpoint, runs `acu bench` with the arguments given, and stops
# acu-dev (also on failure).
#
#   scripts/bench-e2e.sh --failing-rate 100 --passing-rate 900 --duration 5m
#   ACU_DEV_FLAGS="--kafka 127.0.0.1:9092 --store cassandra://127.0.0.1/acu" scripts/bench-e2e.sh ...
#
# ACU_DEV_FLAGS: extra acu-dev flags (real servers, tuning). BENCH_LOG: where
# acu-dev's log goes (default: a temporary file, printed on failure).
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=local
bin=$(mktemp -d)
log=${BENCH_LOG:-$bin/acu-dev.log}
go build -o "$bin/" ./cmd/acu ./cmd/acu-dev
listen=127.0.0.1:8099
# shellcheck disable=SC2086 # ACU_DEV_FLAGS is a list of flags
"$bin/acu-dev" --patrol-url "http://$listen/patrol" --follow-up-after 30m ${ACU_DEV_FLAGS:-} >"$log" 2>&1 &
pid=$!
cleanup() {
	kill "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	rm -rf "$bin"
}
trap cleanup EXIT
deadline=$((SECONDS + 180))
until [ "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8080/readyz || true)" = 200 ]; do
	if ! kill -0 "$pid" 2>/dev/null || [ $SECONDS -ge $deadline ]; then
		echo "bench-e2e: acu-dev did not become ready; its log:" >&2
		tail -n 50 "$log" >&2
		exit 1
	fi
	sleep 0.5
done
status=0
"$bin/acu" bench --patrol-listen "$listen" "$@" || status=$?
if [ $status -ne 0 ]; then
	echo "bench-e2e: acu bench failed ($status); the end of acu-dev's log:" >&2
	tail -n 30 "$log" >&2
fi
exit $status
