"""Evidence that cannot be gamed (issue 33): every configuration tried on a question counts. On a copy of the session's run, the
leader re-run alone, by the command line and by a training job as the operations page's Train starts it, counts every configuration
the first run tried and keeps its verdict; `--trials-since` is the one way to count fewer, and the verdict says it. A run whose data
ended earlier chose a configuration: the next run judges it on the bars that came after (the holdout after selection, one trial).

Each test works on a copy of the session's home, taken before test_pipeline's later tests change it (this module sorts before it)."""
import json, shutil
from pathlib import Path
import numpy as np, pandas as pd
import pytest
from conftest import mlfin, service, wait_for
from mlfin.backtest import stats
from mlfin.backtest.tearsheet import judge, verdict, verdict_word


def copied(pipeline_run, tmp_path: Path) -> Path:
    home = tmp_path/'home'
    shutil.copytree(pipeline_run['home'], home)
    return home


def with_args(args: list[str], home: Path, **changes) -> list[str]:
    """The session run's arguments with some replaced (--symbols SPX) or added, its reports written in `home` (the session's own
    reports folder is test_pipeline's to read)"""
    out, changes = list(args), {**changes, 'reports': str(home/'reports')}
    for name, value in changes.items():
        option = '--' + name.replace('_', '-')
        if option in out: out[out.index(option) + 1] = value
        else: out += [option, value]
    return out


def summary(home: Path) -> dict:
    return json.loads((home/'run'/'summary.json').read_text())


def test_a_narrowed_rerun_counts_the_first_runs_configurations_and_keeps_its_verdict(pipeline_run, tmp_path):
    home, first = copied(pipeline_run, tmp_path), pipeline_run['summary']
    for symbol in ('SPX', 'EURUSD'):   # a daily and an hourly series: each its own question
        before, leader = first['symbols'][symbol], first['symbols'][symbol]['model']
        mlfin(home, 'run', *with_args(pipeline_run['args'], home, symbols=symbol, models=leader))   # the leader alone, by the command line
        after = summary(home)['symbols'][symbol]
        assert after['skill']['run_trials'] == 5 and after['skill']['trials'] == before['skill']['trials'] == 25   # its 5 were among the 25
        assert after['skill']['question']['earlier_runs'] >= 1 and after['pbo']['strategies'] == before['pbo']['strategies']
        assert after['skill']['dsr'] == pytest.approx(before['skill']['dsr'], abs=1e-12)
        assert after['pbo']['pbo'] == pytest.approx(before['pbo']['pbo'], abs=1e-9)
        assert judge(after) == judge(before), (after['skill'], after['pbo'])
        said = verdict(after)
        assert f"after 25 trials (5 in this run, 25 on this question since {after['skill']['question']['first_recorded'][:10]})" in said, said
    # a training job, as the operations page's Train sends it (the person names the model; the rest is the project's run)
    narrowed = {name.removeprefix('--').replace('-', '_'): value for name, value in zip(pipeline_run['args'][::2], pipeline_run['args'][1::2])
                if name != '--reports'} | {'symbols': 'SPX', 'models': first['symbols']['SPX']['model']}
    with service(home) as svc, svc.client(svc.key('analyst')) as client:
        job = wait_for(client, client.post('/train', json={'params': narrowed}).json()['id'], {'succeeded', 'failed'})
        assert job['state'] == 'succeeded', job['log']
        done = job['summary']['symbols']['SPX']
        assert (done['run_trials'], done['trials']) == (5, 25), done   # the first run's 25 counted, its own 5 among them
        assert done['verdict'] == verdict_word(first['symbols']['SPX']) and done['dsr'] == pytest.approx(first['symbols']['SPX']['skill']['dsr'], abs=1e-12)
    assert svc.errors() == ''
    # two folds instead of the first run's three: five configurations never tried before, counted with the 25
    mlfin(home, 'run', *with_args(pipeline_run['args'], home, symbols='SPX', models=first['symbols']['SPX']['model'], folds='2'))
    other = summary(home)['symbols']['SPX']
    assert (other['skill']['run_trials'], other['skill']['trials'], other['pbo']['earlier']) == (5, 30, 25), (other['skill'], other['pbo'])
    # the explicit escape hatch: only trials recorded from a date on count, and the verdict says how many it left out
    mlfin(home, 'run', *with_args(pipeline_run['args'], home, symbols='SPX', models=first['symbols']['SPX']['model'], folds='2',
                                  trials_since='2099-01-01'))
    hatch = summary(home)['symbols']['SPX']
    assert (hatch['skill']['trials'], hatch['skill']['question']['left_out']) == (5, 25), hatch['skill']
    assert 'counted from 2099-01-01 by --trials-since, 25 earlier trial(s) left out' in verdict(hatch)


