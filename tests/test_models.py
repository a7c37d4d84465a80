"""Models across modules, against real components: the same seed giving the same metrics for every family, and the registry
handing a service the model the run trained, from native files. (Tune workers sharing one study on PostgreSQL: tests/test_cluster.py.)"""
import json, os, subprocess, sys
from pathlib import Path
import numpy as np, pandas as pd
from conftest import ROOT, mlfin, new_database
from mlfin.data import load_sample
from mlfin.features import dataset
from mlfin.features.labels import fixed_horizon, return_target
from mlfin.models import FAMILIES, baselines, model_spec, train_universe


def test_same_seed_same_metrics_for_every_family():
    bars = {'SPX': load_sample('SPX').loc['2012':'2018']}
    _, classes = dataset(bars, fixed_horizon)
    _, returns = dataset(bars, return_target)
    def quick(name):   # every registered family, made quick: fewer trees, fewer epochs
        hyper = FAMILIES[name].hyper
        return model_spec(name, {'n_estimators': 40} if 'n_estimators' in hyper else {'epochs': 2} if 'epochs' in hyper else {})
    for data, kind in ((classes, 'classifier'), (returns, 'regressor')):
        chosen = [quick(name) for name, fam in FAMILIES.items() if kind in fam.kinds]
        assert len(chosen) >= 4, chosen
        first, second = (train_universe(data, chosen, kind, folds=3, seed=11, final=False) for _ in range(2))
        pd.testing.assert_frame_equal(first.leaderboard, second.leaderboard)
        pd.testing.assert_frame_equal(first.predictions, second.predictions)
        other = train_universe(data, chosen, kind, folds=3, seed=12, final=False)
        seeded = other.leaderboard.set_index('model')['n_scored'].index.difference(baselines())   # the baselines are deterministic
        differs = [m for m in seeded if not np.array_equal(other.predictions.query('model == @m')['prediction'].to_numpy(),
                                                           first.predictions.query('model == @m')['prediction'].to_numpy())]
        assert differs == sorted(seeded), kind  # the seed is used by every model with randomness


def test_the_registry_serves_what_the_run_trained(pipeline_copy):
    home = pipeline_copy['home']   # loading a version caches its files in the home
    summary = json.loads((home/'run'/'summary.json').read_text())
    listing = mlfin(home, 'models', 'ls').stdout
    env = {**os.environ, 'MLFIN_HOME': str(home)}
    rows = [line.split() for line in listing.splitlines()[1:]]
    for entry in summary['leaderboard']:  # every model of the run is a registered version of its series, the leader aliased
        assert any(r[0] == f"mlfin.{entry['symbol']}.{summary['symbols'][entry['symbol']]['timeframe']}" and r[2] == entry['model'] for r in rows)
    oos = pd.read_parquet(home/'run'/'oos.parquet')
    for symbol, entry in summary['symbols'].items():
        registered = summary['registry'][symbol]
        assert registered['model'] == entry['model'] and f"mlfin.{symbol}.{entry['timeframe']}" in listing
        after_costs = entry['models'][entry['model']]['sharpe']  # its own backtest's Sharpe ratio, after costs
        labels = oos.loc[(oos['symbol'] == symbol) & (oos['model'] == entry['model']), 'label'].dropna()
        p = labels.mean()   # the base rate: a constant forecast of the share of ups, scored on the same bars
        base_log_loss, base_brier = -(p * np.log(p) + (1 - p) * np.log(1 - p)), p * (1 - p)
        c = entry['classification']
        # the first run of a home: no incumbent, so production exactly when every gate passes
        assert registered['production'] == (c['auc'] >= summary['params']['promote_min_auc'] and after_costs > summary['params']['promote_min_sharpe']
                                             and c['log_loss'] < base_log_loss and c['brier'] < base_brier), registered
        if not registered['production']:  # the refusal names each gate that failed
            assert registered['decision'] == 'refused' and any(registered['refused'].startswith(why) for why in
                   ('out-of-sample auc ', 'after-cost backtest Sharpe ', 'out-of-sample log_loss ', 'out-of-sample brier ')), registered
        assert f"{registered['version']}" in listing and 'direction' in listing and 'walk_forward' in listing   # label and validation listed
    # a service, in its own process: load the candidate, give it the latest feature rows, get P(up); no pickle module touched
    code = ("import json, pickle, sys, pandas as pd\n"
            "def refuse(*a, **k): raise AssertionError('something unpickled')\n"
            "class Refused(pickle.Unpickler):\n"
            "    def __init__(self, *a, **k): refuse()\n"
            "pickle.load = pickle.loads = refuse; pickle.Unpickler = Refused  # loading a model must never unpickle\n"
            "from mlfin.models import load\n"
            "s = json.load(open(sys.argv[1]))\n"
            "rows = pd.read_parquet(sys.argv[2])\n"
            "out = {}\n"
            "for symbol, e in s['symbols'].items():\n"
            "    p = load('candidate', symbol=symbol, timeframe=e['timeframe'])\n"
            "    feats = rows[rows['symbol'] == symbol]\n"
            "    out[symbol] = [p.name, p.version, p(feats.tail(p.rows_needed))]\n"

            "print(json.dumps(out))\n")
    done = subprocess.run([sys.executable, '-c', code, str(home/'run'/'summary.json'), str(home/'run'/'dataset.parquet')],
                          env=env, capture_output=True, text=True, timeout=300, check=True)
    served = json.loads(done.stdout.strip().splitlines()[-1])
    from mlfin.models import load_model
    from mlfin.features import inputs_of
    rows = pd.read_parquet(home/'run'/'dataset.parquet')
    for symbol, (name, version, prob) in served.items():
        model = load_model(home/'run'/'models'/symbol/summary['symbols'][symbol]['model'])
        X = inputs_of(rows[rows['symbol'] == symbol])[model.manifest['inputs']].to_numpy(dtype='float64')
        assert prob == model.predict(X, np.array([len(X) - 1]))[0]  # the registry's copy predicts what the run's file predicts
        assert 0 < prob < 1 and version == summary['registry'][symbol]['version']


