"""A team's MLflow as its users meet it: `mlfin tracking serve` (MLflow's server with basic auth, artifact serving and
PostgreSQL behind it, on loopback), a pipeline run recorded to it through `--tracking`, its registered model served by
`mlfin serve` from it, and a home's own SQLite store moved into a fresh server with every id and prediction kept."""
import os, shutil, sqlite3, subprocess
from pathlib import Path
import httpx, pandas as pd, psycopg
import pytest
from conftest import TRACKING_PASSWORD as PASSWORD, TrackingServer, copied, mlfin, new_database, service

pytestmark = [pytest.mark.e2e, pytest.mark.together]   # its tests share one tracking server (module fixture)


@pytest.fixture(scope='module')
def tracking_server(postgres_server, tmp_path_factory):
    root = tmp_path_factory.mktemp('tracking-server')
    server = TrackingServer(root/'home', new_database(postgres_server), root/'artifacts', '--allowed-hosts', 'mlflow.team.test')
    yield server
    server.stop()


def search(server, **kwargs) -> httpx.Response:
    return httpx.post(f"{server.url}/api/2.0/mlflow/experiments/search", json={'max_results': 10}, timeout=30, **kwargs)


def test_every_route_but_health_asks_for_an_account(tracking_server):
    assert httpx.get(f"{tracking_server.url}/health", timeout=10).status_code == 200
    assert search(tracking_server).status_code == 401
    assert search(tracking_server, auth=('admin', 'not-the-password')).status_code == 401
    assert search(tracking_server, auth=('admin', PASSWORD)).status_code == 200


def test_a_team_reaches_the_server_by_the_name_it_was_given_and_by_no_other(tracking_server):
    "`--allowed-hosts`: the name a team uses answers; a name the server was not given (a DNS rebinding) is refused, account or not"
    admin = ('admin', PASSWORD)
    named = search(tracking_server, auth=admin, headers={'Host': f"mlflow.team.test:{tracking_server.port}"})
    assert named.status_code == 200, named.text
    rebound = search(tracking_server, auth=admin, headers={'Host': f"rebound.example:{tracking_server.port}"})
    assert (rebound.status_code, 'Invalid Host header' in rebound.text) == (403, True), (rebound.status_code, rebound.text)


