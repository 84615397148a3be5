#!/usr/bin/env bash
# A local MLflow tracking server for a shared store: SQLite backend, artifacts served over HTTP,
# bound to loopback. Usage: platform/mlflow-server.sh [STORE_DIR] [PORT]
set -euo pipefail
store=$(realpath -m "${1:-./kiln-server}")
port=${2:-5000}
mkdir -p "$store/artifacts"
exec "${KILN_PYTHON:-.venv/bin/python}" -m mlflow server \
  --backend-store-uri "sqlite:///$store/mlflow.db" \
  --artifacts-destination "$store/artifacts" --serve-artifacts \
  --host 127.0.0.1 --port "$port" --allowed-hosts "127.0.0.1:$port,localhost:$port"