KNN = '''"""k nearest neighbours: a family added the way the house says, one module of mlfin.models.families"""
from mlfin.models.core import HP, KINDS, Family, Model, register

class KNNModel(Model):
    "k nearest neighbours on standardised inputs, saved with skops"
    file = 'model.skops'

    def fit(self, X, y, rows, weights=None, eval_rows=None, callbacks=(), eval_metric=None):
        from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
        knn = (KNeighborsClassifier if self.kind == 'classifier' else KNeighborsRegressor)(n_neighbors=self.params['n_neighbors'], algorithm='brute')
        self.fitted = make_pipeline(StandardScaler(), knn).fit(X[rows], y[rows].astype(int) if self.kind == 'classifier' else y[rows])
        return self

    def predict(self, X, rows=None):
        X = X if rows is None else X[rows]
        return self.fitted.predict_proba(X)[:, 1] if self.kind == 'classifier' else self.fitted.predict(X)

    def _write(self, path):
        import skops.io as sio
        sio.dump(self.fitted, path)

    @classmethod
    def _read(cls, path, manifest):
        import skops.io as sio
        return sio.load(path)

register(Family('knn', KNNModel, KINDS, {'n_neighbors': HP(50, 5, 500, log=True, min=1)}, "k nearest neighbours",
                libraries=('scikit-learn', 'skops'), imports=('sklearn.neighbors',)))
'''

USE_IT = '''
import sys, tempfile
from pathlib import Path
import numpy as np
from mlfin.cluster.where import SAME_EVERYWHERE
from mlfin.cluster.worker import PRELOAD
from mlfin.data import load_sample
from mlfin.features import dataset
from mlfin.features.labels import fixed_horizon
from mlfin.models import (FAMILIES, choose_models, compare_models, libraries, load_model, make_splitter, save_model, symbol_data,
                          train_universe, tune, Tuning)
from mlfin.models.tuning import _round_pruning
assert FAMILIES['knn'].model.__module__ == 'mlfin.models.families.knn'
specs = choose_models('logistic,knn', 'classifier', '', Path(sys.argv[1]))   # the project's models.yaml with its new line
assert specs[1].params == {'n_neighbors': 80}, specs
_, rows = dataset({'SPX': load_sample('SPX').loc['2012':'2018']}, fixed_horizon)
run = train_universe(rows, specs, 'classifier', folds=3, seed=1)
assert sorted(run.leaderboard['model']) == ['knn', 'logistic'], run.leaderboard
roles = set(compare_models(run.predictions, run.leaderboard, 'classifier', 'auc', reps=50)['role'])
assert roles & {'runner-up and baseline', 'baseline'} or run.best()['SPX'] == 'logistic', roles   # tested against the baseline
final = run.finals[('SPX', 'knn')]
data = symbol_data(rows, 'uniqueness', 'SPX')
with tempfile.TemporaryDirectory() as d:
    np.testing.assert_array_equal(load_model(save_model(final, d)).predict(data.X), final.predict(data.X))
    tuned = tune(specs[1], data, Tuning('classifier', make_splitter('walk_forward', 3)), trials=2, storage=f"sqlite:///{d}/optuna.db")
    assert 5 <= tuned.spec.params['n_neighbors'] <= 500 and tuned.trials == 2, tuned
assert _round_pruning(None, specs[1], 'classifier') == {}   # no boosting rounds: pruned by folds only
assert 'sklearn.neighbors' in PRELOAD and 'scikit-learn' in SAME_EVERYWHERE and 'scikit-learn' in libraries()
print('knn trained, compared, saved, loaded, tuned')
'''


