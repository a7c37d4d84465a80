"""Drift (issue 19): each input judged by its own history. Fresh windows of an unchanged persistent input are rarely flagged;
a shift of a few spreads is caught; a planted shift in one real input of a model flags that input and no other."""
import os
import numpy as np, pytest
from pathlib import Path
from conftest import mlfin
from mlfin.data import load_sample
from mlfin.features import RESEARCH_SPEC, build, model_inputs, spec_names
from mlfin.monitor import input_drift, own_threshold, psi, wasserstein


def ar1(n: int, phi: float, rng, start: float = 0.0) -> np.ndarray:
    "An AR(1) path with unit innovations: a persistent input whose process never changes"
    out, x = np.empty(n), start
    for i, e in enumerate(rng.normal(size=n)): x = phi * x + e; out[i] = x
    return out


@pytest.mark.parametrize('phi', [0.9, 0.98])
def test_fresh_windows_of_an_unchanged_persistent_input_are_rarely_flagged_and_a_shift_is_caught(phi):
    rng, spread = np.random.default_rng(int(phi * 100)), 1 / np.sqrt(1 - phi ** 2)
    alarms, fixed, caught = [], [], []
    for _ in range(20):   # 20 training spans of 2,000 bars, 50 fresh 250-bar windows continuing each
        span = ar1(2000, phi, rng, start=rng.normal() * spread)
        bar, far = own_threshold(span, 250)
        flagged = lambda w: psi(span, w) > bar or wasserstein(span, w) > far
        fresh = [ar1(250, phi, rng, start=span[-1]) for _ in range(50)]
        alarms += [flagged(w) for w in fresh]
        fixed += [psi(span, w) > 0.2 for w in fresh]
        caught += [flagged(w + 3 * spread) for w in fresh[:10]]   # the process moved by three of its spreads
    assert np.mean(alarms) <= 0.05, np.mean(alarms)
    assert np.mean(fixed) > 4 * np.mean(alarms), (np.mean(fixed), np.mean(alarms))   # a fixed cut-off cries wolf
    assert np.mean(caught) >= 0.9, np.mean(caught)


def test_a_planted_shift_in_one_real_input_flags_that_input_and_no_other():
    spx = load_sample('SPX').loc['2010':'2016']
    names = spec_names(RESEARCH_SPEC)
    inputs = model_inputs(build(spx, names), spx, names).dropna()
    recent = inputs.iloc[-250:]   # an unchanged copy of the training span's end
    assert input_drift(inputs, recent).drifted() == []
    for name, spreads in (('rsi_14', 1), ('returns', 1), ('mfi_14', 1), ('obv', 3)):
        shifted = recent.assign(**{name: recent[name] + spreads * inputs[name].std()})
        assert input_drift(inputs, shifted).drifted() == [name], name


# --- the production models of a real run (the service tests' registry: SPX 1d and ES 1m in production) ---

def production(symbol: str) -> dict:
    from mlfin.models.registry import describe
    return next(v for v in describe() if 'production' in v['aliases'] and v['name'].split('.')[1] == symbol)


