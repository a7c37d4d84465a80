"""Benchmark: the Keras LSTM on the GPU beside the same model on the CPU, in one run (`make bench-gpu`, on a machine with an NVIDIA GPU).

SYNTHETIC DATA (labelled): random features and a label that leans on a few of them (the LSTM bench's rows, `bench_models.py`),
generated here; they give the code volume and something to learn. Correctness lives in the tests.

  1. where:   `resolve_device('auto')` picks the GPU the driver reports, and JAX sees it
  2. LSTM:    `LSTMModel.fit` of a classifier, 5 epochs, batch 256, on WINDOWS windows of 20 rows x 20 features, once with
              device 'cpu' (JAX pinned to the CPU) and once with 'cuda' (JAX's own choice: the GPU); held-out AUC of each, and
              how far their P(up) differ (the GPU's arithmetic is not the CPU's to the bit)
              targets: the GPU's model learns what the CPU's does (held-out AUC within 0.02 of it, and above 0.55: it learnt);
              the GPU's repeated fit at least as fast as the CPU's
  3. forecast: the LSTM regressor on SYNTHETIC one-minute returns (a random walk under GARCH(1,1) volatility, as the crypto
              desk's test makes them), its inputs the last 5 returns and their rolling volatility, on each device: its held-out
              MAE over the random walk's ("the same as now")
              target: within 1.05x of the random walk on both devices (on a random walk nothing beats it; a model far worse
              than it learnt noise)
XGBoost's CUDA build is the other GPU path (`MLFIN_ENV=gpu make setup`); its wheel is too large to carry to a machine without
a package index, so it is said, not measured, where none is installed.
"""
import os, sys, time
from pathlib import Path
os.environ.setdefault('KERAS_BACKEND', 'jax')
os.environ.setdefault('XLA_PYTHON_CLIENT_PREALLOCATE', 'false')   # JAX takes GPU memory as it needs it, as the mlfin-gpu kernel does
sys.path.insert(0, str(Path(__file__).parent))
import numpy as np  # noqa: E402
from _targets import not_measured, sized, table, target  # noqa: E402

WINDOWS = sized(50_000, 20_000)


def synthetic_rows(n: int, k: int, seed: int = 0, signal: float = 0.3):
    "SYNTHETIC: n rows of k features, a label leaning on four of them (labelled: benchmark filler only)"
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, k))
    logit = signal * (X[:, 0] + 0.5 * X[:, 1] - 0.5 * X[:, 2] * X[:, 3])
    return X, (rng.random(n) < 1 / (1 + np.exp(-logit))).astype('float64')


def where():
    import jax
    from mlfin.config import gpu_available
    from mlfin.models.core import resolve_device
    chosen, devices = resolve_device('auto'), [str(d) for d in jax.devices()]
    print(f"1. where: the driver reports a GPU: {gpu_available()}; --device auto resolves to {chosen}; JAX sees {devices}", flush=True)
    target('--device auto on a GPU machine', chosen, "'cuda'", chosen == 'cuda')
    if chosen != 'cuda': table(); raise SystemExit("bench-gpu: no GPU here (the NVIDIA driver reports none): run it on a GPU host")
    return chosen


def lstm():
    from sklearn.metrics import roc_auc_score
    from mlfin.models import model_spec
    print(f"2. LSTM: {WINDOWS:,} windows of 20 rows x 20 features (SYNTHETIC), 5 epochs, batch 256, on the CPU and on the GPU", flush=True)
    X, y = synthetic_rows(WINDOWS + 20 + WINDOWS // 4, 20)
    train, test = np.arange(19, WINDOWS + 19), np.arange(WINDOWS + 19, len(X))
    spec = model_spec('lstm', {'window': 20, 'units': 16, 'epochs': 5, 'batch_size': 256})
    found = {}
    for device in ('cpu', 'cuda'):
        times = []
        for seed in (0, 0):   # the first fit compiles; the second is what each further fold costs
            started = time.perf_counter()
            model = spec.make('classifier', seed=seed, device=device).fit(X, y, train)
            times.append(time.perf_counter() - started)
        prob = model.predict(X, test)
        found[device] = {'first': times[0], 'again': times[1], 'prob': prob, 'auc': roc_auc_score(y[test], prob)}
        print(f"   {device}: first fit {times[0]:.2f} s, repeated {times[1]:.2f} s ({len(train) * 5 / times[1]:,.0f} samples/s); "
              f"held-out AUC {found[device]['auc']:.4f}", flush=True)
    cpu, gpu = found['cpu'], found['cuda']
    print(f"   P(up), GPU against CPU: largest difference {np.max(np.abs(cpu['prob'] - gpu['prob'])):.2e}", flush=True)
    target('LSTM on the GPU learns what it learns on the CPU (held-out AUC)', f"{gpu['auc']:.4f} vs {cpu['auc']:.4f}",
           'within 0.02, above 0.55', abs(gpu['auc'] - cpu['auc']) <= 0.02 and gpu['auc'] > 0.55)
    speed = cpu['again'] / gpu['again']
    target('LSTM repeated fit, GPU over CPU speed', f"{speed:.2f}x", '>= 1x', speed >= 1)


def garch_returns(n: int, seed: int = 7) -> np.ndarray:
    "SYNTHETIC: one-minute log returns, Student-t (5) shocks under GARCH(1,1) volatility (omega 2e-8, alpha 0.08, beta 0.9)"
    rng, omega, alpha, beta = np.random.default_rng(seed), 2e-8, 0.08, 0.9
    var, r = omega / (1 - alpha - beta), np.empty(n)
    for i in range(n):
        r[i] = np.sqrt(var) * rng.standard_t(5) * np.sqrt(3 / 5)
        var = omega + alpha * r[i] ** 2 + beta * var
    return r


def forecast():
    import pandas as pd
    from mlfin.models import model_spec
    print(f"3. forecast: the LSTM regressor on {WINDOWS:,} one-minute returns (SYNTHETIC: a GARCH random walk), on the CPU and on the GPU", flush=True)
    r = pd.Series(garch_returns(WINDOWS + WINDOWS // 4 + 60))
    X = np.column_stack([r.shift(k).to_numpy() for k in range(5)] + [r.rolling(20).std().to_numpy()])   # known at each bar's close
    y = r.shift(-1).to_numpy()   # the next bar's return
    usable = np.flatnonzero(~np.isnan(X).any(axis=1) & ~np.isnan(y))
    train, test = usable[:WINDOWS], usable[WINDOWS:]
    for device in ('cpu', 'cuda'):
        model = model_spec('lstm', {'window': 20, 'units': 16, 'epochs': 5}).make('regressor', seed=0, device=device).fit(X, y, train)
        pred = model.predict(X, test)
        keep = ~np.isnan(pred)
        ratio = np.mean(np.abs(pred[keep] - y[test][keep])) / np.mean(np.abs(y[test][keep]))
        print(f"   {device}: held-out MAE {ratio:.4f}x the random walk's", flush=True)
        target(f"LSTM regressor on a random walk, {device}: MAE over the random walk's", f"{ratio:.4f}x", '<= 1.05x', ratio <= 1.05)


if __name__ == '__main__':
    where()
    lstm()
    forecast()
    try:
        import xgboost  # noqa: F401
        not_measured('XGBoost on the GPU', 'device=cuda trains', 'not part of this bench yet', 'make bench-models on a GPU host')
    except ImportError:
        not_measured('XGBoost on the GPU', 'device=cuda trains', "xgboost is not installed here (its CUDA wheel is the GPU setup's)",
                     'MLFIN_ENV=gpu make setup, then make bench-models on the GPU host')
    table()
