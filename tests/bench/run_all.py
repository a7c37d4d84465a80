"""Every benchmark at its quick scale, one after another, and one table of their targets (`make bench-all`).

Each bench runs as `make bench-*` runs it, in a child process of its own with BENCH_SCALE=quick: the sizes it states at
its start ("scale: quick (10M bars instead of 50M)"), its targets unchanged. Each states its targets through `_targets`
(met, MISSED, or not measured at this scale with the command that measures it), which appends them to a file this driver
hands it (BENCH_ROWS): nothing printed is parsed. A bench's own output goes to reports/bench-<scale>/<bench>.log.
At the end: one table (bench, target, rule, figure, verdict), each bench's wall seconds and the total; the same as JSON in
reports/bench-<scale>.json, so the latest figures are there whenever anyone asks.
A missed target is a figure, reported; a bench that crashed (exited without stating its targets table, or timed out) makes
the exit status non-zero.

    .venv/bin/python tests/bench/run_all.py [--only bench-data,bench-ops] [--scale full]
"""
import argparse, datetime, json, os, platform, resource, subprocess, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
# (the make target, its script): the Makefile's order
BENCHES = [('bench', 'bench_pipeline.py'), ('bench-data', 'bench_data.py'), ('bench-features', 'bench_features.py'),
           ('bench-models', 'bench_models.py'), ('bench-backtest', 'bench_backtest.py'), ('bench-service', 'bench_service.py'),
           ('bench-monitor', 'bench_monitor.py'), ('bench-scale', 'bench_scale.py'), ('bench-dashboards', 'bench_dashboards.py'),
           ('bench-ops', 'bench_ops.py'), ('bench-universe', 'bench_universe.py'),
           ('bench-cross-section', 'bench_cross_section.py')]
PATIENCE = 1800   # seconds a bench may run before it counts as crashed (a hang guard, not a target)
LONGER = {('bench-universe', 'full'): 4800}   # its full scale runs 50 symbols of 1m and of 5m to their reports (up to 40 min)


def run(name: str, script: str, scale: str, logs: Path) -> dict:
    "One bench in a child process at `scale`: its targets (the rows it stated), wall seconds, and whether it finished"
    rows_file = Path(tempfile.mkstemp(prefix=f'{name}-', suffix='.jsonl')[1])
    log = logs/f'{name}.log'
    env = {**os.environ, 'BENCH_SCALE': scale, 'BENCH_ROWS': str(rows_file), 'PYTHONUNBUFFERED': '1', 'PLOOMBER_STATS_ENABLED': 'false'}
    now = lambda: datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')
    cpu = lambda: (lambda u: u.ru_utime + u.ru_stime)(resource.getrusage(resource.RUSAGE_CHILDREN))
    when, load, cpu0, started = now(), os.getloadavg()[0], cpu(), time.perf_counter()
    with open(log, 'w') as out:
        try: code = subprocess.run([sys.executable, str(HERE/script)], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   timeout=LONGER.get((name, scale), PATIENCE)).returncode
        except subprocess.TimeoutExpired: code = None
    seconds, cpu_seconds = time.perf_counter() - started, cpu() - cpu0
    lines = [json.loads(line) for line in rows_file.read_text().splitlines() if line.strip()]
    rows_file.unlink()
    finished = any(r.get('end') for r in lines)
    # a bench may exit non-zero for a missed target (bench-dashboards does); it crashed if it never stated its whole table
    status = 'timed out' if code is None else 'ok' if finished else f'crashed (exit {code})'
    # CPU: the bench's and every process it waited for (a server it started and stopped included); the load average beside it says
    # how much else this machine ran meanwhile
    return {'bench': name, 'command': f"make {name}", 'script': f"tests/bench/{script}", 'measured': when, 'seconds': seconds,
            'cpu_seconds': cpu_seconds, 'load_before': load, 'load_after': os.getloadavg()[0], 'exit': code, 'status': status,
            'log': str(log.relative_to(ROOT)), 'targets': [r for r in lines if not r.get('end')]}


def tail(log: Path, n: int = 15) -> str:
    return '\n'.join('      ' + line for line in log.read_text(errors='replace').splitlines()[-n:])