def test_a_shift_planted_in_one_input_of_a_production_model_is_reported_for_that_input_alone(served_home, monkeypatch, tmp_path):
    "Issue 19's first check, through watch and the written report: SPX's 2016 window is clean; +3 spreads on one input flags it alone"
    import pandas as pd
    from mlfin.data import load
    from mlfin.features import inputs_for
    from mlfin.models import load as load_version
    from mlfin.monitor.models import Report, watch
    from mlfin.monitor.report import latest_report, write_report
    monkeypatch.setenv('MLFIN_HOME', str(served_home))
    version = production('SPX')
    model = load_version(version['version'], 'SPX', '1d')
    inputs = inputs_for(load('SPX', '1d'), model.features, model.inputs).loc[:'2016-12-30']
    end = pd.Timestamp('2016-12-30', tz='UTC')
    clean = watch(version, inputs=inputs, window=250, now=end)
    assert (clean.drift.drifted(), clean.drift.judged) == ([], 24), clean.drift.inputs
    planted = inputs.copy()
    reference = planted['rsi_14'].iloc[:-250]
    planted.iloc[-250:, planted.columns.get_loc('rsi_14')] += 3 * reference.std()
    shifted = watch(version, inputs=planted, window=250, now=end)
    assert shifted.drift.drifted() == ['rsi_14'], shifted.drift.inputs
    assert 0 < shifted.drift.share < 1 and shifted.predictions['verdict'] in ('stable', 'drifted', 'too few')
    folder = write_report(Report(end, [shifted]), tmp_path)
    page, found = (folder/'index.html').read_text(), latest_report(tmp_path)
    assert f"1 of 24 inputs drifted ({shifted.drift.share:.0%} by importance: rsi_14)" in page
    assert [m['inputs_drifted'] for m in found['models']] == [['rsi_14']]
    assert {r['input'] for r in found['inputs'] if r['verdict'] == 'drifted'} == {'rsi_14'}


def test_live_performance_of_a_production_model_its_own_record_served_back_is_consistent_random_ones_are_worse(served_home, monkeypatch):
    "Issue 19's second check: ES 1m's out-of-sample predictions served back agree with its record; random probabilities are flagged"
    import numpy as np, pandas as pd
    from mlfin.models.promotion import Lineage, incumbent_predictions
    from mlfin.monitor.models import watch
    monkeypatch.setenv('MLFIN_HOME', str(served_home))
    version = production('ES')
    oos = incumbent_predictions(version)
    threshold = Lineage.from_tags(version['lineage']).threshold
    served = lambda p: pd.DataFrame({'prediction': p, 'side': np.where(p > threshold, 1, 0)}, index=oos.index)
    own = watch(version, served=served(oos['prediction'].to_numpy()), window=250)
    noise = watch(version, served=served(np.random.default_rng(7).random(len(oos))), window=250)
    assert own.live['labelled'] >= 1000, own.live
    assert own.live['verdict'] == 'consistent with out-of-sample', own.live
    assert own.live['hit_low'] <= own.live['record_accuracy'] <= own.live['hit_high']
    assert noise.live['verdict'].startswith('worse than out-of-sample'), noise.live
    assert 'signal_return' in own.live and own.live['served'] == len(oos)


def test_mlfin_monitor_writes_its_report_and_the_service_exposes_it(served_home):
    "A signal served through the service reaches the monitor's live record; /monitor and /metrics (a scraper key as bearer) show the run"
    import json
    from conftest import service
    with service(served_home, '--no-jobs') as svc:
        reader = svc.client(svc.key('read_only'))
        served = reader.get('/signals', params={'symbol': 'SPX', 'timeframe': '1d'})
        assert served.status_code == 200, served.text
        done = mlfin(served_home, 'monitor')
        assert 'mlfin.SPX.1d v' in done.stdout and 'mlfin.ES.1m v' in done.stdout and 'report: ' in done.stdout, done.stdout
        page = done.stdout.strip().splitlines()[-1].removeprefix('report: ')
        figures = json.loads((Path(page).parent/'monitor.json').read_text())
        spx = next(m for m in figures['models'] if m['name'] == 'mlfin.SPX.1d')
        assert spx['live_served'] >= 1 and spx['inputs_judged'] > 0
        assert reader.get('/monitor').json()['at'] == figures['at']
        scraper = svc.key('scraper')
        text = svc.client(token=scraper).get('/metrics').text
        assert f'mlfin_monitor_drifted_share{{name="mlfin.SPX.1d"}} {spx["drifted_share"]}' in text
        assert 'mlfin_series_overdue_seconds{symbol="SPX",timeframe="1d"}' in text
        serving = next(v['version'] for v in reader.get('/models/mlfin.SPX.1d').json() if 'production' in v['aliases'])
        assert f'mlfin_model_production_version{{name="mlfin.SPX.1d"}} {float(serving)}' in text   # kept between scrapes, read as the registry changes
        assert svc.client(token=scraper).get('/monitor').status_code == 403   # a scraper reads the metrics and nothing else
        assert svc.errors() == ''


