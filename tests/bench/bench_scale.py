"""Benchmark: past one machine (`make bench-scale`): per-symbol work on a local Dask cluster of 2 workers beside one process, in one run.

SYNTHETIC DATA (labelled): random-walk one-minute bars generated here; they only give the code volume
to chew on. Products' equality on real data is tested in tests/test_cluster.py.

1. Features: the 12-indicator spec over 100 symbols x 500,000 bars = 50M bars. The floor is the bare
   TA-Lib loop in one process (12 calls on NumPy arrays, no frames, no names), as a user runs it; ours is
   `cluster.fan_out` of `features.build` on a local cluster of 2 worker processes (started with
   `cluster.worker`'s preload: the allocator tuned, the libraries imported), each unit reading its
   symbol's bars from Parquet. The floor is also run with the same allocator settings, so that what
   the cluster adds is seen apart from what the allocator does. Both read the bars inside the timing and reduce each output to its
   column sums (50M x 16 columns would not fit one process twice); the sums are checked equal.
   Target: ours at least 1.8x faster than the floor. Beside it, the machine's ceiling: the floor's loop
   split in halves and run at once by two plain processes (no Dask, no mlfin): what two processes can
   give on these cores, whatever runs them.
2. Training: 20 symbols x 5 models (logistic, random forest, LightGBM, XGBoost, LSTM) cross-validated
   walk-forward (5 folds) with final refits, `models.train_universe`, in process (as a notebook runs
   it, the models' declared 2 threads) against the same call on 2 workers; predictions checked equal.
   Target: at least 1.7x faster. Peak memory of each worker and of the in-process run. Beside it, the
   machine's ceiling: the symbols in two halves trained at once by two plain processes (each model with
   its declared threads, as in process): what two processes can give on these cores.
3. Projection: every unit's time on the cluster (Dask's task stream), the scheduler's overhead per
   task (1,000 empty tasks), and the driver's own time (assembly) measured; a 500-symbol run's wall
   time on 16 and 64 workers projected by scheduling the measured units (500 symbols drawn from the 20
   measured, longest first onto the least loaded worker) plus overhead and the driver's part scaled to
   500 symbols; the critical path (the longest unit) named.
"""
import os, resource, shutil, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
from _child import SYNTH, child, write_synthetic  # noqa: E402

N_SYMBOLS, N_BARS = int(os.environ.get('BENCH_SYMBOLS', 100)), int(os.environ.get('BENCH_BARS', 500_000))
TRAIN_SYMBOLS, TRAIN_BARS = 20, int(os.environ.get('BENCH_TRAIN_BARS', 6_000))
SPEC = ['rsi_14', 'macd_12_26_9', 'mom_14', 'sma_20', 'ema_50', 'bbands_20_2', 'atr_14', 'obv', 'adx_14', 'cci_20', 'mfi_14', 'willr_14']
MODELS = ['logistic', 'random_forest', 'lightgbm', 'xgboost', 'lstm']
work = Path(tempfile.mkdtemp(prefix='mlfin-bench-scale-'))

FLOOR = f'''
import sys, time, numpy as np, pandas as pd, talib
from pathlib import Path
folder, n = Path(sys.argv[1]), int(sys.argv[2])
first = int(sys.argv[3]) if len(sys.argv) > 3 else 0
started, sums = time.perf_counter(), []
for i in range(first, first + n):
    b = pd.read_parquet(folder/f"S{{i:03d}}.parquet")
    h, l, c, v = (b[k].to_numpy() for k in ('high', 'low', 'close', 'volume'))
    out = [talib.RSI(c, 14), *talib.MACD(c, 12, 26, 9), talib.MOM(c, 14), talib.SMA(c, 20), talib.EMA(c, 50),
           *talib.BBANDS(c, 20, 2, 2), talib.ATR(h, l, c, 14), talib.OBV(c, v), talib.ADX(h, l, c, 14),
           talib.CCI(h, l, c, 20), talib.MFI(h, l, c, v, 14), talib.WILLR(h, l, c, 14)]
    sums.append([float(np.nansum(x)) for x in out])
RESULT = {{'seconds': time.perf_counter() - started, 'sums': sums}}
'''


def _longest(procs) -> float:
    "The seconds of the slowest of processes started together, each printing its RESULT as its last line of JSON"
    import json
    return max(json.loads(p.communicate()[0].strip().splitlines()[-1])['seconds'] for p in procs)


def ceiling(bars: Path, n: int) -> float:
    "What two processes do on this machine: the floor's loop split in halves, run at once by two plain Pythons (no Dask); the longer half's seconds"
    import subprocess
    half = n // 2
    wrapped = FLOOR + "\nimport json; print(json.dumps(RESULT))"
    procs = [subprocess.Popen([sys.executable, '-c', wrapped, str(bars), str(count), str(first)], stdout=subprocess.PIPE, text=True)
             for first, count in ((0, half), (half, n - half))]
    return _longest(procs)


