"""The package's requirements against its imports: every library a module imports is declared by the core or by its area's extras
(mlfin.extras.AREAS), `import` of a module needs no more than that, and settings.ini's requirement lines are tools/extras.py's. Static: seconds."""
import ast, json, os, re, runpy, subprocess, sys
from configparser import ConfigParser
from importlib.metadata import packages_distributions
from pathlib import Path
import pytest
from mlfin.extras import AREAS, EXTRAS, brings, extras_of
from test_wheel import UV, outside   # uv, and a service's environment with nothing of the checkout

ROOT = Path(__file__).resolve().parent.parent
canonical = lambda name: re.sub(r'[-_.]+', '-', name).lower()


def declared() -> dict[str, set[str]]:
    "What pip installs for the core ('') and each extra, as setup.py reads settings.ini: canonical distribution names"
    cfg = ConfigParser(delimiters=['=']); cfg.read(ROOT / 'settings.ini', encoding='utf-8')
    names = lambda line: {canonical(re.match(r'[A-Za-z0-9_.-]+', req)[0]) for req in line.split()}
    c = cfg['DEFAULT']
    return {'': names(c['requirements']), **{key.removeprefix('extra_'): names(value) for key, value in c.items() if key.startswith('extra_')}}


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted((ROOT / 'mlfin').rglob('*.py')):
        if path.name == '_modidx.py': continue
        name = '.'.join(path.relative_to(ROOT).with_suffix('').parts)
        found[name.removesuffix('.__init__')] = path
    return found


def imports(name: str, path: Path) -> tuple[set[str], set[str], set[str]]:
    "A module's libraries imported at its top, its libraries imported anywhere, and the mlfin modules it imports at its top"
    top, anywhere, internal = set(), set(), set()
    package = path.name == '__init__.py'
    def walk(node, nested):
        for child in ast.iter_child_nodes(node):
            deeper = nested or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))   # a class body runs at import
            if isinstance(child, ast.Import): targets = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ''
                if child.level:
                    parts = name.split('.')[:len(name.split('.')) - child.level + package]
                    base = '.'.join(parts + ([child.module] if child.module else []))
                targets = [base] + [f"{base}.{a.name}" for a in child.names]
            else: targets = []
            for target in targets:
                head = target.split('.')[0]
                if head == 'mlfin':
                    if not deeper: internal.add(target)
                elif head and head not in sys.stdlib_module_names and target == targets[0]:
                    anywhere.add(head)
                    if not deeper: top.add(head)
            walk(child, deeper)
    walk(ast.parse(path.read_text()), False)
    return top, anywhere, internal


def graph():
    found = modules()
    return found, {name: imports(name, path) for name, path in found.items()}


def allowed(module: str, declared: dict, distributions: dict) -> callable:
    "Whether `library` (an import name) is installed with the core and `module`'s extras"
    build = lambda dist: dist.removesuffix('-cpu')   # xgboost-cpu (the lock's) and xgboost (MLFIN_ENV=gpu's) are one library's two builds
    dists = {build(d) for d in set().union(declared[''], *(declared[e] for e in brings(*extras_of(module))))}
    return lambda library: bool({build(canonical(d)) for d in distributions.get(library, [library])} & dists)


def test_settings_current():
    "settings.ini's requirement lines are what tools/extras.py writes from env/requirements.in now"
    extras = runpy.run_path(str(ROOT / 'tools/extras.py'))
    assert extras['write'](check=True), "settings.ini's requirements are not env/requirements.in's: run .venv/bin/python tools/extras.py"


def test_every_extra_declared():
    "Every extra of mlfin.extras is one pip knows (an `extra_NAME` line), and every AREAS key names a module"
    found, want = declared(), modules()
    assert set(found) - {'', 'dev'} == set(EXTRAS)
    assert [key for key in AREAS if key not in want] == []


def test_imports_declared():
    "Each library a module imports, at its top or inside a function, is declared by the core or by an extra of the module's area"
    found, deps, distributions = declared(), graph()[1], packages_distributions()
    wrong = [f"{module} imports {library} ({', '.join(distributions.get(library, ['not installed here']))}), which "
             + (f"mlfin[{','.join(extras_of(module))}] does not declare" if extras_of(module) else "the core does not declare (or list the module in mlfin.extras.AREAS)")
             for module, (_, anywhere, _) in deps.items() for library in sorted(anywhere)
             if not allowed(module, found, distributions)(library)]
    assert wrong == [], '\n'.join(wrong)


