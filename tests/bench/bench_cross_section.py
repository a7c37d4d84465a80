"""Benchmark: a universe's cross-sectional research at the size an equity researcher works at (`make bench-cross-section`).

SYNTHETIC DATA (labelled): 500 stocks x 2,520 daily bars (ten years), made by the acceptance test's generator
(tests/test_cross_section.py's `universe`), with where a stock closes in its day's range planted to predict its return
the day after next at a rank correlation of 0.05 (Qlib's published LightGBM on CSI300 reads 0.047). No market has a
known answer; this one has, so the table below can be read against it.

The chain a researcher runs, in one fresh process, each step timed and the process's peak memory (ru_maxrss) taken:
  features: the alpha158 spec (157 of Alpha158's factors, features.alpha) per symbol by `features.build`, stacked into
            one panel indexed (date, symbol)
  label:    the forward return made comparable across each date (z-score), and each row's label end
  models:   ridge and LightGBM (models.yaml's settings) pooled over the universe, walked forward over 4 folds of dates
            (models.dates.ByDate), out of sample; and LightGBM as a ranker (lambdarank on each date's grades,
            `lightgbm-rank`), to read whether the ranking objective helps over the regression on the same inputs
  factors:  short-term reversal and 12-1 momentum
  table:    Qlib's columns for every ranking x book (long-short and long-only quintiles and deciles, Qlib's top-50 with
            dropout 5), with every configuration counted: trials, DSR, PBO, verdict
  serve:    the universe stored (a Parquet store), ridge fit on every labelled date kept as the cross-section task keeps
            it, and `GET /signals/universe`'s ranking (report.ranked.universe_books) from the store's bars: once cold
            (every symbol's features computed) and once more with nothing changed (kept per series' stamp)
Beside ours, the peer for the scores: the per-date IC as Qlib computes it (`qlib.contrib.eva.alpha.calc_ic`: a pandas
groupby-apply of each date's correlation), on the same predictions, timed in the same process; its figures must equal
ours. No speed target is set by the issue (it asks the time and memory stated); the IC's ratio is printed as a figure.
BENCH_SCALE=quick: 100 stocks x 1,260 bars (five years).
"""
import io, sys, time
from pathlib import Path
import numpy as np, pandas as pd
sys.path.insert(0, str(Path(__file__).parent))
from _child import child  # noqa: E402
from _targets import scale, sized, table  # noqa: E402

N_STOCKS, N_DAYS = sized(500, 100), sized(2520, 1260)
RHO = 0.05

STEPS = f'''
import sys, time
from pathlib import Path
sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
import numpy as np, pandas as pd
import test_cross_section as acceptance
from mlfin import features
from mlfin.features.panel import stack, cross_label
from mlfin.models import model_spec
from mlfin.models.dates import ByDate
from mlfin.models.pooled import FACTORS, factor_scores, pooled_predict
from mlfin.models.core import RANKER
from mlfin.models.ranks import daily_ic
from mlfin.models.validation import WalkForward
from mlfin.backtest.cross import cross_table, forward_earned
from mlfin.backtest.portfolio import costs_for
acceptance.SYMBOLS, acceptance.DAYS = {N_STOCKS}, {N_DAYS}
times = {{}}
def timed(name, f):
    started = time.perf_counter(); out = f(); times[name] = time.perf_counter() - started; return out
bars = timed('generate', lambda: acceptance.universe({RHO}, seed=1))
names = [n for group in features.SPECS['alpha158'].values() for n in group]
panel = timed('features', lambda: stack({{s: features.build(b, names) for s, b in bars.items()}}).dropna())
def labelled():
    close = stack({{s: b[['close']] for s, b in bars.items()}})['close']
    forward = forward_earned(close).reindex(panel.index)
    earned, end = forward['earned'], forward['end']
    dates = panel.index.get_level_values('date')
    return close, earned, end, dates, cross_label(earned, dates, 'zscore').to_numpy()
close, earned, end, dates, label = timed('label', labelled)
X = panel.to_numpy()
scores = {{}}
for name, kind in (('ridge', 'regressor'), ('lightgbm', 'regressor'), ('lightgbm-rank', RANKER)):
    spec = model_spec(name.removesuffix('-rank'))
    scores[name] = timed(name, lambda: pooled_predict(spec, X, label, dates, end, ByDate(WalkForward(4)), kind)['prediction'].to_numpy())
for f in FACTORS: scores[f] = timed(f, lambda: factor_scores(close, f).reindex(panel.index).to_numpy())
rows = pd.DataFrame({{'date': dates, 'symbol': panel.index.get_level_values('symbol'), 'outcome': earned.to_numpy(),
                     'earned': earned.to_numpy()}})
found, grid = timed('table', lambda: cross_table(scores, rows, costs_for('equity'), quantiles=(5, 10), topk=((50, 5),), horizon=2))
# the service's ranked list from the stored universe, cold and then with nothing changed
import tempfile
from mlfin.data import ingest, open_store
from mlfin.models import save_model
from mlfin.models.pooled import pooled_fit
from mlfin.report.products import write_json
from mlfin.report.ranked import universe_books
work = Path(tempfile.mkdtemp()); store = open_store(work/'store')
timed('store', lambda: [ingest(b, s, '1d', calendar='24/5', store=store) for s, b in bars.items()])
final = pooled_fit(model_spec('ridge'), 'regressor', X, label, np.flatnonzero(np.isfinite(label)), dates)
save_model(final, work/'run'/'cross_models'/'ridge', 'ridge', list(panel.columns),
           {{'universe': sorted(bars), 'question': 'bench', 'label': 'zscore', 'horizon': 1, 'features': names, 'timeframe': '1d'}})
found.to_parquet(work/'run'/'cross_section.parquet')
write_json({{'products': {{'cross_table': 'cross_section.parquet', 'cross_models': 'cross_models'}}}}, work/'run'/'summary.json')
served = timed('serve cold', lambda: universe_books('ridge', work/'run', store))
again = timed('serve warm', lambda: universe_books('ridge', work/'run', store))
assert again['books'].equals(served['books']) and len(served['books']) == len(bars), (len(served['books']), served['left_out'])
# the peer: Qlib's calc_ic, a groupby-apply of each date's correlation, on the same out-of-sample predictions
frame = pd.DataFrame({{'score': scores['lightgbm'], 'label': earned.to_numpy()}}, index=pd.Index(dates, name='datetime')).dropna()
ours = timed('ic ours', lambda: daily_ic(frame['score'], frame['label'], frame.index, min_names=1))
def calc_ic(df):   # qlib.contrib.eva.alpha.calc_ic: the IC and the rank IC, each a groupby-apply of the dates
    by = df.groupby(level='datetime')
    return (by.apply(lambda d: d['score'].corr(d['label'])),
            by.apply(lambda d: d['score'].corr(d['label'], method='spearman')))
theirs = timed('ic qlib', lambda: calc_ic(frame))
assert len(ours) == len(theirs[0])   # every date, in date order on both sides (ours keeps dates without their zone)
for mine, qlib in zip(('ic', 'rank_ic'), theirs):
    np.testing.assert_allclose(ours[mine].to_numpy(), qlib.sort_index().to_numpy(), rtol=1e-9, atol=1e-12)
RESULT = {{'times': times, 'rows': int(len(panel)), 'columns': int(panel.shape[1]),
          'panel_mb': float(panel.memory_usage(index=True).sum() / 2**20), 'table': found.to_json()}}
'''

