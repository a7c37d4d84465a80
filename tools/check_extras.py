"""Each extra alone, installed on the core, makes its areas work: `make extras-check`, by hand and before a release.

    .venv/bin/python tools/check_extras.py                 # the core, then every extra of settings.ini: a fresh venv each
    .venv/bin/python tools/check_extras.py service tuning  # only these (core: the bare package); --keep leaves the venvs
    .venv/bin/python tools/check_extras.py --unlocked      # the newest versions settings.ini's ranges admit, not the lock's

It builds the wheel once (`make wheel`), then per extra makes a fresh venv outside the checkout (uv, the project's
Python), installs `mlfin-...whl[EXTRA]` (at env/requirements.lock's versions, from uv's cache where they are), and from a
folder outside the checkout, nothing of it on the path:
- imports every module whose area's extras (`mlfin.extras.extras_of`) the extra brings with the core: each must import;
- imports every other module: each must import (it imports its libraries where it uses them) or end in MissingExtra's one
  line naming an extra that brings what it lacks;
- runs the smallest real action of each area the extra brings (ACTIONS), and the first step of each area it does not
  bring (REFUSE), which must end in that one line naming the area's extra; at least one refusal per extra but `all`.
Then a table, and exit 1 on any failure. The extras are settings.ini's `extra_*` lines (what pip knows; tools/extras.py
writes them from mlfin.extras.EXTRAS), checked against the wheel's `Provides-Extra`. A script, not a test under tests/
(15 installs and their imports take ~9 minutes, past make test's budget), nor a benchmark under tests/bench/ (it
measures nothing against a peer); tools/ beside extras.py, which writes what it checks.
"""
from __future__ import annotations
import json, os, re, shutil, socket, subprocess, sys, tempfile, time, zipfile
from configparser import ConfigParser
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from mlfin.extras import AREAS, brings   # the checkout's, which the wheel is built from
UV = Path(sys.executable).with_name('uv')   # env/setup.sh's, its version pinned there

# each area's smallest real action, keyed by its extra ('core': the bare package's): a shell command run in the outside
# folder ($PORT a free port), failing unless its output holds what it should, or Python run there; []: import only
FIT = """import numpy as np
from mlfin.models.core import model_spec, load_model, save_model
rng = np.random.default_rng(0); X = rng.normal(size=(400, 4)); y = (X[:, 0] + rng.normal(size=400) > 0).astype(float)
settings = {{'epochs': 1, 'window': 5}} if '{family}' == 'lstm' else {{}}
model = model_spec('{family}', settings).make('classifier').fit(X, y, np.arange(300))
again = load_model(save_model(model, 'model-{family}'))
assert np.allclose(model.predict(X, np.arange(300, 400)), again.predict(X, np.arange(300, 400)), atol=1e-6)
print('{family}: fitted, saved, loaded, predicted', len(X) - 300, 'rows')"""
ACTIONS: dict[str, list[tuple[str, str, str]]] = {   # extra -> [(what, 'sh' or 'py', command or code)]
    'core': [('mlfin ingest a CSV', 'sh', "printf 'ts,open,high,low,close,volume\\n2024-01-02,1,2,0.5,1.5,100\\n"
                                           "2024-01-03,1.5,2,1,1.8,120\\n' > bars.csv && "
                                           "mlfin ingest bars.csv --symbol ABC --timeframe 1d | grep -q '2 good row(s)'")],
    'lightgbm': [('LightGBM fit, save, load, predict', 'py', FIT.format(family='lightgbm'))],
    'xgboost': [('XGBoost fit, save, load, predict', 'py', FIT.format(family='xgboost'))],
    'lstm': [('LSTM fit, save, load, predict', 'py', FIT.format(family='lstm'))],
    'tuning': [('open a study store', 'py', "from mlfin.models.tuning import open_storage\n"
                "s = open_storage('sqlite:///optuna.db')\nimport optuna\n"
                "optuna.create_study(storage=s, study_name='x'); print(type(s).__name__)")],
    'tracking': [('mlfin runs', 'sh', "mlfin runs | grep -q 'no runs yet'")],
    'postgresql': [],   # nothing to run without a server: import only
    'remote': [],       # every source asks a provider over the network: import only
    'service': [('mlfin serve, GET /health', 'sh', "mlfin serve --port $PORT --no-jobs > serve.log 2>&1 & pid=$!; "
                 "for i in $(seq 240); do python -c \"import urllib.request as u; "
                 "u.urlopen('http://127.0.0.1:$PORT/health', timeout=1)\" 2>/dev/null && ok=1 && break; "
                 "kill -0 $pid 2>/dev/null || break; sleep 0.5; done; kill $pid 2>/dev/null; wait $pid; "
                 "[ -n \"$ok\" ] || { tail -5 serve.log; false; }")],
    'pipeline': [('mlfin run --help', 'sh', "mlfin run --help | grep -q 'Run the pipeline'")],
    'dashboards': [('mlfin dashboards --help', 'sh', "mlfin dashboards --help | grep -q 'Voil'")],
    'cluster': [('a local Dask cluster runs a unit', 'py', "from mlfin.cluster.where import running\n"
                 "with running('local:1') as address:\n    from distributed import Client\n"
                 "    with Client(address) as c: assert c.submit(sum, [1, 2]).result() == 3\nprint(address)")],
    'ops': [('mlfin schedule ls', 'sh', "mlfin schedule ls | grep -q 'no scheduled run recorded yet'")],
    'predict': [('latest() in a home with no model', 'py', "from mlfin.serving import NoProductionModel, latest\n"
                 "try: latest('SPX', '1d'); raise SystemExit('a prediction from an empty registry')\n"
                 "except NoProductionModel as e: print(e)")],
    'research': [('buy and hold of the embedded SPX after costs', 'py', "from mlfin.data import load_sample\n"
                  "from mlfin.backtest import buy_and_hold, costs_for\nbars = load_sample('SPX')\n"
                  "book = buy_and_hold(bars, bars.index[0], bars.index[-1], costs_for('equity'))\n"
                  "assert book.total_return() > 1, book.total_return(); print(book.total_return())")],
}

