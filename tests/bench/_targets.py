"""The benchmarks' common frame: the scale they run at, and their targets stated in one format.

Every bench runs at full scale (its own `make bench-*` target) or, with BENCH_SCALE=quick (what `make bench-all` sets), at
a stated smaller scale: each size is a constant beside its full one, picked by `sized(full, quick)` and said at the start
by `scale(...)` ("scale: quick (10M bars instead of 50M)"). The targets are the same at both scales. Each is stated by
`target(...)`: met or MISSED, from a figure measured in this run. A target that only means something at full scale (an
absolute size or time of the full workload, a memory ratio the interpreter's own memory dominates when the data is small)
is stated at the quick scale by `not_measured(...)`, never given a verdict. `table()`, the bench's last word, prints its rows as one table.
With BENCH_ROWS naming a file, every row is also appended to it as one line of JSON: `tests/bench/run_all.py` reads them
back from there, no printed text parsed.
"""
import json, os

SCALE = os.environ.get('BENCH_SCALE', 'full')
if SCALE not in ('full', 'quick'): raise SystemExit(f"BENCH_SCALE={SCALE!r}: say full (the default) or quick")
QUICK = SCALE == 'quick'
ROWS: list[dict] = []


def sized(full, quick):
    "The full size, or the quick one when BENCH_SCALE=quick"
    return quick if QUICK else full


def scale(quick: str, full: str):
    "Say the scale this run measures at: `quick` and `full` describe the work at each ('10M bars', '50M bars')"
    said = f"full ({full})" if not QUICK else f"quick = full ({full}: it takes little time)" if quick == full else f"quick ({quick} instead of {full})"
    print(f"scale: {said}", flush=True)


def target(name: str, figure: str, rule: str, met: bool, note: str = '') -> dict:
    "A target with the figure measured in this run (as printed: '1.42x') and the rule it is held to ('<= 2x'): met or MISSED"
    return _row(name, figure, rule, 'met' if met else 'MISSED', note)


def not_measured(name: str, rule: str, why: str, full: str, figure: str = '') -> dict:
    "A target that only means something at full scale, at the quick scale: no verdict; `why`, and the command that measures it (`full`)"
    return _row(name, figure or '-', rule, 'not measured', f"{why}; full scale: {full}")


def _row(name: str, figure: str, rule: str, verdict: str, note: str) -> dict:
    row = {'target': name, 'rule': rule, 'figure': figure, 'verdict': verdict, 'scale': SCALE, 'note': note}
    ROWS.append(row)
    print(f"TARGET  {name}: {figure} (target {rule}): {verdict}" + (f"  ({note})" if note else ''), flush=True)
    if path := os.environ.get('BENCH_ROWS'):
        with open(path, 'a') as f: f.write(json.dumps(row) + '\n')
    return row


def table():
    "The bench's end: print every target it stated as one table (target, rule, figure, verdict), and mark its rows complete"
    if ROWS:
        width = [max(len(r[k]) for r in ROWS) for k in ('target', 'rule', 'figure')]
        print(f"\ntargets at the {SCALE} scale:")
        for r in ROWS:
            print(f"  {r['target']:<{width[0]}}  {r['rule']:<{width[1]}}  {r['figure']:>{width[2]}}  {r['verdict']}", flush=True)
    if path := os.environ.get('BENCH_ROWS'):   # a bench that stops before this line crashed
        with open(path, 'a') as f: f.write(json.dumps({'end': True}) + '\n')
