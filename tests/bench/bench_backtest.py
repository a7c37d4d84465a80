"""Benchmark: a parameter sweep through our path beside what a user would write instead, in one run (`make bench-backtest`).

SYNTHETIC DATA (labelled): random-walk minute bars and a random, slightly persistent P(up) per bar, generated here; they
only give the code volume to chew on. Correctness (the sweep's numbers equal `simulate`'s) lives in nbs/05e_backtest.sweep.

  The sweep: 1,000 combinations (40 thresholds x 25 costs) over 20 symbols x 100,000 bars: long above the threshold, all
  in at the next open, fees and slippage on every fill; total return, Sharpe ratio, max drawdown and trades per combination.
    ours:              `mlfin.backtest.sweep` per symbol (one compiled pass over the combinations, running sums only)
    vectorbt, naive:   one `Portfolio.from_signals` per combination (the naive use of our own engine), on a subset of
                       combinations, scaled up linearly
    backtesting.py:    one `Backtest.run` per combination (the peer a user would otherwise write), on a subset, scaled up
  targets: at least 100x faster than backtesting.py, at least 3x faster than the naive vectorbt loop, peak memory under 8 GiB.
Each measurement runs in its own fresh process. Figures measured on the development machine go in the issue notes.
"""
import json, sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
from _child import child, SYNTH  # noqa: E402

SYMBOLS, BARS, THRESHOLDS, COSTS = 20, 100_000, 40, 25
SETUP = SYNTH + f'''
import sys, time, warnings
warnings.filterwarnings('ignore')
def universe(n_symbols={SYMBOLS}, n={BARS}):
    "SYNTHETIC: bars and a P(up) per symbol"
    out = []
    for i in range(n_symbols):
        bars = synthetic(n, seed=i)
        rng = np.random.default_rng(1000 + i)
        prob = pd.Series(0.5 + 0.1 * np.tanh(np.convolve(rng.normal(size=n), np.ones(5) / 5, mode='same')), index=bars.index)
        out.append((bars, prob))
    return out
thresholds = np.linspace(0.40, 0.60, {THRESHOLDS})
from mlfin.backtest.portfolio import Costs
costs = [Costs(fees=f, slippage=f / 2) for f in np.linspace(0, 12, {COSTS})]
combos = [(t, c) for t in thresholds for c in costs]
'''


def ours():
    code = SETUP + '''
from mlfin.backtest.sweep import sweep
data = universe()
t = time.perf_counter(); sweep(data[0][0].iloc[:1000], data[0][1].iloc[:1000], thresholds[:2], costs[:2]); compile_s = time.perf_counter() - t
t = time.perf_counter()
results = [sweep(bars, prob, thresholds, costs, periods_per_year=98_280) for bars, prob in data]
RESULT = {'seconds': time.perf_counter() - t, 'compile': compile_s, 'rows': sum(len(r) for r in results)}
'''
    return child(code)


def vectorbt_naive(symbols=2, per_symbol=10):
    code = SETUP + f'''
import vectorbt as vbt
data = universe({symbols})
picked = combos[::len(combos) // {per_symbol}][:{per_symbol}]
bars, prob = data[0]
vbt.Portfolio.from_signals(bars['close'].iloc[:100], entries=prob.iloc[:100] > 0.5, price=bars['open'].iloc[:100])  # compile outside the timer
t = time.perf_counter()
for bars, prob in data:
    for th, c in picked:
        want = (prob > th).shift(1, fill_value=False)
        pf = vbt.Portfolio.from_signals(bars['close'], entries=want, exits=~want, price=bars['open'], fees=c.fees / 1e4,
                                        slippage=c.slippage / 1e4, init_cash=1.0, freq='1min')
        pf.total_return(); pf.sharpe_ratio(); pf.max_drawdown(); pf.trades.count()
RESULT = {{'seconds': time.perf_counter() - t, 'runs': {symbols} * len(picked)}}
'''
    return child(code)


def backtesting_py(runs=2):
    code = SETUP + f'''
from backtesting import Backtest, Strategy
data = universe(1)
bars, prob = data[0]
frame = bars.rename(columns=str.capitalize)
class Above(Strategy):
    threshold = 0.5
    def init(self): self.p = prob.to_numpy()
    def next(self):
        i = len(self.data) - 1
        if self.p[i] > self.threshold:
            if not self.position: self.buy()
        elif self.position: self.position.close()
t = time.perf_counter()
for th, c in combos[::len(combos) // {runs}][:{runs}]:
    Backtest(frame, Above, cash=1e9, commission=(c.fees + c.slippage) / 1e4, finalize_trades=True).run(threshold=th)
RESULT = {{'seconds': time.perf_counter() - t, 'runs': {runs}}}
'''
    return child(code)


if __name__ == '__main__':
    total = SYMBOLS * THRESHOLDS * COSTS
    print(f"bench-backtest (SYNTHETIC data, labelled): {THRESHOLDS * COSTS:,} threshold x cost combinations over {SYMBOLS} symbols "
          f"x {BARS:,} bars = {total:,} backtests\n", flush=True)
    o = ours()
    print(f"   ours: {o['seconds']:.1f} s for all {o['rows']:,} ({o['seconds'] / total * 1e3:.2f} ms each; compile {o['compile']:.1f} s "
          f"in a fresh process, outside), peak {o['peak_mb']:,.0f} MiB", flush=True)
    v = vectorbt_naive()
    v_all = v['seconds'] / v['runs'] * total
    print(f"   vectorbt, one portfolio per combination: {v['seconds']:.1f} s for {v['runs']} -> {v_all:,.0f} s for all (scaled), "
          f"peak {v['peak_mb']:,.0f} MiB", flush=True)
    b = backtesting_py()
    b_all = b['seconds'] / b['runs'] * total
    print(f"   backtesting.py, one run per combination: {b['seconds']:.1f} s for {b['runs']} -> {b_all:,.0f} s for all (scaled), "
          f"peak {b['peak_mb']:,.0f} MiB", flush=True)
    r_b, r_v = b_all / o['seconds'], v_all / o['seconds']
    print(f"\n   ours against backtesting.py: {r_b:,.0f}x (target >= 100x): {'met' if r_b >= 100 else 'MISSED'}")
    print(f"   ours against the naive vectorbt loop: {r_v:,.1f}x (target >= 3x): {'met' if r_v >= 3 else 'MISSED'}")
    print(f"   peak memory {o['peak_mb'] / 1024:.2f} GiB (target < 8 GiB): {'met' if o['peak_mb'] < 8192 else 'MISSED'}")
    print(json.dumps({'ours_s': o['seconds'], 'vectorbt_s': v_all, 'backtesting_py_s': b_all, 'vs_backtesting_py': r_b,
                      'vs_vectorbt': r_v, 'peak_mb': o['peak_mb']}))
