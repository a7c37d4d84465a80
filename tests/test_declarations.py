"""Tests read what the project declares (issue 50): a model added to models.yaml, or a family added as the README says (its
module and a line of models.yaml), changes no test and no notebook. The notebooks that read the families and models.yaml's
models pass, unchanged, on a copy of the project that declares one more of each; and no test file writes out a list or a
count that models.yaml, the family registry or the backtest's threshold grid already declare."""
import ast, os, re, shutil, subprocess, sys
from pathlib import Path
from mlfin.backtest.universe import GRID_THRESHOLDS
from mlfin.models import FAMILIES, read_models
from mlfin.pipeline.runner import check

ROOT = Path(__file__).resolve().parents[1]
READERS = ('06_models', '06f_models.families', '06a_models.core', '09c_pipeline.runner')   # the notebooks that read them

NEAREST = '''"""k nearest neighbours, added as the README says: one module of mlfin.models.families; it has no importance measure"""
from mlfin.models.core import HP, KINDS, Family, Model, register

class NearestModel(Model):
    "k nearest neighbours on standardised inputs, saved with skops"
    file = 'model.skops'

    def fit(self, X, y, rows, weights=None, eval_rows=None, callbacks=(), eval_metric=None):
        from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
        knn = (KNeighborsClassifier if self.kind == 'classifier' else KNeighborsRegressor)(n_neighbors=self.params['n_neighbors'])
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

register(Family('nearest', NearestModel, KINDS, {'n_neighbors': HP(50, 5, 500, log=True, min=1)}, "k nearest neighbours",
                libraries=('scikit-learn', 'skops'), imports=('sklearn.neighbors',)))
'''


def test_a_model_and_a_family_added_change_no_notebook(tmp_path):
    """A copy of the project whose models.yaml names a variant of an existing family and a new family (its module dropped into
    mlfin.models.families): the notebooks that read the families and the project's models run unchanged and pass."""
    copy = tmp_path/'project'
    ignore = shutil.ignore_patterns('__pycache__', '.ipynb_checkpoints')
    for folder in ('mlfin', 'nbs'): shutil.copytree(ROOT/folder, copy/folder, ignore=ignore)
    for name in ('settings.ini', 'pipeline.yaml', 'env.yaml', 'features.yaml', 'models.yaml'): shutil.copy(ROOT/name, copy/name)
    (copy/'mlfin/models/families/nearest.py').write_text(NEAREST)
    with open(copy/'models.yaml', 'a') as f: f.write("xgb_shallow: {family: xgboost, max_depth: 2}\nnearest: {n_neighbors: 80}\n")
    # the copy's mlfin before the checkout's (installed editable); OpenMP threads sleeping, not spinning, on shared cores
    env = {**os.environ, 'PYTHONPATH': str(copy), 'MLFIN_HOME': str(tmp_path/'home'), 'OMP_WAIT_POLICY': 'PASSIVE'}
    pattern = '^(' + '|'.join(re.escape(name) for name in READERS) + r')\.ipynb$'
    done = subprocess.run([Path(sys.executable).parent/'nbdev_test', '--path', 'nbs', '--file_re', pattern, '--n_workers', '1', '--do_print'],
                          cwd=copy, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert sorted(re.findall(r'Completed \S*?([^/\s]+)\.ipynb', done.stdout + done.stderr)) == sorted(READERS), done.stdout + done.stderr   # each ran
    named = subprocess.run([sys.executable, '-c', 'from mlfin.models import read_models; print(*read_models())'], cwd=copy,
                           env=env, capture_output=True, text=True, check=True).stdout.split()
    assert named[-2:] == ['xgb_shallow', 'nearest'], named   # the notebooks read the copy's declarations, not the checkout's


def declared() -> dict[str, set[str]]:
    "The sets of names a test could write out instead of reading: the families, and models.yaml's models (all, by kind)"
    models = read_models(ROOT/'models.yaml')
    sets = {'the registered families': set(FAMILIES), "models.yaml's models": set(models)}
    for kind in ('classifier', 'regressor'): sets[f"models.yaml's {kind}s"] = {name for name, spec in models.items() if kind in spec.kinds}
    return {what: names for what, names in sets.items() if len(names) >= 3}   # two names may be a test's own choice of models


def counts() -> set[int]:
    """The counts a run's trials follow from: a model at every threshold, and a default run's models at every threshold. Those are
    the ones `mlfin run` checks for the project (its label's kind, and a variant only where the spec has the groups it drops: a
    `without: [macro]` variant is not trained on the default spec, which has no macro group)"""
    config, groups, models = check(root=ROOT, say=lambda line: None)
    return {len(GRID_THRESHOLDS), len(models) * len(GRID_THRESHOLDS)}


def test_the_counts_are_a_default_runs(research_golden):
    "The research run (the default models and spec on the session's slice) tries each of its models at every threshold: the larger count"
    summary = research_golden['summary']
    assert summary['params']['threshold'] in GRID_THRESHOLDS, summary['params']   # no extra threshold traded beside the grid's
    assert {entry['skill']['grid'] for entry in summary['symbols'].values()} == {max(counts())}, summary['symbols']


def written_out(source: str, sets: dict[str, set[str]], numbers: set[int]) -> list[str]:
    "Each place in `source` that writes out one of `sets` whole (a literal or a message naming them all) or a trial count of `numbers`"
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)) and node.elts and all(isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts):
            words = {e.value for e in node.elts}
        elif isinstance(node, ast.Constant) and isinstance(node.value, str): words = set(re.findall(r'[A-Za-z_]\w*', node.value))
        else: words = set()
        found += [f"line {node.lineno}: {what} written out" for what, names in sets.items() if names <= words]
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found += [f"line {node.lineno}: a trial count ({n}) written out" for n in map(int, re.findall(r'\b(\d+) (?:earlier )?trial', node.value))
                      if n in numbers]
        if isinstance(node, ast.Compare) and re.search(r'trial|grid|strategies', ast.get_source_segment(source, node) or ''):
            found += [f"line {node.lineno}: a trial count ({c.value}) written out" for c in ast.walk(node)
                      if isinstance(c, ast.Constant) and type(c.value) is int and c.value in numbers]
    return sorted(set(found), key=lambda line: int(line.split()[1].rstrip(':')))


def test_the_check_finds_what_a_test_could_write_out():
    "The check below cannot pass by finding nothing: it finds each way a test has written a declaration out"
    sets, numbers = declared(), counts()
    names = sorted(max(sets.values(), key=len))
    planted = (f"assert [m.name for m in specs] == {names!r}\n"
               f"message = 'this label needs a classifier ({', '.join(names)})'\n"
               f"assert summary['trials'] == {max(numbers)}\n"
               f"assert 'after {max(numbers)} trials' in said\n"
               f"assert sorted(run.leaderboard['model']) == {names[:2]!r}\n")   # two of them: a test's own choice
    assert sorted({line.split(':')[0] for line in written_out(planted, sets, numbers)}) == ['line 1', 'line 2', 'line 3', 'line 4'], written_out(planted, sets, numbers)


def test_no_test_writes_out_what_the_project_declares():
    "Tests compute families, models, thresholds and trial counts from models.yaml and the registries, never write them out"
    sets, numbers = declared(), counts()
    found = {str(path.relative_to(ROOT)): lines for path in sorted((ROOT/'tests').rglob('*.py')) if 'corpus' not in path.parts
             for lines in [written_out(path.read_text(), sets, numbers)] if lines}
    assert found == {}, found
