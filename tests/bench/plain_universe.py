"""The plain script a researcher would write instead of mlfin (bench_universe.py runs it beside `mlfin run`, issue 67).

pandas + TA-Lib + LightGBM, nothing of mlfin imported: each symbol's CSV read, the 22 research features of mlfin's
`research` spec computed with TA-Lib and made scale-free the way mlfin makes them (prices relative to the close,
volumes relative to volume), the label (1 when the next bar closes higher), logistic regression (standardised inputs)
and LightGBM on 5 walk-forward folds (each trained on the rows before its test block, purged of every row whose label
reaches into it), out-of-sample AUC per symbol and model, and a one-bar-hold backtest of each symbol's better model
(long from the next bar's open to the open after when P(up) > threshold, fees and slippage paid on every change of
position) with an equal-weight portfolio of them. No final refit on all rows, no records, no reports.

    python tests/bench/plain_universe.py FOLDER SYMBOL,... MODELS_JSON [--folds 5] [--threshold 0.55] [--cost-bps 3]

MODELS_JSON: {"logistic": {...}, "lightgbm": {...}}, the hyperparameters (the bench passes models.yaml's). The last
line printed is one line of JSON: each symbol and model's out-of-sample AUC and rows, the backtest's figures, and the
CPU seconds of each phase.
"""
import argparse, json, time
import numpy as np, pandas as pd, talib
from lightgbm import LGBMClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def features(b: pd.DataFrame) -> pd.DataFrame:
    "The research spec's 22 features, each scale-free: prices relative to the close, volumes relative to volume"
    o, h, l, c, v = (b[k].to_numpy('float64') for k in ('open', 'high', 'low', 'close', 'volume'))
    close, volume = b['close'], b['volume'].replace(0.0, np.nan)
    level = lambda x: x / c - 1                                    # a price level: relative to the close
    spread = lambda x: x / c                                       # a price difference: relative to the close
    flow = lambda x: pd.Series(x, index=b.index).diff(20) / volume.rolling(20).sum()   # a cumulative volume line
    macd, signal, hist = talib.MACD(c, 12, 26, 9)
    slowk, slowd = talib.STOCH(h, l, c, 5, 3, 0, 3, 0)
    upper, middle, lower = talib.BBANDS(c, 20, 2, 2)
    x = pd.DataFrame({
        'rsi_14': talib.RSI(c, 14), 'macd_12_26_9': spread(macd), 'macd_12_26_9_signal': spread(signal),
        'macd_12_26_9_hist': spread(hist), 'mom_14': spread(talib.MOM(c, 14)), 'roc_10': talib.ROC(c, 10),
        'willr_14': talib.WILLR(h, l, c, 14), 'stoch_slowk': slowk, 'stoch_slowd': slowd,
        'sma_20': level(talib.SMA(c, 20)), 'ema_50': level(talib.EMA(c, 50)), 'adx_14': talib.ADX(h, l, c, 14),
        'aroonosc_14': talib.AROONOSC(h, l, 14), 'bbands_20_2_upper': level(upper), 'bbands_20_2_middle': level(middle),
        'bbands_20_2_lower': level(lower), 'atr_14': spread(talib.ATR(h, l, c, 14)), 'natr_14': talib.NATR(h, l, c, 14),
        'historical_vol_21': talib.STDDEV(np.log(close).diff().to_numpy(), 21, 1.0),
        'returns': close.pct_change(1, fill_method=None), 'returns_5': close.pct_change(5, fill_method=None),
        'log_returns': np.log(close).diff(), 'close__z_20': (close - close.rolling(20).mean()) / close.rolling(20).std(),
        'volume_ma': volume / talib.SMA(v, 20) - 1, 'obv': flow(talib.OBV(c, v)), 'mfi_14': talib.MFI(h, l, c, v, 14),
        'ad': flow(talib.AD(h, l, c, v)),
    }, index=b.index)
    return x.replace([np.inf, -np.inf], np.nan)


