#!/usr/bin/env bash
# JupyterLab on the project in the working directory: `make lab` runs it, and tests/test_lab.py starts it the same way.
#   bash env/lab.sh [jupyter lab options]    PORT=8890 picks the port (else Jupyter's 8888, or the next free one)
# On 127.0.0.1, no browser opened (its address with the token is printed), every extension the lock installs enabled.
# The contents manager is mlfin's (mlfin.pipeline.lab.ContentsManager, named in env/jupyter_server_config.json, which
# env/setup.sh installs for every Jupyter server of .venv): a task notebook opens with Ploomber's injected cell, its
# real upstream and parameters. ENTRY_POINT points Ploomber's own commands, typed in Lab's terminals, at the same DAG
# (`ploomber status`, `ploomber nb --inject`).
set -euo pipefail
bin=$(cd "$(dirname "$0")/.." && pwd)/.venv/bin
port=()
# a port asked for is that port or an error, never the next one Jupyter would try
[ -n "${PORT:-}" ] && port=(--port="$PORT" --ServerApp.port_retries=0)
root=()
[ "$(id -u)" = 0 ] && root=(--allow-root)   # a container's root user: Jupyter refuses to start as root otherwise
export ENTRY_POINT=${ENTRY_POINT:-mlfin.pipeline.lab.dag}
exec "$bin/jupyter" lab --ip=127.0.0.1 --no-browser "${port[@]}" "${root[@]}" "$@"
