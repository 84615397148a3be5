#!/usr/bin/env bash
# Stop what platform/cluster-up.sh started: the MLflow server, both Ray nodes, PostgreSQL.
# Data (database, artifacts, run storage, secrets) stays in ./kiln-cluster/ (KILN_CLUSTER_DIR) for
# the next cluster-up. Idempotent: stopping what is not running is not an error.
#
# Ray: only this cluster's processes are stopped (those that name its temp dir), raylets first and
# the GCS last, as `ray stop` does. `ray stop` itself stops every Ray process on the machine, other
# users' runtimes included; set KILN_RAY_STOP_ALL=1 to use it anyway (a dedicated host).
set -euo pipefail
# shellcheck source=platform/cluster-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/cluster-lib.sh"
t0=$SECONDS

stop_pids() {  # stop_pids GRACE_S PID...: SIGTERM, wait, then SIGKILL what is left
  local grace=$1 pid start=$SECONDS alive
  shift
  (( $# )) || return 0
  kill -TERM "$@" 2>/dev/null || true
  while :; do
    alive=()
    for pid in "$@"; do kill -0 "$pid" 2>/dev/null && alive+=("$pid"); done
    (( ${#alive[@]} )) || return 0
    if (( SECONDS - start >= grace )); then
      kill -KILL "${alive[@]}" 2>/dev/null || true
      return 0
    fi
    sleep 0.5
  done
}

# MLflow: the server runs in its own session (process group = its pid): stop the whole group.
if pid_alive "$MLFLOW_PID"; then
  pgid=$(cat "$MLFLOW_PID")
  say "stopping the MLflow server (process group $pgid)"
  kill -TERM -- "-$pgid" 2>/dev/null || true
  for _ in $(seq 1 40); do kill -0 -- "-$pgid" 2>/dev/null || break; sleep 0.5; done
  kill -KILL -- "-$pgid" 2>/dev/null || true
else
  say "MLflow server not running"
fi
rm -f "$MLFLOW_PID"

# Ray
if [[ ${KILN_RAY_STOP_ALL:-0} == 1 ]]; then
  say "ray stop (every Ray process on this machine)"
  "$RAY_BIN" stop >/dev/null
elif [[ -n $(ray_pids) ]]; then
  say "stopping the Ray nodes (temp dir $RAY_TEMP_DIR)"
  # shellcheck disable=SC2046
  stop_pids 15 $(raylet_pids)                 # raylets first: their workers fate-share with them
  others=()
  for pid in $(ray_pids); do
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == gcs_server ]] || others+=("$pid")
  done
  stop_pids 10 "${others[@]}"                 # dashboard, agents, monitors, log monitors
  # shellcheck disable=SC2046
  stop_pids 10 $(gcs_pids)                    # the GCS last
  stop_pids 5 $(ray_pids)                     # anything that appeared meanwhile
else
  say "Ray nodes not running"
fi
[[ -n $(ray_pids) ]] || rm -f "$RAY_SESSIONS"  # its sessions are empty: the ids may be reused

# PostgreSQL: a fast shutdown (clients disconnected, data flushed).
PG_BIN=$(pg_bindir || true)
if [[ -n $PG_BIN && -s $PG_DATA/PG_VERSION ]] && as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; then
  say "stopping PostgreSQL"
  as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t 60 stop >/dev/null
else
  say "PostgreSQL not running"
fi

say "stopped in $(( SECONDS - t0 ))s; data kept in $STATE"
