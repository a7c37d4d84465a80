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


def readme_install() -> list[str]:
    "The extras of the README's `pip install \"dist/mlfin-...whl[...]\"` line (Environment), the one place they are named"
    found = re.search(r'^pip install "dist/mlfin-[^"\[]*\.whl\[([a-z0-9_,-]+)\]"', (ROOT/'README.md').read_text(), re.M)
    assert found, "README.md names no `pip install \"dist/mlfin-...whl[...]\"` line (Environment: a service's own environment)"
    return found.group(1).split(',')


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
    finally:
        server.send_signal(signal.SIGTERM); server.wait(60)
    assert 'Traceback' not in (tmp_path/'serve.log').read_text()
    figures['total_s'] = round(time.perf_counter() - began, 1)
    print(json.dumps(figures))