def regime(bars, sessions, times: float, seed: int = 34):
    """`sessions` daily bars after `bars`' last, their moves `times` the series' usual daily volatility: real standardised moves of
    the series (drawn from its history) scaled up, each bar's range the same share of its move as the series' median bar's"""
    import pandas as pd
    moves = np.log(bars['close']).diff().dropna()
    drawn = np.random.default_rng(seed).choice((moves / moves.std()).to_numpy(), size=len(sessions))
    close = bars['close'].iloc[-1] * np.exp(np.cumsum(times * moves.std() * drawn))
    open_ = np.r_[bars['close'].iloc[-1], close[:-1]]
    reach = float(((bars['high'] - bars['low']) / bars['close']).median()) * times
    return pd.DataFrame({'open': open_, 'high': np.maximum(open_, close) * (1 + reach / 2), 'low': np.minimum(open_, close) * (1 - reach / 2),
                         'close': close, 'volume': float(bars['volume'].median())}, index=pd.DatetimeIndex(sessions, name='ts'))


def test_a_volatility_regime_on_a_served_daily_model_is_reported_and_its_gauge_set_unchanged_data_is_quiet(served_home, tmp_path):
    """Issue 34: the served SPX series as it is reads 'volatility steady' at the default window; 60 sessions at three times its
    usual daily volatility appended (a quarter of the window) are reported by `mlfin monitor` as a volatility regime, and the
    service's gauge the MlfinVolatilityRegime rule reads is 1 (promtool tests the rule on that gauge)"""
    import json, shutil
    import exchange_calendars as xcals
    import pandas as pd
    from conftest import service
    from mlfin.data import load
    home = tmp_path/'home'
    shutil.copytree(served_home, home, ignore=shutil.ignore_patterns('monitor'))
    figures = lambda done: json.loads((Path(done.stdout.strip().splitlines()[-1].removeprefix('report: ')).parent/'monitor.json').read_text())
    spx = lambda found: next(m for m in found['models'] if m['name'] == 'mlfin.SPX.1d')
    calm = spx(figures(mlfin(home, 'monitor')))
    assert calm['volatility_verdict'] == 'stable' and calm['window_bars'] >= 250, calm
    assert 'volatility steady' in calm['verdict'], calm['verdict']
    os.environ['MLFIN_HOME'] = str(home)
    try: bars = load('SPX', '1d')
    finally: del os.environ['MLFIN_HOME']
    sessions = xcals.get_calendar('XNYS').sessions_in_range(bars.index[-1].tz_localize(None) + pd.Timedelta(days=1), '2019-12-31')[:60]
    regime(bars, sessions.tz_localize('UTC'), 3).reset_index().to_csv(tmp_path/'spx.csv', index=False)
    mlfin(home, 'ingest', str(tmp_path/'spx.csv'), '--symbol', 'SPX', '--timeframe', '1d')
    done = mlfin(home, 'monitor')
    found = spx(figures(done))
    assert found['volatility_verdict'] == 'drifted' and found['volatility_score'] > found['volatility_bar'], found
    assert found['volatility_ratio'] > 2 and found['window_end'].startswith(str(sessions[-1].date())), found
    assert 'volatility rose: ' in found['verdict'] and 'volatility rose: ' in done.stdout, done.stdout
    with service(home, '--no-jobs') as svc:
        text = svc.client(token=svc.key('scraper')).get('/metrics').text
        assert 'mlfin_monitor_volatility_drifted{name="mlfin.SPX.1d"} 1.0' in text
        assert f'mlfin_monitor_volatility_ratio{{name="mlfin.SPX.1d"}} {found["volatility_ratio"]}' in text
    assert svc.errors() == ''
