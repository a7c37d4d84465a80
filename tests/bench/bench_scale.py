"""Benchmark: past one machine (`make bench-scale`): how well per-symbol work spreads over a local Dask cluster of 2 workers.

SYNTHETIC DATA (labelled): random-walk one-minute bars generated here; they only give the code volume
to chew on. Products' equality on real data is tested in tests/test_cluster.py.

On a 2-core machine a speed-up over one process measures the cores more than the code, so the targets are
against what two processes can do here, measured in the same run (issue 39, item 4):

- the two-process ceiling: the same work split in halves, run at once by two plain processes, each with a
  Dask worker's settings (the nanny's environment: one thread each for OpenMP, MKL and OpenBLAS, one malloc arena;
  the allocator tuned as `cluster.worker` tunes it; a model's `n_jobs` capped as on a worker) and nothing
  else (no Dask, no mlfin scheduling); the longer half's seconds.
- parallel efficiency = the ceiling's seconds / ours on 2 workers. Target: >= 0.95 (EFFICIENCY), for
  features and for training, each printed with met or MISSED. The one-process floors are printed as context.
- memory: each worker's peak resident memory during the measured run (VmHWM, reset just before it), with
  the in-process run's peak beside it.
- scheduler overhead per unit: 1,000 empty tasks through `fan_out`; and in the real runs, from Dask's task
  stream, (wall - units' compute / 2) / units, split into the driver's time before the first unit and after
  the last, the gaps between units on a worker (the hand-off), and workers idle at the start and end.
- beside the ceiling and ours, the CPU seconds their processes used over the wall: the share of the cores
  each got. This machine may be shared (another session on the cores): a share well under 2 on one side
  only says the comparison was skewed by whoever else ran, not by the code.

1. Features: the 12-indicator spec over 100 symbols x 500,000 bars = 50M bars (BENCH_SYMBOLS, BENCH_BARS).
   Floor: the bare TA-Lib loop in one process (12 calls on NumPy arrays), also with the allocator tuned;
   ours: `cluster.fan_out` of `features.build` on 2 workers started with `cluster.worker`'s preload, each
   unit reading its symbol's bars from Parquet, and the same units in this process. All read the bars
   inside the timing and reduce each output to its column sums, checked equal to the floor's.
2. Training: 20 symbols x every classifier models.yaml names (5 today) cross-validated
   walk-forward (5 folds) with final refits, `models.train_universe` (BENCH_TRAIN_SYMBOLS, BENCH_TRAIN_BARS):
   in process (the models' declared threads, as a notebook runs it; context) and on 2 workers,
   predictions and leaderboard checked equal; the ceiling: the symbols in two halves.
3. Projection: a 500-symbol run on 16 and 64 workers from what was measured in 2: every unit's compute
   (500 symbols cycling the measured ones), the hand-off between units on a worker and the driver's time
   (scaled by symbols) as seen in the run, the units placed in fan_out's order each onto the first free
   worker (as Dask's queue hands them out), never below the scheduler's serial time at the empty-task rate.
   The same model is first applied to the measured run itself, beside its measured wall. Every worker is
   warmed once (every model on T00, pinned to it) before the measured run, as the other contenders are. The critical path
   (the longest unit) and the overhead the projection added are printed. Then at 1m: a year of one-minute bars a
   symbol (MINUTE_ROWS), every measured unit and the driver's time scaled by rows, on 16, 64 and 256 workers.

BENCH_SCALE=quick (`make bench-all`): features over 20 symbols x 500,000 bars (10M) and training of 10 symbols x 5 models;
both efficiency targets held as at full scale (fewer units: a unit's hand-off and the driver weigh more, the harder case).
"""
import os, shutil, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
from _child import SYNTH, child, write_synthetic  # noqa: E402
from _targets import scale, sized, table, target  # noqa: E402