def test_a_new_family_is_one_module_and_a_line_of_models_yaml(tmp_path):
    """A family added as the house says: its module in mlfin.models.families (what its notebook exports) and a line of
    models.yaml, beside an otherwise verbatim copy of this mlfin. Trained beside the baseline, compared, saved, loaded,
    tuned, listed by the CLI, its libraries known to the cluster (a new library would add a line to the lock file)."""
    import shutil
    copy = tmp_path/'src'
    shutil.copytree(ROOT/'mlfin', copy/'mlfin', ignore=shutil.ignore_patterns('__pycache__'))
    (copy/'mlfin/models/families/knn.py').write_text(KNN)
    spec_file = tmp_path/'models.yaml'
    spec_file.write_text((ROOT/'models.yaml').read_text() + "knn: {n_neighbors: 80}\n")
    env = {**os.environ, 'PYTHONPATH': str(copy), 'MLFIN_HOME': str(tmp_path/'home')}
    done = subprocess.run([sys.executable, '-c', USE_IT, str(spec_file)], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    listed = subprocess.run([sys.executable, '-c', 'from mlfin.cli import app; app()', 'models', 'families'], env=env, capture_output=True,
                            text=True, cwd=tmp_path)
    assert 'knn (classifier, regressor): k nearest neighbours' in listed.stdout, listed.stdout + listed.stderr


# a home's registry as nights of runs leave it: SPX 1d five versions (v1 production once by a run's policy, v3 production now by
# hand, v5 the candidate), ES 1m three (v3 the candidate); v2 of SPX downloaded, as a service's load leaves it
NIGHTS = """import sys
from pathlib import Path
import numpy as np
from mlfin.models.core import model_spec, save_model
from mlfin.models.registry import load, move_production, promote, register_version, registry_client
from mlfin.tracking import configured_mlflow, experiment_id
X = np.c_[np.linspace(0, 1, 200), np.r_[np.zeros(100), np.ones(100)]]
model = model_spec('logistic').make('classifier').fit(X, (X[:, 0] > 0.5).astype(float), np.arange(200))
save_model(model, Path(sys.argv[1])/'m'/'logistic', 'logistic', ['a', 'b'])
mlflow = configured_mlflow()
with mlflow.start_run(experiment_id=experiment_id()) as run: mlflow.log_artifacts(str(Path(sys.argv[1])/'m'), 'models')
for symbol, timeframe, nights in (('SPX', '1d', 5), ('ES', '1m', 3)):
    for night in range(nights): register_version(run.info.run_id, symbol, timeframe, 'logistic', {'auc': 0.6}, 'classifier')
    registry_client().set_registered_model_alias(f"mlfin.{symbol}.{timeframe}", 'candidate', str(nights))
move_production('mlfin.SPX.1d', 1, 'policy', 'the gates passed and no version was in production')
promote('SPX', '1d', 3, 'the desk prefers it')
load(2, 'SPX', '1d')"""


def nights(home: Path, env: dict | None = None) -> Path:
    "`home` with NIGHTS' registry, its trial ledger the environment's (the home's own by default)"
    done = subprocess.run([sys.executable, '-c', NIGHTS, str(home)], env={**os.environ, 'MLFIN_HOME': str(home), **(env or {})},
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return home


def registered(home: Path, env: dict | None = None) -> dict[str, list[int]]:
    "Each registered model's versions, newest first, as `mlfin models ls` lists them"
    rows = [l.split() for l in mlfin(home, 'models', 'ls', env=env).stdout.splitlines()[1:] if l.lstrip().startswith('mlfin.')]
    return {name: [int(r[1]) for r in rows if r[0] == name] for name in dict.fromkeys(r[0] for r in rows)}


def test_models_prune_keeps_what_served_the_candidate_and_the_newest_and_files_each_deletion(tmp_path):
    """Issue 70: the nightly runs' versions pruned by the documented policy. --dry-run lists every version with why it stays or
    goes and deletes nothing; a person who answers no deletes nothing; a prune deletes from the registry what goes (not what is or
    was production by the ledger's filed moves, not the candidate, not the newest --keep), removes its download, files each
    deletion in the trial ledger with who and why; a second prune finds nothing to do"""
    import getpass
    from mlfin.tracking.ledger import Ledger
    home = nights(tmp_path/'home')
    before = {'mlfin.ES.1m': [3, 2, 1], 'mlfin.SPX.1d': [5, 4, 3, 2, 1]}
    assert registered(home) == before and (home/'registry'/'mlfin.SPX.1d'/'2'/'model.json').exists()
    shown = mlfin(home, 'models', 'prune', '--dry-run', '--keep', '1', '--keep-days', '0').stdout
    fates = {(l.split()[0], int(l.split()[1])): ' '.join(l.split()) for l in shown.splitlines() if l.lstrip().startswith('mlfin.')}
    assert {k for k, line in fates.items() if ' goes ' in line} == {('mlfin.SPX.1d', 4), ('mlfin.SPX.1d', 2), ('mlfin.ES.1m', 2),
                                                                   ('mlfin.ES.1m', 1)}, shown
    assert fates[('mlfin.SPX.1d', 3)].endswith(f"stays production now; made production by hand ({getpass.getuser()}, entry 3)"), shown
    assert fates[('mlfin.SPX.1d', 1)].endswith(f"stays made production by a run's policy ({getpass.getuser()}, entry 2)"), shown
    assert fates[('mlfin.SPX.1d', 5)].endswith('stays the candidate; among the newest 1'), shown
    assert fates[('mlfin.SPX.1d', 4)].endswith('goes never production, no alias, older than the newest 1, registered 0.0 days '
                                                        'ago (over --keep-days 0)'), shown
    assert shown.splitlines()[-1] == 'mlfin: 4 of 8 version(s) of 2 registered model(s) would go (--dry-run: nothing deleted)', shown
    declined = mlfin(home, 'models', 'prune', '--keep', '1', '--keep-days', '0', input='n\n', check=False)
    assert declined.returncode == 1 and 'delete 4 of 8 version(s) of 2 registered model(s) from the registry?' in declined.stdout and \
        declined.stderr.strip() == 'nothing deleted', declined.stdout + declined.stderr
    assert registered(home) == before
    done = mlfin(home, 'models', 'prune', 'SPX:1d', '--keep', '1', '--keep-days', '0', '--yes').stdout
    assert done.splitlines()[-1] == (f"mlfin: deleted 2 version(s) of 1 registered model(s), each filed in the trial ledger at "
                                     f"{home/'ledger.db'}"), done
    assert registered(home) == {'mlfin.ES.1m': [3, 2, 1], 'mlfin.SPX.1d': [5, 3, 1]}
    assert not (home/'registry'/'mlfin.SPX.1d'/'2').exists()   # its download removed with it
    filed = [e.content for e in Ledger(str(home/'ledger.db')).entries() if e.content.get('act') == 'prune']
    assert [(f['model'], f['version'], f['by']) for f in filed] == [('mlfin.SPX.1d', 4, getpass.getuser()), ('mlfin.SPX.1d', 2, getpass.getuser())]
    assert filed[0]['reason'].startswith('never production, no alias, older than the newest 1, registered '), filed
    again = mlfin(home, 'models', 'prune', '--yes').stdout   # the defaults: the newest 10, a week
    assert again.strip() == 'mlfin: nothing to prune: all 6 version(s) stay (--dry-run says why)', again


def test_in_a_teams_ledger_only_a_promoter_may_prune(postgres_server, tmp_path):
    """Issue 70: pruning is filed as the promoters' act it is: a member's prune is refused by the team's ledger, in one line, and
    deletes nothing; a promoter's deletes and is filed under their login"""
    from mlfin.tracking.ledger import Ledger
    url = new_database(postgres_server)
    mlfin(tmp_path/'owner', 'team', 'init', url, '--member', 'ana', '--promoter', 'lead')
    as_login = lambda who: {'MLFIN_LEDGER': url.replace('//mlfin@', f"//{who}@", 1)}
    home = nights(tmp_path/'home', as_login('lead'))
    refused = mlfin(home, 'models', 'prune', 'ES:1m', '--keep', '1', '--keep-days', '0', '--yes', env=as_login('ana'), check=False)
    assert refused.returncode == 2 and refused.stderr.strip() == (
        "mlfin: error: mlfin.ES.1m: prune refused by the team's ledger (a promotion by ana refused: only the team's promoters (role "
        "mlfin_promoter) promote or reset); no version of it was deleted"), refused.stderr
    assert registered(home, as_login('ana'))['mlfin.ES.1m'] == [3, 2, 1]
    mlfin(home, 'models', 'prune', 'ES:1m', '--keep', '1', '--keep-days', '0', '--yes', env=as_login('lead'))
    assert registered(home, as_login('ana'))['mlfin.ES.1m'] == [3]
    filed = [(e.login, e.content['model'], e.content['version']) for e in Ledger(url).entries() if e.content.get('act') == 'prune']
    assert filed == [('lead', 'mlfin.ES.1m', 2), ('lead', 'mlfin.ES.1m', 1)], filed
