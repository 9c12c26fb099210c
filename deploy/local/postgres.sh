#!/usr/bin/env bash
# deploy/local/postgres.sh — a throwaway PostgreSQL cluster on ACU_PG_HOST only (Debian's packages; the
# Temporal server of the fault suite, acu-node temporal, keeps its persistence and visibility there).
#
#   postgres.sh start   initdb on first use, launch the server, wait until it answers a query
#   postgres.sh stop    SIGINT (fast shutdown), wait, then SIGKILL the server and its children
#   postgres.sh wait    wait until the running server answers a query
#   postgres.sh clean   delete the data and log of a stopped server
#
# Environment (all optional):
#   ACU_LOCAL_DIR        state: postgres/data, postgres/postgres.log   (default ${TMPDIR:-/tmp}/acu-local)
#   ACU_PG_HOST          the one address the server listens on          (default 127.0.0.31)
#   ACU_PG_PORT          its port                                       (default 5432)
#   ACU_PG_MAX_CONNECTIONS  max_connections                             (default 200: a Temporal server opens
#                        up to 8 pools of 20 connections, see acu-node temporal --pg-max-conns)
#   ACU_PG_TIMEOUT       seconds to wait until the server answers       (default 60)
#   ACU_PG_BIN           directory of initdb, pg_ctl, postgres, psql, pg_isready (default the newest
#                        /usr/lib/postgresql/*/bin; when there is none, `start` run as root installs
#                        Debian's postgresql package with apt-get, without its default cluster)
#   ACU_CGROUP           a cgroup v2 directory (created by the caller) the server joins before it starts
#                        (default: none, the server stays in the caller's cgroup)
#
# Run as root, the server runs as the `postgres` user (through runuser), and ACU_LOCAL_DIR's parents must
# let that user through. Every role is trusted from 127.0.0.0/8 (no password), there is no Unix socket,
# and fsync, synchronous_commit and full_page_writes are off: for development and CI, not for keeping.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SELF="$HERE/$(basename "${BASH_SOURCE[0]}")"
STATE=${ACU_LOCAL_DIR:-${TMPDIR:-/tmp}/acu-local}
case "$STATE" in /*) ;; *) STATE="$PWD/$STATE" ;; esac # the server runs in another directory
PG_HOST=${ACU_PG_HOST:-127.0.0.31}
PG_PORT=${ACU_PG_PORT:-5432}
PG_MAX_CONNECTIONS=${ACU_PG_MAX_CONNECTIONS:-200}
PG_TIMEOUT=${ACU_PG_TIMEOUT:-60}
PG_BIN=${ACU_PG_BIN:-}
CGROUP=${ACU_CGROUP:-}

DIR="$STATE/postgres"
DATA="$DIR/data"
LOG="$DIR/postgres.log"
STOP_TIMEOUT=30 # seconds between SIGINT and SIGKILL

say() { printf 'postgres.sh: %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

usage() {
  sed -n '2,8p' "$SELF" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

is_root() { [ "$(id -u)" = 0 ]; }

# as_pg CMD...: run CMD as the postgres user when we are root, else as ourselves.
as_pg() {
  if is_root; then runuser -u postgres -- "$@"; else "$@"; fi
}

# pg_write [-a] FILE: write (or with -a, append) stdin to FILE as the postgres user.
pg_write() { as_pg tee "$@" >/dev/null; }

newest_bin() { # the newest /usr/lib/postgresql/*/bin with an initdb, or nothing
  local d best="" best_v=0 v
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] || continue
    v=${d#/usr/lib/postgresql/}
    v=${v%%/*}
    [[ "$v" =~ ^[0-9]+$ ]] || continue
    if [ "$v" -gt "$best_v" ]; then best=$d best_v=$v; fi
  done
  [ -n "$best" ] && echo "$best"
}

# install_postgres: Debian's postgresql package, non-interactively, without the cluster "main" that its
# installation would otherwise create and start on 127.0.0.1:5432.
install_postgres() {
  is_root || die "no PostgreSQL under /usr/lib/postgresql and not root: install the postgresql package or set ACU_PG_BIN"
  command -v apt-get >/dev/null 2>&1 || die "no PostgreSQL under /usr/lib/postgresql and no apt-get: set ACU_PG_BIN"
  say "installing PostgreSQL with apt-get (first run on this machine)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >&2
  apt-get install -y -q --no-install-recommends postgresql-common >&2
  sed -ri 's/^#?[[:space:]]*create_main_cluster[[:space:]]*=.*/create_main_cluster = false/' \
    /etc/postgresql-common/createcluster.conf
  apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confold postgresql >&2
}

find_bin() { # [install]: sets PG_BIN; with "install", installs PostgreSQL when there is none
  if [ -n "$PG_BIN" ]; then
    [ -x "$PG_BIN/initdb" ] || die "ACU_PG_BIN=$PG_BIN has no initdb"
    return 0
  fi
  PG_BIN=$(newest_bin) || true
  if [ -z "$PG_BIN" ]; then
    [ "${1:-}" = install ] || die "no PostgreSQL under /usr/lib/postgresql (postgres.sh start installs it)"
    install_postgres
    PG_BIN=$(newest_bin) || die "apt-get installed postgresql, but there is still no /usr/lib/postgresql/*/bin/initdb"
  fi
}

check_cgroup() { # ACU_CGROUP, when set, must be an existing cgroup v2 directory
  [ -z "$CGROUP" ] && return 0
  [ -f "$CGROUP/cgroup.procs" ] || die "ACU_CGROUP=$CGROUP is not a cgroup directory (no cgroup.procs); create it first"
  [ -f "$CGROUP/cgroup.controllers" ] || die "ACU_CGROUP=$CGROUP is not in a cgroup v2 hierarchy (no cgroup.controllers)"
}

# pid_of: print the postmaster's pid and succeed, or fail. The pid (first line of postmaster.pid) must
# still be a postgres process serving our data directory: a stale file or a recycled pid is not.
pid_of() {
  local f="$DATA/postmaster.pid" pid args
  [ -f "$f" ] || return 1
  pid=$(head -n 1 "$f" 2>/dev/null) || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  args=$({ tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null) || return 1
  [[ "$args" == *postgres*" -D $DATA"* ]] || return 1
  echo "$pid"
}

alive() { # PID...: succeed while any of them runs (a zombie, dead but not reaped yet, does not)
  local p st
  for p in "$@"; do
    st=$({ sed 's/^.*) //' <"/proc/$p/stat"; } 2>/dev/null) || continue
    [ "${st:0:1}" = Z ] || return 0
  done
  return 1
}

port_open() { (exec 3<>"/dev/tcp/$PG_HOST/$PG_PORT") 2>/dev/null; }

last_lines() { # the end of the server's log on stderr
  if [ -s "$LOG" ]; then
    say "---- last 30 lines of $LOG ----"
    tail -n 30 "$LOG" >&2
    say "---- end of $LOG ----"
  else
    say "(no log at $LOG)"
  fi
}

# init_cluster: initdb on first use. The marker file is written last, so that an initdb interrupted
# halfway is redone from scratch.
init_cluster() {
  mkdir -p "$DIR"
  if is_root; then chown postgres:postgres "$DIR"; fi
  chmod 700 "$DIR"
  as_pg test -w "$DIR" || die "the postgres user cannot write $DIR (check the permissions of its parents)"
  [ -f "$DIR/initialized" ] && [ -f "$DATA/PG_VERSION" ] && return 0
  rm -rf "$DATA"
  say "initdb $DATA"
  as_pg "$PG_BIN/initdb" -D "$DATA" -U postgres --auth=trust --encoding=UTF8 --no-locale --no-sync >"$DIR/initdb.log" 2>&1 ||
    { cat "$DIR/initdb.log" >&2; die "initdb failed"; }
  # Only TCP from loopback, and no password; the settings of acu.conf (rewritten at each start) win.
  pg_write "$DATA/pg_hba.conf" <<'EOF'
# written by deploy/local/postgres.sh: trust every role from loopback, no Unix socket
host all         all 127.0.0.0/8 trust
host replication all 127.0.0.0/8 trust
EOF
  echo "include_if_exists 'acu.conf'" | pg_write -a "$DATA/postgresql.conf"
  touch "$DIR/initialized"
}

write_conf() { # the settings that follow the environment, read at each start
  pg_write "$DATA/acu.conf" <<EOF
# written by deploy/local/postgres.sh at each start
listen_addresses = '$PG_HOST'
port = $PG_PORT
unix_socket_directories = ''
max_connections = $PG_MAX_CONNECTIONS
fsync = off
synchronous_commit = off
full_page_writes = off
log_min_messages = warning
log_line_prefix = '%m [%p] '
EOF
}

# answers: the server answers a query on PG_HOST:PG_PORT.
answers() {
  "$PG_BIN/pg_isready" -q -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres -t 2 &&
    [ "$("$PG_BIN/psql" -X -w -At -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres -c 'SELECT 1' 2>/dev/null)" = 1 ]
}

wait_ready() {
  local deadline=$((SECONDS + PG_TIMEOUT))
  while ! answers; do
    if ! pid_of >/dev/null; then
      last_lines
      die "the server is not running (log: $LOG)"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      last_lines
      die "no answer on $PG_HOST:$PG_PORT after $PG_TIMEOUT s (log: $LOG)"
    fi
    sleep 0.2
  done
}

start() {
  local pid
  check_cgroup
  find_bin install
  init_cluster
  if pid=$(pid_of); then
    say "already running (pid $pid)"
    wait_ready
    return 0
  fi
  port_open && die "something else already listens on $PG_HOST:$PG_PORT"
  rm -f "$DATA/postmaster.pid" # stale (the server was killed): its pid may belong to another process by now
  write_conf
  # pg_ctl starts the postmaster in a session of its own (its pid is its process group), with its
  # output in the log, and returns once it accepts connections. With ACU_CGROUP, the subshell moves
  # itself into that cgroup first, so that runuser, pg_ctl and the server all start in it.
  local as=()
  if is_root; then as=(runuser -u postgres --); fi
  if ! (
    exec </dev/null >&2
    cd "$DIR"
    if [ -n "$CGROUP" ]; then
      echo "$BASHPID" >"$CGROUP/cgroup.procs" || { say "cannot move pid $BASHPID into $CGROUP"; exit 1; }
    fi
    exec "${as[@]}" "$PG_BIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t "$PG_TIMEOUT" -s start
  ); then
    last_lines
    die "the server did not start (log: $LOG)"
  fi
  pid=$(pid_of) || { last_lines; die "the server started but is gone (log: $LOG)"; }
  wait_ready
  say "started pid $pid on $PG_HOST:$PG_PORT${CGROUP:+ in cgroup $CGROUP} (data: $DATA, log: $LOG)"
}

stop() {
  local pid i kids
  if ! pid=$(pid_of); then
    say "not running"
    return 0
  fi
  kill -INT "$pid" 2>/dev/null || true # fast shutdown: SIGTERM would wait for every client to leave
  for ((i = 0; i < STOP_TIMEOUT * 5; i++)); do
    alive "$pid" || break
    sleep 0.2
  done
  if alive "$pid"; then
    say "still running ${STOP_TIMEOUT} s after SIGINT, sending SIGKILL"
    # Its children too (each is a session of its own): backends left behind would keep the shared
    # memory, and a new server would refuse to start beside them.
    kids=$(ps -o pid= --ppid "$pid" 2>/dev/null) || kids=""
    # shellcheck disable=SC2086
    kill -KILL "$pid" $kids 2>/dev/null || true
    # shellcheck disable=SC2086
    for ((i = 0; i < 50; i++)); do alive "$pid" $kids || break; sleep 0.2; done
  fi
  alive "$pid" && die "pid $pid would not stop"
  say "stopped (pid $pid)"
}

clean() {
  pid_of >/dev/null && die "the server is running; stop it first"
  rm -rf "${DIR:?}"
  say "data and log deleted ($DIR)"
}

[ $# -eq 1 ] || usage
case "$1" in
  start) start ;;
  stop) stop ;;
  wait)
    find_bin
    wait_ready
    ;;
  clean) clean ;;
  *) usage ;;
esac
