"""Benchmark: the monitor's statistics beside plain scipy on the same arrays, in one run (`make bench-monitor`).

SYNTHETIC DATA (labelled): per model, 24 persistent inputs (AR(1), coefficients 0.5 to 0.999, as market features are) over
1M one-minute bars, generated here; the window watched is the last week (10,080 bars, `monitor.models.WINDOWS['1m']`), the
reference the rest. Real-data correctness lives in tests/test_monitor.py.

  ours:  `monitor.input_drift(reference, window, importance)` per model: PSI, scaled Wasserstein, KS per input, and each
         input's own bar from every past window of the same length (stride window/50), as `mlfin monitor` computes them
  scipy: the same statistics with plain numpy/scipy calls on the same arrays: `np.histogram` on the reference deciles for PSI,
         `scipy.stats.wasserstein_distance` / the reference's std, `scipy.stats.ks_2samp`, and the own bar from the same past
         windows, each window's PSI and distance by the same calls. That loop is too slow to run whole (each
         `wasserstein_distance` sorts the 1M-value history again), so it is timed on the first `PEER_WINDOWS` windows of each
         input and scaled to all of them: a projection, printed as such beside the part measured whole.
Target (issue 19): ours within 1.5x of the scipy path.
"""
import argparse, time
import numpy as np, pandas as pd
from scipy import stats

PEER_WINDOWS = 5


def inputs(n: int, k: int, rng) -> pd.DataFrame:
    "k AR(1) inputs of n values, coefficients spread over 0.5 .. 0.999 (vectorised with lfilter)"
    from scipy.signal import lfilter
    phis = np.linspace(0.5, 0.999, k)
    return pd.DataFrame({f"x{i}": lfilter([1.0], [1.0, -phi], rng.normal(size=n)) for i, phi in enumerate(phis)})


def peer(reference: np.ndarray, current: np.ndarray, window: int) -> tuple[float, float]:
    "Plain scipy for one input: (seconds measured for the window's statistics + PEER_WINDOWS past windows, seconds projected for all)"
    t = time.perf_counter()
    edges = np.quantile(reference, np.linspace(0, 1, 11))
    edges[0], edges[-1] = -np.inf, np.inf
    share = lambda x: np.clip(np.histogram(x, edges)[0] / len(x), 1e-4, None)
    r, c = share(reference), share(current)
    psi = float(np.sum((c - r) * np.log(c / r)))
    distance = stats.wasserstein_distance(current, reference) / reference.std()
    ks = stats.ks_2samp(reference, current)
    whole = time.perf_counter() - t
    starts = np.arange(0, len(reference) - window + 1, max(1, window // 50))
    t = time.perf_counter()
    scores = []
    for s in starts[:PEER_WINDOWS]:
        w = reference[s:s + window]
        rest = np.concatenate([reference[:s], reference[s + window:]])
        scores.append((float(np.sum((share(w) - share(rest)) * np.log(share(w) / share(rest)))),
                       stats.wasserstein_distance(w, rest) / rest.std()))
    each = (time.perf_counter() - t) / min(PEER_WINDOWS, len(starts))
    return whole + each * PEER_WINDOWS, whole + each * len(starts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--models', type=int, default=10); ap.add_argument('--bars', type=int, default=1_000_000)
    ap.add_argument('--inputs', type=int, default=24); ap.add_argument('--window', type=int, default=10_080)
    a = ap.parse_args()
    from mlfin.monitor import input_drift
    print(f"bench-monitor: {a.models} models x {a.inputs} inputs x {a.bars:,} one-minute bars (SYNTHETIC, labelled), "
          f"window {a.window:,} bars\n", flush=True)
    ours = peer_measured = peer_projected = 0.0
    rng = np.random.default_rng(0)
    for m in range(a.models):
        x = inputs(a.bars, a.inputs, rng)
        reference, current = x.iloc[:-a.window], x.iloc[-a.window:]
        importance = dict(zip(x.columns, rng.random(a.inputs)))
        t = time.perf_counter()
        found = input_drift(reference, current, importance)
        took = time.perf_counter() - t
        ours += took
        pm = pp = 0.0
        for col in x.columns:
            measured, projected = peer(reference[col].to_numpy(), current[col].to_numpy(), a.window)
            pm += measured; pp += projected
        peer_measured += pm; peer_projected += pp
        print(f"model {m + 1:2d}: ours {took:7.1f} s ({found.judged} inputs judged, {len(found.drifted())} drifted); "
              f"scipy {pm:6.1f} s measured ({PEER_WINDOWS} past windows an input), {pp:9.0f} s projected to all", flush=True)
    print(f"\nours (mlfin.monitor.input_drift): {ours:,.1f} s")
    print(f"plain scipy, projected to the same windows: {peer_projected:,.0f} s  (ratio ours / scipy {ours / peer_projected:.3f}; target <= 1.5)")
    print(f"plain scipy, only what was measured whole: {peer_measured:,.1f} s")


if __name__ == '__main__':
    main()
