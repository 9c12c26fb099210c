#!/usr/bin/env bash
# Runs the integration suite (build tag integration: every test whose name
# has "Real") against a real Kafka broker and a real Cassandra node started
# from Maven Central artifacts (deploy/local), on spare loopback ports, and
# stops them whatever happens. A server that cannot start is a failure,
# never a skip. Extra arguments go to go test (e.g. -run ArchiveThroughput).
set -euo pipefail
cd "$(dirname "$0")/.."

own_dir=
if [ -z "${ACU_LOCAL_DIR:-}" ]; then
	ACU_LOCAL_DIR=$(mktemp -d "${TMPDIR:-/tmp}/acu-it.XXXXXX")
	own_dir=$ACU_LOCAL_DIR
fi
export ACU_LOCAL_DIR
export ACU_KAFKA_PORT=${ACU_KAFKA_PORT:-29092}
export ACU_KAFKA_CONTROLLER_PORT=${ACU_KAFKA_CONTROLLER_PORT:-29093}
export ACU_CASSANDRA_PORT=${ACU_CASSANDRA_PORT:-29042}
export ACU_CASSANDRA_STORAGE_PORT=${ACU_CASSANDRA_STORAGE_PORT:-27000}

stop() {
	bash deploy/local/servers.sh stop all || true
	if [ -n "$own_dir" ]; then rm -rf "$own_dir"; fi
}
trap stop EXIT

bash deploy/local/servers.sh start all
export ACU_IT_KAFKA=127.0.0.1:$ACU_KAFKA_PORT
export ACU_IT_CASSANDRA=127.0.0.1:$ACU_CASSANDRA_PORT
# grep hides the verbose noise; the exit status is go test's.
gotest() {
	local status
	set +e
	go test -tags integration -count=1 -timeout 20m "$@" -v 2>&1 |
		grep -E '^(=== RUN|--- |    |ok|FAIL|PASS|panic)'
	status=${PIPESTATUS[0]}
	set -e
	return "$status"
}
custom=
for a in "$@"; do case "$a" in -run | -run=*) custom=1 ;; esac; done
if [ -n "$custom" ]; then
	gotest "$@" ./integration/ ./internal/store/cassandra/ ./internal/dev/ ./workflows/
	exit
fi
gotest -run Real "$@" ./integration/ ./internal/store/cassandra/ ./internal/dev/ ./workflows/
# Last and alone: the test that stops and restarts the Cassandra node.
ACU_IT_SERVERS="$PWD/deploy/local/servers.sh" gotest -run '^TestArchiveSurvivesCassandraRestartReal$' "$@" ./integration/
