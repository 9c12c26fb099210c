#!/usr/bin/env bash
# Runs the production topology on this machine under the nemesis
# (cmd/acu-chaos): 3 Cassandra nodes, 3 Kafka brokers, 3 etcd members,
# Temporal on PostgreSQL and two of each acu service, each on its own
# loopback address; a seeded schedule of kills, partitions and patrol
# failures; then the checker. Installs what it needs (iptables, PostgreSQL,
# cqlsh), builds the binaries, and stops everything it started whatever
# happens. A topology that cannot start is a failure, never a skip.
#
#   scripts/chaos.sh [--duration 30m] [--seed N] [--rate R]   (0: every fault once)
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" = 0 ] || { echo "chaos.sh: needs root (cgroups and iptables)" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive
if ! command -v iptables >/dev/null; then
	apt-get install -y -q iptables >/dev/null 2>&1 || { apt-get update -q && apt-get install -y -q iptables; }
fi
if ! command -v cqlsh >/dev/null; then
	python3 -m pip install -q cqlsh
fi
command -v cqlsh >/dev/null || { echo "chaos.sh: cqlsh not on PATH after pip install" >&2; exit 1; }

dir=${ACU_CHAOS_DIR:-${TMPDIR:-/tmp}/acu-chaos}
mkdir -p "$dir/bin"
go build -o "$dir/bin/" ./cmd/acu ./cmd/acu-node ./cmd/acu-chaos
down() { "$dir/bin/acu-chaos" down --dir "$dir" --repo "$PWD" || true; }
trap down EXIT
"$dir/bin/acu-chaos" run --dir "$dir" --repo "$PWD" "$@"