def test_top_level_imports_fit():
    "Importing a module needs only the core and its area's extras: its top-level imports, followed through the mlfin modules it imports"
    found, (mods, deps), distributions = declared(), graph(), packages_distributions()
    def reached(module):   # every mlfin module imported at module level, `module` first; a package's __init__ with each of its modules
        seen, todo = [], [module]
        while todo:
            name = todo.pop()
            parts = name.split('.')
            for n in range(1, len(parts) + 1):
                step = '.'.join(parts[:n])
                if step in mods and step not in seen: seen.append(step); todo.extend(deps[step][2])
        return seen
    wrong = {}
    for module in mods:
        ok = allowed(module, found, distributions)
        for via in reached(module):
            for library in sorted(deps[via][0]):
                if not ok(library): wrong.setdefault((via, library), []).append(f"{module} ({','.join(extras_of(module)) or 'core'})")
    said = [f"{via} imports {library} at its top, which these modules import but their extras do not bring: {', '.join(where)}"
            for (via, library), where in wrong.items()]
    assert said == [], '\n'.join(said)


@pytest.mark.e2e
def test_the_core_alone(tmp_path):
    """`pip install mlfin` without an extra, outside the checkout: the core's areas import and ingest a CSV, and a command of an area
    whose extra is missing ends in one line naming it (about 10 s: the wheel, a venv from uv's cache, four commands)"""
    subprocess.run(['make', '-s', '-o', 'setup', 'wheel', f"DIST={tmp_path/'dist'}"], cwd=ROOT, check=True, capture_output=True, timeout=300)
    wheel, = (tmp_path/'dist').glob('mlfin-*.whl')
    venv, here = tmp_path/'venv', tmp_path/'elsewhere'
    subprocess.run([UV, 'venv', '-q', '--python', sys.executable, venv], check=True, timeout=120)
    subprocess.run([UV, 'pip', 'install', '-q', '--python', venv/'bin'/'python', '-c', ROOT/'env/requirements.lock', wheel], check=True, timeout=600)
    here.mkdir()
    env = outside(venv, tmp_path/'home')
    run = lambda *args: subprocess.run([str(a) for a in args], cwd=here, env=env, capture_output=True, text=True, timeout=300)
    (here/'bars.csv').write_text('ts,open,high,low,close,volume\n2024-01-02,1,2,0.5,1.5,100\n2024-01-03,1.5,2,1,1.8,120\n')
    done = run(venv/'bin'/'python', '-c', 'import mlfin, mlfin.data, mlfin.features, mlfin.models, mlfin.serving; print(mlfin.__file__)')
    assert done.returncode == 0 and done.stdout.startswith(str(venv)), done.stderr[-2000:]
    # the backtest engine is a run's (`[research]`), never the core's: a service predicting does not install it
    done = run(venv/'bin'/'python', '-c', 'from mlfin.backtest import sweep_grid')
    assert done.stderr.strip().endswith("pip install 'mlfin[research]'"), done.stderr[-2000:]
    done = run(venv/'bin'/'mlfin', 'ingest', 'bars.csv', '--symbol', 'ABC', '--timeframe', '1d')
    assert done.returncode == 0 and '2 good row(s)' in done.stdout, done.stdout + done.stderr[-2000:]
    for args, extra in [(('serve',), 'service'), (('models', 'ls'), 'tracking')]:
        done = run(venv/'bin'/'mlfin', *args)
        last = done.stderr.splitlines()[-1] if done.stderr else ''
        assert done.returncode == 2 and 'Traceback' not in done.stderr and re.fullmatch(rf"mlfin: error: mlfin\.\S+ needs \w+, which is not installed: pip install 'mlfin\[{extra}\]'", last), done.stderr[-2000:]


APACHE_2 = 'cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30'   # sha256 of apache.org's LICENSE-2.0.txt