def print_table(results: list[dict], scale: str, total: float):
    rows = [(r['bench'], t['target'], t['rule'], t['figure'], t['verdict']) for r in results for t in r['targets']]
    rows += [(r['bench'], '(the bench itself)', '', '', r['status']) for r in results if r['status'] != 'ok']
    heads = ('bench', 'target', 'rule', 'figure', 'verdict')
    width = [max(len(x[i]) for x in [heads, *rows]) for i in range(5)]
    line = lambda x: '  '.join(f"{v:>{w}}" if i == 3 else f"{v:<{w}}" for i, (v, w) in enumerate(zip(x, width))).rstrip()
    print(f"\nevery benchmark at the {scale} scale: targets, figures measured now, verdicts\n")
    print(line(heads)); print(line(['-' * w for w in width]))
    for x in rows: print(line(x))
    count = lambda v: sum(1 for x in rows if x[4] == v)
    print(f"\n{count('met')} met, {count('MISSED')} MISSED, {count('not measured')} not measured at this scale")
    for r in results:
        for t in r['targets']:
            if t['verdict'] == 'not measured': print(f"  not measured: {r['bench']}, {t['target']}: {t['note']}")
    print(f"\n{'bench':<18} {'wall (s)':>9} {'CPU (s)':>8} {'load before':>12}  status")
    for r in results: print(f"{r['bench']:<18} {r['seconds']:9.0f} {r['cpu_seconds']:8.0f} {r['load_before']:12.1f}  {r['status']}")
    print(f"{'total':<18} {total:9.0f} {sum(r['cpu_seconds'] for r in results):8.0f}  ({total / 60:.1f} min on {os.cpu_count()} cores; "
          f"a load average above {os.cpu_count()} means something else shared them)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--only', help='comma-separated make targets to run (bench, bench-data, ...); all by default')
    ap.add_argument('--scale', choices=['quick', 'full'], default='quick')
    a = ap.parse_args()
    chosen = [b for b in BENCHES if not a.only or b[0] in a.only.split(',')]
    if a.only and (unknown := set(a.only.split(',')) - {b[0] for b in BENCHES}): raise SystemExit(f"no such bench: {', '.join(sorted(unknown))}")
    logs = ROOT/'reports'/f'bench-{a.scale}'
    logs.mkdir(parents=True, exist_ok=True)
    when = datetime.datetime.now(datetime.timezone.utc)
    print(f"{len(chosen)} benchmarks at the {a.scale} scale, one after another; each one's output in {logs.relative_to(ROOT)}/", flush=True)
    results, started = [], time.perf_counter()
    for name, script in chosen:
        print(f"  {name:<18}", end=' ', flush=True)
        r = run(name, script, a.scale, logs)
        verdicts = [t['verdict'] for t in r['targets']]
        print(f"{r['seconds']:6.0f} s  {r['status']}: " + ', '.join(f"{verdicts.count(v)} {v}" for v in ('met', 'MISSED', 'not measured') if v in verdicts),
              flush=True)
        if r['status'] != 'ok': print(f"    the end of {r['log']}:\n{tail(ROOT/r['log'])}", flush=True)
        results.append(r)
    total = time.perf_counter() - started
    print_table(results, a.scale, total)
    try: commit = subprocess.run(['git', 'describe', '--always', '--dirty'], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except OSError: commit = ''
    out = ROOT/'reports'/f'bench-{a.scale}.json'
    ran = {r['bench'] for r in results}
    kept = [b for b in json.loads(out.read_text())['benches'] if b['bench'] not in ran] if out.exists() and a.only else []
    order = [name for name, _ in BENCHES]
    record = {'scale': a.scale, 'started': when.isoformat(timespec='seconds'), 'total_seconds': total, 'commit': commit,
              'host': platform.node(), 'cores': os.cpu_count(), 'ran': sorted(ran, key=order.index),
              'benches': sorted(results + kept, key=lambda b: order.index(b['bench']))}   # with --only, the others' latest figures kept
    out.write_text(json.dumps(record, indent=1) + '\n')
    print(f"\nthe table as JSON: {out.relative_to(ROOT)}")
    return 0 if all(r['status'] == 'ok' for r in results) else 1


if __name__ == '__main__':
    sys.exit(main())
