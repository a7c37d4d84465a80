"""Benchmark: a parameter sweep through our path beside what a user would write instead, in one run (`make bench-backtest`).

SYNTHETIC DATA (labelled): random-walk minute bars and a random, slightly persistent P(up) per bar, generated here; they
only give the code volume to chew on. Correctness (the sweep's numbers equal `simulate`'s) lives in nbs/07e_backtest.sweep.

  The sweep: 1,000 combinations (40 thresholds x 25 costs) over 20 symbols x 100,000 bars: long above the threshold, all
  in at the next open, fees and slippage on every fill; total return, Sharpe ratio, max drawdown and trades per combination.
    ours:              `mlfin.backtest.sweep` per symbol (one compiled pass over the combinations, running sums only)
    vectorbt, naive:   one `Portfolio.from_signals` per combination (the naive use of our own engine), on a subset of
                       combinations, scaled up linearly; its own total_return, sharpe_ratio, max_drawdown and trade count.
                       The peer gets bars without a time zone: with our UTC index, under pandas 3, every vectorbt result
                       it wraps turns the index into Timestamp objects first (1.2 s per 100k bars a call; mlfin's own use
                       of vectorbt avoids it, see `backtest.portfolio._vbt`), and the peer is not charged for that
    backtesting.py:    one `Backtest.run` per combination (the peer a user would otherwise write), on a subset, scaled up
  targets: at least 100x faster than backtesting.py, at least 3x faster than the naive vectorbt loop, peak memory under 8 GiB.
Each measurement runs in its own fresh process. Figures measured on the development machine go in the issue notes.
BENCH_SCALE=quick (`make bench-all`): the full scale, which takes some 15 s on the 2-core machine.
"""
import json, sys
import numpy as np
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
from _child import child, SYNTH  # noqa: E402
from _targets import scale, table, target  # noqa: E402

