"""Benchmark: the pipeline on the embedded default data, per task, split into own work and overhead.

One command (`make bench`), one process, a fresh MLFIN_HOME under /tmp:
  1. cold:   the whole DAG forced (`mlfin.pipeline.run(force=True)`), seconds per task from Ploomber;
  2. split:  every task notebook executed again by papermill with the parameters the DAG gave it;
             the executed notebook's cell timings split each task into
               kernel   - kernel start, papermill and Ploomber bookkeeping (wall less the cells),
               imports  - the task's import cell (by convention, imports only), plus the libraries
                          mlfin imports lazily inside the work cells (LightGBM, vectorbt, MLflow...),
                          timed in a fresh process and moved from `work` to `imports`,
               work     - every other cell (the task's own work, JIT compiles included);
  3. jit:    numba/vectorbt compile left in a fresh process: first `backtest.warm_up()` less the second;
  4. no-op:  `mlfin run` again with nothing changed, as a subprocess, and `make run` likewise;
  5. floor:  the same library calls as one plain Python script in one process (what a hand-rolled notebook
             pays), beside the DAG: the ratio is the price of running five isolated, parameterised,
             incremental, reported notebooks instead of one script.
Targets (issue 2): cold pipeline < 60 s after setup, no-op < 3 s, overhead < 1/3 of the total.
"""
import atexit, json, os, shutil, subprocess, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
home = Path(tempfile.mkdtemp(prefix='mlfin-bench-'))
atexit.register(shutil.rmtree, home, True)   # the runs, registry and reports go with the process
os.environ.update(MLFIN_HOME=str(home), PLOOMBER_STATS_ENABLED='false')
reports = home/'reports'

from mlfin import pipeline  # noqa: E402  (after MLFIN_HOME is set)

# what each task's library calls import lazily, beyond its import cell (kept in step with mlfin)
LAZY = {'ingest': [], 'features': [], 'train': ['sklearn.model_selection', 'sklearn.metrics', 'lightgbm'],
        'backtest': ['vectorbt'], 'report': ['lightgbm', 'mlflow', 'mlflow.lightgbm', 'plotly.graph_objects']}

FLOOR = r'''
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


def lazy_imports(modules: list[str]) -> float:
    "Seconds to import `modules` in a fresh process that already has pandas, pyarrow and mlfin's task imports"
    if not modules: return 0.0
    code = ('import pandas, pyarrow, joblib, time; from mlfin import backtest, config, data, features, models, report, tracking; from mlfin.features import labels\n'
            f't = time.perf_counter(); import {", ".join(modules)}; print(time.perf_counter() - t)')
    return float(subprocess.run([sys.executable, '-c', code], check=True, capture_output=True, text=True).stdout.split()[-1])


def split_task(task) -> dict:
    "Re-execute one task notebook with papermill, with the DAG's parameters; split its time"
    import papermill as pm
    params = {k: v for k, v in task.params.to_dict().items() if k not in ('upstream', 'product')}
    params['product'] = task.product.to_json_serializable()
    params['upstream'] = {name: up.product.to_json_serializable() for name, up in task.upstream.items()}
    out = home/f"{task.name}.ipynb"
    started = time.perf_counter()
    nb = pm.execute_notebook(str(task.source.loc), str(out), parameters=params, kernel_name='mlfin', progress_bar=False)
    total = time.perf_counter() - started
    cells = [c for c in nb.cells if c.cell_type == 'code']
    durations = [c.metadata.papermill.duration or 0.0 for c in cells]
    tags = [c.metadata.get('tags', []) for c in cells]
    first_import = next(i for i, t in enumerate(tags) if 'parameters' not in t and 'injected-parameters' not in t)
    lazy = lazy_imports(LAZY[task.name])
    imports = durations[first_import] + lazy
    work = sum(durations[first_import + 1:]) - lazy
    return {'total': total, 'kernel': total - sum(durations), 'imports': imports, 'work': work}


def main():
    print(f"mlfin pipeline benchmark (state in {home}, removed at the end)\n")
    started = time.perf_counter()
    cold = pipeline.run({'reports': str(reports)}, force=True, progress=False)
    cold_total = time.perf_counter() - started

    noop_cli = wall([str(BIN/'mlfin'), 'run', '--reports', str(reports)], cwd=ROOT)
    noop_make = wall(['make', '-s', 'run', f'ARGS=--reports {reports}'], cwd=ROOT)

    dag = pipeline.load_dag({'reports': str(reports)}); dag.render(show_progress=False)
    split = {name: split_task(dag[name]) for name in cold}

    jit = subprocess.run([sys.executable, '-c', 'import time; from mlfin.backtest import warm_up; from mlfin.backtest.portfolio import _vbt; _vbt()\n'
                          't=time.perf_counter(); warm_up(); a=time.perf_counter()-t\n'
                          't=time.perf_counter(); warm_up(); b=time.perf_counter()-t\nprint(a-b)'],
                         check=True, capture_output=True, text=True).stdout.split()[-1]

    floor_home = Path(tempfile.mkdtemp(prefix='mlfin-bench-floor-'))
    atexit.register(shutil.rmtree, floor_home, True)
    floor_out = subprocess.run([sys.executable, '-c', FLOOR], check=True, capture_output=True, text=True, cwd=ROOT,
                               env={**os.environ, 'MLFIN_HOME': str(floor_home)}).stdout.split()
    floor_imports, floor_work = float(floor_out[-2]), float(floor_out[-1])

    rows = [(name, cold[name], s['kernel'], s['imports'], s['work']) for name, s in split.items()]
    print(f"{'task':10} {'DAG (s)':>8} {'kernel':>8} {'imports':>8} {'work':>8} {'overhead':>9}")
    for name, elapsed, kernel, imports, work in rows:
        print(f"{name:10} {elapsed:8.2f} {kernel:8.2f} {imports:8.2f} {work:8.2f} {(kernel + imports) / (kernel + imports + work):9.0%}")
    kernel = sum(r[2] for r in rows); imports = sum(r[3] for r in rows); work = sum(r[4] for r in rows)
    overhead = (kernel + imports) / (kernel + imports + work)
    print(f"{'all':10} {sum(cold.values()):8.2f} {kernel:8.2f} {imports:8.2f} {work:8.2f} {overhead:9.0%}")
    print(f"\ncold pipeline, wall (DAG load + 5 tasks): {cold_total:6.2f} s   target < 60 s")
    print(f"no-op `mlfin run`:                        {noop_cli:6.2f} s   target < 3 s")
    print(f"no-op `make run` (setup check included):  {noop_make:6.2f} s")
    print(f"JIT compile left in a fresh process:      {float(jit):6.3f} s   (vectorbt-rust kernels, numba cache in .venv)")
    print(f"overhead share (kernel + imports):        {overhead:6.0%}   target < 33%")
    print(f"\nfloor: the same calls as one script: imports {floor_imports:.2f} s + work {floor_work:.2f} s = {floor_imports + floor_work:.2f} s")
    print(f"DAG / one script: {cold_total / (floor_imports + floor_work):.2f}x")
    result = {'cold_s': cold_total, 'noop_cli_s': noop_cli, 'noop_make_s': noop_make, 'jit_s': float(jit),
              'overhead_share': overhead, 'tasks': {r[0]: dict(zip(('dag', 'kernel', 'imports', 'work'), r[1:])) for r in rows},
              'floor_s': floor_imports + floor_work}
    print(json.dumps(result))   # the state folder goes with the process: the figures stay in the output


if __name__ == '__main__':
    main()
