"Shared by the benchmarks: a measured step in a fresh Python, and the SYNTHETIC bars they chew on."
import json, subprocess, sys, textwrap, time


def child(code: str, *args) -> dict:
    "Run `code` in a fresh Python; it sets RESULT (a dict), printed as one JSON line with its peak memory (ru_maxrss)"
    wrapper = textwrap.dedent(code) + textwrap.dedent('''
        import json, resource, sys
        print(json.dumps({**RESULT, 'peak_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
    ''')
    started = time.perf_counter()
    done = subprocess.run([sys.executable, '-c', wrapper, *map(str, args)], capture_output=True, text=True)
    if done.returncode: raise SystemExit(f"benchmark step failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result.setdefault('seconds', time.perf_counter() - started)
    return result


SYNTH = '''
import numpy as np, pandas as pd
def synthetic(n, first='2010-01-01', seed=0):
    "SYNTHETIC: a random walk of one-minute bars (labelled: benchmark filler only)"
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 3e-4, n)))
    spread = np.abs(rng.normal(0, 2e-4, n)) * close
    open_ = np.r_[close[0], close[:-1]]
    return pd.DataFrame({'open': open_, 'high': np.maximum(open_, close) + spread, 'low': np.minimum(open_, close) - spread,
                         'close': close, 'volume': rng.integers(1, 1000, n).astype('float64')},
                        index=pd.date_range(first, periods=n, freq='1min', tz='UTC', name='ts'))
'''


def write_synthetic(folder, n_symbols: int, n_bars: int) -> dict:
    "SYNTHETIC one-minute bars S000.parquet, S001.parquet ... (seed = the symbol's number) written into `folder` by a fresh Python"
    return child(SYNTH + '''
import sys
from pathlib import Path
folder, n_symbols, n = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
folder.mkdir(parents=True)
for i in range(n_symbols): synthetic(n, seed=i).to_parquet(folder/f"S{i:03d}.parquet")
RESULT = {}
''', folder, n_symbols, n_bars)


def production_model(env: dict, reports, why: str) -> float:
    "A real production model for a benchmark's home (env's MLFIN_HOME): LightGBM trained by the pipeline on the embedded S&P 500 daily bars, promoted by hand; seconds"
    from pathlib import Path
    root, mlfin = Path(__file__).resolve().parents[2], str(Path(sys.executable).parent/'mlfin')
    started = time.perf_counter()
    subprocess.run([mlfin, 'run', '--symbols', 'SPX', '--models', 'lightgbm', '--folds', '3', '--promote-min-auc', '0',
                    '--promote-min-sharpe', '-100', '--reports', str(reports)], cwd=root, env=env, check=True, capture_output=True)
    # the promotion policy may refuse it (a daily model's probabilities rarely beat the base rate): a person promotes it here
    subprocess.run([mlfin, 'models', 'promote', 'SPX:1d', '--reason', why], cwd=root, env=env, check=True, capture_output=True)
    return time.perf_counter() - started
