"""A home copied or moved to another folder (issue 17, defect 3): MLflow records where artifacts live as absolute paths, so
a copy went on reading and writing its original's folder, and recreated it when it was gone. Here a copy writes only into
itself, loads its models and reads its earlier runs from itself, and leaves its original (gone or still there) alone."""
import hashlib, json, os, re, shutil, subprocess, sys
from pathlib import Path
import pytest
from conftest import ROOT, SLICE, mlfin
pytestmark = pytest.mark.e2e   # a user's path end to end (make test-fast leaves it out)

RUN = ['run', '--symbols', 'SPX', '--start', '2016-01-01', '--end', '2017-12-31', '--folds', '3', '--models', 'logistic']


def python(home: Path, code: str) -> str:
    "Run Python code as a user's script would, with state under `home`; its standard output"
    env = {k: v for k, v in os.environ.items() if k != 'MLFLOW_TRACKING_URI'}
    done = subprocess.run([sys.executable, '-c', code], cwd=ROOT, env={**env, 'MLFIN_HOME': str(home)}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def snapshot(folder: Path) -> dict:
    "Every file under `folder`, hashed"
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob('*')) if p.is_file()}


def test_a_moved_home_runs_loads_and_reads_only_itself(pipeline_run, tmp_path):
    "The home of a real run moved (copied, the original deleted): a second run, the registry and the first run's artifacts all in the copy"
    first, moved = tmp_path/'first', tmp_path/'moved'
    shutil.copytree(pipeline_run['home'], first, symlinks=True)   # the session's run, in a home of this test's own
    mlfin(first, 'models', 'ls')   # opened there once: its records now point into `first`
    published = ['--reports', str(tmp_path/'published')]
    mlfin(first, 'run', *SLICE, *published)   # the session's run, whatever later tests asked of it, settled in this home
    before = json.loads((first/'run'/'summary.json').read_text())
    shutil.copytree(first, moved, symlinks=True)
    shutil.rmtree(first)
    same = mlfin(moved, 'run', *SLICE, *published)   # moved, nothing else changed: nothing reruns (its bars' stamps, its tasks' parameters)
    assert '0 task(s) ran (nothing changed)' in same.stdout, same.stdout

    mlfin(moved, *RUN, '--reports', str(moved/'reports'), '--force')   # a new run in the copy: new artifacts, a new model version
    after = json.loads((moved/'run'/'summary.json').read_text())
    assert after['mlflow']['SPX'] != before['mlflow']['SPX']
    assert (moved/'mlartifacts'/after['mlflow']['SPX']/'artifacts'/'models'/'logistic'/'model.json').is_file()   # its model, in the copy

    old, new = before['registry']['SPX']['version'], after['registry']['SPX']['version']
    assert new > old
    listed = mlfin(moved, 'models', 'ls').stdout
    assert {tuple(line.split()[:2]) for line in listed.splitlines()[1:]} >= {('mlfin.SPX.1d', str(old)), ('mlfin.SPX.1d', str(new))}
    shutil.rmtree(moved/'registry', ignore_errors=True)   # no cached copy: each version comes from the registry's own artifacts
    loaded = python(moved, "from mlfin.models.registry import load\n"
                           f"for v in ('{old}', '{new}'): p = load(v, 'SPX', '1d'); print(p.version, p.kind, len(p.inputs))")
    assert [line.split()[:2] for line in loaded.splitlines()] == [[str(old), 'classifier'], [str(new), 'classifier']]
    assert (moved/'registry'/'mlfin.SPX.1d'/str(old)/'model.json').is_file()   # registered before the move, loaded from the copy

    mlfin(moved, 'runs', 'get', before['mlflow']['parent'][:12], '--to', str(tmp_path/'fetched'))   # the first run's artifacts, read back
    assert json.loads((tmp_path/'fetched'/'summary.json').read_text())['mlflow'] == before['mlflow']
    check = json.loads(python(moved, "import json; from mlfin.tracking import check_home; print(json.dumps(check_home()))"))
    assert (check['home'], check['outside']) == (str(moved.resolve()), [])
    assert mlfin(moved, 'home', 'check').stdout.strip().endswith('every recorded location is inside it')
    assert not first.exists()   # never written to, never recreated


