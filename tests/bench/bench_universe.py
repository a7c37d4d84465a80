"""Benchmark: a research universe of minute bars (`make bench-universe`, issue 67 item 1): mlfin's run beside the plain
script a researcher would write, on the same bars, and what growing the universe costs.

SYNTHETIC DATA (labelled): one CSV per symbol (SYN00, SYN01, ...; ts, open, high, low, close, volume), made here.
Each symbol's one-minute log returns are GARCH(1,1), r = sigma * z with z Student-t (5 degrees of freedom, scaled to
unit variance), sigma^2 = omega + 0.05 r^2 + 0.93 sigma^2, the unconditional variance that of a daily volatility drawn
from 1.2% to 3% (seed: the symbol's number); an overnight gap at each session's open; high and low a half-sigma
wiggle beyond the open and close; volume U-shaped over the session (1 + 1.5 (2x - 1)^2, x the share of the session
gone), log-normal noise and more on large moves. The minutes are NYSE's sessions of 2024 from exchange-calendars
(XNYS: 252 sessions, the early closes of 3 July, 29 November and 24 December included; 97,740 bars a symbol). The
5-minute files are those bars aggregated by mlfin's own resampler (`mlfin.data.bars.resample` on XNYS's sessions) and
written as CSV: both sides read the same 5-minute files.

What runs, each as its own process with the same environment (OMP_WAIT_POLICY=PASSIVE: waiting OpenMP threads sleep
instead of spinning; OMP_NUM_THREADS = the cores; LightGBM's n_jobs as models.yaml declares it, on both sides):
- mlfin as a user runs it: `mlfin ingest FILE... --timeframe T --calendar XNYS` (one command, each file's symbol from its
  name) into a fresh home's store, then `mlfin run --symbols ... --timeframe T --models logistic,lightgbm --folds 5` (the run's reports
  into the home).
- the plain script (tests/bench/plain_universe.py): pandas + TA-Lib + LightGBM, the research spec's 22 features
  computed with TA-Lib directly and made scale-free as mlfin does, the same label (up 1 bar ahead), logistic and
  LightGBM with models.yaml's settings, the same 5 walk-forward folds purged by the label's span, a one-bar-hold
  backtest after the equity preset's costs. Its out-of-sample AUC of every symbol and model is checked equal to
  mlfin's leaderboard: the same rows, features, folds and models, or the comparison says it is not.
Measured for each process: CPU seconds of its whole tree (user + system of the process and every descendant it
waited for: os.wait4's rusage, so the bench's own work and py-spy's never count), its peak memory (ru_maxrss: the
largest single process's peak resident set) and, sampled every 0.2 s, the tree's peak total proportional memory (PSS:
a page a forked child shares with its parent counted once), with the processes it started named. Beside
mlfin's run, per task: its seconds (mlfin's own output: `TASK done in S s`) and its CPU seconds (the run process's CPU,
threads and waited children included, read when mlfin prints each task's start and end).

1. Cost: 5 symbols x 1 year of 5m bars (19,548 a symbol), logistic + LightGBM, 5 folds: from the CSVs to the results
   on both sides (mlfin: its 5 ingests and its run; the plain script reads the CSVs itself). Targets: mlfin's CPU
   <= 2x the plain script's and its peak memory <= 2x (issue 67, item 2). The run alone beside it, as context.
2. Growing the universe: a fresh home, 6 symbols ingested and run (py-spy samples this run: where the CPU goes), then
   2 more ingested and the run again with all 8. Target: the second (ingest of 2 + run) costs <= half the first's
   CPU (item 3). What reran: tasks, features computed or read from the feature store, training units, models
   registered.
3. Minute research that finishes (item 4), run as the minute recipe says (RECIPE: every core, `--cluster local`):
   50 symbols x 1 year, from the first ingest to the run's report, wall
   clock on this machine: 1m bars <= 20 min, 5m bars <= 5 min, each a fresh home (the same models and folds as 1).
   A run still going at 1.5x its target is stopped there (its figure then says how far
   it got) and so is one whose process tree passes 3/4 of the memory available when the bench started.

BENCH_SCALE=quick (`make bench-all`, or `make bench-universe ARGS="--scale quick"`): 1 and 2 as at full scale (their
sizes are the issue's); 3 at a stated smaller scale, 5 symbols x January and February 2024 of 1m bars (one month is too
short: the backtest's Monte Carlo bands need 20 daily returns out of sample), its wall printed with no
verdict (not measured), and 1's wall for 5 symbols of 5m beside the 5m target. Part 3 at full scale takes up to 40
minutes. CPU seconds are robust to other work on the machine; wall seconds are not: the load average is printed.
"""
import argparse, json, os, re, shutil, signal, subprocess, sys, tempfile, threading, time
from pathlib import Path