# the areas whose action, run where their extra is not installed, must end in MissingExtra's one line naming it (the CLI's
# `mlfin: error: ` line, or Python's last): a user's first step in an area the install lacks. The others' actions need
# nothing they lack (--help), or there are none
REFUSE = ('lightgbm', 'xgboost', 'lstm', 'tuning', 'tracking', 'research', 'service', 'cluster')
# an extra whose packages make another area's first step work too: [predict]'s MLflow client reads the runs `mlfin runs` lists
ALSO = {'predict': ('tracking',)}
LINE = r"mlfin\.\S+ needs \S+, which is not installed: pip install 'mlfin\[([a-z,]+)\]'"   # mlfin.extras.missing's
SAID = re.compile(rf"(?:mlfin: error: |mlfin\.extras\.MissingExtra: ){LINE}")

# run in the extra's venv, from the outside folder: what imports, what refuses, and how
CHILD = r"""
import importlib, json, re, sys, traceback
from pathlib import Path
import mlfin
from mlfin.extras import MissingExtra, brings, extras_of
installed = set(brings(*sys.argv[1].split(','))) if sys.argv[1] != 'core' else set()
package = Path(mlfin.__file__).parent
names = sorted('.'.join(p.relative_to(package.parent).with_suffix('').parts).removesuffix('.__init__')
               for p in package.rglob('*.py') if p.name != '_modidx.py')
covered = [n for n in names if set(extras_of(n)) <= installed]
found = {'file': mlfin.__file__, 'imported': [], 'failed': {}, 'refused': {}, 'lazy': []}
for name in covered:
    try: importlib.import_module(name); found['imported'].append(name)
    except BaseException as e: found['failed'][name] = f"{type(e).__name__}: {e}".splitlines()[0][:300]
LINE = re.compile(sys.argv[2])
for name in names:
    if name in covered: continue
    try: importlib.import_module(name); found['lazy'].append(name)   # it imports its libraries where it uses them
    except MissingExtra as e:
        said, m = str(e), LINE.fullmatch(str(e))
        named = set(m[1].split(',')) if m else set()
        if m and not named <= installed and named <= set(brings(*extras_of(name))): found['refused'][name] = said
        else: found['failed'][name] = f"not one line naming an extra of {', '.join(extras_of(name))}: {said[:300]}"
    except BaseException as e:
        found['failed'][name] = f"{type(e).__name__} instead of MissingExtra: {e}".splitlines()[0][:300]
print(json.dumps(found))
"""