def test_a_copy_beside_its_original_leaves_it_alone(tmp_path, monkeypatch):
    "A home copied while the original stays: several processes open the copy at once (one rewrites it), then a run is logged in it"
    from mlfin import tracking
    original, copy = tmp_path/'original', tmp_path/'copy'
    monkeypatch.delenv('MLFLOW_TRACKING_URI', raising=False)
    monkeypatch.setenv('MLFIN_HOME', str(original))
    (original/'models'/'SPX').mkdir(parents=True)
    (original/'models'/'SPX'/'note.txt').write_text('a model')
    first = tracking.log_run({'models': 'logistic'}, [{'symbol': 'SPX', 'fingerprint': 'abc'}], {'SPX': {'auc': 0.6}},
                             {'SPX': {'strategy': {'sharpe': 0.5}}}, original/'models')
    shutil.copytree(original, copy)
    kept = snapshot(original)

    monkeypatch.setenv('MLFIN_HOME', str(copy))
    code = "import json; from mlfin.tracking import relocate; print(json.dumps(relocate()))"
    env = {**os.environ, 'MLFIN_HOME': str(copy)}
    opening = [subprocess.Popen([sys.executable, '-c', code], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True) for _ in range(4)]
    said = [json.loads(p.communicate(timeout=120)[0]) for p in opening]
    done = [s for s in said if s]
    assert len(done) == 1 and done[0]['from'] == str(original.resolve()) and done[0]['rewritten'] >= 3   # the experiment and both runs
    assert tracking.relocate() is None   # opened again: nothing left to do

    second = tracking.log_run({'models': 'logistic'}, [{'symbol': 'SPX', 'fingerprint': 'abd'}], {'SPX': {'auc': 0.6}},
                              {'SPX': {'strategy': {'sharpe': 0.5}}}, original/'models')
    assert (copy/'mlartifacts'/second['SPX']/'artifacts'/'models'/'note.txt').read_text() == 'a model'
    back = tracking.configured_mlflow().artifacts.download_artifacts(run_id=first['SPX'], artifact_path='models/note.txt', dst_path=str(tmp_path/'back'))
    assert Path(back).read_text() == 'a model' and Path(back).is_relative_to(tmp_path/'back')
    assert tracking.check_home()['outside'] == []
    assert snapshot(original) == kept   # the original: not one byte changed


def test_a_location_outside_the_home_is_named(tmp_path, monkeypatch):
    "A run whose artifacts live outside the home (an experiment given its own folder): the check names it, and says when it is missing"
    from mlfin import tracking
    monkeypatch.delenv('MLFLOW_TRACKING_URI', raising=False)
    monkeypatch.setenv('MLFIN_HOME', str(tmp_path/'home'))
    (tmp_path/'home').mkdir()
    mlflow = tracking.configured_mlflow()
    elsewhere = mlflow.create_experiment('shared', artifact_location=(tmp_path/'shared').as_uri())
    with mlflow.start_run(experiment_id=elsewhere) as run: mlflow.log_dict({'a': 1}, 'a.json')
    assert tracking.check_home()['outside'] == [f"experiment shared: {(tmp_path/'shared').as_uri()}",
                                               f"run {run.info.run_id}: {(tmp_path/'shared').as_uri()}/{run.info.run_id}/artifacts"]
    shutil.rmtree(tmp_path/'shared')
    assert all(line.endswith('(missing)') for line in tracking.check_home()['outside'])


def test_a_home_made_with_the_usual_umask_is_tightened_at_start_and_no_other_account_reads_it():
    """Issue 53, item 3: a home made with umask 022 by an earlier version (0755, its service.db 0644: the token-signing secret,
    readable by every local account) is made owner-only when `mlfin dashboards` opens it, said in one line; then the OS user
    nobody cannot read service.db"""
    import stat, tempfile
    from test_dashboard import person, voila
    base = Path(tempfile.mkdtemp(prefix='mlfin-home-')); base.chmod(0o755)   # in /tmp, which every account enters (pytest's folder is 0700)
    home, kept = base/'home', os.umask(0o022)
    as_nobody = lambda path: subprocess.run(['runuser', '-u', 'nobody', '--', 'cat', str(path)], capture_output=True, text=True, errors='replace')
    try:
        person(home, 'opadmin', 'admin')   # the home made as `mlfin users add` makes it, with the usual umask
        db = home/'store'/'service.db'; db.chmod(0o644)   # as a version before issue 53 left it
        assert (stat.S_IMODE(home.stat().st_mode), stat.S_IMODE(db.stat().st_mode)) == (0o755, 0o644)
        if os.geteuid() == 0: assert as_nobody(db).returncode == 0   # the attack of the issue: any account reads the secret
        with voila(home, 'index.ipynb', login=True, args=('--preheat', '0')) as served:   # as an operator starts it, umask 022 still
            said = [line for line in served.log().splitlines() if 'tightened' in line]
            modes = {str(p.relative_to(home)): stat.S_IMODE(p.lstat().st_mode) for p in [home, *home.rglob('*')] if not p.is_symlink()}
        assert len(said) == 1 and re.fullmatch(rf"mlfin: tightened {re.escape(str(home))} \(was 0755\) and \d+ files?, \d+ folders? in it to owner-only",
                                               said[0]), said   # once, naming the home and what it was
        wide = {name: f"{mode:04o}" for name, mode in modes.items() if mode & 0o077}
        assert wide == {} and modes['.'] == 0o700 and modes['store/service.db'] == 0o600, wide
        if os.geteuid() == 0:
            refused = as_nobody(db)
            assert refused.returncode != 0 and 'Permission denied' in refused.stderr, refused
    finally:
        os.umask(kept); shutil.rmtree(base, ignore_errors=True)