if __name__ == '__main__':
    scale("100 stocks x 1,260 daily bars", "500 stocks x 2,520 daily bars")
    started = time.perf_counter()
    found = child(STEPS)
    t = found['times']
    print(f"panel: {found['rows']:,} rows x {found['columns']} features, {found['panel_mb']:,.0f} MB in memory; "
          f"the process's peak {found['peak_mb']:,.0f} MB ({found['peak_mb'] / found['panel_mb']:.1f}x the panel)")
    steps = ('features', 'label', 'ridge', 'lightgbm', 'lightgbm-rank', 'reversal', 'momentum', 'table')
    for step in ('generate', *steps):
        print(f"  {step:<9} {t[step]:8.1f} s")
    print(f"  all      {sum(t[s] for s in steps):8.1f} s "
          f"(without generating; {time.perf_counter() - started:.0f} s with the process)")
    print(f"FIGURE  GET /signals/universe over {N_STOCKS} stored symbols: {t['serve cold']:.1f} s cold (each symbol's "
          f"{found['columns']} features on its last bars), {t['serve warm']:.2f} s asked again with nothing changed "
          f"(storing the universe took {t['store']:.0f} s)")
    print(f"FIGURE  daily IC and rank IC over {found['rows']:,} predictions: ours {t['ic ours']:.2f} s, Qlib's calc_ic form "
          f"{t['ic qlib']:.2f} s, ours {t['ic qlib'] / t['ic ours']:.1f}x faster (IC and rank IC, values equal to 1e-9)")
    print(pd.read_json(io.StringIO(found['table']))[['ranking', 'book', 'rank_ic', 'rank_ic_low', 'rank_ic_high', 'rank_icir',
                                                       'annual_return',
                                                       'information_ratio', 'max_drawdown', 'trials', 'dsr', 'pbo', 'verdict']]
          .round(3).to_string())
    shown = pd.read_json(io.StringIO(found['table']))
    planted = 6 / np.pi * np.arcsin(RHO / 2)   # Spearman's of the planted normal pair: what a perfect ranking reads
    for _, row in shown[shown['book'] == 'long_short q5'].iterrows():
        inside = row['rank_ic_low'] <= planted <= row['rank_ic_high']
        print(f"FIGURE  {row['ranking']}: rank IC {row['rank_ic']:.4f} [{row['rank_ic_low']:.4f}, {row['rank_ic_high']:.4f}], "
              f"the planted {planted:.4f} {'inside' if inside else 'outside'}")
    mine = shown[shown['book'] == 'long_short q5'].set_index('ranking')
    gain = mine.loc['lightgbm-rank', 'rank_ic'] - mine.loc['lightgbm', 'rank_ic']
    apart = gain > 0 and mine.loc['lightgbm-rank', 'rank_ic_low'] > mine.loc['lightgbm', 'rank_ic']
    print(f"FIGURE  the ranking objective: lightgbm-rank's rank IC {mine.loc['lightgbm-rank', 'rank_ic']:.4f} against the "
          f"regression's {mine.loc['lightgbm', 'rank_ic']:.4f} ({gain:+.4f}; "
          f"{'it helps here' if apart else 'no help shown here: the gain is within its interval'}), "
          f"in {t['lightgbm-rank']:.0f} s against {t['lightgbm']:.0f} s")
    table()