def predictions(env: dict, home: Path) -> tuple[int, pd.Series]:
    "The production SPX model's version and its predictions on the run's SPX rows, read through the registry `env` names"
    import sys, json
    code = ("import json, sys, numpy as np, pandas as pd\nfrom mlfin.models import load\n"
            "m = load('production', 'SPX', '1d')\nd = pd.read_parquet(sys.argv[1]); X = d.loc[d['symbol'] == 'SPX', m.inputs].to_numpy('float64')\n"
            "print(json.dumps({'version': m.version, 'p': [float(x) for x in m.model.predict(X, np.arange(len(X)))]}))")
    done = subprocess.run([sys.executable, '-c', code, str(home/'run'/'dataset.parquet')], env={**os.environ, 'MLFIN_HOME': str(home), **env},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    return found['version'], pd.Series(found['p'])


def test_a_run_recorded_on_the_server_is_served_from_it(tracking_server, served_golden, served_home, tmp_path, monkeypatch):
    "`--tracking URL`: the report task records the run, its models and the registry's decisions on the server"
    mine = copied(served_golden, tmp_path/'mine')   # the served run's home as the test's own, up to date with its arguments
    home = mine['home']
    for key, value in tracking_server.client_env().items(): monkeypatch.setenv(key, value)
    monkeypatch.delenv('MLFLOW_TRACKING_URI')   # the run names its server itself; the registry commands read MLflow's variable
    done = mlfin(home, 'run', *mine['args'], '--tracking', tracking_server.url)
    # the tracking parameter alone reruns the report, which records the run on the server
    assert 'mlfin: 1 task(s) ran (report) in ' in done.stdout and f"mlflow:    {tracking_server.url}" in done.stdout, done.stdout
    from mlflow import MlflowClient
    client = MlflowClient(tracking_uri=tracking_server.url)
    experiment = client.get_experiment_by_name('mlfin/admin')   # its login's own: each member's runs are theirs to change
    parents = client.search_runs([experiment.experiment_id], "tags.`mlfin.kind` = 'pipeline'")
    assert len(parents) == 1 and parents[0].data.params['tracking'] == tracking_server.url
    assert experiment.artifact_location.startswith('mlflow-artifacts:')   # the files went through the server, into its folder
    assert any(tracking_server.artifacts.rglob('model.json'))
    assert {v.name for v in client.search_model_versions()} >= {'mlfin.SPX.1d', 'mlfin.ES.1m'}
    monkeypatch.setenv('MLFLOW_TRACKING_URI', tracking_server.url)
    mlfin(home, 'models', 'promote', 'SPX:1d', '--reason', 'served from the team server')   # a person's decision, recorded on the server
    version, served = predictions(tracking_server.client_env(), home)
    _, local = predictions({}, served_home)
    pd.testing.assert_series_equal(served, local)   # the same model files, recorded again: the same predictions
    (home/'mlflow.db').unlink()   # the service reads the registry from the server, not from any file of the home
    monkeypatch.delenv('MLFLOW_TRACKING_URI')   # named by the service's own parameter; the account in MLflow's variables
    with service(home, '--no-jobs', '--tracking', tracking_server.url) as svc, svc.client(svc.key('read_only')) as http:
        got = http.get('/predict', params={'symbol': 'SPX', 'timeframe': '1d'}).json()
        assert (got['name'], got['version']) == ('mlfin.SPX.1d', version), got
        assert got['prob_up'] == pytest.approx(served.iloc[-1], abs=1e-9)
        assert svc.errors() == ''


def rows(read, table: str) -> list[tuple]:
    return sorted(tuple('' if v is None else str(v) for v in row) for row in read(table))


def test_a_home_store_moves_to_a_server_with_ids_versions_and_predictions_kept(served_home, postgres_server, tmp_path, monkeypatch):
    home = tmp_path/'home'
    shutil.copytree(served_home, home)
    db, artifacts = new_database(postgres_server), tmp_path/'artifacts'
    done = mlfin(home, 'tracking', 'migrate', '--db', db, '--artifacts', str(artifacts))
    assert 'runs' in done.stdout and 'model_versions' in done.stdout, done.stdout
    again = mlfin(home, 'tracking', 'migrate', '--db', db, '--artifacts', str(tmp_path/'other'), check=False)
    assert again.returncode == 2 and "already holds" in again.stderr and again.stderr.count('\n') == 1, again.stderr
    # row for row: every run, metric, parameter, tag, model version and alias, with the same ids
    local = sqlite3.connect(home/'mlflow.db')
    with psycopg.connect(db) as pg:
        for table, columns in [('runs', 'run_uuid, name, status, start_time, end_time, experiment_id'), ('params', 'key, value, run_uuid'),
                               ('metrics', 'key, value, timestamp, step, run_uuid'), ('tags', 'key, value, run_uuid'),
                               ('model_versions', 'name, version, source, run_id, current_stage'),
                               ('registered_model_aliases', 'name, alias, version'), ('model_version_tags', 'name, version, key, value')]:
            assert rows(lambda t: local.execute(f"SELECT {columns} FROM {t}").fetchall(), table) == \
                   rows(lambda t: pg.execute(f"SELECT {columns} FROM {t}").fetchall(), table), table
        moved = [r[0] for r in pg.execute("SELECT artifact_uri FROM runs")]
        assert moved and all(uri.startswith('mlflow-artifacts:/mlfin/') for uri in moved), moved
    server = TrackingServer(tmp_path/'server-home', db, artifacts)
    try:
        version, after = predictions(server.client_env(), home)
        before_version, before = predictions({}, served_home)
        assert version == before_version
        pd.testing.assert_series_equal(after, before)   # the champion, loaded through the server, predicts as it did at home
        from mlflow import MlflowClient
        monkeypatch.setenv('MLFLOW_TRACKING_USERNAME', 'admin'); monkeypatch.setenv('MLFLOW_TRACKING_PASSWORD', PASSWORD)
        client = MlflowClient(tracking_uri=server.url)
        made = client.create_experiment('after the move')   # the server's own ids continue past the copied ones
        assert int(made) > max(int(e.experiment_id) for e in client.search_experiments() if e.name != 'after the move')
    finally: server.stop()
