#!/usr/bin/env bash
# deploy/local/servers.sh — real Apache Kafka 4.x (KRaft) and Apache Cassandra 5.0 on 127.0.0.1 (or
# ACU_HOST), run from their Maven Central jars with `java -cp` (no Docker, no tarball downloads).
#
#   servers.sh start  kafka|cassandra|all   fetch+cache the jars, write configs, launch, wait until ready
#   servers.sh launch kafka|cassandra|all   the same without the wait (cluster nodes: launch all, then wait)
#   servers.sh stop   kafka|cassandra|all   SIGTERM, wait, then SIGKILL
#   servers.sh wait   [kafka|cassandra|all] wait until the running server(s) answer (default: all)
#   servers.sh status [kafka|cassandra|all] print state; exit 1 if a named server is not answering
#   servers.sh classpath kafka|cassandra    print the (cached) classpath
#   servers.sh run kafka|cassandra CLASS [ARGS...]  run a main class on that classpath (Kafka CLIs, NodeTool)
#   servers.sh clean  [kafka|cassandra|all] delete the data and logs of stopped servers
#
# Environment (all optional):
#   ACU_LOCAL_DIR               state: data, logs, configs, pid files   (default ${TMPDIR:-/tmp}/acu-local;
#                               one per node when several nodes run on one machine)
#   ACU_HOST                    the address every listener of this node binds to, and that the probes,
#                               advertised and broadcast addresses use   (default 127.0.0.1)
#   ACU_CGROUP                  a cgroup v2 directory (created by the caller): the server process is moved
#                               into it before java starts, so its children and sockets belong to it too
#                               (default: none, the server stays in the caller's cgroup)
#   ACU_KAFKA_PORT              Kafka client listener                     (default 9092)
#   ACU_KAFKA_CONTROLLER_PORT   KRaft controller listener                 (default 9093)
#   ACU_KAFKA_AUTO_CREATE_TOPICS  auto.create.topics.enable               (default false, as in production:
#                               topics are created by `acu setup` / CreateTopics)
#   ACU_KAFKA_NODE_ID           node.id of this broker+controller         (default 1)
#   ACU_KAFKA_VOTERS            controller.quorum.voters, the static KRaft quorum, e.g.
#                               1@127.0.0.11:9093,2@127.0.0.12:9093,3@127.0.0.13:9093
#                               (default this node alone: NODE_ID@ACU_HOST:CONTROLLER_PORT)
#   ACU_KAFKA_CLUSTER_ID        cluster id the storage is formatted with, shared by all brokers of a cluster
#                               (22-character base64url Kafka Uuid, e.g. from `run kafka kafka.tools.StorageTool
#                               random-uuid`; default a random one; required with more than one voter)
#   ACU_KAFKA_REPLICATION       replication factor of new and internal topics; min.insync.replicas and
#                               transaction.state.log.min.isr are min(2, it)   (default 1)
#   ACU_KAFKA_HEAP              Kafka -Xmx/-Xms                           (default 512m)
#   ACU_KAFKA_TIMEOUT           seconds to wait for Kafka                 (default 90)
#   ACU_CASSANDRA_PORT          CQL native transport                      (default 9042)
#   ACU_CASSANDRA_STORAGE_PORT  internode (gossip) port                   (default 7000)
#   ACU_CASSANDRA_SEEDS         comma-separated seed addresses, host or host:port (default ACU_HOST)
#   ACU_CASSANDRA_INITIAL_TOKEN this node's one token; when set, also auto_bootstrap: false and
#                               -Dcassandra.consistent.rangemovement=false, so that fresh nodes started
#                               together form one ring   (default: initial_token 0, bootstrap as Cassandra decides)
#   ACU_CASSANDRA_JMX_PORT      open JMX (nodetool) on ACU_HOST:PORT, registry and RMI on that one port,
#                               no authentication   (default: no JMX port at all)
#   ACU_CASSANDRA_UNSAFE_SYSTEM -Dcassandra.unsafesystem: no flush of the schema tables after a schema
#                               change (fast; a SIGKILLed node forgets recent schema changes)
#                               (default true; false when ACU_CASSANDRA_INITIAL_TOKEN is set)
#   ACU_CASSANDRA_HEAP          Cassandra -Xmx                            (default 1g)
#   ACU_CASSANDRA_HEAP_MIN      Cassandra -Xms                            (default 256m)
#   ACU_CASSANDRA_TIMEOUT       seconds to wait for Cassandra             (default 180)
#   JAVA, MVN                   the java and mvn commands                 (default: from PATH)
#
# Everything listens on ACU_HOST (127.0.0.1) only (with ACU_CASSANDRA_JMX_PORT, the JDK's local-only
# JMX connector excepted: see cassandra_start). The data is throwaway (Cassandra runs with the fsync
# shortcuts of its own test suite), for development and CI, not for keeping.
#
# A cluster on one machine: one call per node, each with its own ACU_LOCAL_DIR and ACU_HOST (any
# 127.0.0.0/8 address works on Linux), the same ports; Kafka nodes share ACU_KAFKA_VOTERS and
# ACU_KAFKA_CLUSTER_ID, Cassandra nodes ACU_CASSANDRA_SEEDS and each has its ACU_CASSANDRA_INITIAL_TOKEN.
# `launch` every node, then `wait` for each (a 3-voter quorum answers only once 2 voters run).
# deploy/local/README.md has the example.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SELF="$HERE/$(basename "${BASH_SOURCE[0]}")"
STATE=${ACU_LOCAL_DIR:-${TMPDIR:-/tmp}/acu-local}
case "$STATE" in /*) ;; *) STATE="$PWD/$STATE" ;; esac # configs hold absolute paths
HOST=${ACU_HOST:-127.0.0.1}
CGROUP=${ACU_CGROUP:-}
JAVA=${JAVA:-java}
MVN=${MVN:-mvn}

KAFKA_PORT=${ACU_KAFKA_PORT:-9092}
KAFKA_CONTROLLER_PORT=${ACU_KAFKA_CONTROLLER_PORT:-9093}
KAFKA_AUTO_CREATE=${ACU_KAFKA_AUTO_CREATE_TOPICS:-false}
KAFKA_HEAP=${ACU_KAFKA_HEAP:-512m}
KAFKA_TIMEOUT=${ACU_KAFKA_TIMEOUT:-90}
KAFKA_NODE_ID=${ACU_KAFKA_NODE_ID:-1}
KAFKA_VOTERS=${ACU_KAFKA_VOTERS:-$KAFKA_NODE_ID@$HOST:$KAFKA_CONTROLLER_PORT}
KAFKA_CLUSTER_ID=${ACU_KAFKA_CLUSTER_ID:-}
KAFKA_REPLICATION=${ACU_KAFKA_REPLICATION:-1}
CASSANDRA_PORT=${ACU_CASSANDRA_PORT:-9042}
CASSANDRA_STORAGE_PORT=${ACU_CASSANDRA_STORAGE_PORT:-7000}
CASSANDRA_HEAP=${ACU_CASSANDRA_HEAP:-1g}
CASSANDRA_HEAP_MIN=${ACU_CASSANDRA_HEAP_MIN:-256m}
CASSANDRA_TIMEOUT=${ACU_CASSANDRA_TIMEOUT:-180}
CASSANDRA_SEEDS=${ACU_CASSANDRA_SEEDS:-$HOST}
CASSANDRA_INITIAL_TOKEN=${ACU_CASSANDRA_INITIAL_TOKEN:-}
CASSANDRA_JMX_PORT=${ACU_CASSANDRA_JMX_PORT:-}
if [ -n "$CASSANDRA_INITIAL_TOKEN" ]; then CASSANDRA_UNSAFE_SYSTEM=${ACU_CASSANDRA_UNSAFE_SYSTEM:-false}; else
  CASSANDRA_UNSAFE_SYSTEM=${ACU_CASSANDRA_UNSAFE_SYSTEM:-true}; fi

KAFKA_MAIN=kafka.Kafka
CASSANDRA_MAIN=org.apache.cassandra.service.CassandraDaemon
STOP_TIMEOUT=45 # seconds between SIGTERM and SIGKILL

say() { printf 'servers.sh: %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

usage() {
  sed -n '2,13p' "$SELF" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

names() { # expand kafka|cassandra|all (default all) into server names
  case "${1:-all}" in
    all) echo cassandra kafka ;;
    kafka | cassandra) echo "$1" ;;
    *) die "unknown server '$1' (expected kafka, cassandra or all)" ;;
  esac
}

main_class() { if [ "$1" = kafka ]; then echo "$KAFKA_MAIN"; else echo "$CASSANDRA_MAIN"; fi; }
pid_file() { echo "$STATE/$1.pid"; }
log_file() { echo "$STATE/$1/logs/$1.log"; }

# pid_of NAME: print the pid of our running server NAME and succeed, or fail. The pid must still
# be a java process running that server's main class (a stale pid file or a recycled pid is not).
pid_of() {
  local f pid args
  f=$(pid_file "$1")
  [ -f "$f" ] || return 1
  pid=$(cat "$f" 2>/dev/null) || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  if [ -r "/proc/$pid/cmdline" ]; then
    args=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  else
    args=$(ps -o args= -p "$pid" 2>/dev/null) || return 1
  fi
  [[ "$args" == *"$(main_class "$1")"* ]] || return 1
  echo "$pid"
}

port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

last_lines() { # NAME [N]: show the first errors and the end of a server's log on stderr
  local log
  log=$(log_file "$1")
  if [ -s "$log" ]; then
    if grep -qE '^(ERROR|\[[^]]*\] (ERROR|FATAL))|Exception:' "$log"; then
      say "---- first errors in $log ----"
      grep -m 8 -E '^(ERROR|\[[^]]*\] (ERROR|FATAL))|Exception:' "$log" | cut -c1-400 >&2
    fi
    say "---- last ${2:-40} lines of $log ----"
    tail -n "${2:-40}" "$log" >&2
    say "---- end of $log ----"
  else
    say "(no log at $log)"
  fi
}

java_major() {
  # sed reads all of java's output (a `| head` could kill java with SIGPIPE under pipefail).
  "$JAVA" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p'
}

check_java() {
  command -v "$JAVA" >/dev/null 2>&1 || die "java not found (set JAVA=...); JDK 17 is required"
  local v
  v=$(java_major)
  [[ "$v" =~ ^[0-9]+$ ]] || die "cannot tell the version of $JAVA"
  [ "$v" -ge 17 ] || die "Kafka 4 and these Cassandra options need JDK 17; $JAVA is $v"
  [ "$v" -eq 17 ] || say "warning: Cassandra 5.0 supports JDK 11 and 17; $JAVA is $v"
}

# classpath NAME: print the classpath of deploy/local/NAME/pom.xml. Cached in $STATE/NAME/classpath
# (reused while it is newer than the POM and all its jars exist); otherwise resolved by Maven,
# offline first (everything already in ~/.m2: no network), then online (fetches into ~/.m2).
classpath() {
  local name=$1 pom="$HERE/$1/pom.xml" dir="$STATE/$1" cp_file tmp jar ok=1
  cp_file="$dir/classpath"
  [ -f "$pom" ] || die "missing $pom"
  if [ -s "$cp_file" ] && [ "$cp_file" -nt "$pom" ]; then
    while IFS= read -r -d: jar || [ -n "$jar" ]; do
      [ -f "$jar" ] || { ok=0; break; }
    done <"$cp_file"
    if [ "$ok" = 1 ]; then cat "$cp_file"; return 0; fi
  fi
  command -v "$MVN" >/dev/null 2>&1 || die "mvn not found (set MVN=...)"
  mkdir -p "$dir"
  tmp="$cp_file.tmp.$$"
  local args=(-q -B -f "$pom" dependency:build-classpath "-Dmdep.outputFile=$tmp" -Dmdep.includeScope=runtime)
  if ! "$MVN" -o "${args[@]}" >"$dir/mvn.log" 2>&1; then
    say "resolving $name jars from Maven Central (first run; cached in ~/.m2 afterwards)"
    if ! "$MVN" "${args[@]}" >"$dir/mvn.log" 2>&1; then
      tail -n 30 "$dir/mvn.log" >&2
      rm -f "$tmp"
      die "Maven could not resolve the $name classpath ($pom); full output in $dir/mvn.log"
    fi
  fi
  [ -s "$tmp" ] || die "Maven produced an empty $name classpath; see $dir/mvn.log"
  mv -f "$tmp" "$cp_file"
  cat "$cp_file"
}

check_cgroup() { # ACU_CGROUP, when set, must be an existing cgroup v2 directory
  [ -z "$CGROUP" ] && return 0
  [ -f "$CGROUP/cgroup.procs" ] || die "ACU_CGROUP=$CGROUP is not a cgroup directory (no cgroup.procs); create it first"
  [ -f "$CGROUP/cgroup.controllers" ] || die "ACU_CGROUP=$CGROUP is not in a cgroup v2 hierarchy (no cgroup.controllers)"
}

# launch NAME JAVA_ARGS...: start java in the background in its own session, stdout+stderr to the
# server's log (the previous one is kept as .1), and record the pid. With ACU_CGROUP, the subshell
# moves itself into that cgroup first, so java runs in it from its first instruction. Returns once
# that pid is java running the server (not the subshell any more), so pid_of can tell it from a
# server that died.
launch() {
  local name=$1 log pid i
  shift
  log=$(log_file "$name")
  mkdir -p "$(dirname "$log")"
  [ -f "$log" ] && mv -f "$log" "$log.1"
  # The subshell is not a process-group leader, so setsid execs java in place: $! is java's pid.
  (
    cd "$STATE/$name" || exit 1
    exec </dev/null >"$log" 2>&1
    if [ -n "$CGROUP" ]; then
      echo "$BASHPID" >"$CGROUP/cgroup.procs" || { echo "servers.sh: cannot move pid $BASHPID into $CGROUP"; exit 1; }
    fi
    exec setsid "$JAVA" "$@"
  ) &
  pid=$!
  echo "$pid" >"$(pid_file "$name")"
  date +%s >"$STATE/$name.launched"
  for ((i = 0; i < 100; i++)); do # the subshell's cgroup move takes milliseconds; exec is quick too
    pid_of "$name" >/dev/null && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if ! pid_of "$name" >/dev/null; then
    kill -KILL "$pid" 2>/dev/null || true # still the subshell after 10 s: do not leave it to start later
    last_lines "$name"
    die "$name: pid $pid did not become the server (log: $log)"
  fi
  say "$name: started pid $pid on $HOST${CGROUP:+ in cgroup $CGROUP} (log: $log)"
}

ports_free() { # NAME PORT...: fail clearly if another process already listens on a port we need
  local name=$1 p
  shift
  for p in "$@"; do
    if port_open "$p"; then
      if command -v ss >/dev/null 2>&1; then ss -ltnp "sport = :$p" >&2 || true; fi
      die "$name: port $HOST:$p is already in use by another process"
    fi
  done
}

# ---------------------------------------------------------------- Kafka

# Probe: a real Kafka request, ApiVersions v0, answered with error code 0. The broker serves
# requests only once it has started (caught up with the metadata log and been unfenced).
probe_kafka() {
  local out
  # shellcheck disable=SC2016 # the script is for the inner bash
  out=$(timeout 5 bash -c '
    exec 3<>"/dev/tcp/$0/$1" || exit 1
    # size=13 | api_key=18 api_version=0 correlation_id=7 client_id="acu"
    printf "\x00\x00\x00\x0d\x00\x12\x00\x00\x00\x00\x00\x07\x00\x03acu" >&3
    dd bs=1 count=10 status=none <&3 | od -An -tx1 | tr -d " \n"' "$HOST" "$KAFKA_PORT" 2>/dev/null) || return 1
  # size (4 bytes) | correlation_id = 7 | error_code = 0
  [[ "$out" =~ ^[0-9a-f]{8}000000070000$ ]]
}

kafka_ready() {
  grep -q 'Kafka Server started' "$(log_file kafka)" 2>/dev/null && probe_kafka
}

check_kafka_env() {
  [[ "$KAFKA_NODE_ID" =~ ^[0-9]+$ ]] || die "ACU_KAFKA_NODE_ID must be a number, not '$KAFKA_NODE_ID'"
  [[ "$KAFKA_REPLICATION" =~ ^[1-9][0-9]*$ ]] || die "ACU_KAFKA_REPLICATION must be a number >= 1, not '$KAFKA_REPLICATION'"
  [[ ",$KAFKA_VOTERS," == *",$KAFKA_NODE_ID@"* ]] || die "ACU_KAFKA_VOTERS ($KAFKA_VOTERS) does not list node $KAFKA_NODE_ID"
  if [ -z "$KAFKA_CLUSTER_ID" ] && [[ "$KAFKA_VOTERS" == *,* ]]; then
    die "ACU_KAFKA_CLUSTER_ID is required with several voters: every broker of the cluster is formatted with it"
  fi
  if [ -n "$KAFKA_CLUSTER_ID" ] && ! [[ "$KAFKA_CLUSTER_ID" =~ ^[A-Za-z0-9_][A-Za-z0-9_-]{21}$ ]]; then
    die "ACU_KAFKA_CLUSTER_ID must be a Kafka Uuid (22 characters of base64url, not starting with '-'), not '$KAFKA_CLUSTER_ID'"
  fi
}

write_kafka_config() {
  local dir=$1 rf=$KAFKA_REPLICATION min_isr=1
  if [ "$rf" -ge 2 ]; then min_isr=2; fi
  mkdir -p "$dir/conf" "$dir/data" "$dir/logs"
  cat >"$dir/conf/server.properties" <<EOF
# Written by deploy/local/servers.sh: KRaft, combined broker + controller, static quorum.
process.roles=broker,controller
node.id=$KAFKA_NODE_ID
controller.quorum.voters=$KAFKA_VOTERS
listeners=PLAINTEXT://$HOST:$KAFKA_PORT,CONTROLLER://$HOST:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir/data
# One partition by default; replication factor ACU_KAFKA_REPLICATION (1: a single broker) everywhere,
# internal topics included, and min ISR min(2, it).
num.partitions=1
default.replication.factor=$rf
min.insync.replicas=$min_isr
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$min_isr
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$min_isr
auto.create.topics.enable=$KAFKA_AUTO_CREATE
delete.topic.enable=true
group.initial.rebalance.delay.ms=0
# Small machine: few threads, small segments.
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
log.segment.bytes=67108864
log.retention.hours=24
EOF
  cat >"$dir/conf/log4j2.xml" <<'EOF'
<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="warn" name="acu-local-kafka">
  <Appenders>
    <Console name="STDOUT" target="SYSTEM_OUT">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </Console>
  </Appenders>
  <Loggers>
    <Root level="info"><AppenderRef ref="STDOUT"/></Root>
    <Logger name="kafka.request.logger" level="warn"/>
    <Logger name="state.change.logger" level="warn"/>
    <Logger name="kafka.authorizer.logger" level="warn"/>
    <Logger name="org.apache.kafka.clients" level="warn"/>
  </Loggers>
</Configuration>
EOF
  write_kafka_tools_log4j "$dir"
}

write_kafka_tools_log4j() { # the logging of Kafka's command-line tools: warnings, on stderr
  mkdir -p "$1/conf"
  cat >"$1/conf/tools-log4j2.xml" <<'EOF'
<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="warn" name="acu-local-kafka-tools">
  <Appenders>
    <Console name="STDERR" target="SYSTEM_ERR"><PatternLayout pattern="[%d] %p %m (%c)%n"/></Console>
  </Appenders>
  <Loggers>
    <Root level="warn"><AppenderRef ref="STDERR"/></Root>
  </Loggers>
</Configuration>
EOF
}

kafka_start() {
  local dir="$STATE/kafka" cp cid pid
  if pid=$(pid_of kafka); then say "kafka: already running (pid $pid)"; return 0; fi
  check_kafka_env
  ports_free kafka "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"
  cp=$(classpath kafka)
  write_kafka_config "$dir"
  if [ -f "$dir/data/meta.properties" ]; then
    # Formatted before: keep the data (a restarted broker rejoins with its log), but not another cluster's.
    cid=$(sed -n 's/^cluster\.id=//p' "$dir/data/meta.properties")
    if [ -n "$KAFKA_CLUSTER_ID" ] && [ "$cid" != "$KAFKA_CLUSTER_ID" ]; then
      die "kafka: $dir/data belongs to cluster $cid, not ACU_KAFKA_CLUSTER_ID=$KAFKA_CLUSTER_ID (servers.sh clean kafka)"
    fi
  else
    # The given cluster id, or a random one: 16 random bytes, base64url without padding (Kafka's
    # Uuid format); one starting with '-' would read as an option, so draw again. With static
    # controller.quorum.voters, a plain format is all a multi-voter quorum needs.
    cid=${KAFKA_CLUSTER_ID:--}
    while [[ "$cid" == -* ]]; do
      cid=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | cut -c1-22)
    done
    if ! "$JAVA" -Xmx256m -Dlog4j2.configurationFile="$dir/conf/tools-log4j2.xml" -cp "$cp" \
      kafka.tools.StorageTool format -t "$cid" -c "$dir/conf/server.properties" \
      >"$dir/logs/format.log" 2>&1; then
      cat "$dir/logs/format.log" >&2
      die "kafka: formatting the storage in $dir/data failed"
    fi
    say "kafka: formatted $dir/data (cluster id $cid)"
  fi
  launch kafka \
    "-Xms$KAFKA_HEAP" "-Xmx$KAFKA_HEAP" \
    -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
    -XX:+ExplicitGCInvokesConcurrent -XX:+ExitOnOutOfMemoryError \
    -Djava.awt.headless=true -Djava.net.preferIPv4Stack=true \
    "-Dlog4j2.configurationFile=$dir/conf/log4j2.xml" "-Dkafka.logs.dir=$dir/logs" \
    -cp "$cp" "$KAFKA_MAIN" "$dir/conf/server.properties"
}

# ---------------------------------------------------------------- Cassandra

# JPMS: the list of conf/jvm17-server.options (Cassandra 5.0). Its tools (NodeTool, through `run
# cassandra`) need these too: they touch the same JDK internals.
CASSANDRA_JPMS=(
  -Djdk.attach.allowAttachSelf=true
  --add-exports java.base/jdk.internal.misc=ALL-UNNAMED
  --add-exports java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED
  --add-exports java.rmi/sun.rmi.registry=ALL-UNNAMED
  --add-exports java.rmi/sun.rmi.server=ALL-UNNAMED
  --add-exports java.sql/java.sql=ALL-UNNAMED
  --add-exports java.base/java.lang.ref=ALL-UNNAMED
  --add-exports jdk.unsupported/sun.misc=ALL-UNNAMED
  --add-exports jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED
  --add-exports jdk.attach/sun.tools.attach=ALL-UNNAMED
  --add-opens java.base/java.lang.module=ALL-UNNAMED
  --add-opens java.base/jdk.internal.loader=ALL-UNNAMED
  --add-opens java.base/jdk.internal.ref=ALL-UNNAMED
  --add-opens java.base/jdk.internal.reflect=ALL-UNNAMED
  --add-opens java.base/jdk.internal.math=ALL-UNNAMED
  --add-opens java.base/jdk.internal.module=ALL-UNNAMED
  --add-opens java.base/jdk.internal.util.jar=ALL-UNNAMED
  --add-opens jdk.management/com.sun.management.internal=ALL-UNNAMED
  --add-opens java.base/sun.nio.ch=ALL-UNNAMED
  --add-opens java.base/java.io=ALL-UNNAMED
  --add-opens java.base/java.lang.reflect=ALL-UNNAMED
  --add-opens jdk.compiler/com.sun.tools.javac=ALL-UNNAMED
  --add-opens java.base/java.lang=ALL-UNNAMED
  --add-opens java.base/java.util=ALL-UNNAMED
)

# Probe: a real CQL round trip over native protocol v4 — STARTUP, then
# SELECT release_version FROM system.local — printing the server version.
probe_cql() {
  local out
  # shellcheck disable=SC2016 # the script is for the inner bash
  out=$(timeout 10 bash -c '
    q="SELECT release_version FROM system.local"
    hex32() { printf "\\\\x%02x\\\\x%02x\\\\x%02x\\\\x%02x" $(($1>>24&255)) $(($1>>16&255)) $(($1>>8&255)) $(($1&255)); }
    exec 3<>"/dev/tcp/$0/$1" || exit 1
    # STARTUP {CQL_VERSION: 3.0.0}: version 4, flags 0, stream 1, opcode 0x01, length 22
    printf "\x04\x00\x00\x01\x01\x00\x00\x00\x16\x00\x01\x00\x0bCQL_VERSION\x00\x053.0.0" >&3
    hdr=$(dd bs=1 count=9 status=none <&3 | od -An -tx1 | tr -d " \n")
    [ "$hdr" = 840000010200000000 ] || { echo "no READY: $hdr"; exit 1; }
    # QUERY: long string, consistency ONE, no flags; stream 2, opcode 0x07
    body_len=$((4 + ${#q} + 3))
    printf "\x04\x00\x00\x02\x07$(hex32 $body_len)$(hex32 ${#q})%s\x00\x01\x00" "$q" >&3
    hdr=$(dd bs=1 count=9 status=none <&3 | od -An -tx1 | tr -d " \n")
    [ "${hdr:0:10}" = 8400000208 ] || { echo "no RESULT: $hdr"; exit 1; }
    len=$((16#${hdr:10:8}))
    dd bs=1 count="$len" status=none <&3 | tr -c "[:print:]" " " | grep -oE "[0-9]+\.[0-9]+\.[0-9]+[^ ]*" | tail -n1
  ' "$HOST" "$CASSANDRA_PORT" 2>/dev/null) || return 1
  [ -n "$out" ] || return 1
  echo "$out"
}

cassandra_ready() {
  grep -q 'Starting listening for CQL clients' "$(log_file cassandra)" 2>/dev/null && probe_cql >/dev/null
}

check_cassandra_env() {
  if [ -n "$CASSANDRA_INITIAL_TOKEN" ] && ! [[ "$CASSANDRA_INITIAL_TOKEN" =~ ^-?[0-9]+$ ]]; then
    die "ACU_CASSANDRA_INITIAL_TOKEN must be one Murmur3 token (a number), not '$CASSANDRA_INITIAL_TOKEN'"
  fi
  if [ -n "$CASSANDRA_JMX_PORT" ] && ! [[ "$CASSANDRA_JMX_PORT" =~ ^[1-9][0-9]*$ ]]; then
    die "ACU_CASSANDRA_JMX_PORT must be a port number, not '$CASSANDRA_JMX_PORT'"
  fi
  [ -n "${CASSANDRA_SEEDS//[ ,]/}" ] || die "ACU_CASSANDRA_SEEDS is empty"
  case "$CASSANDRA_UNSAFE_SYSTEM" in true | false) ;; *) die "ACU_CASSANDRA_UNSAFE_SYSTEM must be true or false, not '$CASSANDRA_UNSAFE_SYSTEM'" ;; esac
}

cassandra_seeds() { # ACU_CASSANDRA_SEEDS with the storage port added where an entry has none
  local seed out=
  local -a seeds
  IFS=, read -r -a seeds <<<"$CASSANDRA_SEEDS"
  for seed in "${seeds[@]}"; do
    seed=${seed// /}
    [ -n "$seed" ] || continue
    [[ "$seed" == *:* ]] || seed="$seed:$CASSANDRA_STORAGE_PORT"
    out="${out:+$out,}$seed"
  done
  echo "$out"
}

write_cassandra_config() {
  local dir=$1 token=${CASSANDRA_INITIAL_TOKEN:-0} bootstrap=
  # A node given its token joins a ring being formed, its data empty: nothing to stream from anyone.
  if [ -n "$CASSANDRA_INITIAL_TOKEN" ]; then bootstrap='auto_bootstrap: false'; fi
  mkdir -p "$dir/conf" "$dir/data" "$dir/logs" "$dir/triggers"
  cat >"$dir/conf/cassandra.yaml" <<EOF
# Written by deploy/local/servers.sh: a Cassandra 5.0 node on $HOST, throwaway data.
cluster_name: acu-local
num_tokens: 1
initial_token: $token
$bootstrap
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
endpoint_snitch: SimpleSnitch
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "$(cassandra_seeds)"
listen_address: $HOST
broadcast_address: $HOST
rpc_address: $HOST
broadcast_rpc_address: $HOST
storage_port: $CASSANDRA_STORAGE_PORT
start_native_transport: true
native_transport_port: $CASSANDRA_PORT

data_file_directories:
  - $dir/data/data
commitlog_directory: $dir/data/commitlog
saved_caches_directory: $dir/data/saved_caches
hints_directory: $dir/data/hints
cdc_raw_directory: $dir/data/cdc_raw

authenticator: AllowAllAuthenticator
authorizer: AllowAllAuthorizer
hinted_handoff_enabled: false
auto_snapshot: false
snapshot_before_compaction: false
incremental_backups: false
cdc_enabled: false

# Small machine, small memory.
commitlog_sync: periodic
commitlog_sync_period: 10000ms
commitlog_segment_size: 8MiB
commitlog_total_space: 256MiB
memtable_heap_space: 64MiB
memtable_offheap_space: 64MiB
concurrent_reads: 8
concurrent_writes: 8
concurrent_counter_writes: 8
concurrent_materialized_view_writes: 8
concurrent_compactors: 1
compaction_throughput: 64MiB/s
key_cache_size: 16MiB
counter_cache_size: 8MiB
prepared_statements_cache_size: 8MiB
disk_failure_policy: stop
commit_failure_policy: stop
EOF
  cat >"$dir/conf/logback.xml" <<'EOF'
<configuration scan="false">
  <appender name="STDOUT" class="ch.qos.logback.core.ConsoleAppender">
    <encoder><pattern>%-5level [%thread] %date{ISO8601} %logger{1} - %msg%n</pattern></encoder>
  </appender>
  <root level="INFO"><appender-ref ref="STDOUT"/></root>
</configuration>
EOF
}

write_cassandra_tools_logback() { # the logging of Cassandra's tools: warnings, on stderr (logback's default is DEBUG on stdout)
  mkdir -p "$1/conf"
  cat >"$1/conf/tools-logback.xml" <<'EOF'
<configuration scan="false">
  <appender name="STDERR" class="ch.qos.logback.core.ConsoleAppender">
    <target>System.err</target>
    <encoder><pattern>%-5level %date{ISO8601} %logger{1} - %msg%n</pattern></encoder>
  </appender>
  <root level="WARN"><appender-ref ref="STDERR"/></root>
</configuration>
EOF
}

cassandra_start() {
  local dir="$STATE/cassandra" cp jamm jar pid
  if pid=$(pid_of cassandra); then say "cassandra: already running (pid $pid)"; return 0; fi
  check_cassandra_env
  ports_free cassandra "$CASSANDRA_PORT" "$CASSANDRA_STORAGE_PORT" ${CASSANDRA_JMX_PORT:+"$CASSANDRA_JMX_PORT"}
  cp=$(classpath cassandra)
  write_cassandra_config "$dir"
  # Cassandra measures objects with jamm, loaded as a Java agent as bin/cassandra does.
  # (No `tr | grep -m1` here: grep exiting at the first match can kill tr with SIGPIPE, which
  # pipefail turns into a failure; that happened on CI.)
  local -a jars
  IFS=: read -r -a jars <<<"$cp"
  jamm=
  for jar in "${jars[@]}"; do
    if [[ "$jar" =~ /jamm-[0-9.]+\.jar$ ]]; then jamm=$jar; break; fi
  done
  [ -n "$jamm" ] || die "cassandra: jamm not on the classpath"
  local -a extra=()
  if [ -n "$CASSANDRA_JMX_PORT" ]; then
    # The JDK's own JMX agent, because it can bind to one address (Cassandra 5.0's own JMX server
    # binds to 127.0.0.1 or to every address); Cassandra then leaves JMX to it. The registry and
    # the RMI objects share the one port, and the stubs name ACU_HOST. (The agent also opens its
    # local-only connector, for jconsole and jcmd on this machine: an ephemeral port on every
    # address, refusing non-local clients; no setting binds it to one address.)
    extra+=("-Dcom.sun.management.jmxremote.port=$CASSANDRA_JMX_PORT"
      "-Dcom.sun.management.jmxremote.rmi.port=$CASSANDRA_JMX_PORT"
      "-Dcom.sun.management.jmxremote.host=$HOST" "-Djava.rmi.server.hostname=$HOST"
      -Dcom.sun.management.jmxremote.authenticate=false -Dcom.sun.management.jmxremote.ssl=false)
  fi
  if [ -n "$CASSANDRA_INITIAL_TOKEN" ]; then
    # Nodes of a new ring, started together: none waits for another's range movement to finish.
    extra+=(-Dcassandra.consistent.rangemovement=false)
  fi
  # -Xms is kept small on purpose: CassandraDaemon always calls mlockall(MCL_CURRENT), which for
  # root (CAP_IPC_LOCK ignores RLIMIT_MEMLOCK) pins every page committed at that moment: with
  # -Xms equal to -Xmx the whole heap would be resident from the start.
  launch cassandra \
    "-Xms$CASSANDRA_HEAP_MIN" "-Xmx$CASSANDRA_HEAP" -Xss256k \
    -XX:+UseG1GC -XX:+ParallelRefProcEnabled -XX:MaxTenuringThreshold=1 -XX:MaxGCPauseMillis=300 \
    -XX:+UseTLAB -XX:+ResizeTLAB -XX:+ExitOnOutOfMemoryError \
    -Djava.net.preferIPv4Stack=true -Djava.awt.headless=true \
    "${CASSANDRA_JPMS[@]}" \
    -Dio.netty.tryReflectionSetAccessible=true \
    -Dio.netty.allocator.useCacheForAllThreads=true -Dio.netty.allocator.maxOrder=11 \
    "-javaagent:$jamm" \
    `# where things are` \
    "-Dcassandra.config=file://$dir/conf/cassandra.yaml" \
    "-Dlogback.configurationFile=$dir/conf/logback.xml" \
    "-Dcassandra.storagedir=$dir/data" "-Dcassandra.logdir=$dir/logs" "-Dcassandra.triggers_dir=$dir/triggers" \
    -Dcassandra-foreground=yes \
    `# start-up shortcuts of Cassandra's own tests: one node, nothing to wait for; no fsync` \
    `# (no fsync loses nothing when only the process dies; unsafesystem does, see the header)` \
    -Dcassandra.skip_wait_for_gossip_to_settle=0 -Dcassandra.ring_delay_ms=1000 \
    "-Dcassandra.unsafesystem=$CASSANDRA_UNSAFE_SYSTEM" -Dcassandra.skip_sync=true \
    -Dcassandra.superuser_setup_delay_ms=0 -Dcassandra.test.ignore_sigar=true \
    -Dcassandra.memtable_row_overhead_computation_step=100 \
    -Dchronicle.analytics.disable=true \
    ${extra[@]+"${extra[@]}"} \
    -cp "$cp" "$CASSANDRA_MAIN"
}

# ---------------------------------------------------------------- common

ready() { if [ "$1" = kafka ]; then kafka_ready; else cassandra_ready; fi; }
endpoint() { if [ "$1" = kafka ]; then echo "$HOST:$KAFKA_PORT"; else echo "$HOST:$CASSANDRA_PORT"; fi; }
timeout_of() { if [ "$1" = kafka ]; then echo "$KAFKA_TIMEOUT"; else echo "$CASSANDRA_TIMEOUT"; fi; }

# wait_ready NAME...: wait for all NAMEs together, each against its own deadline; fail at the
# first one that dies or misses its deadline, with the end of its log.
wait_ready() {
  local t0 now name pending=("$@") left since
  t0=$(date +%s)
  for name in "${pending[@]}"; do
    pid_of "$name" >/dev/null && continue
    if [ -f "$STATE/$name.launched" ]; then
      last_lines "$name"
      die "$name exited while starting (log: $(log_file "$name"))"
    fi
    die "$name is not running (start it with: $SELF start $name)"
  done
  while [ "${#pending[@]}" -gt 0 ]; do
    left=()
    now=$(date +%s)
    for name in "${pending[@]}"; do
      if ready "$name"; then
        since=$(cat "$STATE/$name.launched" 2>/dev/null || echo "$t0")
        say "$name: ready on $(endpoint "$name") (launched $((now - since)) s ago)"
      elif ! pid_of "$name" >/dev/null; then
        last_lines "$name"
        die "$name exited while starting (log: $(log_file "$name"))"
      elif [ $((now - t0)) -ge "$(timeout_of "$name")" ]; then
        last_lines "$name"
        die "$name did not answer on $(endpoint "$name") within $(timeout_of "$name") s (still running: pid $(pid_of "$name"); stop it with: $SELF stop $name)"
      else
        left+=("$name")
      fi
    done
    pending=("${left[@]+"${left[@]}"}")
    [ "${#pending[@]}" -eq 0 ] || sleep 1
  done
}

stop_one() {
  local name=$1 pid i
  if ! pid=$(pid_of "$name"); then
    rm -f "$(pid_file "$name")" "$STATE/$name.launched"
    say "$name: not running"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < STOP_TIMEOUT * 5; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  if kill -0 "$pid" 2>/dev/null; then
    say "$name: still running ${STOP_TIMEOUT} s after SIGTERM, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  fi
  kill -0 "$pid" 2>/dev/null && die "$name: pid $pid would not stop"
  rm -f "$(pid_file "$name")" "$STATE/$name.launched"
  say "$name: stopped (pid $pid)"
}

status() {
  local name pid rc=0 v
  for name in "$@"; do
    if pid=$(pid_of "$name"); then
      if [ "$name" = cassandra ] && v=$(probe_cql); then
        echo "cassandra: running, pid $pid, CQL answers on $(endpoint cassandra) (Cassandra $v)"
      elif [ "$name" = kafka ] && probe_kafka; then
        echo "kafka: running, pid $pid, Kafka API answers on $(endpoint kafka)"
      else
        echo "$name: running, pid $pid, NOT answering on $(endpoint "$name") (log: $(log_file "$name"))"
        rc=1
      fi
    else
      echo "$name: stopped"
      rc=1
    fi
  done
  return $rc
}

clean() {
  local name
  for name in "$@"; do
    pid_of "$name" >/dev/null && die "$name is running; stop it first"
    rm -rf "${STATE:?}/$name/data" "${STATE:?}/$name/logs" "${STATE:?}/$name/conf"
    say "$name: data and logs deleted"
  done
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
  start | launch)
    [ $# -eq 1 ] || usage
    check_java
    check_cgroup
    mkdir -p "$STATE"
    # Launch everything first (Cassandra, the slower, first), then wait for all of it together.
    for n in $(names "$1"); do "${n}_start"; done
    # shellcheck disable=SC2046
    if [ "$cmd" = start ]; then wait_ready $(names "$1"); fi
    ;;
  stop)
    [ $# -eq 1 ] || usage
    # Kafka first: it is independent of Cassandra, and both stop in parallel would only compete.
    for n in kafka cassandra; do
      if [[ " $(names "$1") " == *" $n "* ]]; then stop_one "$n"; fi
    done
    ;;
  wait)
    [ $# -le 1 ] || usage
    # shellcheck disable=SC2046
    wait_ready $(names "${1:-all}")
    ;;
  status)
    [ $# -le 1 ] || usage
    # shellcheck disable=SC2046
    status $(names "${1:-all}")
    ;;
  classpath)
    if [ $# -ne 1 ] || [ "$1" = all ]; then usage; fi
    names "$1" >/dev/null
    mkdir -p "$STATE"
    classpath "$1"
    echo
    ;;
  run)
    if [ $# -lt 2 ] || [ "$1" = all ]; then usage; fi
    names "$1" >/dev/null
    mkdir -p "$STATE"
    name=$1 cls=$2
    shift 2
    cp=$(classpath "$name")
    if [ "$name" = kafka ]; then
      write_kafka_tools_log4j "$STATE/kafka"
      exec "$JAVA" -Xmx256m "-Dlog4j2.configurationFile=$STATE/kafka/conf/tools-log4j2.xml" -cp "$cp" "$cls" "$@"
    fi
    write_cassandra_tools_logback "$STATE/cassandra"
    exec "$JAVA" -Xmx256m "${CASSANDRA_JPMS[@]}" "-Dlogback.configurationFile=$STATE/cassandra/conf/tools-logback.xml" \
      -cp "$cp" "$cls" "$@"
    ;;
  clean)
    [ $# -le 1 ] || usage
    # shellcheck disable=SC2046
    clean $(names "${1:-all}")
    ;;
  _probe-kafka) probe_kafka ;;
  _probe-cql) probe_cql ;;
  *) usage ;;
esac
