#!/usr/bin/env bash
# Create .venv, install the locked environment and mlfin, register the `mlfin` Jupyter kernel
# and warm the JIT caches. Idempotent: when nothing it depends on changed, it does nothing and
# prints nothing. Variant: MLFIN_ENV=gpu adds env/requirements-gpu.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv
python=${PYTHON:-python3}
variant=${MLFIN_ENV:-cpu}
inputs=(env/requirements.lock env/data-wheels.txt env/setup.sh setup.py settings.ini)
[ "$variant" = gpu ] && inputs+=(env/requirements-gpu.txt)
want="$variant $(cat "${inputs[@]}" | sha256sum | cut -c1-16)"
stamp=$venv/.mlfin-setup
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/mlfin" ]; then exit 0; fi

if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "mlfin: needs Python >= 3.11; '$python' is $("$python" --version 2>&1). Set PYTHON=/path/to/python3.11" >&2
  exit 1
fi
echo "mlfin: setting up $venv ($variant) ..."
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)
# the lock holds every package pinned, so no resolver run is needed; xgboost (the GPU build) and
# xgboost-cpu share a module, so coming back from the GPU variant removes the former first
if [ "$variant" = cpu ] && "${pip[@]}" show xgboost >/dev/null 2>&1; then "${pip[@]}" uninstall -y xgboost; fi
"${pip[@]}" install --no-deps -r env/requirements.lock
if [ "$variant" = gpu ]; then
  "${pip[@]}" uninstall -y xgboost-cpu
  "${pip[@]}" install -r env/requirements-gpu.txt
fi
"${pip[@]}" install --no-deps --no-build-isolation -e .
"${pip[@]}" check >/dev/null || { "${pip[@]}" check >&2; exit 1; }
# data-only packages (env/data-wheels.txt): downloaded beside the environment, never installed
"${pip[@]}" download --no-deps --require-hashes -r env/data-wheels.txt -d "$venv/share/mlfin/wheels"

# the kernel every task notebook and dashboard runs on, with the runtime environment baked in
MLFIN_ENV=$variant "$venv/bin/python" - <<'PY'
import json, os, sys
from pathlib import Path
from ipykernel.kernelspec import install
from mlfin.config import KERNELS, runtime_env
# the GPU variant adds a second kernel, the one `mlfin run` picks when a GPU is visible
for kind in ('cpu', 'gpu') if os.environ['MLFIN_ENV'] == 'gpu' else ('cpu',):
    path = Path(install(kernel_name=KERNELS[kind], display_name=f"Python (mlfin{', GPU' if kind == 'gpu' else ''})", prefix=sys.prefix))
    spec = json.loads((path/'kernel.json').read_text())
    spec['env'] = runtime_env(gpu=kind == 'gpu')
    (path/'kernel.json').write_text(json.dumps(spec, indent=1))
if os.environ['MLFIN_ENV'] != 'gpu':   # back from the GPU variant: its kernel would start without the CUDA builds it was made for
    import shutil
    shutil.rmtree(Path(sys.prefix)/'share'/'jupyter'/'kernels'/KERNELS['gpu'], ignore_errors=True)
# Ploomber's JupyterLab extension breaks opening files in the Lab: off for Lab and Voila alike
labconfig = Path(sys.prefix)/'etc'/'jupyter'/'labconfig'
labconfig.mkdir(parents=True, exist_ok=True)
(labconfig/'page_config.json').write_text(json.dumps({'disabledExtensions': {'ploomber-extension': True}}, indent=1))
PY
# warm the caches a fresh kernel would otherwise fill: numba's on-disk cache, compiled bytecode
"$venv/bin/python" -c "from mlfin.backtest import warm_up; warm_up()"
echo "$want" > "$stamp"
echo "mlfin: environment ready ($venv)"