TRAIN_HALF = '''
import json, sys, time, pandas as pd
from mlfin.cluster.worker import tune_allocator; tune_allocator()
from mlfin.models import model_spec, train_universe
source, symbols, specs = sys.argv[1], sys.argv[2].split(','), [model_spec(m) for m in sys.argv[3].split(',')]
data = pd.read_parquet(source)
train_universe(data[data['symbol'] == symbols[0]], specs, folds=5, source=source)   # warmed as the in-process run is
print('ready', flush=True); sys.stdin.readline()
started = time.perf_counter(); train_universe(data[data['symbol'].isin(symbols)], specs, folds=5, source=source)
print(json.dumps({'seconds': time.perf_counter() - started}), flush=True)
'''


def training_ceiling(source: str, symbols: list) -> float:
    "The training's ceiling here: the in-process run's symbols in two halves, two plain processes started together once both are warm; the longer half's seconds"
    import subprocess
    halves = (symbols[:len(symbols) // 2], symbols[len(symbols) // 2:])
    procs = [subprocess.Popen([sys.executable, '-c', TRAIN_HALF, source, ','.join(h), ','.join(MODELS)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) for h in halves]
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


def peak_mb() -> float: return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory_mb() -> str:
    "A worker's resident memory now and its peak"
    import psutil
    return f"{psutil.Process().memory_info().rss / 2**20:,.0f} MiB now, peak {peak_mb():,.0f}"


def project(units: dict, per_task: float, driver: float, workers: int, symbols: int = 500) -> tuple[float, float]:
    "Wall time of `symbols` symbols' units (cycling the measured symbols) on `workers`, longest first onto the least loaded; (wall, longest unit)"
    import heapq
    measured = sorted({u.split(' ')[0] for u in units})
    times = sorted((units[f"{measured[i % len(measured)]} {m}"] + per_task for i in range(symbols) for m in MODELS), reverse=True)
    loads = [0.0] * workers
    for t in times: heapq.heapreplace(loads, loads[0] + t)
    return max(loads) + driver * symbols / len(measured), times[0]


def main():
    import numpy as np, pandas as pd
    from mlfin.cluster import fan_out, running, client
    from mlfin.cluster.worker import tune_allocator
    tune_allocator()   # this process runs the in-process units as `mlfin run`'s process does
    print(f"bench-scale: working in {work} (SYNTHETIC bars, labelled); {os.cpu_count()} cores here", flush=True)
    bars = work/'bars'
    made = write_synthetic(bars, N_SYMBOLS, N_BARS)
    print(f"1. features: {N_SYMBOLS} symbols x {N_BARS:,} one-minute bars = {N_SYMBOLS * N_BARS / 1e6:.0f}M bars (written in {made['seconds']:.0f} s); "
          f"{len(SPEC)} indicators", flush=True)
    floor = child(FLOOR, bars, N_SYMBOLS)
    two = ceiling(bars, N_SYMBOLS)
    floor_tuned = child('from mlfin.cluster.worker import tune_allocator; tune_allocator()\n' + FLOOR, bars, N_SYMBOLS)
    column_sums(str(bars/'S000.parquet'), 'S000', SPEC)
    t = time.perf_counter(); fan_out('features', column_sums, {f"S{i:03d}": (str(bars/f"S{i:03d}.parquet"), f"S{i:03d}", SPEC) for i in range(N_SYMBOLS)})
    one = time.perf_counter() - t
    print(f"   floor  bare TA-Lib loop, one process:      {floor['seconds']:7.1f} s  peak {floor['peak_mb']:6,.0f} MiB", flush=True)
    print(f"   floor  the same, allocator tuned as ours:  {floor_tuned['seconds']:7.1f} s  peak {floor_tuned['peak_mb']:6,.0f} MiB", flush=True)
    print(f"   the machine's ceiling: the floor's loop in two halves, two plain processes at once: {two:.1f} s "
          f"({floor['seconds'] / two:.2f}x the floor: what 2 processes can give here)", flush=True)
    calls = {f"S{i:03d}": (str(bars/f"S{i:03d}.parquet"), f"S{i:03d}", SPEC) for i in range(N_SYMBOLS)}
    started = time.perf_counter()
    with running('local:2'):
        ready = time.perf_counter() - started
        fan_out('warm', column_sums, {f"w{i}": (str(bars/'S000.parquet'), 'S000', SPEC) for i in range(4)})   # every indicator resolved on both
        t = time.perf_counter()
        sums = fan_out('features', column_sums, calls)
        ours = time.perf_counter() - t
        worker_peaks = client().run(memory_mb)
    for i, (got, want) in enumerate(zip(sums.values(), floor['sums'])):
        np.testing.assert_allclose(got, want, rtol=1e-9, err_msg=f"S{i:03d}")
    print(f"   ours   fan_out of features.build, 2 workers: {ours:7.1f} s  (cluster up in {ready:.1f} s, not counted; column sums equal the floor's)", flush=True)
    print(f"   ours   the same units in this process (as mlfin run's, allocator tuned): {one:7.1f} s", flush=True)
    print(f"   workers: {'; '.join(worker_peaks.values())}", flush=True)
    print(f"   floor / ours: {floor['seconds'] / ours:.2f}x faster  (target >= 1.8x); the floor with the allocator tuned / ours: "
          f"{floor_tuned['seconds'] / ours:.2f}x (what 2 workers add); ceiling / ours: {two / ours:.2f}\n", flush=True)

    if os.environ.get('BENCH_PART') == 'features': return
    # 2. training
    from mlfin.features import dataset
    from mlfin.features.labels import fixed_horizon
    from mlfin.models import model_spec, train_universe
    exec(SYNTH, globals())
    raw = {f"T{i:02d}": synthetic(TRAIN_BARS, seed=100 + i) for i in range(TRAIN_SYMBOLS)}
    for s, b in raw.items(): b.attrs.update(symbol=s, timeframe='1m')
    _, data = dataset(raw, fixed_horizon, ['rsi_14', 'macd_12_26_9', 'mom_14', 'sma_20', 'ema_50', 'bbands_20_2', 'atr_14', 'adx_14', 'cci_20', 'willr_14'])
    source = str(work/'dataset.parquet'); data.to_parquet(source)
    specs = [model_spec(m) for m in MODELS]
    print(f"2. training: {TRAIN_SYMBOLS} symbols x {len(data) // TRAIN_SYMBOLS:,} rows x {data.shape[1] - 4} inputs; models {', '.join(MODELS)}; "
          "walk-forward, 5 folds, final refits", flush=True)
    train_universe(data[data['symbol'] == 'T00'], specs, folds=5, source=source)   # libraries imported, the LSTM compiled, in this process
    before = peak_mb()
    t = time.perf_counter(); alone = train_universe(data, specs, folds=5, source=source); serial = time.perf_counter() - t
    print(f"   in process: {serial:7.1f} s  peak {peak_mb():,.0f} MiB (before: {before:,.0f}); the tree models use their declared 2 threads", flush=True)
    two = training_ceiling(source, sorted(raw))
    print(f"   the machine's ceiling: the same in two halves, two plain processes at once: {two:.1f} s ({serial / two:.2f}x in process)", flush=True)
    from distributed import get_task_stream
    with running('local:2'):
        train_universe(data[data['symbol'].isin(['T00', 'T01'])], specs, folds=5, source=source)   # each worker warmed alike
        with get_task_stream(client()) as stream:
            t = time.perf_counter(); spread = train_universe(data, specs, folds=5, source=source); on_two = time.perf_counter() - t
        units = {}
        for task in stream.data:
            unit = task['key'].split('-', 1)[1].rsplit('-', 1)[0] if isinstance(task['key'], str) else str(task['key'])
            units[unit] = sum(s['stop'] - s['start'] for s in task['startstops'] if s['action'] == 'compute')
        worker_peaks = client().run(memory_mb)
        t = time.perf_counter(); fan_out('empty', empty, {str(i): (i,) for i in range(1000)}); per_task = (time.perf_counter() - t) / 1000
    pd.testing.assert_frame_equal(spread.predictions, alone.predictions); pd.testing.assert_frame_equal(spread.leaderboard, alone.leaderboard)
    work_s = sum(units.values())
    print(f"   2 workers:  {on_two:7.1f} s  (predictions and leaderboard equal); workers: {'; '.join(worker_peaks.values())}", flush=True)
    print(f"   in process / 2 workers: {serial / on_two:.2f}x faster  (target >= 1.7x); ceiling / 2 workers: {two / on_two:.2f}\n", flush=True)
    by_model = {m: np.mean([v for k, v in units.items() if k.endswith(' ' + m)]) for m in MODELS}
    driver = max(on_two - work_s / 2, 0.0)
    print(f"3. projection: {len(units)} units measured, {work_s:.1f} s of work; mean per unit: "
          + ', '.join(f"{m} {v:.2f} s" for m, v in by_model.items()))
    print(f"   scheduler overhead per task (1,000 empty tasks through fan_out): {per_task * 1000:.2f} ms; "
          f"the driver's own part (2-worker wall less half the work): {driver:.1f} s for {TRAIN_SYMBOLS} symbols")
    for workers in (16, 64):
        wall, longest = project(units, per_task, driver, workers)
        print(f"   500 symbols x 5 models on {workers} workers: {wall:7.1f} s projected (serial work {work_s * 25:,.0f} s; "
              f"critical path: the longest unit, {longest:.2f} s)")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__': main()
