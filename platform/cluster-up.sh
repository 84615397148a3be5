#!/usr/bin/env bash
# A two-node Ray cluster, PostgreSQL and an MLflow tracking server on this one machine, all on
# 127.0.0.1, so `kiln run configs/cluster.yaml` exercises the multi-node path (ray.address: auto,
# tracking.uri: http://127.0.0.1:5000) without a second machine. Idempotent: what already runs is
# left alone. State (database, artifacts, logs, pid files, secrets) lives in ./kiln-cluster/
# (KILN_CLUSTER_DIR); platform/cluster-down.sh stops everything and keeps it.
#
# Settings (environment): KILN_VENV, KILN_CLUSTER_DIR, KILN_RAY_PORT (6379), KILN_DASHBOARD_PORT (8265),
# KILN_HEAD_CPUS (1), KILN_WORKER_CPUS (2), KILN_PG_PORT (5433), KILN_MLFLOW_PORT (5000),
# KILN_MLFLOW_WORKERS (1), KILN_MLFLOW_AUTH (none | basic). See platform/cluster-lib.sh.
set -euo pipefail
# shellcheck source=platform/cluster-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/cluster-lib.sh"

PSYCOPG2_PIN="psycopg2-binary==2.9.13"
MLFLOW_AUTH_PIN="mlflow[auth]==3.17.2"   # same version as pyproject.toml; adds Flask-WTF only
t0=$SECONDS
timing() { say "$1 ready ($(( SECONDS - $2 ))s)"; }