N_SYMBOLS, N_BARS = int(os.environ.get('BENCH_SYMBOLS', sized(100, 20))), int(os.environ.get('BENCH_BARS', 500_000))
TRAIN_SYMBOLS, TRAIN_BARS = int(os.environ.get('BENCH_TRAIN_SYMBOLS', sized(20, 10))), int(os.environ.get('BENCH_TRAIN_BARS', 6_000))
MINUTE_ROWS = 97_000   # a year of one-minute bars a symbol (issue 67): the projection at 1m scales the measured units to it
EFFICIENCY = 0.95   # target (issue 39): the two-process ceiling's seconds / ours on 2 workers, features and training
WORKERS = 2
SPEC = ['rsi_14', 'macd_12_26_9', 'mom_14', 'sma_20', 'ema_50', 'bbands_20_2', 'atr_14', 'obv', 'adx_14', 'cci_20', 'mfi_14', 'willr_14']
from mlfin.models import choose_models  # noqa: E402
MODELS = [spec.name for spec in choose_models('all', 'classifier', path=Path(__file__).parents[2]/'models.yaml')]   # what the project declares
TUNED = 'from mlfin.cluster.worker import tune_allocator; tune_allocator()\n'
work = Path(tempfile.mkdtemp(prefix='mlfin-bench-scale-'))

FLOOR = f'''
import sys, time, numpy as np, pandas as pd, talib
from pathlib import Path
folder, n = Path(sys.argv[1]), int(sys.argv[2])
first = int(sys.argv[3]) if len(sys.argv) > 3 else 0
started, cpu, sums = time.perf_counter(), time.process_time(), []
for i in range(first, first + n):
    b = pd.read_parquet(folder/f"S{{i:03d}}.parquet")
    h, l, c, v = (b[k].to_numpy() for k in ('high', 'low', 'close', 'volume'))
    out = [talib.RSI(c, 14), *talib.MACD(c, 12, 26, 9), talib.MOM(c, 14), talib.SMA(c, 20), talib.EMA(c, 50),
           *talib.BBANDS(c, 20, 2, 2), talib.ATR(h, l, c, 14), talib.OBV(c, v), talib.ADX(h, l, c, 14),
           talib.CCI(h, l, c, 20), talib.MFI(h, l, c, v, 14), talib.WILLR(h, l, c, 14)]
    sums.append([float(np.nansum(x)) for x in out])
RESULT = {{'seconds': time.perf_counter() - started, 'cpu': time.process_time() - cpu, 'sums': sums}}
'''


def worker_env() -> dict:
    """This environment with what the local cluster's nannies set in each worker they start (distributed.nanny.pre-spawn-environ:
    one thread each for OpenMP, MKL and OpenBLAS; and cluster.worker's SPAWN_ENV, every thread on one heap)"""
    import dask, distributed  # noqa: F401 (distributed's defaults in dask.config)
    from mlfin.cluster.worker import SPAWN_ENV
    return {**os.environ, **{k: str(v) for k, v in {**dask.config.get('distributed.nanny.pre-spawn-environ'), **SPAWN_ENV}.items()}}


def _longest(procs) -> tuple[float, float]:
    "Processes started together, each printing its RESULT as its last line of JSON: (the slowest's seconds, their CPU seconds together)"
    import json
    results = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    return max(r['seconds'] for r in results), sum(r['cpu'] for r in results)


def ceiling(bars: Path, n: int) -> tuple[float, float]:
    "The features' two-process ceiling: the floor's loop in halves, run at once by two plain Pythons with a worker's settings (no Dask); the longer half's seconds"
    import subprocess
    half = n // 2
    wrapped = TUNED + FLOOR + "\nimport json; print(json.dumps(RESULT))"
    procs = [subprocess.Popen([sys.executable, '-c', wrapped, str(bars), str(count), str(first)], stdout=subprocess.PIPE, text=True, env=worker_env())
             for first, count in ((0, half), (half, n - half))]
    return _longest(procs)


