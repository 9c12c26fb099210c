#!/usr/bin/env bash
# deploy/local/servers.sh — real Apache Kafka 4.x (KRaft) and Apache Cassandra 5.0 on 127.0.0.1,
# run from their Maven Central jars with `java -cp` (no Docker, no tarball downloads).
#
#   servers.sh start  kafka|cassandra|all   fetch+cache the jars, write configs, launch, wait until ready
#   servers.sh stop   kafka|cassandra|all   SIGTERM, wait, then SIGKILL
#   servers.sh wait   [kafka|cassandra|all] wait until the running server(s) answer (default: all)
#   servers.sh status [kafka|cassandra|all] print state; exit 1 if a named server is not answering
#   servers.sh classpath kafka|cassandra    print the (cached) classpath
#   servers.sh run kafka|cassandra CLASS [ARGS...]  run a main class on that classpath (e.g. Kafka CLIs)
#   servers.sh clean  [kafka|cassandra|all] delete the data and logs of stopped servers
#
# Environment (all optional):
#   ACU_LOCAL_DIR               state: data, logs, configs, pid files   (default ${TMPDIR:-/tmp}/acu-local)
#   ACU_KAFKA_PORT              Kafka client listener                     (default 9092)
#   ACU_KAFKA_CONTROLLER_PORT   KRaft controller listener                 (default 9093)
#   ACU_KAFKA_AUTO_CREATE_TOPICS  auto.create.topics.enable               (default false, as in production:
#                               topics are created by `acu setup` / CreateTopics)
#   ACU_KAFKA_HEAP              Kafka -Xmx/-Xms                           (default 512m)
#   ACU_KAFKA_TIMEOUT           seconds to wait for Kafka                 (default 90)
#   ACU_CASSANDRA_PORT          CQL native transport                      (default 9042)
#   ACU_CASSANDRA_STORAGE_PORT  internode (gossip) port, loopback only    (default 7000)
#   ACU_CASSANDRA_HEAP          Cassandra -Xmx                            (default 1g)
#   ACU_CASSANDRA_HEAP_MIN      Cassandra -Xms                            (default 256m)
#   ACU_CASSANDRA_TIMEOUT       seconds to wait for Cassandra             (default 180)
#   JAVA, MVN                   the java and mvn commands                 (default: from PATH)
#
# Everything listens on 127.0.0.1 only. The data is throwaway (Cassandra runs with the fsync
# shortcuts of its own test suite), for development and CI, not for keeping.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SELF="$HERE/$(basename "${BASH_SOURCE[0]}")"
STATE=${ACU_LOCAL_DIR:-${TMPDIR:-/tmp}/acu-local}
case "$STATE" in /*) ;; *) STATE="$PWD/$STATE" ;; esac # configs hold absolute paths
HOST=127.0.0.1
JAVA=${JAVA:-java}
MVN=${MVN:-mvn}

KAFKA_PORT=${ACU_KAFKA_PORT:-9092}
KAFKA_CONTROLLER_PORT=${ACU_KAFKA_CONTROLLER_PORT:-9093}
KAFKA_AUTO_CREATE=${ACU_KAFKA_AUTO_CREATE_TOPICS:-false}
KAFKA_HEAP=${ACU_KAFKA_HEAP:-512m}
KAFKA_TIMEOUT=${ACU_KAFKA_TIMEOUT:-90}
CASSANDRA_PORT=${ACU_CASSANDRA_PORT:-9042}
CASSANDRA_STORAGE_PORT=${ACU_CASSANDRA_STORAGE_PORT:-7000}
CASSANDRA_HEAP=${ACU_CASSANDRA_HEAP:-1g}
CASSANDRA_HEAP_MIN=${ACU_CASSANDRA_HEAP_MIN:-256m}
CASSANDRA_TIMEOUT=${ACU_CASSANDRA_TIMEOUT:-180}

KAFKA_MAIN=kafka.Kafka
CASSANDRA_MAIN=org.apache.cassandra.service.CassandraDaemon
STOP_TIMEOUT=45 # seconds between SIGTERM and SIGKILL

say() { printf 'servers.sh: %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

usage() {
  sed -n '2,12p' "$SELF" | sed 's/^# \{0,1\}//' >&2
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

# launch NAME JAVA_ARGS...: start java in the background in its own session, stdout+stderr to the
# server's log (the previous one is kept as .1), and record the pid.
launch() {
  local name=$1 log
  shift
  log=$(log_file "$name")
  mkdir -p "$(dirname "$log")"
  [ -f "$log" ] && mv -f "$log" "$log.1"
  # The subshell is not a process-group leader, so setsid execs java in place: $! is java's pid.
  (cd "$STATE/$name" && exec setsid "$JAVA" "$@" </dev/null >"$log" 2>&1) &
  echo $! >"$(pid_file "$name")"
  date +%s >"$STATE/$name.launched"
  say "$name: started pid $! (log: $log)"
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

write_kafka_config() {
  local dir=$1
  mkdir -p "$dir/conf" "$dir/data" "$dir/logs"
  cat >"$dir/conf/server.properties" <<EOF
# Written by deploy/local/servers.sh: single-node KRaft, combined broker + controller.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://$HOST:$KAFKA_PORT,CONTROLLER://$HOST:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir/data
# One broker: one partition by default, replication factor 1 everywhere, internal topics included.
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
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
  ports_free kafka "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"
  cp=$(classpath kafka)
  write_kafka_config "$dir"
  if [ ! -f "$dir/data/meta.properties" ]; then
    # A random cluster id: 16 random bytes, base64url without padding (Kafka's Uuid format); one
    # starting with '-' would read as an option, so draw again.
    cid=-
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

write_cassandra_config() {
  local dir=$1
  mkdir -p "$dir/conf" "$dir/data" "$dir/logs" "$dir/triggers"
  cat >"$dir/conf/cassandra.yaml" <<EOF
# Written by deploy/local/servers.sh: one Cassandra 5.0 node on $HOST, throwaway data.
cluster_name: acu-local
num_tokens: 1
initial_token: 0
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
endpoint_snitch: SimpleSnitch
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "$HOST:$CASSANDRA_STORAGE_PORT"
listen_address: $HOST
rpc_address: $HOST
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

cassandra_start() {
  local dir="$STATE/cassandra" cp jamm jar pid
  if pid=$(pid_of cassandra); then say "cassandra: already running (pid $pid)"; return 0; fi
  ports_free cassandra "$CASSANDRA_PORT" "$CASSANDRA_STORAGE_PORT"
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
  # -Xms is kept small on purpose: CassandraDaemon always calls mlockall(MCL_CURRENT), which for
  # root (CAP_IPC_LOCK ignores RLIMIT_MEMLOCK) pins every page committed at that moment: with
  # -Xms equal to -Xmx the whole heap would be resident from the start.
  launch cassandra \
    "-Xms$CASSANDRA_HEAP_MIN" "-Xmx$CASSANDRA_HEAP" -Xss256k \
    -XX:+UseG1GC -XX:+ParallelRefProcEnabled -XX:MaxTenuringThreshold=1 -XX:MaxGCPauseMillis=300 \
    -XX:+UseTLAB -XX:+ResizeTLAB -XX:+ExitOnOutOfMemoryError \
    -Djava.net.preferIPv4Stack=true -Djava.awt.headless=true \
    `# JPMS: the list of conf/jvm17-server.options (Cassandra 5.0)` \
    -Djdk.attach.allowAttachSelf=true \
    --add-exports java.base/jdk.internal.misc=ALL-UNNAMED \
    --add-exports java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED \
    --add-exports java.rmi/sun.rmi.registry=ALL-UNNAMED \
    --add-exports java.rmi/sun.rmi.server=ALL-UNNAMED \
    --add-exports java.sql/java.sql=ALL-UNNAMED \
    --add-exports java.base/java.lang.ref=ALL-UNNAMED \
    --add-exports jdk.unsupported/sun.misc=ALL-UNNAMED \
    --add-exports jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED \
    --add-exports jdk.attach/sun.tools.attach=ALL-UNNAMED \
    --add-opens java.base/java.lang.module=ALL-UNNAMED \
    --add-opens java.base/jdk.internal.loader=ALL-UNNAMED \
    --add-opens java.base/jdk.internal.ref=ALL-UNNAMED \
    --add-opens java.base/jdk.internal.reflect=ALL-UNNAMED \
    --add-opens java.base/jdk.internal.math=ALL-UNNAMED \
    --add-opens java.base/jdk.internal.module=ALL-UNNAMED \
    --add-opens java.base/jdk.internal.util.jar=ALL-UNNAMED \
    --add-opens jdk.management/com.sun.management.internal=ALL-UNNAMED \
    --add-opens java.base/sun.nio.ch=ALL-UNNAMED \
    --add-opens java.base/java.io=ALL-UNNAMED \
    --add-opens java.base/java.lang.reflect=ALL-UNNAMED \
    --add-opens jdk.compiler/com.sun.tools.javac=ALL-UNNAMED \
    --add-opens java.base/java.lang=ALL-UNNAMED \
    --add-opens java.base/java.util=ALL-UNNAMED \
    -Dio.netty.tryReflectionSetAccessible=true \
    -Dio.netty.allocator.useCacheForAllThreads=true -Dio.netty.allocator.maxOrder=11 \
    "-javaagent:$jamm" \
    `# where things are` \
    "-Dcassandra.config=file://$dir/conf/cassandra.yaml" \
    "-Dlogback.configurationFile=$dir/conf/logback.xml" \
    "-Dcassandra.storagedir=$dir/data" "-Dcassandra.logdir=$dir/logs" "-Dcassandra.triggers_dir=$dir/triggers" \
    -Dcassandra-foreground=yes \
    `# start-up shortcuts of Cassandra's own tests: one node, nothing to wait for; no fsync` \
    -Dcassandra.skip_wait_for_gossip_to_settle=0 -Dcassandra.ring_delay_ms=1000 \
    -Dcassandra.unsafesystem=true -Dcassandra.skip_sync=true \
    -Dcassandra.superuser_setup_delay_ms=0 -Dcassandra.test.ignore_sigar=true \
    -Dcassandra.memtable_row_overhead_computation_step=100 \
    -Dchronicle.analytics.disable=true \
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
  start)
    [ $# -eq 1 ] || usage
    check_java
    mkdir -p "$STATE"
    # Launch everything first (Cassandra, the slower, first), then wait for all of it together.
    for n in $(names "$1"); do "${n}_start"; done
    # shellcheck disable=SC2046
    wait_ready $(names "$1")
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
    exec "$JAVA" -Xmx256m -cp "$cp" "$cls" "$@"
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
