# Shared settings and helpers for cluster-up.sh, cluster-down.sh and check-auth.sh (sourced, not run).
# Every setting can be overridden from the environment; the defaults fit one 2-core machine.
# shellcheck shell=bash

KILN_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=$(realpath -m "${KILN_CLUSTER_DIR:-$KILN_ROOT/kiln-cluster}")   # data, logs, pid files, secrets
VENV=$(realpath -m "${KILN_VENV:-$KILN_ROOT/.venv}")
RAY_BIN="$VENV/bin/ray"
PYTHON_BIN="$VENV/bin/python"

HOST=127.0.0.1                                    # services bind to loopback (see cluster-up.sh on Ray)
RAY_PORT=${KILN_RAY_PORT:-6379}                   # GCS: the address nodes and drivers join
DASHBOARD_PORT=${KILN_DASHBOARD_PORT:-8265}       # dashboard + Jobs API (token auth)
CLIENT_PORT=${KILN_RAY_CLIENT_PORT:-10001}        # ray:// client server (head only; cannot be turned off)
HEAD_CPUS=${KILN_HEAD_CPUS:-1}
# Logical CPUs of the second node. 2 (on a 2-core machine) leaves room for Ray Data tasks beside a
# trial's workers; with 1 + 1 a trial's 2 x 0.5-CPU workers fill a node and ingest can starve.
WORKER_CPUS=${KILN_WORKER_CPUS:-2}
OBJECT_STORE_BYTES=${KILN_OBJECT_STORE_BYTES:-536870912}   # per node; Ray's default is 30% of RAM
# Ray's own temp dir for this cluster. Kept apart from /tmp/ray so that a plain `ray.init()` elsewhere
# on this machine (tests, notebooks) starts its own runtime instead of joining this cluster.
# Unix socket paths must stay under ~107 characters: keep this short.
RAY_TEMP_DIR=$(realpath -m "${KILN_RAY_TEMP_DIR:-$STATE/ray}")

PG_PORT=${KILN_PG_PORT:-5433}                     # 5433: leaves a system PostgreSQL on 5432 alone
PG_DATA="$STATE/postgres/data"
PG_SOCKET_DIR="$STATE/postgres/run"
PG_LOG="$STATE/postgres/postgres.log"          # owned by the PostgreSQL user
PG_DB=mlflow
PG_ROLE=mlflow

MLFLOW_PORT=${KILN_MLFLOW_PORT:-5000}
MLFLOW_WORKERS=${KILN_MLFLOW_WORKERS:-1}
MLFLOW_AUTH=${KILN_MLFLOW_AUTH:-none}             # none | basic (MLflow's basic-auth app)
MLFLOW_PID="$STATE/run/mlflow.pid"
MLFLOW_LOG="$STATE/logs/mlflow.log"
ARTIFACTS="$STATE/artifacts"
SECRETS="$STATE/secrets"

RAY_ADDRESS_VALUE="$HOST:$RAY_PORT"
DASHBOARD_URL="http://$HOST:$DASHBOARD_PORT"
MLFLOW_URL="http://$HOST:$MLFLOW_PORT"
TOKEN_FILE=${RAY_AUTH_TOKEN_PATH:-$HOME/.ray/auth_token}

say() { printf '[kiln-cluster] %s\n' "$*"; }
die() { printf '[kiln-cluster] error: %s\n' "$*" >&2; exit 1; }

# PostgreSQL refuses to run as root: as root, run its commands as the `postgres` system user.
if [[ $(id -u) -eq 0 ]]; then PG_OS_USER=postgres; else PG_OS_USER=$(id -un); fi
as_pg() {
  if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_bindir() {
  local dir
  if command -v pg_config >/dev/null 2>&1 && [[ -x "$(pg_config --bindir)/pg_ctl" ]]; then
    pg_config --bindir; return
  fi
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  [[ -n $dir && -x $dir/pg_ctl ]] && echo "$dir"
}

# PIDs of this cluster's Ray processes: every process in the sessions cluster-up.sh started `ray start` in
# (RAY_SESSIONS, one per node: `ray start` daemonises, so its processes are no one's descendants, but they keep
# the session), and their descendants (dashboard modules, agents, workers). Never by name or command line:
# another user's Ray looks the same. (`ray stop` would stop every Ray process on the machine.)
RAY_SESSIONS="$STATE/run/ray.sessions"
ray_pids() {
  local pid sid roots=() queue=() seen=" "
  [[ -s $RAY_SESSIONS ]] || return 0
  for sid in $(cat "$RAY_SESSIONS"); do
    [[ $sid =~ ^[1-9][0-9]*$ ]] && roots+=($(pgrep -s "$sid" || true))
  done
  queue=("${roots[@]}")
  while (( ${#queue[@]} )); do
    pid=${queue[0]}; queue=("${queue[@]:1}")
    [[ $seen == *" $pid "* ]] && continue
    seen+="$pid "; echo "$pid"
    queue+=($(pgrep -P "$pid" || true))
  done
}
raylet_pids() {
  local pid
  for pid in $(ray_pids); do
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == raylet ]] && echo "$pid"
  done
}
gcs_pids() {
  local pid
  for pid in $(ray_pids); do
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == gcs_server ]] && echo "$pid"
  done
}

port_open() {  # port_open PORT: something listens on 127.0.0.1:PORT
  (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null
}

pid_alive() {  # pid_alive PIDFILE
  [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local limit=$1 what=$2 start=$SECONDS
  shift 2
  until "$@" >/dev/null 2>&1; do
    (( SECONDS - start >= limit )) && die "$what did not answer within ${limit}s (logs: $STATE/logs)"
    sleep 1
  done
}