PARTS = ('cost', 'growth', 'minute')   # 1, 2 and 3 below

if __name__ == '__main__':   # --scale before _targets reads BENCH_SCALE
    _ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _ap.add_argument('--scale', choices=['quick', 'full'], help='default: BENCH_SCALE, else full')
    _ap.add_argument('--keep', action='store_true', help='keep the working folder (homes, CSVs, profile) and say where')
    _ap.add_argument('--part', action='append', choices=PARTS, help='only these parts (repeatable); default: every one')
    _ap.add_argument('--sizes', default='5m,1m', help='the bar sizes of part 3 at full scale (default: 5m,1m)')
    ARGS = _ap.parse_args()
    if ARGS.scale: os.environ['BENCH_SCALE'] = ARGS.scale

sys.path.insert(0, str(Path(__file__).parent))
from _targets import QUICK, scale, table, target, not_measured  # noqa: E402
import exchange_calendars as xc, numpy as np, pandas as pd, psutil, pyarrow.parquet as pq  # noqa: E402
from mlfin.data.bars import bars_frame, resample  # noqa: E402
from mlfin.models import model_spec  # noqa: E402
from mlfin.params import COST_PRESETS  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PLAIN = Path(__file__).parent/'plain_universe.py'
YEAR = 2024
MODELS, FOLDS = ('logistic', 'lightgbm'), 5
COST_SYMBOLS = 5                    # 1: the comparison
GROW_FROM, GROW_BY = 6, 2           # 2: the increment
UNIVERSE = 50                       # 3: at full scale
STAND_IN = (5, f'{YEAR}-01-01', f'{YEAR}-02-29', 'January and February')   # 3 at the quick scale: symbols, days of 1m bars
CPU_RATIO, MEMORY_RATIO, GROWTH_SHARE = 2.0, 2.0, 0.5            # targets: items 2 and 3
WALL_TARGETS = {'1m': 20 * 60, '5m': 5 * 60}                     # item 4, seconds from the first ingest to the report
GROW_SHARE_TEXT = f"{GROWTH_SHARE:g} (half)"
# the minute recipe (tutorial "Past one machine", A minute universe): the run's models and folds above, every core
RECIPE = ('--cluster', 'local')
STOP_AT = 1.5                       # a part-3 run still going at this many times its target is stopped
work = Path(tempfile.mkdtemp(prefix='mlfin-bench-universe-'))
CORES = os.cpu_count()
ENV = {**os.environ, 'OMP_WAIT_POLICY': 'PASSIVE', 'OMP_NUM_THREADS': str(CORES), 'PYTHONUNBUFFERED': '1',
       'MLFIN_LEDGER': 'home', 'PLOOMBER_STATS_ENABLED': 'false'}   # both sides alike; each home keeps its own ledger
MEMORY_CAP = 0.75 * psutil.virtual_memory().available
SYMBOL = 'SYN{:02d}'.format


# ---------------------------------------------------------------- the synthetic universe

