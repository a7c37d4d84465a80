"""Drift (issue 19): each input judged by its own history. Fresh windows of an unchanged persistent input are rarely flagged;
a shift of a few spreads is caught; a planted shift in one real input of a model flags that input and no other."""
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
