"""mlfin as a service meets it: the wheel built from this checkout, installed with the README's extras into a fresh virtual
environment outside the checkout, then used from a folder with no repository on the path: a CSV of real bars ingested, a
registered model loaded from a home and asked, `mlfin serve` answering /health and /predict. The home is a copy of the served
run's (`mlfin run`, the pipeline `make run` runs, on SPX daily and ES minutes; production: LightGBM and logistic), with no
project recorded in it: nothing is read from the checkout. About 30-36 s (the commands' first imports, mostly) beside the
served run, which the service tests build anyway."""
import json, os, re, shutil, signal, subprocess, sys, time, zipfile
from pathlib import Path
import httpx, pandas as pd
import pytest
from conftest import ROOT, free_port
from mlfin import data
from mlfin.models import load
pytestmark = pytest.mark.e2e   # a user's path end to end (make test-fast leaves it out)

UV = Path(sys.executable).with_name('uv')   # env/setup.sh's, its version pinned there


def readme_install(kind: str = 'service') -> list[str]:
    """The extras of the README's `pip install "dist/mlfin-...whl[...]"` line (Environment) that installs `kind` (service:
    `mlfin serve`; predict: a program's own, importing mlfin to predict), the one place they are named"""
    found = [m.split(',') for m in re.findall(r'^pip install "dist/mlfin-[^"\[]*\.whl\[([a-z0-9_,-]+)\]"', (ROOT/'README.md').read_text(), re.M)]
    assert any(kind in extras for extras in found), f"README.md names no `pip install \"dist/mlfin-...whl[{kind},...]\"` line (Environment)"
    return next(extras for extras in found if kind in extras)


SERVICE_FASTAPI = '0.115.14'   # a team's own service's FastAPI, not the one mlfin serve's lock holds (0.165.0, the newest there is)
canonical = lambda name: re.sub(r'[-_.]+', '-', name).lower()


def timed(figures: dict, name: str, *command, **kw) -> subprocess.CompletedProcess:
    "Run `command`, its seconds kept in `figures[name]`; fails with its output"
    began = time.perf_counter()
    done = subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=600, **kw)
    figures[name] = round(time.perf_counter() - began, 1)
    assert done.returncode == 0, f"{name}: {' '.join(map(str, command))} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def outside(venv: Path, home: Path) -> dict:
    """The environment of a service's own machine: the venv's commands first on PATH, nothing of the checkout (its .venv, PYTHONPATH,
    the suite's MLFIN_* settings) and Python writing bytecode (a service's venv keeps it; with CI's PYTHONDONTWRITEBYTECODE each
    process compiled every module it imports again: six commands took 34 s against 15 s. uv's --compile-bytecode instead compiles
    all 180 packages at install, 26 s)"""
    path = [str(venv/'bin'), *(p for p in os.environ['PATH'].split(os.pathsep) if p and not Path(p).resolve().is_relative_to(ROOT))]
    kept = {k: v for k, v in os.environ.items() if not k.startswith(('PYTHON', 'MLFIN_', 'VIRTUAL_ENV'))}
    return {**kept, 'PATH': os.pathsep.join(path), 'MLFIN_HOME': str(home), 'MLFIN_LEDGER': 'home', 'PLOOMBER_STATS_ENABLED': 'false'}


ASK = """import json, sys, mlfin, pandas as pd
from mlfin.models import load
model = load('production', 'SPX', '1d')
spx = (run := pd.read_parquet(sys.argv[1]))[run['symbol'] == 'SPX']
print(json.dumps({'file': mlfin.__file__, 'version': model.version, 'prob_up': float(model(spx[model.inputs].tail(1))),
                  'bar': str(spx.index[-1])}))"""