def test_the_configuration_an_earlier_run_chose_is_judged_on_the_bars_after_it(pipeline_run, tmp_path):
    home = copied(pipeline_run, tmp_path)
    two = with_args(pipeline_run['args'], home, symbols='SPX,EURUSD')   # a daily and an hourly series
    mlfin(home, 'run', *with_args(two, home, end='2017-06-30'))   # a run whose data ended half a year earlier chose
    chose = summary(home)
    mlfin(home, 'run', *two)   # the same run on the later bars too
    now = summary(home)
    grid, curves = pd.read_parquet(home/'run'/'grid.parquet'), pd.read_parquet(home/'run'/'curves.parquet')
    for symbol, entry in now['symbols'].items():
        h, picked = entry['holdout'], f"{chose['symbols'][symbol]['model']}@{now['params']['threshold']:g}"
        assert (h['configuration'], h['status'], h['trials']) == (picked, 'measured', 1), h
        # by hand: that configuration's per-bar returns after costs in this run, on the bars after the last one its choice saw
        mine = grid.loc[grid['symbol'] == symbol, picked]
        after = mine[mine.index > pd.Timestamp(h['through'])].dropna()
        assert pd.Timestamp(h['through']) <= pd.Timestamp('2017-06-30 23:59', tz='UTC') < after.index[0]
        assert h['bars'] == len(after) >= 20, h
        assert h['total_return'] == pytest.approx((1 + after).prod() - 1, rel=1e-9)
        assert h['sharpe'] == pytest.approx(stats.sharpe(after, entry['periods_per_year']), rel=1e-9)
        m = stats.sharpe_moments(after)
        assert h['psr'] == pytest.approx(stats.psr(m['sr'], m['n'], m['skew'], m['kurtosis']), rel=1e-9)   # one trial: nothing deflates it
        hold = curves.loc[curves['symbol'] == symbol, 'buy_and_hold'].pct_change().reindex(after.index)
        assert h['buy_and_hold_return'] == pytest.approx((1 + hold).prod() - 1, rel=1e-9)
        assert h['long_enough'] == (h['needed'] is not None and h['bars'] >= h['needed'])
        page = (home/'run'/'reports'/'tearsheets'/f"tearsheet-{symbol}.html").read_text()
        assert 'Holdout after selection' in page and f"{h['total_return']:.1%} after costs on the {h['bars']} bars since" in page
    from mlfin.report.tables import symbol_tables_html   # the run page (dashboards/run.ipynb) shows it too
    assert 'Holdout after selection (one trial)' in symbol_tables_html({**now, 'curves': curves}, 'SPX')


def test_a_run_of_five_minute_es_resamples_the_stored_minutes_on_the_cme_calendar(tmp_path):
    "`--symbols ES:5m` as the README promises: the one-minute sample resampled on Globex's sessions, futures costs, Globex's year"
    from mlfin.data import load_sample, resample
    done = mlfin(tmp_path, 'run', '--symbols', 'ES:5m', '--models', 'logistic,lightgbm', '--reports', str(tmp_path/'reports'))
    entry = summary(tmp_path)['symbols']['ES']
    expected = resample(load_sample('ES'), '5m', 'CMES')
    assert (entry['timeframe'], entry['calendar'], entry['resampled_from'], entry['bars']) == ('5m', 'CMES', '1m', len(expected))
    assert entry['costs'] == {'asset_class': 'futures', 'fees_bps': 0.2, 'slippage_bps': 0.5, 'round_trip_bps': 1.4}
    assert entry['periods_per_year'] == 250 * 23 * 12 + 8 * 19 * 12   # Globex 2013: 23-hour sessions, eight noon closes
    bars = pd.read_parquet(tmp_path/'run'/'bars.parquet')
    pd.testing.assert_frame_equal(bars[['open', 'high', 'low', 'close', 'volume']], expected[['open', 'high', 'low', 'close', 'volume']],
                                  check_freq=False, check_index_type=False)
    assert 'ES' in done.stdout and len(list((tmp_path/'resampled').iterdir())) == 1   # cached like a feature
    assert '0 task(s) ran (nothing changed)' in mlfin(tmp_path, 'run', '--symbols', 'ES:5m', '--models', 'logistic,lightgbm',
                                                      '--reports', str(tmp_path/'reports')).stdout


def test_a_run_with_features_named_on_other_bars(tmp_path):
    "features.yaml's intraday_context spec on hourly EURUSD: its own daily RSI from completed FX days, the S&P 500's from the store"
    from mlfin import features
    from mlfin.data import load_sample
    mlfin(tmp_path, 'run', '--symbols', 'EURUSD', '--spec', 'intraday_context', '--models', 'logistic', '--reports', str(tmp_path/'reports'))
    data = pd.read_parquet(tmp_path/'run'/'dataset.parquet')
    assert {'rsi_14@1d', 'natr_14@1d', 'returns@1d', 'returns@SPX', 'rsi_14@SPX'} <= set(data.columns), data.columns
    assert data.attrs['groups']['daily'] == ['rsi_14@1d', 'natr_14@1d', 'returns@1d']
    bars, spx = load_sample('EURUSD'), load_sample('SPX')
    bars.attrs['calendar'], spx.attrs['calendar'] = '24/5', 'XNYS'
    expected = features.build(bars, ['rsi_14@1d', 'returns@SPX'], others=lambda symbol, named, near: spx)
    pd.testing.assert_frame_equal(data[['rsi_14@1d', 'returns@SPX']], expected.loc[data.index], check_freq=False, rtol=1e-12)
    listed = mlfin(tmp_path, 'data', 'ls').stdout
    assert 'SPX' in listed and 'EURUSD' in listed   # the S&P 500 taken from its sample into the store, as a run would
    args = ['run', '--symbols', 'EURUSD', '--spec', 'intraday_context', '--models', 'logistic', '--reports', str(tmp_path/'reports')]
    assert '0 task(s) ran (nothing changed)' in mlfin(tmp_path, *args).stdout
    mlfin(tmp_path, 'data', 'rm', 'SPX:1d', '--start', '2018-12-28', '--yes')   # the other series changes: the run is made again
    assert '5 task(s) ran' in mlfin(tmp_path, *args).stdout