SYMBOLS, BARS, THRESHOLDS, COSTS = 20, 100_000, 40, 25   # quick as full: the whole bench takes seconds
CHECKED, PICKED = 2, 50   # the symbols and combinations the naive vectorbt loop runs
BT_RUNS = 4               # the combinations backtesting.py runs (on one symbol)
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
CHECKED, PICKED = {CHECKED}, range(0, len(combos), len(combos) // {PICKED})  # the symbols and combinations the naive vectorbt loop runs
'''


def ours():
    code = SETUP + '''
from mlfin.backtest.sweep import sweep_grid
data = universe()
t = time.perf_counter(); sweep_grid(data[0][0].iloc[:1000], data[0][1].iloc[:1000], thresholds[:2], costs[:2]); compile_s = time.perf_counter() - t
t = time.perf_counter()
results = [sweep_grid(bars, prob, thresholds, costs, periods_per_year=98_280) for bars, prob in data]
RESULT = {'seconds': time.perf_counter() - t, 'compile': compile_s, 'rows': sum(len(r) for r in results),
          'check': [r.iloc[list(PICKED)].to_numpy().tolist() for r in results[:CHECKED]]}  # the rows the peers also ran
'''
    return child(code)


def vectorbt_naive():
    code = SETUP + f'''
import vectorbt as vbt
data = universe(CHECKED)
picked = [combos[k] for k in PICKED]
data = [(bars.tz_localize(None), prob.tz_localize(None)) for bars, prob in data]  # no zone: see the module's docstring
def one(bars, prob, th, c):
    want = (prob > th).shift(1, fill_value=False)
    pf = vbt.Portfolio.from_signals(bars['close'], entries=want, exits=~want, price=bars['open'], fees=c.fees / 1e4,
                                    slippage=c.slippage / 1e4, init_cash=1e12, freq='1min')  # ample cash: a strategy losing nearly all keeps trading
    return pf.total_return(), pf.sharpe_ratio(year_freq=pd.Timedelta(minutes=98_280)), pf.max_drawdown(), pf.trades.count()
bars, prob = data[0]
one(bars.iloc[:1000], prob.iloc[:1000], *picked[0])  # every kernel compiled outside the timer, with the timed call's types
t = time.perf_counter()
rows = [[list(map(float, one(bars, prob, th, c))) for th, c in picked] for bars, prob in data]
RESULT = {{'seconds': time.perf_counter() - t, 'runs': CHECKED * len(picked), 'trades': int(sum(r[3] for s in rows for r in s)),
          'check': rows}}
'''
    return child(code)


def backtesting_py(runs=BT_RUNS):
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
trades = 0
for th, c in combos[::len(combos) // {runs}][:{runs}]:
    trades += Backtest(frame, Above, cash=1e9, commission=(c.fees + c.slippage) / 1e4, finalize_trades=True).run(threshold=th)['# Trades']
RESULT = {{'seconds': time.perf_counter() - t, 'runs': {runs}, 'trades': int(trades)}}
'''
    return child(code)


if __name__ == '__main__':
    total = SYMBOLS * THRESHOLDS * COSTS
    print(f"bench-backtest (SYNTHETIC data, labelled): {THRESHOLDS * COSTS:,} threshold x cost combinations over {SYMBOLS} symbols "
          f"x {BARS:,} bars = {total:,} backtests", flush=True)
    scale("20 symbols x 100,000 bars", "20 symbols x 100,000 bars")
    print(flush=True)
    o = ours()
    print(f"   ours: {o['seconds']:.1f} s for all {o['rows']:,} ({o['seconds'] / total * 1e3:.2f} ms each; compile {o['compile']:.1f} s "
          f"in a fresh process, outside), peak {o['peak_mb']:,.0f} MiB", flush=True)
    v = vectorbt_naive()
    v_all = v['seconds'] / v['runs'] * total
    print(f"   vectorbt, one portfolio per combination: {v['seconds']:.1f} s for {v['runs']} ({v['trades']:,} trades) -> {v_all:,.0f} s for all (scaled), "
          f"peak {v['peak_mb']:,.0f} MiB", flush=True)
    ours_rows, peer_rows = np.array(o['check']), np.array(v['check'])  # (symbol, combination, [return, sharpe, drawdown, trades])
    gap = np.abs(ours_rows - peer_rows).max(axis=(0, 1))
    traded = ours_rows[..., 3] > 0   # a strategy that never trades has no Sharpe ratio (vectorbt: inf, ours: 0)
    sharpe_gap = np.abs(ours_rows[..., 1] / peer_rows[..., 1] - 1)[traded].max()
    print(f"   the same numbers on those {v['runs']}: largest gaps: total return {gap[0]:.1e}, drawdown {gap[2]:.1e}, "
          f"trades {gap[3]:.0f}, Sharpe {sharpe_gap:.1e} relative (vectorbt counts the first bar's return too)", flush=True)
    b = backtesting_py()
    b_all = b['seconds'] / b['runs'] * total
    print(f"   backtesting.py, one run per combination: {b['seconds']:.1f} s for {b['runs']} ({b['trades']:,} trades) -> {b_all:,.0f} s for all (scaled), "
          f"peak {b['peak_mb']:,.0f} MiB", flush=True)
    r_b, r_v = b_all / o['seconds'], v_all / o['seconds']
    print(flush=True)
    target('backtesting.py (scaled) / ours', f"{r_b:,.0f}x", '>= 100x', r_b >= 100)
    target('the naive vectorbt loop (scaled) / ours', f"{r_v:,.1f}x", '>= 3x', r_v >= 3)
    target('peak memory of the sweep', f"{o['peak_mb'] / 1024:.2f} GiB", '< 8 GiB', o['peak_mb'] < 8192)
    print(json.dumps({'ours_s': o['seconds'], 'vectorbt_s': v_all, 'backtesting_py_s': b_all, 'vs_backtesting_py': r_b,
                      'vs_vectorbt': r_v, 'peak_mb': o['peak_mb']}))
    table()
