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
