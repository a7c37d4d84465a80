"""Benchmark: the pipeline on the embedded default data, per task, split into own work and overhead.

One command (`make bench`), one process, a fresh MLFIN_HOME under /tmp:
  1. cold:   the whole DAG forced (`mlfin.pipeline.run(force=True)`), seconds per task from Ploomber; the task
             notebooks run in this process (mlfin's papermill engine), so the first task pays the imports;
  2. again:  every task notebook executed once more in this process by papermill, with the parameters the DAG
             gave it; the executed notebook's cell timings split each task into
               cells     - the notebook's own cells (its work; the libraries already imported),
               papermill - papermill's and the engine's bookkeeping (wall less the cells),
             and `cold - again` is what the task paid the first time in the process: imports, JIT compiles,
             caches filled (the features task's feature store among them, so its `again` is a store read);
  3. jit:    numba/vectorbt compile left in a fresh process: first `backtest.warm_up()` less the second;
  4. no-op:  `mlfin run` again with nothing changed, as a subprocess, and `make run` likewise;
  5. floor:  the same calls as one plain Python script in a fresh process and home: every task notebook's code
             cells with the parameters the DAG renders for that home, one after another (figures made and
             shown as the notebooks do; nothing rendered to HTML); the ratio is the price of running five
             parameterised, incremental, reported notebooks instead of one script. Beside it, for reference, the
             research calls alone (ingest, features, training, backtests: no records, comparisons, final
             models, MLflow, registry, figures or reports), what the issue-2 floor measured (1.72x on kernels).
Targets (issue 21): cold pipeline < 60 s after setup, no-op < 3 s, DAG / one script <= 1.3x (1.72x on kernels).
BENCH_SCALE=quick (`make bench-all`): the same data and every target (1, 4's `mlfin run` and 5's floor), without the
context: 2's second execution of each task, 3's JIT, `make run`'s no-op and the research calls alone.
"""
import atexit, json, os, shutil, subprocess, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
from _targets import QUICK, scale, table, target  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
home = Path(tempfile.mkdtemp(prefix='mlfin-bench-'))
atexit.register(shutil.rmtree, home, True)   # the runs, registry and reports go with the process
os.environ.update(MLFIN_HOME=str(home), PLOOMBER_STATS_ENABLED='false')
reports = home/'reports'

from mlfin import pipeline  # noqa: E402  (after MLFIN_HOME is set)

BARE = r'''  # the research calls alone: no records, comparisons, final models, MLflow, registry, figures or reports

import time; t0 = time.perf_counter()
from functools import partial
import pandas as pd, lightgbm, mlflow, mlflow.lightgbm, sklearn.metrics, sklearn.model_selection
from mlfin import backtest, data, features, models, tracking
from mlfin.features import labels
from mlfin.backtest.portfolio import _vbt; _vbt()
t1 = time.perf_counter()
pairs = data.universe('SPX,AAPL,EURUSD')
bars, manifest = data.ingest_universe(pairs)
bars = data.split_symbols(bars)
raw, dataset = features.dataset(bars, partial(labels.fixed_horizon, horizon=1), features.spec_names(features.RESEARCH_SPEC))
training = models.train_universe(dataset, models.choose_models('all', 'classifier'))
done = backtest.backtest_universe(bars, training.predictions, training.best(),
                                  {m['symbol']: m['calendar'] for m in manifest}, trials=len(training.leaderboard['model'].unique()))
t2 = time.perf_counter()
print(t1 - t0, t2 - t1)
'''


def wall(cmd, **kw) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, **kw)
    return time.perf_counter() - started


def task_params(task) -> dict:
    "The parameters the DAG hands a task notebook (papermill injects them)"
    params = {k: v for k, v in task.params.to_dict().items() if k not in ('upstream', 'product')}
    params['product'] = task.product.to_json_serializable()
    params['upstream'] = {name: up.product.to_json_serializable() for name, up in task.upstream.items()}
    return params


def floor_script(folder: Path) -> str:
    """The five task notebooks' code as one plain script for a fresh home at `folder`: each task's parameters as the DAG renders
    them, then its code cells, in a namespace of its own; what a hand-rolled script making the same calls would run"""
    import nbformat
    from fastcore.xtras import modified_env
    with modified_env(MLFIN_HOME=str(folder)):
        dag = pipeline.load_dag({'reports': str(folder/'reports')}); dag.render(show_progress=False)
        parts = ['import time; started = time.perf_counter()']
        for name in pipeline.TASKS:
            nb = nbformat.read(dag[name].source.loc, as_version=4)
            cells = [c.source for c in nb.cells if c.cell_type == 'code' and 'parameters' not in c.metadata.get('tags', [])]
            params = ''.join(f"{k} = {v!r}\n" for k, v in task_params(dag[name]).items())
            # a script has no executed notebook to report: an empty file where the DAG's would be (the report task logs them)
            done = "from pathlib import Path; Path(product['nb']).parent.mkdir(parents=True, exist_ok=True); Path(product['nb']).touch()"
            parts.append(f"exec({(params + chr(10).join([*cells, done]))!r}, {{}})")
        parts.append("print(time.perf_counter() - started)")
        return '\n'.join(parts)