def minutes(first: str = f'{YEAR}-01-01', last: str = f'{YEAR}-12-31') -> tuple[pd.DatetimeIndex, np.ndarray, np.ndarray]:
    "XNYS's one-minute bars of the sessions from `first` to `last`, early closes included: their times, minute of the session, session length"
    days = xc.get_calendar('XNYS', start=first, end=last).schedule.loc[first:last]
    opens = pd.DatetimeIndex(days['open']).as_unit('ns').asi8
    length = ((days['close'] - days['open']).dt.total_seconds() // 60).to_numpy().astype('int64')
    within = np.arange(length.sum()) - np.repeat(np.cumsum(length) - length, length)
    ts = np.repeat(opens, length) + within * 60_000_000_000
    return pd.DatetimeIndex(ts.astype('datetime64[ns]'), name='ts').tz_localize('UTC'), within, np.repeat(length, length)


def synthetic(seed: int, times: pd.DatetimeIndex, within: np.ndarray, length: np.ndarray) -> pd.DataFrame:
    "SYNTHETIC one-minute bars: GARCH(1,1) returns with Student-t shocks, overnight gaps, U-shaped volume (the docstring's recipe)"
    rng = np.random.default_rng(seed)
    n, nu = len(times), 5.0
    z = rng.standard_t(nu, n) / np.sqrt(nu / (nu - 2))
    daily = rng.uniform(0.012, 0.03)
    variance = daily ** 2 / 390
    alpha, beta = 0.05, 0.93
    omega, s2, r, last = variance * (1 - alpha - beta), variance, np.empty(n), 0.0
    for t in range(n):
        s2 = omega + alpha * last * last + beta * s2
        last = r[t] = np.sqrt(s2) * z[t]
    gap = np.where(within == 0, rng.normal(0, daily * 0.4, n), 0.0)
    log_close = np.log(rng.uniform(20, 300)) + np.cumsum(r + gap + 1e-7)
    close, open_ = np.round(np.exp(log_close), 4), np.round(np.exp(log_close - r), 4)   # the open: the last close, gapped
    wiggle = np.abs(rng.normal(0, 0.5 * np.sqrt(variance), (2, n))) * close
    high = np.maximum(np.maximum(open_, close), np.round(np.maximum(open_, close) + wiggle[0], 4))
    low = np.minimum(np.minimum(open_, close), np.round(np.minimum(open_, close) - wiggle[1], 4))
    x = within / np.maximum(length - 1, 1)
    volume = np.round(rng.uniform(2e3, 2e4) * (1 + 1.5 * (2 * x - 1) ** 2) * rng.lognormal(0, 0.5, n) * (1 + 20 * np.abs(r)))
    return pd.DataFrame({'open': open_, 'high': high, 'low': low, 'close': close, 'volume': volume}, index=times)


def write_universe(symbols: int, sizes: tuple, days: tuple = ()) -> dict:
    "SYNTHETIC CSVs SYN00.csv ... under work/<size>/, of `YEAR` or `days` (first, last); bars a symbol per size, seconds"
    started, made = time.perf_counter(), {}
    times, within, length = minutes(*days)
    for size in sizes: (work/size).mkdir(exist_ok=True)
    for i in range(symbols):
        one = synthetic(i, times, within, length)
        for size in sizes:
            bars = one if size == '1m' else resample(bars_frame(one, SYMBOL(i), '1m'), size, 'XNYS')
            bars.astype({'volume': 'int64'}).to_csv(work/size/f"{SYMBOL(i)}.csv", float_format='%.4f')
            made[size] = len(bars)
    return {'bars': made, 'seconds': time.perf_counter() - started}


# ---------------------------------------------------------------- measuring a process tree

def measured(cmd: list, spy: Path | None = None, stop_after: float | None = None) -> dict:
    """Run `cmd` as a child (its own session) and measure its tree: CPU (wait4's rusage), ru_maxrss, the sampled tree peak,
    wall; its output lines, each with the time and the process's CPU when it came; py-spy on it from its first line"""
    started = time.perf_counter()
    p = subprocess.Popen([str(c) for c in cmd], cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, start_new_session=True)
    proc, lines, peak, stopped, done, spies, children = psutil.Process(p.pid), [], [0], [], threading.Event(), [], {}

    def cpu_now():
        try: t = proc.cpu_times(); return t.user + t.system + t.children_user + t.children_system
        except psutil.Error: return None

    def read():
        for line in p.stdout:
            lines.append((time.perf_counter() - started, cpu_now(), line.rstrip('\n')))
            if spy is not None and not spies:   # attached once the interpreter is up and talking
                spies.append(subprocess.Popen([BIN/'py-spy', 'record', '--pid', str(p.pid), '--rate', '100', '--nonblocking',
                                               '--subprocesses', '--format', 'raw', '--output', str(spy)],
                                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))

    def stop(why: str):
        stopped.append(why)
        for sig in (signal.SIGTERM, signal.SIGKILL):   # the session this bench started, by its id
            try: os.killpg(p.pid, sig)
            except ProcessLookupError: return
            if done.wait(10): return

    def sample():
        while not done.wait(0.2):
            try: tree = [proc, *proc.children(recursive=True)]
            except psutil.Error: continue
            total = 0
            for q in tree:   # proportional: pages a forked child shares with its parent counted once
                try:
                    total += q.memory_full_info().pss
                    if q.pid != p.pid: children.setdefault(q.pid, ' '.join(q.cmdline()[:3])[:80])
                except psutil.Error: pass
            peak[0] = max(peak[0], total)
            if stopped: continue
            if stop_after and time.perf_counter() - started > stop_after: stop(f"stopped at {stop_after:,.0f} s")
            elif total > MEMORY_CAP: stop(f"stopped: its tree held {total / 2**30:.1f} GiB, over 3/4 of the memory available")

    reader, sampler = threading.Thread(target=read), threading.Thread(target=sample)
    reader.start(); sampler.start()
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - started
    p.returncode = os.waitstatus_to_exitcode(status)
    done.set(); reader.join(); sampler.join()
    for s in spies:
        try: s.wait(120)
        except subprocess.TimeoutExpired: s.kill(); s.wait()
    return {'cpu': usage.ru_utime + usage.ru_stime, 'user': usage.ru_utime, 'system': usage.ru_stime,
            'maxrss_mb': usage.ru_maxrss / 1024, 'tree_peak_mb': peak[0] / 2**20, 'wall': wall, 'exit': p.returncode,
            'stopped': stopped[0] if stopped else '', 'lines': lines, 'children': sorted(set(children.values()))}


def ingest(home: Path, size: str, symbols: list) -> dict:
    """`mlfin ingest` of the symbols' CSVs into `home`'s store in one command, as a user ingests a universe (each file's symbol
    from its name): its CPU, wall and peaks"""
    ENV['MLFIN_HOME'] = str(home)
    r = measured([BIN/'mlfin', 'ingest', *(work/size/f"{s}.csv" for s in symbols), '--timeframe', size, '--calendar', 'XNYS'])
    if r['exit']: raise SystemExit("mlfin ingest failed:\n" + '\n'.join(line for *_, line in r['lines'][-20:]))
    return {**{k: r[k] for k in ('cpu', 'user', 'system', 'wall', 'maxrss_mb', 'tree_peak_mb', 'children')}, 'files': len(symbols)}


def mlfin_run(home: Path, size: str, symbols: list, spy: Path | None = None, stop_after: float | None = None,
              extra: tuple = ()) -> dict:
    "`mlfin run` of `symbols` at `size` in `home` with the run's models and folds, measured; its output parsed (`tasks`)"
    ENV['MLFIN_HOME'] = str(home)
    r = measured([BIN/'mlfin', 'run', '--symbols', ','.join(symbols), '--timeframe', size, '--models', ','.join(MODELS),
                  '--folds', str(FOLDS), '--reports', home/'reports', *extra], spy, stop_after)
    if r['exit'] and not r['stopped']:
        raise SystemExit(f"mlfin run failed (exit {r['exit']}):\n" + '\n'.join(line for *_, line in r['lines'][-30:]))
    return {**r, **tasks(r['lines'])}


def tasks(lines: list) -> dict:
    """mlfin's own account of a run, from its output: each task's seconds (`TASK done in S s`) and CPU (the process's,
    between the task's first and last line), the units each task counted (`(k/N)`), the tasks that ran"""
    out, starts = {'tasks': {}, 'units': {}, 'ran': None, 'first_cpu': None, 'last_cpu': None}, {}
    for _, cpu, line in lines:
        if m := re.fullmatch(r'mlfin: (\w+) \.\.\.', line):
            starts[m[1]] = cpu
            if out['first_cpu'] is None: out['first_cpu'] = cpu
        elif (m := re.fullmatch(r'mlfin: (\w+) done in ([\d.]+) s', line)) and m[1] in starts:
            out['tasks'][m[1]] = {'seconds': float(m[2]), 'cpu': cpu - starts[m[1]]}
            out['last_cpu'] = cpu
        elif m := re.match(r'mlfin: (\w+): .*\((\d+)/(\d+)\)', line): out['units'][m[1]] = (int(m[2]), int(m[3]))
        elif m := re.fullmatch(r'mlfin: \d+ task\(s\) ran \((.*)\) in ([\d.]+) s', line): out['ran'] = m[1]
    return out


def plain(size: str, symbols: list) -> dict:
    "The plain script on the same CSVs, measured; its JSON result"
    settings = json.dumps({m: model_spec(m).params for m in MODELS})   # models.yaml's settings, as the run uses them
    r = measured([sys.executable, PLAIN, work/size, ','.join(symbols), settings, '--folds', FOLDS,
                  '--cost-bps', sum(COST_PRESETS['equity'])])   # the equity preset's fees + slippage per fill
    if r['exit']: raise SystemExit("the plain script failed:\n" + '\n'.join(line for *_, line in r['lines'][-30:]))
    return {**r, 'result': json.loads(r['lines'][-1][2])}


# ---------------------------------------------------------------- what is printed

def load() -> str: return f"load average {os.getloadavg()[0]:.1f} on {CORES} cores"


def said(r: dict) -> str:
    return (f"CPU {r['cpu']:6.1f} s ({r['user']:.1f} user, {r['system']:.1f} system), wall {r['wall']:6.1f} s, "
            f"peak {r['maxrss_mb']:,.0f} MiB (largest process), {r['tree_peak_mb']:,.0f} MiB (tree, PSS sampled)"
            + (f"; processes it started: {', '.join(r['children'])}" if r.get('children') else ''))


def per_task(r: dict):
    "The run's CPU and seconds per task, beside its start (interpreter, imports, DAG) and its end (records, printing)"
    print(f"   {'task':<28} {'seconds':>8} {'CPU s':>8} {'of CPU':>7}   (seconds: mlfin's output; CPU: the run's process at its lines)")
    rows = []
    if r['first_cpu'] is not None: rows.append(('before the first task', None, r['first_cpu']))
    rows += [(name, t['seconds'], t['cpu']) for name, t in r['tasks'].items()]
    if r['last_cpu'] is not None: rows.append(('after the last task', None, r['cpu'] - r['last_cpu']))
    for name, seconds, cpu in rows:
        print(f"   {name:<28} {'' if seconds is None else f'{seconds:8.1f}':>8} {cpu:8.1f} {cpu / r['cpu']:7.1%}")
    print(f"   {'the whole process tree':<28} {r['wall']:8.1f} {r['cpu']:8.1f}", flush=True)


def same_work(p: dict, home: Path) -> str:
    "Whether the plain script scored the same rows, features, folds and models as mlfin: every out-of-sample AUC compared"
    board = pd.read_parquet(home/'run'/'leaderboard.parquet')
    diffs = [abs(row.auc - p['scores'][row.symbol][row.model]['auc']) for row in board.itertuples()]
    rows = [(row.n_scored, p['scores'][row.symbol][row.model]['rows']) for row in board.itertuples()]
    same = max(diffs) < 1e-9 and all(a == b for a, b in rows)
    return (f"the same work: every symbol x model's out-of-sample AUC equal ({len(diffs)} of them, largest difference "
            f"{max(diffs):.1e}, the same {rows[0][0]:,} rows scored a symbol)" if same else
            f"NOT the same work: AUCs differ by up to {max(diffs):.4f} (rows scored {rows}): the comparison below is unfair")


def reran(r: dict, home: Path) -> str:
    """What a run redid: tasks, features computed or read from the store, training units and books computed or read back
    (as train.json and backtest.json record them), models registered"""
    meta = (pq.read_schema(home/'run'/'dataset.parquet').metadata or {}).get(b'PANDAS_ATTRS')
    store = json.loads(meta).get('feature_store', {}) if meta else {}
    def units(task: str, what: str) -> str:
        kept = json.loads((home/'run'/f"{task}.json").read_text()).get('units') or {}
        return f"{len(kept.get('computed', []))} {what} computed, {len(kept.get('reused', []))} read back" if kept else '?'
    registered = f"{r['units']['report'][1]} symbols registered" if 'report' in r['units'] else 'none counted'
    return (f"tasks that ran: {r['ran'] or '?'}; feature store: {store.get('misses', '?')} computed, {store.get('hits', '?')} read; "
            f"training: {units('train', 'units (symbol x model)')}; backtest: {units('backtest', 'books')}; "
            f"report: {registered}")


def profile(raw: Path):
    """Where the run's CPU went, from py-spy's samples: by the call each task notebook's cell made, by the mlfin functions
    on the stack below it, by the library and by the function running at the moment"""
    if not raw.exists(): print("   profile: py-spy wrote nothing", flush=True); return
    calls, inclusive, own, library, total = {}, {}, {}, {}, 0
    name = lambda frame: re.sub(r':\d+\)$', ')', frame)   # a function, whatever its line
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(' ')
        frames = [f.strip() for f in stack.split(';')[1:] if f.strip()]   # the first names the process
        if not frames or not count.isdigit(): continue   # a line of the process's name, its command line broken
        n = int(count); total += n
        cell = next((i for i, f in enumerate(frames) if f.startswith('<module> (<ipython-input')), None)
        call = name(frames[cell + 1]) if cell is not None and cell + 1 < len(frames) else (
            "a cell's own lines" if cell is not None else 'outside the task cells (start, imports, the DAG, records)')
        calls[call] = calls.get(call, 0) + n
        for f in {name(f) for f in frames[cell + 1 if cell is not None else 0:] if '(mlfin/' in f}:   # below a cell's call
            inclusive[f] = inclusive.get(f, 0) + n
        own[name(frames[-1])] = own.get(name(frames[-1]), 0) + n
        where = re.search(r'\((.*?):\d+\)$', frames[-1])
        path = where[1] if where else '?'
        lib = path.split('/')[0] if '/' in path else 'Python (standard library)' if path.endswith('.py') else path
        library[lib] = library.get(lib, 0) + n
    if not total: print("   profile: no samples", flush=True); return
    share = lambda found, top: '\n'.join(f"     {v / total:6.1%}  {k[:130]}" for k, v in sorted(found.items(), key=lambda kv: -kv[1])[:top])
    print(f"   profile of this run (py-spy at 100 Hz: {total:,} samples of its Python threads while busy; the native threads\n"
          f"   of LightGBM's OpenMP are not sampled, their CPU is in the figures above). Share of samples by the call a task\n"
          f"   notebook's cell made:\n{share(calls, 12)}\n   by the mlfin functions on the stack below those calls (inclusive):\n"
          f"{share(inclusive, 15)}\n   by the library running at the moment (the innermost frame's):\n{share(library, 10)}\n"
          f"   by the function running at the moment (own time):\n{share(own, 12)}", flush=True)


# ---------------------------------------------------------------- the parts

def cost() -> dict:
    "1: 5 symbols of 5m, mlfin (ingests and run) beside the plain script, from the same CSVs"
    symbols, home = [SYMBOL(i) for i in range(COST_SYMBOLS)], work/'home-cost'
    print(f"\n1. cost: {COST_SYMBOLS} symbols x {YEAR} of 5m bars, {' + '.join(MODELS)}, {FOLDS} walk-forward folds ({load()})", flush=True)
    loaded = ingest(home, '5m', symbols)
    run = mlfin_run(home, '5m', symbols)
    theirs = plain('5m', symbols)
    ours = {'cpu': loaded['cpu'] + run['cpu'], 'maxrss_mb': max(loaded['maxrss_mb'], run['maxrss_mb']),
            'tree_peak_mb': max(loaded['tree_peak_mb'], run['tree_peak_mb'])}
    print(f"   mlfin ingest, {loaded['files']} files:  {said(loaded)}", flush=True)
    print(f"   mlfin run:                {said(run)}", flush=True)
    print(f"   the plain script:         {said(theirs)}", flush=True)
    print("     its phases, CPU s: " + ', '.join(f"{k} {v:.1f}" for k, v in theirs['result']['cpu'].items()), flush=True)
    print(f"   {same_work(theirs['result'], home)}", flush=True)
    per_task(run)
    cpu, memory = ours['cpu'] / theirs['cpu'], ours['maxrss_mb'] / theirs['maxrss_mb']
    print(f"   mlfin / the plain script, CSVs to results: CPU {ours['cpu']:.1f} / {theirs['cpu']:.1f} s = {cpu:.2f}x; "
          f"peak memory {ours['maxrss_mb']:,.0f} / {theirs['maxrss_mb']:,.0f} MiB = {memory:.2f}x "
          f"(tree peaks {ours['tree_peak_mb']:,.0f} / {theirs['tree_peak_mb']:,.0f} MiB)\n"
          f"   the run alone / the plain script: CPU {run['cpu'] / theirs['cpu']:.2f}x ({load()})", flush=True)
    target(f"{COST_SYMBOLS} symbols x 5m, CSVs to results: CPU, mlfin / the plain script", f"{cpu:.2f}x", f"<= {CPU_RATIO:g}x", cpu <= CPU_RATIO)
    target(f"{COST_SYMBOLS} symbols x 5m: peak memory (largest process), mlfin / the plain script", f"{memory:.2f}x",
           f"<= {MEMORY_RATIO:g}x", memory <= MEMORY_RATIO)
    return {'ingest': loaded, 'run': run, 'plain': theirs}


def growth():
    "2: a fresh home, 6 symbols ingested and run (profiled), then 2 more ingested and the run again with all 8"
    first, more, home = [SYMBOL(i) for i in range(GROW_FROM)], [SYMBOL(GROW_FROM + i) for i in range(GROW_BY)], work/'home-grow'
    print(f"\n2. growing the universe: {GROW_FROM} symbols of 5m in a fresh home, then {GROW_BY} more ({load()})", flush=True)
    spy = work/'profile-first-run.txt'
    a = ingest(home, '5m', first); one = mlfin_run(home, '5m', first, spy=spy)
    print(f"   first:  ingest of {GROW_FROM}: {said(a)}\n           run of {GROW_FROM}:    {said(one)}\n           {reran(one, home)}", flush=True)
    per_task(one)
    profile(spy)
    b = ingest(home, '5m', more); two = mlfin_run(home, '5m', first + more)
    print(f"   second: ingest of {GROW_BY}: {said(b)}\n           run of {GROW_FROM + GROW_BY}:    {said(two)}\n           {reran(two, home)}", flush=True)
    per_task(two)
    share = (b['cpu'] + two['cpu']) / (a['cpu'] + one['cpu'])
    print(f"   the second / the first: (ingest + run) {b['cpu'] + two['cpu']:.1f} / {a['cpu'] + one['cpu']:.1f} CPU s = {share:.2f}; "
          f"the runs alone {two['cpu'] / one['cpu']:.2f} ({load()})", flush=True)
    target(f"adding {GROW_BY} symbols to {GROW_FROM}: CPU of the second (ingest + run) / the first", f"{share:.2f}",
           f"<= {GROW_SHARE_TEXT}", share <= GROWTH_SHARE)


def ingest_to_report(size: str, symbols: list, limit: float | None) -> dict:
    "3: a fresh home, every symbol's CSV ingested, then the run: wall from the first ingest to the report (stopped at `limit`)"
    home = work/f'home-{size}-{len(symbols)}'
    loaded = ingest(home, size, symbols)
    run = mlfin_run(home, size, symbols, stop_after=None if limit is None else max(limit - loaded['wall'], 1.0),
                    extra=RECIPE)
    wall = loaded['wall'] + run['wall']
    reached = ''
    if run['stopped']:
        last = next((line for *_, line in reversed(run['lines']) if line.startswith('mlfin: ')), '')
        why = run['stopped'] if 'memory' in run['stopped'] else f"stopped {limit:,.0f} s after the first ingest ({STOP_AT:g}x the target)"
        reached = f"; {why}, its last line: {last!r}"
    print(f"   {len(symbols)} symbols of {size}: ingest {loaded['wall']:.0f} s ({loaded['cpu']:.0f} CPU s), run {run['wall']:.0f} s "
          f"({run['cpu']:.0f} CPU s, peak {run['maxrss_mb']:,.0f} MiB, tree {run['tree_peak_mb']:,.0f} MiB); from the first ingest "
          f"to the report {wall:.0f} s{reached}", flush=True)
    if not run['stopped']: per_task(run)
    return {'wall': wall, 'stopped': run['stopped'], 'ingest': loaded, 'run': run}


def minute(part1: dict):
    "3: 50 symbols x 1 year to the report, at 1m and 5m (full scale); a stated smaller scale at the quick one"
    if QUICK:
        n, first, last, months = STAND_IN
        made = write_universe(n, ('1m',), (first, last))
        print(f"\n3. minute research, at a smaller scale: {n} symbols x {months} {YEAR} of 1m bars ({made['bars']['1m']:,} a symbol, "
              f"SYNTHETIC, written in {made['seconds']:.0f} s; {load()})", flush=True)
        done = ingest_to_report('1m', [SYMBOL(i) for i in range(n)], None)
        not_measured(f"{UNIVERSE} symbols x 1 year of 1m, ingest to report: wall", f"<= {WALL_TARGETS['1m'] // 60} min",
                     f"{n} symbols x {months} of 1m took {done['wall']:.0f} s here", 'make bench-universe',
                     figure=f"{done['wall']:.0f} s ({n} x 2 months)")
        if part1 is not None:   # part 1 ran: its wall beside the 5m target
            five = part1['ingest']['wall'] + part1['run']['wall']
            not_measured(f"{UNIVERSE} symbols x 1 year of 5m, ingest to report: wall", f"<= {WALL_TARGETS['5m'] // 60} min",
                         f"{COST_SYMBOLS} symbols x 1 year of 5m took {five:.0f} s here (part 1)", 'make bench-universe',
                         figure=f"{five:.0f} s ({COST_SYMBOLS} x 1 year)")
        return
    print(f"\n3. minute research: {UNIVERSE} symbols x {YEAR}, from the first ingest to the report, a fresh home each; "
          f"a run still going at {STOP_AT:g}x its target is stopped ({load()})", flush=True)
    for size in ARGS.sizes.split(','):
        limit = WALL_TARGETS[size]
        done = ingest_to_report(size, [SYMBOL(i) for i in range(UNIVERSE)], STOP_AT * limit)
        figure = f"> {done['wall'] / 60:.1f} min (stopped)" if done['stopped'] else f"{done['wall'] / 60:.1f} min"
        target(f"{UNIVERSE} symbols x 1 year of {size}, ingest to report: wall", figure, f"<= {limit // 60} min",
               not done['stopped'] and done['wall'] <= limit)


def main():
    print(f"bench-universe: working in {work} (SYNTHETIC DATA, labelled: GARCH(1,1) minute bars with Student-t shocks on "
          f"NYSE's {YEAR} sessions, made here); {CORES} cores; both sides with OMP_WAIT_POLICY=PASSIVE, OMP_NUM_THREADS={CORES}, "
          f"LightGBM n_jobs as models.yaml says\ntargets: 5 symbols x 5m, mlfin <= {CPU_RATIO:g}x the plain script's CPU and "
          f"<= {MEMORY_RATIO:g}x its peak memory; adding {GROW_BY} symbols to {GROW_FROM} <= {GROW_SHARE_TEXT} the first run's CPU; "
          f"{UNIVERSE} symbols x 1 year ingest to report <= {WALL_TARGETS['1m'] // 60} min at 1m, <= {WALL_TARGETS['5m'] // 60} min at 5m", flush=True)
    scale(f"part 3 on {STAND_IN[0]} symbols x {STAND_IN[3]} {YEAR} of 1m, its targets not measured",
          f"part 3 on {UNIVERSE} symbols x {YEAR} of 1m and of 5m; parts 1 and 2 at the issue's sizes at both scales")
    parts = ARGS.part or PARTS
    wanted = {*(ARGS.sizes.split(',') if 'minute' in parts else ()), *(('5m',) if {'cost', 'growth'} & {*parts} else ())}
    sizes = ('5m',) if QUICK else tuple(sorted(wanted))
    made = write_universe(GROW_FROM + GROW_BY if QUICK or 'minute' not in parts else UNIVERSE, sizes)
    print(f"universe: {GROW_FROM + GROW_BY if QUICK else UNIVERSE} symbols x {YEAR}, "
          + ', '.join(f"{made['bars'][s]:,} {s} bars a symbol" for s in sizes) + f", SYNTHETIC, written in {made['seconds']:.0f} s", flush=True)
    part1 = cost() if 'cost' in parts else None
    if 'growth' in parts: growth()
    if 'minute' in parts: minute(part1)
    table()


if __name__ == '__main__':
    try: main()
    finally:
        if ARGS.keep: print(f"kept: {work}")
        else: shutil.rmtree(work, ignore_errors=True)