TRAIN_HALF = '''
import dataclasses, json, os, sys, time, pandas as pd
from mlfin.cluster.worker import tune_allocator; tune_allocator()
from mlfin.models import model_spec, train_universe
budget = int(os.environ['OMP_NUM_THREADS'])   # a worker's per-task threads: n_jobs capped to it, as capped_threads does on a worker
specs = [model_spec(m) for m in sys.argv[3].split(',')]
specs = [dataclasses.replace(s, params={**s.params, 'n_jobs': min(int(s.params['n_jobs']), budget)}) if 'n_jobs' in s.params else s for s in specs]
source, symbols = sys.argv[1], sys.argv[2].split(',')
data = pd.read_parquet(source)
train_universe(data[data['symbol'] == symbols[0]], specs, folds=5, source=source)   # warmed as the in-process run is
print('ready', flush=True); sys.stdin.readline()
started, cpu = time.perf_counter(), time.process_time(); train_universe(data[data['symbol'].isin(symbols)], specs, folds=5, source=source)
print(json.dumps({'seconds': time.perf_counter() - started, 'cpu': time.process_time() - cpu}), flush=True)
'''


def training_ceiling(source: str, symbols: list) -> tuple[float, float]:
    "The training's two-process ceiling: the symbols in two halves, two plain processes with a worker's settings, started together once both are warm; the longer half's seconds"
    import subprocess
    halves = (symbols[:len(symbols) // 2], symbols[len(symbols) // 2:])
    procs = [subprocess.Popen([sys.executable, '-c', TRAIN_HALF, source, ','.join(h), ','.join(MODELS)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=worker_env()) for h in halves]
    for p in procs: assert p.stdout.readline().strip() == 'ready', p.communicate()
    for p in procs: p.stdin.write('go\n'); p.stdin.flush()
    return _longest(procs)


def column_sums(path: str, symbol: str, spec: list) -> list:
    "One unit of the features step: a symbol's bars read from Parquet, the spec built, each output column summed"
    import numpy as np, pandas as pd
    from mlfin import features
    bars = pd.read_parquet(path)   # canonical already (UTC index, float columns), as the features task reads the run's bars
    bars.attrs.update(symbol=symbol, timeframe='1m')
    built = features.build(bars, spec)
    return [float(np.nansum(built[c].to_numpy())) for c in built]


def empty(i: int) -> int: return i


def warm_training(source: str, models: list) -> int:
    "Every model once on T00, in a worker (libraries imported, the LSTM compiled), as the in-process run and the ceiling's halves are warmed"
    import pandas as pd
    from mlfin.models import model_spec, train_universe
    train_universe(pd.read_parquet(source, filters=[('symbol', '==', 'T00')]), [model_spec(m) for m in models], folds=5, source=source)
    return os.getpid()


def on_each(fn, *args):
    "fn(*args) once on every worker of the run's cluster, each pinned to its worker (a warm-up that none may miss)"
    from mlfin.cluster import client
    found = client()
    return found.gather([found.submit(fn, *args, workers=[w], pure=False) for w in found.scheduler_info()['workers']])


def cpu_seconds() -> dict:
    "CPU seconds so far of this process and of every worker's (all their threads)"
    from mlfin.cluster import client
    return {'driver': time.process_time(), **client().run(time.process_time)}


def cores(before: dict, after: dict, wall: float) -> str:
    "What share of the machine the processes got between two `cpu_seconds` (another session on the cores shows here)"
    cpu = sum(after[k] - before[k] for k in after)
    return f"CPU {cpu:.1f} s: {cpu / wall:.2f} of {os.cpu_count()} cores"


def _status_mb(field: str) -> float:
    "A field of this process's /proc/self/status (VmRSS, VmHWM) in MiB"
    for line in Path('/proc/self/status').read_text().splitlines():
        if line.startswith(field + ':'): return int(line.split()[1]) / 1024
    raise KeyError(field)


def reset_peak() -> float:
    "Start this process's peak resident memory (VmHWM) again from now (Linux's clear_refs 5); its resident memory now, MiB"
    Path('/proc/self/clear_refs').write_text('5')
    return _status_mb('VmRSS')


def peak_mb() -> float: return _status_mb('VmHWM')


def memory(before: dict, after: dict, alone: tuple) -> str:
    "Each worker's peak during the measured run, and the in-process run's, as printed lines"
    lines = [f"   memory  worker {i} ({w}): peak {after[w]:,.0f} MiB during the run (resident {before[w]:,.0f} MiB before it)"
             for i, w in enumerate(sorted(after), 1)]
    return '\n'.join(lines + [f"   memory  in process, the same work: peak {alone[1]:,.0f} MiB (resident {alone[0]:,.0f} MiB before it)"])


def row(kind: str, what: str, seconds: float, note: str = ''):
    print(f"   {kind:8} {what:<50} {seconds:7.1f} s  {note}", flush=True)


def verdict(what: str, ceiling_s: float, ours_s: float) -> bool:
    "Print the parallel efficiency beside its target, met or MISSED"
    efficiency = ceiling_s / ours_s
    print(f"   {what} parallel efficiency = ceiling / ours on {WORKERS} workers = {ceiling_s:.2f} s / {ours_s:.2f} s", flush=True)
    target(f"{what}: parallel efficiency on {WORKERS} workers (two-process ceiling / ours)", f"{efficiency:.3f}", f">= {EFFICIENCY}",
           efficiency >= EFFICIENCY)
    return efficiency >= EFFICIENCY


def traced(fn, *args):
    "fn(*args) with Dask's task stream on: (its result, the call's start and end by this host's clock, {unit: (worker, first start, last stop, compute seconds)})"
    from distributed import get_task_stream
    from mlfin.cluster import client
    with get_task_stream(client()) as stream:
        t0 = time.time(); out = fn(*args); t1 = time.time()
    units = {}
    for task in stream.data:
        key = task['key'] if isinstance(task['key'], str) else str(task['key'])
        spans = [s for s in task['startstops'] if s['action'] == 'compute']
        units[key.split('-', 1)[1].rsplit('-', 1)[0]] = (task['worker'], min(s['start'] for s in spans), max(s['stop'] for s in spans),
                                                        sum(s['stop'] - s['start'] for s in spans))
    return out, t0, t1, units


def overhead(t0: float, t1: float, units: dict, workers: list) -> dict:
    "Where the 2-worker wall went beyond the units' compute: 2 x wall = compute + 2 x (lead + trail) + gaps + idle, exactly"
    first, last = min(u[1] for u in units.values()), max(u[2] for u in units.values())
    gaps = idle = 0.0
    busy = [w for w in workers if any(u[0] == w for u in units.values())]
    for w in workers:
        mine = [u for u in units.values() if u[0] == w]
        if not mine: idle += last - first; continue
        start, stop = min(u[1] for u in mine), max(u[2] for u in mine)
        gaps += stop - start - sum(u[3] for u in mine)
        idle += (start - first) + (last - stop)
    work, n = sum(u[3] for u in units.values()), len(units)
    return {'wall': t1 - t0, 'work': work, 'n': n, 'per_unit': (t1 - t0 - work / len(workers)) / n, 'lead': first - t0, 'trail': t1 - last,
            'gap': gaps / max(n - len(busy), 1), 'idle': idle}   # a gap between each two units on a worker


def print_overhead(o: dict, per_task: float):
    print(f"   overhead seen in this run: wall {o['wall']:.1f} s, units' compute {o['work']:.1f} s over {o['n']} units; "
          f"(wall - compute / {WORKERS}) / units = {o['per_unit'] * 1000:.1f} ms a unit, made of:\n"
          f"     the driver before the first unit started {o['lead']:.2f} s and after the last ended {o['trail']:.2f} s; "
          f"between units on a worker (hand-off: scheduler, arguments, results) {o['gap'] * 1000:.1f} ms a unit; "
          f"workers idle while the other worked, at the start and end, {o['idle']:.2f} s in all\n"
          f"     (1,000 empty tasks through fan_out on the same cluster: {per_task * 1000:.2f} ms a task)", flush=True)


def project(compute: list, gap: float, driver: float, per_task: float, workers: int) -> dict:
    "Wall of `compute` [(unit, seconds)] in fan_out's order, each unit (plus the hand-off `gap`) onto the first free of `workers`, plus the driver's time; never below the scheduler's serial time"
    import heapq
    loads = [(0.0, 0.0, 0)] * workers   # (load, its compute, its units)
    for _, t in compute:
        load, busy, count = heapq.heappop(loads); heapq.heappush(loads, (load + t + gap, busy + t, count + 1))
    load, busy, count = max(loads)
    scheduler = len(compute) * per_task
    return {'wall': max(load, scheduler) + driver, 'busy': busy, 'handoff': count * gap, 'count': count, 'driver': driver,
            'scheduler': scheduler, 'longest': max(compute, key=lambda u: u[1])}


def projection(units: dict, o: dict, per_task: float, rows: int):
    "3: the measured run checked against the model, then 500 symbols on 16 and 64 workers from the measured units, hand-off and driver"
    seconds = {unit: u[3] for unit, u in units.items()}
    measured = sorted({u.split(' ')[0] for u in units})   # fan_out's order (T00, T01 ...), each symbol's models in turn
    order = lambda symbols: [(f"{measured[i % len(measured)]} {m}", seconds[f"{measured[i % len(measured)]} {m}"]) for i in range(symbols) for m in MODELS]
    print(f"3. projection from the units measured in 2: {len(units)} units, {o['work']:.1f} s of compute; mean per unit: "
          + ', '.join(f"{m} {sum(v for k, v in seconds.items() if k.endswith(' ' + m)) / len(measured):.2f} s" for m in MODELS), flush=True)
    print(f"   measured, not assumed: each unit's compute (Dask's task stream), the hand-off between units on a worker "
          f"({o['gap'] * 1000:.1f} ms a unit), the driver's time before and after the units ({o['lead'] + o['trail']:.2f} s for "
          f"{len(measured)} symbols, scaled by symbols), the scheduler's rate ({per_task * 1000:.2f} ms a task, 1,000 empty tasks)", flush=True)
    check = project(order(len(measured)), o['gap'], o['lead'] + o['trail'], per_task, WORKERS)
    print(f"   the model on the measured run itself ({len(measured)} symbols, {WORKERS} workers): {check['wall']:.1f} s projected, "
          f"{o['wall']:.1f} s measured ({check['wall'] / o['wall'] - 1:+.1%})", flush=True)
    for workers in (16, 64):
        p = project(order(500), o['gap'], (o['lead'] + o['trail']) * 500 / len(measured), per_task, workers)
        (unit, longest), added = p['longest'], p['wall'] - p['busy']
        print(f"   500 symbols x {len(MODELS)} models on {workers} workers: {p['wall']:7.1f} s projected (serial compute "
              f"{sum(t for _, t in order(500)):,.0f} s)\n"
              f"     = the busiest worker's {p['count']} units' compute {p['busy']:.1f} s + their hand-off {p['handoff']:.1f} s + "
              f"the driver {p['driver']:.1f} s; overhead added: {added:.1f} s ({added / p['wall']:.0%} of the wall)\n"
              f"     critical path: the longest unit, {unit}, {longest:.2f} s (with the driver, {longest + p['driver']:.1f} s: "
              f"no count of workers goes below it); the scheduler's serial time, {p['scheduler']:.1f} s, "
              f"{'binds' if p['scheduler'] > p['busy'] + p['handoff'] else 'does not bind'}", flush=True)
    # a year of one-minute bars a symbol: each measured unit's compute and the driver's time scaled by rows (linear in
    # rows: LightGBM, XGBoost, the LSTM and logistic regression are; a forest's n log n makes it a floor)
    scaled = lambda symbols: [(u, t * MINUTE_ROWS / rows) for u, t in order(symbols)]
    driver = (o['lead'] + o['trail']) * 500 / len(measured) * MINUTE_ROWS / rows
    print(f"   at 1m ({MINUTE_ROWS:,} rows a symbol, {MINUTE_ROWS / rows:.1f}x the {rows:,} measured; units scaled by rows): "
          f"serial compute {sum(t for _, t in scaled(500)) / 3600:,.1f} CPU-hours", flush=True)
    for workers in (16, 64, 256):
        p = project(scaled(500), o['gap'], driver, per_task, workers)
        (unit, longest), added = p['longest'], p['wall'] - p['busy']
        print(f"   500 symbols x {len(MODELS)} models at 1m on {workers} workers: {p['wall'] / 60:6.1f} min projected "
              f"(the busiest worker's {p['count']} units {p['busy'] / 60:.1f} min + the driver {p['driver'] / 60:.1f} min; "
              f"longest unit {unit} {longest:.0f} s)", flush=True)


def main():
    import numpy as np
    from mlfin.cluster import fan_out, running, client
    from mlfin.cluster.worker import tune_allocator
    tune_allocator()   # this process runs the in-process units as `mlfin run`'s process does
    print(f"bench-scale: working in {work} (SYNTHETIC DATA, labelled: random-walk bars made here); {os.cpu_count()} cores here\n"
          f"targets: parallel efficiency (the two-process ceiling's seconds / ours on {WORKERS} workers) >= {EFFICIENCY}, "
          "features and training; the rest is measured context", flush=True)
    scale(f"features over {N_SYMBOLS} x {N_BARS:,} bars, training {TRAIN_SYMBOLS} symbols", "features over 100 x 500,000 bars, training 20 symbols")
    bars = work/'bars'
    made = write_synthetic(bars, N_SYMBOLS, N_BARS)
    print(f"\n1. features: {N_SYMBOLS} symbols x {N_BARS:,} one-minute bars = {N_SYMBOLS * N_BARS / 1e6:.1f}M bars SYNTHETIC "
          f"(written in {made['seconds']:.0f} s); {len(SPEC)} indicators", flush=True)
    floor = child(FLOOR, bars, N_SYMBOLS)
    floor_tuned = child(TUNED + FLOOR, bars, N_SYMBOLS)
    two, two_cpu = ceiling(bars, N_SYMBOLS)
    calls = {f"S{i:03d}": (str(bars/f"S{i:03d}.parquet"), f"S{i:03d}", SPEC) for i in range(N_SYMBOLS)}
    column_sums(*calls['S000'])
    alone = (reset_peak(),)
    t = time.perf_counter(); fan_out('features', column_sums, calls); one = time.perf_counter() - t
    alone += (peak_mb(),)
    row('context', 'the floor: the bare TA-Lib loop, one process', floor['seconds'], f"peak {floor['peak_mb']:,.0f} MiB")
    row('context', 'the floor, allocator tuned as ours', floor_tuned['seconds'], f"peak {floor_tuned['peak_mb']:,.0f} MiB")
    row('context', 'ours, the same units in this process', one, f"{one / floor_tuned['seconds']:.2f}x the tuned floor's time")
    row('ceiling', "the floor's loop in halves, two plain processes", two, f"the tuned floor / ceiling: {floor_tuned['seconds'] / two:.2f}x; "
        f"CPU {two_cpu:.1f} s: {two_cpu / two:.2f} of {os.cpu_count()} cores")
    started = time.perf_counter()
    with running(f'local:{WORKERS}'):
        ready = time.perf_counter() - started
        on_each(column_sums, *calls['S000'])   # every indicator resolved on both
        before, cpu0 = client().run(reset_peak), cpu_seconds()
        sums, t0, t1, units = traced(fan_out, 'features', column_sums, calls)
        after, cpu1 = client().run(peak_mb), cpu_seconds()
        t = time.perf_counter(); fan_out('empty', empty, {str(i): (i,) for i in range(1000)}); per_task = (time.perf_counter() - t) / 1000
    for i, (got, want) in enumerate(zip(sums.values(), floor['sums'])):
        np.testing.assert_allclose(got, want, rtol=1e-9, err_msg=f"S{i:03d}")
    o = overhead(t0, t1, units, sorted(after))
    row('ours', f"fan_out of features.build on {WORKERS} workers", o['wall'], f"{cores(cpu0, cpu1, o['wall'])}; cluster up in {ready:.1f} s, not counted; column sums equal the floor's")
    met = [verdict('features', two, o['wall'])]
    print(f"   context  the floor / ours: {floor['seconds'] / o['wall']:.2f}x; the tuned floor / ours: {floor_tuned['seconds'] / o['wall']:.2f}x; "
          f"ours in process / ours on {WORKERS} workers: {one / o['wall']:.2f}x", flush=True)
    print(memory(before, after, alone), flush=True)
    print_overhead(o, per_task)

    if os.environ.get('BENCH_PART') != 'features':
        met.append(training(per_task))
    print(f"\nbench-scale targets: {'all met' if all(met) else 'NOT all met'} "
          f"({', '.join(f'{w} {v}' for w, v in zip(('features', 'training'), ('met' if m else 'MISSED' for m in met)))})", flush=True)
    table()


def training(per_task: float) -> bool:
    "2 and 3: training in process, at the ceiling and on 2 workers; the projection from its units; whether the efficiency target was met"
    import pandas as pd
    from mlfin.cluster import running, client
    from mlfin.features import dataset
    from mlfin.features.labels import fixed_horizon
    from mlfin.models import model_spec, train_universe
    exec(SYNTH, globals())
    raw = {f"T{i:02d}": synthetic(TRAIN_BARS, seed=100 + i) for i in range(TRAIN_SYMBOLS)}   # noqa: F821 (defined by exec(SYNTH) above)
    for s, b in raw.items(): b.attrs.update(symbol=s, timeframe='1m')
    _, data = dataset(raw, fixed_horizon, ['rsi_14', 'macd_12_26_9', 'mom_14', 'sma_20', 'ema_50', 'bbands_20_2', 'atr_14', 'adx_14', 'cci_20', 'willr_14'])
    source = str(work/'dataset.parquet'); data.to_parquet(source)
    specs = [model_spec(m) for m in MODELS]
    print(f"\n2. training: {TRAIN_SYMBOLS} symbols x {len(data) // TRAIN_SYMBOLS:,} rows x {data.shape[1] - 4} inputs, SYNTHETIC; models "
          f"{', '.join(MODELS)}; walk-forward, 5 folds, final refits", flush=True)
    train_universe(data[data['symbol'] == 'T00'], specs, folds=5, source=source)   # libraries imported, the LSTM compiled, in this process
    alone = (reset_peak(),)
    t = time.perf_counter(); serial = train_universe(data, specs, folds=5, source=source); in_process = time.perf_counter() - t
    alone += (peak_mb(),)
    row('context', "in process (the models' declared threads)", in_process, 'as a notebook runs it')
    two, two_cpu = training_ceiling(source, sorted(raw))
    row('ceiling', 'the symbols in halves, two plain processes', two, f"CPU {two_cpu:.1f} s: {two_cpu / two:.2f} of {os.cpu_count()} cores; "
        f"in process / ceiling: {in_process / two:.2f}x")
    with running(f'local:{WORKERS}'):
        on_each(warm_training, source, MODELS)   # each worker warmed alike
        before, cpu0 = client().run(reset_peak), cpu_seconds()
        spread, t0, t1, units = traced(lambda: train_universe(data, specs, folds=5, source=source))
        after, cpu1 = client().run(peak_mb), cpu_seconds()
    pd.testing.assert_frame_equal(spread.predictions, serial.predictions); pd.testing.assert_frame_equal(spread.leaderboard, serial.leaderboard)
    o = overhead(t0, t1, units, sorted(after))
    row('ours', f"train_universe on {WORKERS} workers", o['wall'], f"{cores(cpu0, cpu1, o['wall'])}; predictions and leaderboard equal the in-process run's")
    met = verdict('training', two, o['wall'])
    print(f"   context  in process / ours on {WORKERS} workers: {in_process / o['wall']:.2f}x", flush=True)
    print(memory(before, after, alone), flush=True)
    print_overhead(o, per_task)
    print(flush=True)
    projection(units, o, per_task, len(data) // TRAIN_SYMBOLS)
    return met


if __name__ == '__main__':
    try: main()
    finally: shutil.rmtree(work, ignore_errors=True)