def folds(times: np.ndarray, ends: np.ndarray, n_folds: int):
    "Walk-forward: n_folds test blocks at the end, each trained on the rows before it whose label ends before it starts"
    n = len(times)
    size = n // (n_folds + 1)
    for k in range(n_folds):
        first, last = n - (n_folds - k) * size, n - (n_folds - k - 1) * size - 1
        yield np.flatnonzero(ends[:first] < times[first]), np.arange(first, last + 1)   # purged by the label's span


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('folder'); ap.add_argument('symbols'); ap.add_argument('models')
    ap.add_argument('--folds', type=int, default=5); ap.add_argument('--threshold', type=float, default=0.55)
    ap.add_argument('--cost-bps', type=float, default=3.0, help='fees + slippage per fill, bps')
    a = ap.parse_args()
    settings = json.loads(a.models)
    make = {'logistic': lambda: make_pipeline(StandardScaler(), LogisticRegression(**settings['logistic'])),
            'lightgbm': lambda: LGBMClassifier(**settings['lightgbm'], random_state=0, deterministic=True,
                                               force_row_wise=True, verbose=-1)}
    phases = dict.fromkeys(('read', 'features', 'train', 'backtest'), 0.0)
    tick = lambda phase, t0: phases.__setitem__(phase, phases[phase] + time.process_time() - t0) or time.process_time()
    scores, books = {}, {}
    for symbol in a.symbols.split(','):
        t = time.process_time()
        bars = pd.read_csv(f"{a.folder}/{symbol}.csv", index_col='ts', parse_dates=['ts']).astype('float64')
        t = tick('read', t)
        x = features(bars)
        up = (bars['close'].shift(-1) > bars['close']).astype('float64').where(bars['close'].shift(-1).notna())
        ends = pd.Series(bars.index, index=bars.index).shift(-1)   # the bar each label looks at
        rows = x.notna().all(axis=1).to_numpy()
        X, y = x[rows].to_numpy(), up[rows].to_numpy()
        times, label_ends = bars.index[rows].to_numpy(), ends[rows].to_numpy()
        t = tick('features', t)
        out = {name: np.full(len(y), np.nan) for name in make}
        for train, test in folds(times, label_ends, a.folds):
            train = train[~np.isnan(y[train])]
            for name, model in make.items():
                out[name][test] = model().fit(X[train], y[train].astype(int)).predict_proba(X[test])[:, 1]
        tested = ~np.isnan(out['logistic']) & ~np.isnan(y)
        scores[symbol] = {name: {'auc': roc_auc_score(y[tested], p[tested]), 'rows': int(tested.sum())} for name, p in out.items()}
        t = tick('train', t)
        best = max(scores[symbol], key=lambda m: scores[symbol][m]['auc'])
        prob = pd.Series(out[best], index=bars.index[rows]).dropna()
        held = (prob > a.threshold).astype('float64').reindex(bars.index).shift(1)   # decided at t's close, held from t+1's open
        opens = bars['open']
        move = (opens.shift(-1) / opens - 1).loc[prob.index[0]:]   # one bar: this open to the next
        held = held.loc[move.index].fillna(0.0)
        net = held * move - held.diff().abs().fillna(held.iloc[0]) * a.cost_bps / 1e4
        books[symbol] = net.fillna(0.0)
        tick('backtest', t)
    t = time.process_time()
    returns = pd.DataFrame(books).fillna(0.0)
    per_year = len(returns) / ((returns.index[-1] - returns.index[0]).days / 365.25)
    sharpe = lambda r: float(r.mean() / r.std() * np.sqrt(per_year)) if r.std() > 0 else float('nan')
    book = {s: {'return': float((1 + r).prod() - 1), 'sharpe': sharpe(r)} for s, r in books.items()}
    portfolio = returns.mean(axis=1)
    book['PORTFOLIO'] = {'return': float((1 + portfolio).prod() - 1), 'sharpe': sharpe(portfolio)}
    tick('backtest', t)
    print(json.dumps({'scores': scores, 'backtest': book, 'cpu': phases}))


if __name__ == '__main__':
    main()
