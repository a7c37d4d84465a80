#!/usr/bin/env bash
# Create .venv, install the locked environment and mlfin, register the `mlfin` Jupyter kernel
# and warm the JIT caches, one line per step with its seconds (on a terminal and in a log alike;
# a step's own output is shown only when it fails). Idempotent: when nothing it depends on changed,
# it does nothing and prints nothing. Variant: MLFIN_ENV=gpu adds env/requirements-gpu.txt.
# Installer: uv (pinned below, installed into .venv by pip), about 3x faster than pip on the lock (the tutorial "The project": Environment);
# pip when uv cannot be installed, or with MLFIN_INSTALLER=pip.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv
python=${PYTHON:-python3}
variant=${MLFIN_ENV:-cpu}
uv_version=0.13.9   # the one place uv's version is pinned
inputs=(env/requirements.lock env/data-wheels.txt env/setup.sh env/jupyter_server_config.json setup.py settings.ini)
[ "$variant" = gpu ] && inputs+=(env/requirements-gpu.txt)
want="$variant $(cat "${inputs[@]}" | sha256sum | cut -c1-16)"
stamp=$venv/.mlfin-setup
# mlfin's own bytecode, as --compile-bytecode gives every installed package's: the package is installed editable (nbdev_export
# rewrites its modules), so it is compiled here on every setup, quietly, only what changed. Where PYTHONDONTWRITEBYTECODE is set
# (containers, CI) Python never writes it, and every process compiled the modules it imports: about 1.7 s of CPU for the CLI,
# the service and the runner's (measured on the 2-core machine), paid by each command, service, kernel and worker started
compiled() { [ ! -x "$venv/bin/python" ] || "$venv/bin/python" -m compileall -q -j 0 mlfin >/dev/null; }
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/mlfin" ]; then compiled; exit 0; fi

if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "mlfin: needs Python >= 3.11; '$python' is $("$python" --version 2>&1). Set PYTHON=/path/to/python3.11" >&2
  exit 1
fi

source env/steps.sh
began=$(tenths)

[ -x "$venv/bin/python" ] || step "creating $venv with $("$python" --version 2>&1)" "$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)

# uv reads its own settings, not pip's: the indexes, links, certificate and constraints pip is configured with here
# (pip.conf, PIP_* variables) are handed to it, unless the matching UV_* variable is already set
pip_settings() {
  "$venv/bin/python" -m pip config list 2>/dev/null | "$venv/bin/python" -c '
import shlex, sys
found = {}
for line in sys.stdin:
    key, _, value = line.strip().partition("=")
    scope, _, name = key.rpartition(".")
    rank = {":env:": 3, "install": 2, "global": 1}.get(scope)
    if rank and rank >= found.get(name, (0, ""))[0]: found[name] = (rank, value.strip().strip("\x27\x22"))
uv = {"index-url": "UV_INDEX_URL", "extra-index-url": "UV_EXTRA_INDEX_URL", "find-links": "UV_FIND_LINKS",
      "no-index": "UV_NO_INDEX", "constraint": "UV_CONSTRAINT", "cert": "SSL_CERT_FILE"}
for name, (_, value) in found.items():
    if name == "find-links": value = ",".join(value.split())   # uv separates them by commas, pip by spaces
    if name in uv: print(f"export {uv[name]}=${{{uv[name]}:-{shlex.quote(value)}}}")'
}
installer=${MLFIN_INSTALLER:-uv}
if [ "$installer" = uv ] && [ "$("$venv/bin/uv" --version 2>/dev/null)" != "uv $uv_version" ]; then
  t=$(tenths); printf 'mlfin setup: getting uv %s ...' "$uv_version"
  if why=$("${pip[@]}" install "uv==$uv_version" 2>&1); then echo " done in $(seconds "$t")"
  else installer=pip; echo " failed ($(grep -v -E "$noise" <<<"$why" | grep . | tail -1)); installing with pip instead"; fi
fi
if [ "$installer" = uv ]; then
  eval "$(pip_settings)"
  export UV_INDEX_STRATEGY=${UV_INDEX_STRATEGY:-unsafe-best-match}   # as pip: every index is asked for a pin, not the first that knows the name
  export UV_PYTHON="$venv/bin/python" UV_NO_PROGRESS=1
  # bytecode compiled at install as pip does, so a fresh kernel's first imports do not pay for it
  install() { "$venv/bin/uv" pip install --compile-bytecode "$@"; }
  uninstall() { "$venv/bin/uv" pip uninstall "$@"; }
  installed() { "$venv/bin/uv" pip show "$1" >/dev/null 2>&1; }
  check() { "$venv/bin/uv" pip check; }
else
  install() { "${pip[@]}" install "$@"; }
  uninstall() { "${pip[@]}" uninstall -y "$@"; }
  installed() { "${pip[@]}" show "$1" >/dev/null 2>&1; }
  check() { "${pip[@]}" check; }
fi

# the lock holds every package pinned, so no resolver run is needed; xgboost (the GPU build) and
# xgboost-cpu share a module, so coming back from the GPU variant removes the former first
if [ "$variant" = cpu ] && installed xgboost; then step "removing the GPU variant's xgboost" uninstall xgboost; fi
step "installing $(grep -c -v -E '^[[:space:]]*(#|$)' env/requirements.lock) locked packages ($installer)" install --no-deps -r env/requirements.lock
if [ "$variant" = gpu ]; then
  installed xgboost-cpu && step "removing xgboost-cpu" uninstall xgboost-cpu
  step "installing the GPU packages of env/requirements-gpu.txt ($installer)" install -r env/requirements-gpu.txt
fi
step "installing mlfin (editable)" install --no-deps --no-build-isolation -e .
step "compiling mlfin's bytecode" compiled
step "checking the installed packages' dependencies" check
# data-only packages (env/data-wheels.txt): downloaded beside the environment, never installed (pip: uv has no download)
step "downloading the data wheels of env/data-wheels.txt" \
  "${pip[@]}" download --no-deps --require-hashes -r env/data-wheels.txt -d "$venv/share/mlfin/wheels"

# the kernel every task notebook and dashboard runs on, with the runtime environment baked in
kernels() {
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
# an earlier setup turned Ploomber's Lab extension off here; the contents managers were what broke opening files (below)
(Path(sys.prefix)/'etc'/'jupyter'/'labconfig'/'page_config.json').unlink(missing_ok=True)
PY
}
step "registering the Jupyter kernel$([ "$variant" = gpu ] && echo 's mlfin and mlfin-gpu' || echo ' mlfin')" kernels
# every Jupyter server of .venv (make lab, a plain jupyter lab) on mlfin's contents manager: synchronous, as Ploomber's,
# which otherwise wraps jupytext's asynchronous one and answers every file with HTTP 500 (mlfin.pipeline.lab says how).
# The environment's own server config file (jupyter_server_config.d/ holds only the extensions' switches, the server
# reads nothing else there); coreutils' install (`command`), not the packages' install() above
step "configuring Jupyter's contents manager (env/jupyter_server_config.json)" \
  command install -D -m 644 env/jupyter_server_config.json "$venv/etc/jupyter/jupyter_server_config.json"
# warm the caches a fresh kernel would otherwise fill: numba's on-disk cache, compiled bytecode
step "warming numba's cache (vectorbt's first backtest)" "$venv/bin/python" -c "from mlfin.backtest import warm_up; warm_up()"
echo "$want" > "$stamp"
echo "mlfin setup: $venv ready ($variant) in $(seconds "$began")"