[[ -x $RAY_BIN ]] || die "$RAY_BIN not found: run \`make install\` or set KILN_VENV"
command -v curl >/dev/null || die "curl is needed to check the services"
(( ${#RAY_TEMP_DIR} <= 60 )) || die "KILN_RAY_TEMP_DIR ($RAY_TEMP_DIR) is too long for Ray's socket paths; set a shorter one"
mkdir -p "$STATE/logs" "$STATE/run" "$STATE/storage" "$ARTIFACTS" "$RAY_TEMP_DIR" "$SECRETS"
chmod 700 "$SECRETS"
[[ -e $STATE/.gitignore ]] || printf '# local cluster state (platform/cluster-up.sh)\n*\n' >"$STATE/.gitignore"

secret() {  # secret NAME: a random value kept in $SECRETS/NAME (created once)
  local file="$SECRETS/$1"
  if [[ ! -s $file ]]; then
    (umask 077; "$PYTHON_BIN" -c 'import secrets; print(secrets.token_urlsafe(24))' >"$file")
  fi
  cat "$file"
}

# ---------------------------------------------------------------------------------------------- Ray
export RAY_AUTH_MODE=token            # `ray start` clusters need it explicitly in Ray 2.60
export RAY_USAGE_STATS_ENABLED=0
if [[ $MLFLOW_AUTH == basic ]]; then  # Ray workers inherit the raylets' environment
  export MLFLOW_TRACKING_USERNAME=admin MLFLOW_TRACKING_PASSWORD
  MLFLOW_TRACKING_PASSWORD=$(secret mlflow_admin_password)
fi
if [[ ! -s $TOKEN_FILE && -z ${RAY_AUTH_TOKEN:-} ]]; then
  say "no Ray auth token yet: generating $TOKEN_FILE"
  (umask 077; "$RAY_BIN" get-auth-token --generate >/dev/null)  # the token file readable by this user only
fi

ray_start() {  # ray_start ROLE CPUS MIN_WORKER_PORT MAX_WORKER_PORT AGENT_PORT ARGS...: one node, logged
  local role=$1 cpus=$2 min_port=$3 max_port=$4 agent_port=$5 log="$STATE/logs/ray-$1-start.log"
  shift 5
  mkdir -p "$(dirname "$RAY_SESSIONS")"
  # A session of its own, recorded: cluster-down.sh finds this node's processes by it (cluster-lib.sh ray_pids).
  setsid --wait bash -c 'echo $$ >>"$0"; exec "$@"' "$RAY_SESSIONS" \
    timeout 120 "$RAY_BIN" start "$@" --disable-usage-stats --node-ip-address="$HOST" \
    --dashboard-agent-listen-port="$agent_port" \
    --num-cpus="$cpus" --num-gpus=0 --object-store-memory="$OBJECT_STORE_BYTES" \
    --min-worker-port="$min_port" --max-worker-port="$max_port" \
    --temp-dir="$RAY_TEMP_DIR" >"$log" 2>&1 \
    || { tail -n 20 "$log" >&2; die "ray start ($role) failed"; }
}

ray_nodes() {  # number of alive nodes, via the GCS (authenticated with the token)
  "$PYTHON_BIN" - "$RAY_ADDRESS_VALUE" <<'EOF' 2>/dev/null
import sys
from ray._raylet import GcsClient
from ray.core.generated.gcs_pb2 import GcsNodeInfo
alive = GcsNodeInfo.GcsNodeState.ALIVE
print(len(GcsClient(address=sys.argv[1]).get_all_node_info(timeout=5, state_filter=alive)))
EOF
}
nodes_at_least() { [[ $(ray_nodes) -ge $1 ]]; }

t=$SECONDS
if [[ -n $(gcs_pids) ]]; then
  say "Ray head already running at $RAY_ADDRESS_VALUE"
else
  port_open "$RAY_PORT" && die "port $RAY_PORT is taken by another process: set KILN_RAY_PORT"
  port_open "$DASHBOARD_PORT" && die "port $DASHBOARD_PORT is taken by another process: set KILN_DASHBOARD_PORT"
  say "starting the Ray head ($HEAD_CPUS CPU) at $RAY_ADDRESS_VALUE"
  # Note: Ray 2.60's `ray start` rewrites --node-ip-address=127.0.0.1 to the host's routable address
  # (services.resolve_ip_for_localhost), so the GCS, raylets and client server also listen there;
  # token auth guards them. Only the dashboard (and Jobs API) is bound to 127.0.0.1 alone.
  ray_start head "$HEAD_CPUS" 10002 10999 "${KILN_HEAD_AGENT_PORT:-52375}" \
    --head --port="$RAY_PORT" --ray-client-server-port="$CLIENT_PORT" \
    --dashboard-host="$HOST" --dashboard-port="$DASHBOARD_PORT"
fi
wait_for 60 "the Ray head" nodes_at_least 1
wait_for 60 "the Ray dashboard" port_open "$DASHBOARD_PORT"
timing "Ray head" "$t"

# Two raylets on one host: the second node gets its own agent port and worker-port range.
t=$SECONDS
if [[ $(raylet_pids | wc -l) -ge 2 ]]; then
  say "second Ray node already running"
else
  say "starting a second Ray node ($WORKER_CPUS CPUs) joining $RAY_ADDRESS_VALUE"
  ray_start worker "$WORKER_CPUS" 11000 11999 "${KILN_WORKER_AGENT_PORT:-52376}" \
    --address="$RAY_ADDRESS_VALUE"
fi
wait_for 60 "the second Ray node" nodes_at_least 2
timing "Ray cluster ($(ray_nodes) nodes)" "$t"

# ---------------------------------------------------------------------------------------- PostgreSQL
t=$SECONDS
PG_BIN=$(pg_bindir || true)
if [[ -z $PG_BIN ]]; then
  say "installing PostgreSQL (Debian package postgresql)"
  SUDO=; [[ $(id -u) -eq 0 ]] || SUDO=sudo
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null
  PG_BIN=$(pg_bindir) || die "PostgreSQL installed, but pg_ctl was not found"
fi
mkdir -p "$STATE/postgres" "$PG_SOCKET_DIR"
chown "$PG_OS_USER" "$STATE/postgres" "$PG_SOCKET_DIR"
chmod 700 "$STATE/postgres"
if [[ ! -s $PG_DATA/PG_VERSION ]]; then
  say "initialising a PostgreSQL cluster in $PG_DATA"
  as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U "$PG_OS_USER" -E UTF8 \
    --auth-local=peer --auth-host=scram-sha-256 >"$STATE/logs/initdb.log" 2>&1 \
    || { cat "$STATE/logs/initdb.log" >&2; die "initdb failed"; }
fi
if as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; then
  say "PostgreSQL already running on $HOST:$PG_PORT"
else
  port_open "$PG_PORT" && die "port $PG_PORT is taken by another process: set KILN_PG_PORT"
  say "starting PostgreSQL on $HOST:$PG_PORT"
  as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t 60 \
    -o "-c listen_addresses=$HOST -p $PG_PORT -k $PG_SOCKET_DIR" start >/dev/null \
    || { tail -n 20 "$PG_LOG" >&2; die "PostgreSQL did not start"; }
fi
wait_for 30 "PostgreSQL" "$PG_BIN/pg_isready" -q -h "$HOST" -p "$PG_PORT"

psql_admin() { as_pg "$PG_BIN/psql" -h "$PG_SOCKET_DIR" -p "$PG_PORT" -d postgres -v ON_ERROR_STOP=1 -qtA "$@"; }
PG_PASSWORD=$(secret pg_password)
# The password goes through stdin, never a command line. ALTER keeps role and secret file in step.
if [[ -z $(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname = '$PG_ROLE'") ]]; then
  printf "CREATE ROLE %s LOGIN PASSWORD '%s';\n" "$PG_ROLE" "$PG_PASSWORD" | psql_admin >/dev/null
else
  printf "ALTER ROLE %s PASSWORD '%s';\n" "$PG_ROLE" "$PG_PASSWORD" | psql_admin >/dev/null
fi
dbs=("$PG_DB"); [[ $MLFLOW_AUTH == basic ]] && dbs+=(mlflow_auth)   # basic-auth users live apart
for db in "${dbs[@]}"; do
  if [[ -z $(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$db'") ]]; then
    psql_admin -c "CREATE DATABASE $db OWNER $PG_ROLE" >/dev/null
  fi
done
# libpq (psycopg2) reads the password from this file: it stays out of URIs, argv and logs.
(umask 077; printf '%s:%s:*:%s:%s\n' "$HOST" "$PG_PORT" "$PG_ROLE" "$PG_PASSWORD" >"$SECRETS/pgpass")
timing "PostgreSQL" "$t"

# -------------------------------------------------------------------------------------------- MLflow
t=$SECONDS
if ! "$PYTHON_BIN" -c "import psycopg2" 2>/dev/null; then
  say "installing $PSYCOPG2_PIN (MLflow's PostgreSQL driver) into $VENV"
  "$PYTHON_BIN" -m pip install --quiet "$PSYCOPG2_PIN" 2>&1 | { grep -v "is ignored" || true; }
fi
if [[ $MLFLOW_AUTH == basic ]] && ! "$PYTHON_BIN" -c "import flask_wtf" 2>/dev/null; then
  say "installing $MLFLOW_AUTH_PIN (the basic-auth app needs Flask-WTF) into $VENV"
  "$PYTHON_BIN" -m pip install --quiet "$MLFLOW_AUTH_PIN" 2>&1 | { grep -v "is ignored" || true; }
fi
health() { curl -fsS -m 3 "$MLFLOW_URL/health"; }
if pid_alive "$MLFLOW_PID"; then
  say "MLflow server already running (pid $(cat "$MLFLOW_PID"))"
else
  port_open "$MLFLOW_PORT" && die "port $MLFLOW_PORT is taken by another process: set KILN_MLFLOW_PORT"
  args=(server
    --backend-store-uri "postgresql+psycopg2://$PG_ROLE@$HOST:$PG_PORT/$PG_DB"
    --serve-artifacts --artifacts-destination "$ARTIFACTS"
    --host "$HOST" --port "$MLFLOW_PORT" --workers "$MLFLOW_WORKERS"
    --allowed-hosts "$HOST:$MLFLOW_PORT,localhost:$MLFLOW_PORT")
  env_vars=(PGPASSFILE="$SECRETS/pgpass")
  if [[ $MLFLOW_AUTH == basic ]]; then
    printf '[mlflow]\ndefault_permission = READ\ndatabase_uri = postgresql+psycopg2://%s@%s:%s/mlflow_auth\nadmin_username = admin\nauthorization_function = mlflow.server.auth:authenticate_request_basic_auth\n' \
      "$PG_ROLE" "$HOST" "$PG_PORT" >"$STATE/mlflow-auth.ini"
    args+=(--app-name basic-auth)
    env_vars+=(MLFLOW_AUTH_CONFIG_PATH="$STATE/mlflow-auth.ini"
               MLFLOW_AUTH_ADMIN_PASSWORD="$(secret mlflow_admin_password)"
               MLFLOW_FLASK_SERVER_SECRET_KEY="$(secret mlflow_flask_secret_key)")
  fi
  say "starting the MLflow server at $MLFLOW_URL (PostgreSQL store, artifacts in $ARTIFACTS)"
  # Own session, so cluster-down stops the server and its uvicorn workers as one process group.
  env "${env_vars[@]}" setsid "$VENV/bin/mlflow" "${args[@]}" >>"$MLFLOW_LOG" 2>&1 </dev/null &
  echo $! >"$MLFLOW_PID"
fi
# First start creates the schema (a minute or so); stop waiting as soon as the server dies.
start=$SECONDS
until health >/dev/null 2>&1; do
  pid_alive "$MLFLOW_PID" || { tail -n 15 "$MLFLOW_LOG" >&2; die "the MLflow server exited (log: $MLFLOW_LOG)"; }
  (( SECONDS - start < 240 )) || die "the MLflow server did not answer within 240s (log: $MLFLOW_LOG)"
  sleep 1
done
timing "MLflow server" "$t"

# ------------------------------------------------------------------------------------------- summary
cat >"$STATE/cluster.env" <<EOF
# source this before \`kiln run configs/cluster.yaml\`: pins \`ray.address: auto\` to this cluster
# even when other Ray runtimes run on this machine.
export RAY_ADDRESS=$RAY_ADDRESS_VALUE
export RAY_API_SERVER_ADDRESS=$DASHBOARD_URL
export RAY_AUTH_MODE=token
export MLFLOW_TRACKING_URI=$MLFLOW_URL
EOF
if [[ $MLFLOW_AUTH == basic ]]; then
  printf 'export MLFLOW_TRACKING_USERNAME=admin\nexport MLFLOW_TRACKING_PASSWORD="$(cat %q)"\n' \
    "$SECRETS/mlflow_admin_password" >>"$STATE/cluster.env"
fi
rel_state=$(realpath --relative-to="$PWD" "$STATE" 2>/dev/null || echo "$STATE")
cat <<EOF

Kiln local cluster is up ($(( SECONDS - t0 ))s):
  Ray address     $RAY_ADDRESS_VALUE   ($(ray_nodes) nodes; token auth, token in $TOKEN_FILE)
  Ray dashboard   $DASHBOARD_URL   (Jobs API: header "Authorization: Bearer <token>")
  MLflow          $MLFLOW_URL   (PostgreSQL $HOST:$PG_PORT/$PG_DB, artifacts $ARTIFACTS)
  State and logs  $STATE

Next:
  source $rel_state/cluster.env
  kiln run configs/cluster.yaml
Stop with platform/cluster-down.sh (data is kept).
EOF
