#!/usr/bin/env bash
# Runs the integration suite against real servers started from Maven
# Central artifacts (deploy/local), on spare loopback ports, and stops them
# whatever happens. A server that cannot start is a failure, never a skip.
set -euo pipefail
cd "$(dirname "$0")/.."

export ACU_LOCAL_DIR=${ACU_LOCAL_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/acu-it.XXXXXX")}
export ACU_KAFKA_PORT=${ACU_KAFKA_PORT:-29092}
export ACU_KAFKA_CONTROLLER_PORT=${ACU_KAFKA_CONTROLLER_PORT:-29093}

stop() { bash deploy/local/servers.sh stop kafka || true; }
trap stop EXIT

bash deploy/local/servers.sh start kafka
ACU_IT_KAFKA=127.0.0.1:$ACU_KAFKA_PORT go test -tags integration -count=1 -timeout 10m ./integration/ -v 2>&1 |
	grep -E '^(=== RUN|--- |    |ok|FAIL|PASS|panic)' || true
# grep hides the verbose noise; the exit status is go test's.
exit "${PIPESTATUS[0]}"
