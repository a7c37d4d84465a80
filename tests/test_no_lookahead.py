"""No look-ahead, proved by truncation: a feature computed on bars cut at time t equals, up to t, the one
computed on all bars; a label at t looks only at bars after t. Real data at all four bar sizes: daily NYSE (SPX),
hourly FX (EURUSD), one-minute E-mini S&P futures (ES, made from the trades mlfinpy ships) and five-minute ES."""
import numpy as np, pandas as pd
import pytest
from hypothesis import given, settings, HealthCheck, strategies as st
from mlfin import features
from mlfin.features import labels
from mlfin.data import load_sample
from mlfin.data.observations import observations_frame
from mlfin.features.compute import closes_at
from mlfin.features.lookahead import check_known_no_lookahead, known_by
from arch.data import core_cpi

from mlfin.data.bars import resample

BARS = {'SPX': load_sample('SPX').loc['2014':'2018'], 'EURUSD': load_sample('EURUSD'),
        'ES': load_sample('ES'), 'ES:5m': resample(load_sample('ES'), '5m', 'CMES')}


def within(symbol: str, cut: int) -> int:
    "A drawn cut, kept 20 bars inside the series (the five-minute ES has 461 bars)"
    return min(cut, len(BARS[symbol]) - 20)
FULL = {s: features.build(b) for s, b in BARS.items()}
INPUTS = {s: features.model_inputs(FULL[s], b) for s, b in BARS.items()}
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def same(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    return a.index.equals(b.index) and np.allclose(a.to_numpy(), b.to_numpy(), rtol=1e-9, atol=1e-12, equal_nan=True)


@SETTINGS
@given(symbol=st.sampled_from(list(BARS)), cut=st.integers(min_value=60, max_value=1200))
def test_every_seed_feature_is_unchanged_by_removing_the_future(symbol, cut):
    cut = within(symbol, cut)
    bars = BARS[symbol].iloc[:cut]
    truncated = features.build(bars)
    for column in truncated:
        assert same(truncated[[column]], FULL[symbol][[column]].iloc[:cut]), f"{column} sees the future ({symbol}, cut {cut})"
    assert same(features.model_inputs(truncated, bars), INPUTS[symbol].iloc[:cut])


@SETTINGS
@given(symbol=st.sampled_from(list(BARS)), cut=st.integers(min_value=60, max_value=1200), horizon=st.integers(1, 5))
def test_labels_look_only_at_later_bars(symbol, cut, horizon):
    cut = within(symbol, cut)
    full, bars = BARS[symbol], BARS[symbol].iloc[:cut]
    label = labels.direction(bars, horizon)
    # the last `horizon` labels are unknown at the cut; every earlier one is final
    assert label.iloc[-horizon:].isna().all()
    assert label.iloc[:-horizon].equals(labels.direction(full, horizon).iloc[:cut - horizon])
    # and a label at t changes when (only) a later close changes
    t = cut // 2
    bumped = full.copy(); bumped.iloc[t + horizon, bumped.columns.get_loc('close')] *= 1.5
    assert labels.direction(bumped, horizon).iloc[t] == 1.0
    earlier = full.copy(); earlier.iloc[:t, earlier.columns.get_loc('close')] *= 1.5
    assert labels.direction(earlier, horizon).iloc[t] == labels.direction(full, horizon).iloc[t]


@pytest.mark.parametrize('symbol', list(BARS))
def test_the_public_leak_checker_passes_the_seed_features_and_catches_planted_leaks(symbol):
    bars = BARS[symbol].iloc[:1500]
    assert features.check_no_lookahead(features.build, bars, cuts=15).clean
    assert features.check_no_lookahead(lambda b: features.model_inputs(features.build(b), b), bars, cuts=15).clean
    planted = features.check_no_lookahead(lambda b: b['close'].shift(-1), bars, cuts=15)
    assert not planted.clean and planted.first == planted.cut and planted.column == 'close'
    normalised = features.check_no_lookahead(lambda b: b['close'] / b['close'].max(), bars, cuts=15)  # a whole-sample statistic
    assert not normalised.clean


# a dead zone of half the median 3-bar move of each series: 0.2% would leave one-minute bars almost unlabelled
DEAD_ZONE = {s: float(b['close'].pct_change(3).abs().median()) / 2 for s, b in BARS.items()}
LABELLERS = {
    'direction, dead zone': lambda b, s: labels.direction(b, 3, dead_zone=DEAD_ZONE[s]).to_frame(),
    'next close': lambda b, s: labels.next_close(b).to_frame(),
    'triple barrier, long': lambda b, s: labels.triple_barrier(b, horizon=8)[['label', 'ret']],
    'triple barrier, short': lambda b, s: labels.triple_barrier(b, horizon=8, side=pd.Series(-1.0, index=b.index))[['label', 'ret']],
    'meta labels': lambda b, s: labels.meta_labels(b, np.sign(b['close'] - b['close'].rolling(20).mean()), horizon=8).to_frame(),
}


@SETTINGS
@given(symbol=st.sampled_from(list(BARS)), cut=st.integers(min_value=80, max_value=1200), kind=st.sampled_from(list(LABELLERS)))
def test_a_label_known_at_the_cut_never_changes_when_later_bars_arrive(symbol, cut, kind):
    "Truncation for labels: what is known (not NaN) on bars cut at t is final; only the unknown tail may differ"
    cut = within(symbol, cut)
    full, bars = BARS[symbol], BARS[symbol].iloc[:cut]
    short, whole = LABELLERS[kind](bars, symbol), LABELLERS[kind](full, symbol).iloc[:cut]
    known = short.notna().all(axis=1)
    assert known.iloc[:cut - 10].sum() > 0
    assert same(short[known], whole[known]), f"{kind} changed a known label ({symbol}, cut {cut})"
    if kind == 'triple barrier, long':  # and every label whose exit lies before the cut is known there
        ends = labels.triple_barrier(full, horizon=8)['end'].iloc[:cut]
        assert known[ends.notna() & (ends <= bars.index[-1])].all()


def test_uniqueness_weights_follow_the_spans():
    bars = BARS['SPX'].iloc[:300]
    spans = labels.triple_barrier(bars, horizon=10)['end']
    weights = labels.uniqueness_weights(spans, bars.index).dropna()
    assert ((weights > 0) & (weights <= 1)).all() and weights.min() < 0.5  # overlapping barriers share bars


def test_other_bar_sizes_and_assets_use_only_completed_bars():
    from mlfin.data.bars import resample, session_bins
    hourly, spx = BARS['EURUSD'].iloc[:2000], BARS['SPX']
    daily_rsi = lambda b: features.higher_timeframe(b, '1d', ['rsi_14', 'returns', 'atr_14'], calendar='24/5')
    assert features.check_no_lookahead(daily_rsi, hourly, cuts=30).clean
    five_minute = lambda b: features.higher_timeframe(b, '5m', ['rsi_14', 'returns'], calendar='CMES')  # on one-minute ES
    assert features.check_no_lookahead(five_minute, BARS['ES'], cuts=30).clean
    def forming(b):  # the wrong way: the coarse bar that contains t, still forming
        coarse = features.build(resample(b, '1d', '24/5'), ['returns'])
        return pd.DataFrame(coarse.to_numpy()[coarse.index.searchsorted(session_bins(b.index, '24/5', '1d'))], index=b.index)
    assert not features.check_no_lookahead(forming, hourly, cuts=30).clean
    aapl = load_sample('AAPL').loc['2012':'2013']
    assert features.check_no_lookahead(lambda b: features.cross_asset(b, spx, ['returns', 'rsi_14']), aapl, cuts=30).clean
    assert features.check_no_lookahead(lambda b: features.cross_asset(b, hourly, ['returns']), spx.loc['2017'], cuts=30).clean


@pytest.mark.parametrize('symbol, calendar, spec', [
    ('EURUSD', '24/5', ['rsi_14@1d', 'natr_14@1d', 'returns@1d', 'bbands_20_2__lag_1@1d', 'returns@SPX', 'rsi_14@SPX', 'macd_12_26_9@SPX:1d']),
    ('ES', 'CMES', ['rsi_14@5m', 'returns@1h', 'atr_14@1h', 'returns@SPX']),
    ('ES:5m', 'CMES', ['rsi_14@1h', 'natr_14@1h', 'returns@SPX:1d']),
])   # ES's two days close no NYSE session inside them (the sample's last bar is 18:51 UTC): the planted cross leak is shown on FX
def test_features_named_on_other_bars_are_unchanged_by_removing_the_future(symbol, calendar, spec):
    """A spec's @ features (features.yaml's syntax: another bar size of the series, another series) by the same truncation as every
    other, both series cut: at each cut the other series holds only the bars that had closed by the last bar's close"""
    from mlfin.features.compute import closes_at
    bars = BARS[symbol].iloc[:1500].copy()
    bars.attrs.update(calendar=calendar, timeframe=symbol.partition(':')[2] or BARS[symbol].attrs['timeframe'])
    spx = load_sample('SPX')   # daily, 1999-2018: under the hourly FX of 2017 and the minute futures of 2013 alike
    spx.attrs['calendar'] = 'XNYS'
    available = lambda b: (lambda other, named, near: spx[closes_at(spx) <= closes_at(b)[-1]] if other == 'SPX' else pytest.fail(other))
    built = features.build(bars, spec, others=available(bars))
    assert built.notna().any().all(), built.notna().sum()   # every column has values: the check below has something to check
    found = features.check_no_lookahead(lambda b: features.build(b, spec, others=available(b)), bars, cuts=30)
    assert found.clean, found
    # leaks planted the way they happen: the coarse bar still forming taken (its open, not its close, decides), and the other
    # series' bar that had opened, not closed, by this bar's close
    def forming(b):
        coarse = resample(b, '1h' if symbol != 'EURUSD' else '1d', calendar)
        at = coarse.index.searchsorted(b.index, side='right') - 1
        return pd.DataFrame({'coarse': coarse['close'].pct_change().to_numpy()[at]}, index=b.index)
    assert not features.check_no_lookahead(forming, bars, cuts=30).clean
    def opened(b):
        other = available(b)('SPX', None, None)
        at = other.index.searchsorted(closes_at(b), side='right') - 1
        return pd.DataFrame({'spx': other['close'].pct_change().to_numpy()[np.clip(at, 0, None)]}, index=b.index)
    if symbol == 'EURUSD': assert not features.check_no_lookahead(opened, bars, cuts=30).clean


CPI_CORE = core_cpi.load()['CPILFESL']
CPI = observations_frame(CPI_CORE.index, CPI_CORE.to_numpy(), rule='day 15 of next month 08:30 America/New_York', frequency='M', name='cpi_core')
KNOWN_BARS = BARS['SPX'].loc['2016':'2018']
KNOWN_SPEC = ['cpi_core@known', 'cpi_core__pct_12@known', 'cpi_core__diff_1__z_12@known', 'cpi_core__surprise_6@known',
              'cpi_core__lag_3__age@known']


def revised(series: pd.DataFrame, revisions: list[tuple[int, int, float]]) -> pd.DataFrame:
    "`series` with revisions (synthetic: no vintages ship offline): (months before its last, days after the first print, change)"
    first = series.iloc[[len(series) - 1 - back for back, _, _ in revisions]].reset_index(drop=True)
    rows = first.assign(value=first['value'] + [c for *_, c in revisions],
                        known=first['known'] + pd.to_timedelta([days for _, days, _ in revisions], unit='D'))
    out = pd.concat([series, rows], ignore_index=True).drop_duplicates(['period', 'known']).sort_values(['known', 'period'], ignore_index=True)
    out.attrs = dict(series.attrs)
    return out


@SETTINGS
@given(cut=st.integers(min_value=30, max_value=len(KNOWN_BARS) - 1),
       revisions=st.lists(st.tuples(st.integers(0, 40), st.integers(1, 500), st.floats(-3, 3, allow_nan=False).filter(bool)), max_size=8))
def test_a_series_feature_is_unchanged_by_removing_what_was_known_later(cut, revisions):
    """Core CPI joined as known (its release rule), with revisions known later: with every row known after a bar's close removed
    (first prints and revisions alike) and the bars after it, nothing at or before that bar changes"""
    vintages = revised(CPI, revisions)
    full = features.build(KNOWN_BARS, KNOWN_SPEC, observations=lambda name, symbol: vintages)
    bars = KNOWN_BARS.iloc[:cut]
    short = features.build(bars, KNOWN_SPEC, observations=known_by(lambda name, symbol: vintages, closes_at(bars)[-1]))
    assert full.notna().any().all(), full.notna().sum()
    for column in short:
        assert same(short[[column]], full[[column]].iloc[:cut]), f"{column} sees a later release or revision (cut {cut}, {revisions})"
    found = check_known_no_lookahead(KNOWN_SPEC, KNOWN_BARS, lambda name, symbol: vintages, cuts=3)
    assert found.clean, found


def talib_functions():
    import talib, talib.abstract
    usable = []
    for name in talib.get_functions():
        inputs = str(talib.abstract.Function(name).info['input_names'])
        if 'periods' not in inputs: usable.append(name.lower())  # MAVP takes a period per bar, not bars alone
    return usable


def registered_names() -> list[str]:
    """Every entry of the registry by name, read from it (mlfin's own and any added to INDICATORS since): at its defaults
    and, when it takes parameters, at each one higher"""
    names = []
    for key, indicator in features.INDICATORS.items():
        names.append(key)
        if indicator.defaults: names.append('_'.join([key, *(str(p + 1).replace('.', 'p') for p in indicator.defaults)]))
    return names


def leaks(bars: pd.DataFrame, names: list[str]) -> dict[str, features.LookaheadReport]:
    """The names whose columns change when later bars are removed: all built and checked at once (the same cuts each
    alone would get), then, only when something leaked, each name alone so that every culprit is named"""
    check = lambda spec: features.check_no_lookahead(lambda b: features.build(b, spec), bars, cuts=6, warmup=100)
    if check(names).clean: return {}
    return {name: found for name in names if not (found := check([name])).clean}


@pytest.mark.parametrize('symbol', list(BARS))
def test_every_registered_feature_and_talib_function_is_clean_by_truncation(symbol):
    """Every entry of INDICATORS at two parameter sets and every TA-Lib function by name, each output column; the research
    and MetaTrader specs and the transforms, with their model inputs; at each bar size"""
    bars = BARS[symbol].iloc[:700]
    talib_names = talib_functions()
    assert len(talib_names) > 150
    names = list(dict.fromkeys(registered_names() + talib_names))
    found = leaks(bars, names)
    assert not found, found
    specs = [f for group in features.RESEARCH_SPEC.values() for f in group] + features.METATRADER_SPEC + ['rsi_14__lag_2', 'sma_20__diff_3', 'close__pct_5', 'rsi_14__z_20']
    both = lambda b: features.model_inputs(features.build(b, specs), b, specs)
    assert features.check_no_lookahead(both, bars, cuts=10, warmup=100).clean


def test_a_leak_planted_in_the_registry_is_named_by_the_test_above():
    """Entries a contributor adds to INDICATORS (by hand: `register` would refuse them), one that peeks a bar ahead and one
    clean at its defaults but not at others, are each named with the bar that changed, with no edit to the test"""
    planted = {'peek_ahead': features.Indicator(lambda b: b['close'].shift(-1), (), 'level'),
               'ahead': features.Indicator(lambda b, n: b['close'].shift(1 - n), (1,), 'level')}
    features.INDICATORS.update(planted)
    try: found = leaks(BARS['SPX'].iloc[:700], registered_names())
    finally:
        for key in planted: del features.INDICATORS[key]
    assert sorted(found) == ['ahead_2', 'peek_ahead'], found
    assert all(report.first == report.cut for report in found.values()), found   # the last kept bar is the first to change