def extras() -> list[str]:
    "settings.ini's extras (`extra_NAME`), in its order: what pip knows, tools/extras.py's lines"
    cfg = ConfigParser(delimiters=['=']); cfg.read(ROOT/'settings.ini', encoding='utf-8')
    return [key.removeprefix('extra_') for key in cfg['DEFAULT'] if key.startswith('extra_')]


def outside(venv: Path, home: Path) -> dict:
    """A service's machine, as tests/test_wheel.py's `outside`: the venv first on PATH, nothing of the checkout (its
    .venv, PYTHONPATH, the MLFIN_* settings), a home of its own"""
    path = [str(venv/'bin'), *(p for p in os.environ['PATH'].split(os.pathsep)
                               if p and not Path(p).resolve().is_relative_to(ROOT))]
    kept = {k: v for k, v in os.environ.items() if not k.startswith(('PYTHON', 'MLFIN_', 'VIRTUAL_ENV'))}
    return {**kept, 'PATH': os.pathsep.join(path), 'MLFIN_HOME': str(home), 'MLFIN_LEDGER': 'home',
            'PLOOMBER_STATS_ENABLED': 'false'}


def free_port() -> int:
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


def act(how: str, action: str, venv: Path, here: Path, env: dict, timeout: int) -> subprocess.CompletedProcess:
    "Run an ACTIONS entry in the venv, from the outside folder"
    command = ['bash', '-c', action] if how == 'sh' else [venv/'bin'/'python', '-c', action]
    return subprocess.run(command, cwd=here, env={**env, 'PORT': str(free_port())}, capture_output=True, text=True,
                          timeout=timeout)


def check(extra: str, wheel: Path, work: Path, locked: bool = True) -> dict:
    "One extra ('core': none) in a fresh venv under `work`: installed, modules imported or refused, actions run"
    row = {'extra': extra, 'packages': None, 'install_s': None, 'imported': 0, 'lazy': 0, 'refused': 0, 'refusals': 0,
           'actions': [], 'problems': []}
    venv, here, problems = work/'venv', work/'elsewhere', row['problems']
    here.mkdir(parents=True)
    subprocess.run([UV, 'venv', '-q', '--python', sys.executable, venv], check=True, timeout=120)
    began = time.perf_counter()
    lock = ['-c', ROOT/'env/requirements.lock'] if locked else []
    done = subprocess.run([UV, 'pip', 'install', '--python', venv/'bin'/'python', *lock,
                           str(wheel) if extra == 'core' else f"{wheel}[{extra}]"], capture_output=True, text=True, timeout=1200)
    row['install_s'] = round(time.perf_counter() - began, 1)
    if done.returncode: problems.append(f"install: {(done.stderr.strip().splitlines() or [done.returncode])[-1]}"); return row
    row['packages'] = int(m[1]) if (m := re.search(r'Installed (\d+) packages?', done.stderr)) else None
    env = outside(venv, work/'home')
    done = subprocess.run([venv/'bin'/'python', '-c', CHILD, extra, LINE], cwd=here, env=env, capture_output=True, text=True,
                          timeout=900)
    if done.returncode: problems.append(f"imports: exited {done.returncode}: {done.stderr.strip()[-500:]}"); return row
    found = json.loads(done.stdout.strip().splitlines()[-1])
    if not Path(found['file']).is_relative_to(venv): problems.append(f"imported {found['file']}, not the venv's mlfin")
    row.update(imported=len(found['imported']), lazy=len(found['lazy']), refused=len(found['refused']))
    problems += [f"{name}: {why}" for name, why in found['failed'].items()]
    brought = ('core',) if extra == 'core' else brings(extra)   # the core's action once, on the bare core
    for own in brought:
        for what, how, action in ACTIONS.get(own, ()):   # models, all: no area of their own, only the extras they bring
            began = time.perf_counter()
            done = act(how, action, venv, here, env, 600)
            row['actions'].append(f"{what} {time.perf_counter() - began:.1f}s")
            if done.returncode: problems.append(f"{what}: exited {done.returncode}: {(done.stderr or done.stdout).strip()[-400:]}")
    works = {area for own in brought for area in ALSO.get(own, ())}
    for other in (area for area in REFUSE if area not in brought and area not in works):   # refused in one line
        for what, how, action in ACTIONS[other]:
            done = act(how, action, venv, here, env, 120)
            last = ((done.stdout + done.stderr).strip().splitlines() or [''])[-1]
            if done.returncode and (m := SAID.fullmatch(last)) and other in m[1].split(','): row['refusals'] += 1
            else: problems.append(f"[{other}]'s {what}, not installed: exited {done.returncode}, not MissingExtra's line: {last[:300]}")
    if extra != 'all' and not row['refused'] + row['refusals']: problems.append('nothing of another area refused with MissingExtra')
    return row