def split_task(task) -> dict:
    "Execute one task notebook again in this process, as the DAG does, with the DAG's parameters; split its time"
    import papermill as pm
    from mlfin.pipeline.engine import ENGINE
    params = task_params(task)
    out = home/f"{task.name}.ipynb"
    started = time.perf_counter()
    nb = pm.execute_notebook(str(task.source.loc), str(out), parameters=params, engine_name=ENGINE, progress_bar=False)
    total = time.perf_counter() - started
    cells = sum(c.metadata.papermill.duration or 0.0 for c in nb.cells if c.cell_type == 'code')
    return {'again': total, 'cells': cells, 'papermill': total - cells}


def main():
    print(f"mlfin pipeline benchmark (state in {home}, removed at the end)", flush=True)
    scale('the default data, the targets without their context (tasks run again, JIT, `make run`, the research calls alone)',
          'the default data, the targets and their context')
    print(flush=True)
    started = time.perf_counter()
    cold = pipeline.run({'reports': str(reports)}, force=True, progress=False)
    cold_total = time.perf_counter() - started

    noop_cli = wall([str(BIN/'mlfin'), 'run', '--reports', str(reports)], cwd=ROOT)
    if not QUICK:
        noop_make = wall(['make', '-s', 'run', f'ARGS=--reports {reports}'], cwd=ROOT)
        dag = pipeline.load_dag({'reports': str(reports)}); dag.render(show_progress=False)
        split = {name: split_task(dag[name]) for name in cold}
        jit = subprocess.run([sys.executable, '-c', 'import time; from mlfin.backtest import warm_up; from mlfin.backtest.portfolio import _vbt; _vbt()\n'
                              't=time.perf_counter(); warm_up(); a=time.perf_counter()-t\n'
                              't=time.perf_counter(); warm_up(); b=time.perf_counter()-t\nprint(a-b)'],
                             check=True, capture_output=True, text=True).stdout.split()[-1]

    floor_home = Path(tempfile.mkdtemp(prefix='mlfin-bench-floor-'))
    atexit.register(shutil.rmtree, floor_home, True)
    script = floor_home/'floor.py'
    script.write_text(floor_script(floor_home))
    started = time.perf_counter()
    inside = float(subprocess.run([sys.executable, str(script)], check=True, capture_output=True, text=True, cwd=ROOT,
                                  env={**os.environ, 'MLFIN_HOME': str(floor_home)}).stdout.split()[-1])
    floor = time.perf_counter() - started
    if not QUICK:
        bare_home = Path(tempfile.mkdtemp(prefix='mlfin-bench-bare-'))
        atexit.register(shutil.rmtree, bare_home, True)
        bare = sum(map(float, subprocess.run([sys.executable, '-c', BARE], check=True, capture_output=True, text=True, cwd=ROOT,
                                             env={**os.environ, 'MLFIN_HOME': str(bare_home)}).stdout.split()[-2:]))

    if QUICK:
        print(f"{'task':10} {'DAG (s)':>8}")
        for name, seconds in cold.items(): print(f"{name:10} {seconds:8.2f}")
        print(f"{'all':10} {sum(cold.values()):8.2f}")
    else:
        rows = [(name, cold[name], t['again'], t['cells'], t['papermill'], cold[name] - t['again']) for name, t in split.items()]
        print(f"{'task':10} {'DAG (s)':>8} {'again':>8} {'cells':>8} {'papermill':>10} {'first use':>10}")
        for row in rows: print(f"{row[0]:10} {row[1]:8.2f} {row[2]:8.2f} {row[3]:8.2f} {row[4]:10.2f} {row[5]:10.2f}")
        print(f"{'all':10} " + ' '.join(f"{sum(r[i] for r in rows):{w}.2f}" for i, w in ((1, 8), (2, 8), (3, 8), (4, 10), (5, 10))))
    print(f"\ncold pipeline, wall (DAG load + 5 tasks): {cold_total:6.2f} s")
    print(f"no-op `mlfin run`:                        {noop_cli:6.2f} s")
    if not QUICK:
        print(f"no-op `make run` (setup check included):  {noop_make:6.2f} s")
        print(f"JIT compile left in a fresh process:      {float(jit):6.3f} s   (vectorbt-rust kernels, numba cache in .venv)")
    print(f"\nfloor: the task notebooks' code as one script, in a fresh process and home: {floor:.2f} s "
          f"(interpreter start {floor - inside:.2f} s, imports and work {inside:.2f} s)")
    print(f"DAG / one script: {cold_total / inside:.2f}x (the script's imports and work beside the DAG's load and tasks)")
    if not QUICK:
        print(f"the research calls alone (no records, MLflow, registry, figures, reports): {bare:.2f} s; DAG / those: {cold_total / bare:.2f}x")
    print(flush=True)
    target('cold pipeline, wall (DAG load + 5 tasks)', f"{cold_total:.1f} s", '< 60 s', cold_total < 60)
    target('no-op `mlfin run`', f"{noop_cli:.2f} s", '< 3 s', noop_cli < 3)
    target('DAG / the task notebooks as one script', f"{cold_total / inside:.2f}x", '<= 1.3x', cold_total / inside <= 1.3)
    result = {'cold_s': cold_total, 'noop_cli_s': noop_cli, 'floor_s': inside, 'floor_wall_s': floor, 'ratio': cold_total / inside}
    if QUICK: result['tasks'] = dict(cold)
    else:
        result.update(noop_make_s=noop_make, jit_s=float(jit), bare_s=bare, bare_ratio=cold_total / bare,
                      tasks={r[0]: dict(zip(('dag', 'again', 'cells', 'papermill', 'first_use'), r[1:])) for r in rows})
    print(json.dumps(result))   # the state folder goes with the process: the figures stay in the output
    table()


if __name__ == '__main__':
    main()