def test_the_wheel_installed_outside_the_checkout_ingests_predicts_and_serves(served_golden, tmp_path, monkeypatch):
    figures, extras = {}, readme_install()
    began = time.perf_counter()
    # the wheel as the README builds it (make wheel: from a copy of the package's files, nothing written into the checkout)
    timed(figures, 'build_s', 'make', '-s', '-o', 'setup', 'wheel', f"DIST={tmp_path/'dist'}", cwd=ROOT)
    wheel, = (tmp_path/'dist').glob('mlfin-*.whl')
    figures['wheel_kb'] = wheel.stat().st_size // 1024
    with zipfile.ZipFile(wheel) as z:
        metadata = z.read(next(n for n in z.namelist() if n.endswith('.dist-info/METADATA'))).decode()
    declared = set(re.findall(r'^Provides-Extra: (\S+)', metadata, re.M))
    assert set(extras) <= declared, f"the README installs extras the wheel does not declare: {sorted(set(extras) - declared)} (it has {sorted(declared)})"
    # a fresh venv with the project's Python, the wheel and its extras at the lock's versions (the suite's own, in uv's cache: 180
    # packages hard-linked from it in 2-3 s; copied, --link-mode=copy, 6.5 s; with the cache empty, downloaded here in 5.3 s)
    venv = tmp_path/'venv'
    timed(figures, 'venv_s', UV, 'venv', '-q', '--python', sys.executable, venv)
    done = timed(figures, 'install_s', UV, 'pip', 'install', '--python', venv/'bin'/'python', '-c', ROOT/'env'/'requirements.lock',
                 f"{wheel}[{','.join(extras)}]")
    figures['packages'] = int(m.group(1)) if (m := re.search(r'Installed (\d+) packages', done.stderr)) else None

    # a home of the test's own, a copy of the served run's, that records no project: nothing is read from the checkout
    home = tmp_path/'home'
    shutil.copytree(served_golden['home'], home, symlinks=True)
    (home/'project.json').unlink(missing_ok=True)
    here = tmp_path/'elsewhere'; here.mkdir()
    env = outside(venv, home)
    mlfin = lambda name, *args, **kw: timed(figures, name, venv/'bin'/'mlfin', *args, cwd=here, env=env, **kw)

    # the last month of SPX removed, then a CSV of the real bars ingested: /predict's bar is the CSV's last
    spx = data.load_sample('SPX')
    spx.reset_index().to_csv(here/'spx.csv', index=False)
    removed = int((spx.index >= pd.Timestamp('2018-12-01', tz='UTC')).sum())
    assert mlfin('rm_s', 'data', 'rm', 'SPX:1d', '--start', '2018-12-01', '--yes').stdout.startswith(f"removed SPX 1d: {removed} bar(s)")
    asked = json.loads(timed(figures, 'load_predict_s', venv/'bin'/'python', '-c', ASK, home/'run'/'dataset.parquet', cwd=here, env=env).stdout)
    assert Path(asked['file']).is_relative_to(venv), asked['file']   # the installed package, not the checkout's
    ingested = mlfin('ingest_s', 'ingest', here/'spx.csv', '--symbol', 'SPX', '--timeframe', '1d').stdout
    assert f"({removed} new, 0 changed, {len(spx) - removed:,} unchanged; {len(spx):,} stored)" in ingested, ingested
    # the model the installed package loads predicts what the checkout's does on the run's last row
    monkeypatch.setenv('MLFIN_HOME', str(home))
    model, run = load('production', 'SPX', '1d'), pd.read_parquet(home/'run'/'dataset.parquet')
    assert (asked['version'], asked['prob_up']) == (model.version, pytest.approx(model(run[run['symbol'] == 'SPX'][model.inputs].tail(1)), abs=1e-9))
    assert asked['bar'] == str(pd.Timestamp('2018-12-31', tz='UTC'))

    key = mlfin('key_s', 'keys', 'create', '--role', 'read_only').stdout.strip()
    port = free_port()
    log = open(tmp_path/'serve.log', 'wb')
    t = time.perf_counter()
    server = subprocess.Popen([venv/'bin'/'mlfin', 'serve', '--port', str(port), '--no-jobs'], cwd=here, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200: break
            except httpx.HTTPError: pass
            assert server.poll() is None and time.perf_counter() - t < 120, (tmp_path/'serve.log').read_text()[-3000:]
            time.sleep(0.2)
        figures['serve_s'] = round(time.perf_counter() - t, 1)
        got = httpx.get(f"{url}/predict", params={'symbol': 'SPX', 'timeframe': '1d'}, headers={'X-API-Key': key}, timeout=60)
        assert got.status_code == 200, got.text
        got = got.json()
        assert (got['name'], got['version']) == ('mlfin.SPX.1d', asked['version'])
        assert pd.Timestamp(got['bar_time']) == pd.Timestamp('2018-12-31', tz='UTC')   # the ingested CSV's last bar
        assert got['prob_up'] == pytest.approx(asked['prob_up'], abs=1e-9)
        # production moved to an XGBoost version under this LightGBM-only install: named, with the extra it lacks, by /predict,
        # /ready (which serves the next series meanwhile) and the log, never a "no production model"
        xgb = promoted_xgboost('SPX', '1d')
        got = httpx.get(f"{url}/predict", params={'symbol': 'SPX', 'timeframe': '1d'}, headers={'X-API-Key': key}, timeout=60)
        line = (f"mlfin.SPX.1d v{xgb} is in production but cannot be loaded here: mlfin.models.families.xgboost needs xgboost, "
                "which is not installed: pip install 'mlfin[xgboost]'")
        assert (got.status_code, got.json()['detail']) == (503, line), got.text
        ready = httpx.get(f"{url}/ready", headers={'X-API-Key': key}, timeout=60)
        assert ready.status_code == 200 and ready.json()['refused'] == {'SPX:1d': line}, ready.text
        assert [m['symbol'] for m in ready.json()['models']] == ['ES']
    finally:
        server.send_signal(signal.SIGTERM); server.wait(60)
    assert 'Traceback' not in (said := (tmp_path/'serve.log').read_text()) and said.count(line) == 1, said[-3000:]   # logged once
    figures['total_s'] = round(time.perf_counter() - began, 1)
    print(json.dumps(figures))


# a team's own service, in its own environment: its own FastAPI, mlfin imported to predict (the README's `[predict,...]` line)
HOST = """import json, os, sys
before = dict(os.environ)
import fastapi                       # the service's own web framework, at the version it chose
from mlfin.serving import latest
home = sys.argv[1]
where = dict(store=f"{home}/store", tracking=f"sqlite:///{home}/mlflow.db", ledger=f"{home}/ledger.db")
def said(record): return json.dumps(record, default=str)
first = latest('SPX', '1d', **where)
import importlib.metadata as m, mlflow
from mlflow.telemetry.client import get_telemetry_client
print(json.dumps({'first': first, 'set': {k: v for k, v in os.environ.items() if before.get(k) != v},
                  'gone': [k for k in before if k not in os.environ], 'telemetry': get_telemetry_client() is not None,
                  'mlflow_uri_set': mlflow.tracking._tracking_service.utils.is_tracking_uri_set(),
                  'versions': {d: m.version(d) for d in ('fastapi', 'pandas', 'numpy', 'pyarrow', 'scikit-learn', 'lightgbm', 'mlflow-skinny')}},
                 default=str), flush=True)
sys.stdin.readline()                 # the test promotes another version meanwhile
print(said(latest('SPX', '1d', **where)), flush=True)
"""


def promoted_xgboost(symbol: str, timeframe: str) -> int:
    """A small XGBoost version of the series on its production model's inputs, registered and promoted by hand in the home
    MLFIN_HOME names (from the checkout, which has XGBoost): its number"""
    import numpy as np
    from mlfin.models.core import model_spec, save_model
    from mlfin.models.registry import describe, promote, register_version
    from mlfin.paths import home
    from mlfin.tracking import configured_mlflow, experiment_id
    now = next(v for v in describe(f"mlfin.{symbol}.{timeframe}") if 'production' in v['aliases'])
    run = pd.read_parquet(home()/'run'/'dataset.parquet')
    manifest = load('production', symbol, timeframe).model.manifest
    rows = run[run['symbol'] == symbol].dropna(subset=['label'])
    X, y = rows[manifest['inputs']].to_numpy(dtype='float64'), rows['label'].to_numpy(dtype='float64')
    model = model_spec('xgboost', {'n_estimators': 5}).make('classifier').fit(X, y, np.arange(len(X)))
    folder = home()/'xgboost-made'
    save_model(model, folder/'xgboost', 'xgboost', manifest['inputs'], {k: manifest[k] for k in ('features', 'label', 'horizon')})
    mlflow = configured_mlflow()
    with mlflow.start_run(experiment_id=experiment_id()) as made: mlflow.log_artifacts(str(folder), 'models')
    version = register_version(made.info.run_id, symbol, timeframe, 'xgboost', {}, 'classifier', now['lineage'])
    promote(symbol, timeframe, version, 'test_wheel: a family this install lacks')
    return version


SKLEARN_SETS = "import json, os; before = dict(os.environ); import sklearn; print(json.dumps({k: v for k, v in os.environ.items() if before.get(k) != v}))"


def requirements_of(wheel: Path, extras: list[str]) -> list[str]:
    "The wheel's requirements for the core and `extras`, as pip reads its METADATA, each without its marker"
    with zipfile.ZipFile(wheel) as z:
        metadata = z.read(next(n for n in z.namelist() if n.endswith('.dist-info/METADATA'))).decode()
    found = []
    for line in re.findall(r'^Requires-Dist: (.+)$', metadata, re.M):
        requirement, _, marker = line.partition(';')
        extra = re.search(r'extra == "([^"]+)"', marker)
        if not marker.strip() or (extra and extra[1] in extras): found.append(requirement.strip())
    return sorted(set(found))


def test_a_service_of_its_own_predicts_with_the_oldest_versions_allowed(served_golden, tmp_path, monkeypatch):
    """The slim install (the README's `[predict,...]` line) at the oldest versions its requirements allow, beside the service's
    own FastAPI: `mlfin.serving.latest` answers what the checkout's does, from a home mounted read-only, setting nothing in the
    process's environment, with MLflow's telemetry off; a version promoted meanwhile is served at the next call, no restart"""
    from mlfin.models.registry import describe, move_production, register_version
    from mlfin.serving import latest
    figures, extras = {}, readme_install('predict')
    timed(figures, 'build_s', 'make', '-s', '-o', 'setup', 'wheel', f"DIST={tmp_path/'dist'}", cwd=ROOT)
    wheel, = (tmp_path/'dist').glob('mlfin-*.whl')
    wanted = requirements_of(wheel, extras)
    assert not any(re.match(r'(fastapi|uvicorn|vectorbt|plotly|ipywidgets|gym-anytrading|bokeh-sampledata)\b', r) for r in wanted), wanted
    # each of mlfin's requirements at its floor (uv: a direct requirement at its lowest allowed version, the rest as resolved),
    # and FastAPI at the service's own version, not the one the suite's lock holds
    (tmp_path/'floors.txt').write_text('\n'.join([*wanted, f"fastapi=={SERVICE_FASTAPI}"]) + '\n')
    venv = tmp_path/'venv'
    timed(figures, 'venv_s', UV, 'venv', '-q', '--python', sys.executable, venv)
    timed(figures, 'install_s', UV, 'pip', 'install', '--python', venv/'bin'/'python', '--resolution', 'lowest-direct',
                 '-r', tmp_path/'floors.txt')
    timed(figures, 'wheel_s', UV, 'pip', 'install', '--python', venv/'bin'/'python', '--no-deps', wheel)
    listed = timed(figures, 'list_s', UV, 'pip', 'list', '--python', venv/'bin'/'python', '--format', 'json').stdout
    installed = {canonical(p['name']): p['version'] for p in json.loads(listed)}
    floors = {canonical(re.match(r'[A-Za-z0-9_.-]+', r)[0]): m[1] for r in wanted if (m := re.search(r'>=([^,\s]+)', r))}
    assert {n: installed.get(n) for n in floors} == floors, 'not every requirement installed at its floor'
    assert installed['fastapi'] == SERVICE_FASTAPI and not {'vectorbt', 'plotly', 'ipywidgets', 'uvicorn-worker'} & set(installed)
    figures['packages'] = len(installed)

    home, here = tmp_path/'home', tmp_path/'elsewhere'
    shutil.copytree(served_golden['home'], home, symlinks=True)
    (home/'project.json').unlink(missing_ok=True)
    here.mkdir()
    (here/'host.py').write_text(HOST)
    cache = tmp_path/'cache'
    env = {k: v for k, v in outside(venv, tmp_path/'nowhere').items() if k not in ('CI', 'PYTEST_CURRENT_TEST', 'MLFIN_HOME', 'MLFIN_LEDGER')}
    env['XDG_CACHE_HOME'] = str(cache)   # this account's cache: where a version of someone else's registry is downloaded
    # the research team's home, read-only to the service: a bind mount of its own, in a mount namespace of the host's process
    mount = f"mount --bind {home} {home} && mount -o remount,bind,ro {home} {home} && exec {venv/'bin'/'python'} host.py {home}"
    began = time.perf_counter()
    host = subprocess.Popen(['unshare', '--mount', 'sh', '-c', mount], cwd=here, env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = host.stdout.readline()
        figures['first_prediction_s'] = round(time.perf_counter() - began, 1)
        assert line, host.stderr.read()[-3000:]
        said = json.loads(line)
        # the checkout's own answer on the same home: the same version, bar and P(up)
        monkeypatch.setenv('MLFIN_HOME', str(home)); monkeypatch.setenv('MLFIN_LEDGER', 'home')
        ours, theirs = latest('SPX', '1d'), said['first']
        assert (theirs['name'], theirs['version'], theirs['bar_time']) == (ours['name'], ours['version'], str(ours['bar_time']))
        assert theirs['prob_up'] == pytest.approx(ours['prob_up'], rel=1e-12, abs=1e-15), (theirs, ours)
        # scikit-learn sets two OpenMP variables as it is imported (LightGBM imports it): what any process importing it gets
        alone = subprocess.run([venv/'bin'/'python', '-c', SKLEARN_SETS], cwd=here, env=env, capture_output=True, text=True, timeout=300)
        assert (said['set'], said['gone'], said['telemetry'], said['mlflow_uri_set']) == (json.loads(alone.stdout), [], False, False), said
        assert list((cache/'mlfin'/'registry').glob(f"*/mlfin.SPX.1d/{ours['version']}/model.json")), 'not downloaded into the cache'
        # another version promoted while the service runs: its next call serves it
        now = next(v for v in describe('mlfin.SPX.1d') if 'production' in v['aliases'])
        version = register_version(now['run_id'], 'SPX', '1d', ours['model'], {}, 'classifier', now['lineage'])
        move_production('mlfin.SPX.1d', version, 'promote', 'test_wheel: a promotion while a service runs')
        host.stdin.write('\n'); host.stdin.flush()
        after = json.loads(host.stdout.readline() or host.stderr.read()[-3000:])
        assert (after['version'], after['prob_up']) == (version, pytest.approx(theirs['prob_up'], rel=1e-12)), after
    finally:
        host.kill(); host.wait(60)
    figures['versions'] = said['versions']
    print(json.dumps(figures))