def test_the_wheel_carries_the_licence_and_the_notice(tmp_path):
    """Issue 70: the wheel a service installs holds LICENSE (the Apache License 2.0, word for word) and NOTICE in its .dist-info,
    its metadata names both, and NOTICE names vectorbt's licence as the installed vectorbt's own files say it (about 2 s)"""
    import hashlib, zipfile
    from importlib.metadata import distribution
    subprocess.run(['make', '-s', '-o', 'setup', 'wheel', f"DIST={tmp_path}"], cwd=ROOT, check=True, capture_output=True, timeout=300)
    wheel, = tmp_path.glob('mlfin-*.whl')
    with zipfile.ZipFile(wheel) as z:
        info = next(n.split('/')[0] for n in z.namelist() if n.endswith('.dist-info/METADATA'))
        carried = {name: z.read(f"{info}/licenses/{name}") for name in ('LICENSE', 'NOTICE')}
        metadata = z.read(f"{info}/METADATA").decode()
    assert hashlib.sha256(carried['LICENSE']).hexdigest() == APACHE_2 and carried['LICENSE'] == (ROOT/'LICENSE').read_bytes()
    assert carried['NOTICE'] == (ROOT/'NOTICE').read_bytes()
    assert re.findall(r'^License-File: (\S+)$', metadata, re.M) == ['LICENSE', 'NOTICE'] and '\nLicense: Apache-2.0\n' in metadata, metadata[:2000]
    vectorbt = distribution('vectorbt')
    terms = next(f for f in vectorbt.files if f.name.upper().startswith('LICENSE')).read_text()
    assert terms.startswith('“Commons Clause” License Condition v1.0') and 'License: Apache 2.0 with Commons Clause' in terms, terms[:500]
    notice = ' '.join(carried['NOTICE'].decode().split())   # its lines rewrapped
    assert f"vectorbt {vectorbt.version} is licensed under the Apache License 2.0 with the \"Commons Clause\"" in notice, notice
    # the extras it names as installing vectorbt are those that bring [research], and those it names as not, do not
    bringing = re.search(r"the `research` extra installs, and with it the extras that bring it \(([a-z, ]+)\); the core \(`pip install mlfin`\), (.+?) do not", notice)
    assert bringing, notice
    assert bringing[1].split(', ') == [e for e in EXTRAS if e != 'research' and 'research' in brings(e)], bringing[1]
    assert not any('research' in brings(e) for e in re.findall(r'`mlfin\[(\w+)\]`', bringing[2])), bringing[2]


SERVING = """import json, sys
from pathlib import Path
import numpy as np
import mlfin.serving, mlfin.service.app
from mlfin.models.core import model_spec, save_model
from mlfin.models.registry import load, move_production, register_version
from mlfin.tracking import configured_mlflow, experiment_id
X = np.c_[np.linspace(0, 1, 200), np.r_[np.zeros(100), np.ones(100)]]
model = model_spec('logistic').make('classifier').fit(X, (X[:, 0] > 0.5).astype(float), np.arange(200))
save_model(model, Path(sys.argv[1])/'m'/'logistic', 'logistic', ['a', 'b'])
mlflow = configured_mlflow()
with mlflow.start_run(experiment_id=experiment_id()) as run: mlflow.log_artifacts(str(Path(sys.argv[1])/'m'), 'models')
version = register_version(run.info.run_id, 'SPX', '1d', 'logistic', {'auc': 0.6}, 'classifier')
move_production('mlfin.SPX.1d', version, 'policy', 'a test')
served = load('production', 'SPX', '1d')
said = [served(X[-1:]), 'vectorbt' in sys.modules]
from mlfin.backtest.portfolio import _vbt; _vbt()   # a backtest's portfolio: what does import it
print(json.dumps(said + ['vectorbt' in sys.modules]))"""


def test_the_serving_path_never_imports_vectorbt(tmp_path):
    """NOTICE's promise (vectorbt is Apache-2.0 with the Commons Clause): mlfin.serving and the service's app imported, a version
    registered, loaded from the registry and asked, and vectorbt is not imported; a backtest's portfolio imports it (about 8 s)"""
    env = {**os.environ, 'MLFIN_HOME': str(tmp_path), 'MLFIN_LEDGER': 'home'}
    done = subprocess.run([sys.executable, '-c', SERVING, str(tmp_path)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    probability, served_with, backtested_with = json.loads(done.stdout.splitlines()[-1])
    assert 0.5 < probability <= 1 and (served_with, backtested_with) == (False, True), done.stdout