def main(argv: list[str]) -> int:
    locked, keep = '--unlocked' not in argv, '--keep' in argv
    declared = extras()
    areas = {'core', *(extra for named in AREAS.values() for extra in named)}   # every extra an area names, and the core
    if set(ACTIONS) != areas: sys.exit(f"check_extras: ACTIONS has {sorted(ACTIONS)}; mlfin.extras.AREAS names {sorted(areas)}")
    asked = [a for a in argv if not a.startswith('--')] or ['core', *declared]
    unknown = [a for a in asked if a != 'core' and a not in declared]
    if unknown: sys.exit(f"check_extras: no extra {', '.join(unknown)}; settings.ini's: {', '.join(declared)}")
    if not UV.exists(): sys.exit(f"check_extras: {UV} missing: run make setup")
    work = Path(tempfile.mkdtemp(prefix='mlfin-extras-'))   # outside the checkout
    try:
        dist = work/'dist'
        subprocess.run(['make', '-s', '-o', 'setup', 'wheel', f"DIST={dist}"], cwd=ROOT, check=True, capture_output=True,
                       timeout=300)
        wheel, = dist.glob('mlfin-*.whl')
        with zipfile.ZipFile(wheel) as z:
            metadata = z.read(next(n for n in z.namelist() if n.endswith('.dist-info/METADATA'))).decode()
        offered = set(re.findall(r'^Provides-Extra: (\S+)', metadata, re.M)) - {'dev'}
        if offered != set(declared): sys.exit(f"check_extras: the wheel offers {sorted(offered)}, settings.ini {sorted(declared)}")
        print(f"{wheel.name}, {'the lock' if locked else 'the newest versions the ranges admit'}; in {work}", flush=True)
        rows = []
        for extra in asked:
            rows.append(row := check(extra, wheel, work/extra, locked))
            print(f"  {extra}: {'met' if not row['problems'] else 'FAILED'} ({row['install_s']} s install; "
                  f"{'; '.join(row['actions'])})", flush=True)
            if not keep: shutil.rmtree(work/extra, ignore_errors=True)
        print("\n| extra | packages installed | install s | modules imported | other areas: modules refused / importing "
              "(lazily) / first steps refused | actions | result |\n|---|---:|---:|---:|---|---|---|")
        for r in rows:
            actions = ', '.join(a.rsplit(' ', 1)[0] for a in r['actions']) or 'import only'
            print(f"| {r['extra']} | {r['packages']} | {r['install_s']} | {r['imported']} | {r['refused']} / {r['lazy']} / "
                  f"{r['refusals']} | {actions} | {'met' if not r['problems'] else 'failed'} |")
        for r in rows:
            for problem in r['problems']: print(f"{r['extra']}: {problem}")
        return 1 if any(r['problems'] for r in rows) else 0
    finally:
        if not keep: shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
