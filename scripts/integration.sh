#!/usr/bin/env bash
# Runs the integration suite against real servers started from Maven
# Central artifacts (deploy/local), on spare loopback ports, and stops them
# whatever happens. A server that cannot start is a failure, never a skip.
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

stop() {
	bash deploy/local/servers.sh stop kafka || true
	if [ -n "$own_dir" ]; then rm -rf "$own_dir"; fi
}
trap stop EXIT

bash deploy/local/servers.sh start kafka
ACU_IT_KAFKA=127.0.0.1:$ACU_KAFKA_PORT go test -tags integration -count=1 -timeout 10m ./integration/ -v 2>&1 |
	grep -E '^(=== RUN|--- |    |ok|FAIL|PASS|panic)' || true
# grep hides the verbose noise; the exit status is go test's.
exit "${PIPESTATUS[0]}"
