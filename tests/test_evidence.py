"""Evidence that cannot be gamed (issue 33): every configuration tried on a question counts. On a copy of the session's research
run, the leader re-run alone, by the command line and by a training job as the operations page's Train starts it, counts every
configuration the first run tried and keeps its verdict; `--trials-since` is the one way to count fewer, and the verdict says it.
A run whose data ended earlier chose a configuration: the next run judges it on the bars that came after (the holdout after
selection, one trial). The counts are read from what the run declares (its models, the threshold grid), never written out."""
import json
from pathlib import Path
import pandas as pd
import pytest
from conftest import SLICE, mlfin, service, wait_for, with_args
from mlfin.backtest import stats
from mlfin.backtest.tearsheet import judge, verdict, verdict_word
from mlfin.backtest.universe import GRID_THRESHOLDS
pytestmark = pytest.mark.e2e   # a user's path end to end (make test-fast leaves it out)


def summary(home: Path) -> dict:
    return json.loads((home/'run'/'summary.json').read_text())


def per_model(summary: dict) -> int:
    "Configurations one model adds to its question: the threshold grid PBO is measured on, and the run's own threshold"
    return len({*GRID_THRESHOLDS, summary['params']['threshold']})


def test_a_narrowed_rerun_counts_the_first_runs_configurations_and_keeps_its_verdict(pipeline_copy):
    home, first, args = pipeline_copy['home'], pipeline_copy['summary'], pipeline_copy['args']
    alone = per_model(first)   # the leader alone: one model at each threshold
    tried = {symbol: first['symbols'][symbol]['skill']['trials'] for symbol in ('SPX', 'EURUSD')}
    for symbol in ('SPX', 'EURUSD'):   # a daily and an hourly series: each its own question
        before, leader = first['symbols'][symbol], first['symbols'][symbol]['model']
        assert tried[symbol] == alone * len(before['models'])   # the first run tried every model at every threshold
        mlfin(home, 'run', *with_args(args, symbols=symbol, models=leader))   # the leader alone, by the command line
        after = summary(home)['symbols'][symbol]
        assert after['skill']['run_trials'] == alone and after['skill']['trials'] == tried[symbol]   # its own were among the first run's
        assert after['skill']['question']['earlier_runs'] >= 1 and after['pbo']['strategies'] == before['pbo']['strategies']
        assert after['skill']['dsr'] == pytest.approx(before['skill']['dsr'], abs=1e-12)
        assert after['pbo']['pbo'] == pytest.approx(before['pbo']['pbo'], abs=1e-9)
        assert judge(after) == judge(before), (after['skill'], after['pbo'])
        said = verdict(after)
        assert (f"after {tried[symbol]} trials ({alone} in this run, {tried[symbol]} on this question since "
                f"{after['skill']['question']['first_recorded'][:10]})") in said, said
    # a training job, as the operations page's Train sends it (the person names the model; the rest is the project's run)
    narrowed = {name.removeprefix('--').replace('-', '_'): value for name, value in zip(args[::2], args[1::2])
                if name != '--reports'} | {'symbols': 'SPX', 'models': first['symbols']['SPX']['model']}
    with service(home) as svc, svc.client(svc.key('analyst')) as client:
        job = wait_for(client, client.post('/train', json={'params': narrowed}).json()['id'], {'succeeded', 'failed'})
        assert job['state'] == 'succeeded', job['log']
        done = job['summary']['symbols']['SPX']
        assert (done['run_trials'], done['trials']) == (alone, tried['SPX']), done   # the first run's counted, its own among them
        assert done['verdict'] == verdict_word(first['symbols']['SPX']) and done['dsr'] == pytest.approx(first['symbols']['SPX']['skill']['dsr'], abs=1e-12)
    assert svc.errors() == ''
    # two folds instead of the first run's three: configurations never tried before, counted with the first run's
    mlfin(home, 'run', *with_args(args, symbols='SPX', models=first['symbols']['SPX']['model'], folds=2))
    other = summary(home)['symbols']['SPX']
    assert (other['skill']['run_trials'], other['skill']['trials'], other['pbo']['earlier']) == (alone, tried['SPX'] + alone, tried['SPX']), \
        (other['skill'], other['pbo'])
    # the explicit escape hatch: only trials recorded from a date on count, and the verdict says how many it left out
    mlfin(home, 'run', *with_args(args, symbols='SPX', models=first['symbols']['SPX']['model'], folds=2, trials_since='2099-01-01'))
    hatch = summary(home)['symbols']['SPX']
    assert (hatch['skill']['trials'], hatch['skill']['question']['left_out']) == (alone, tried['SPX']), hatch['skill']
    assert f"counted from 2099-01-01 by --trials-since, {tried['SPX']} earlier trial(s) left out" in verdict(hatch)


def test_the_configuration_an_earlier_run_chose_is_judged_on_the_bars_after_it(tmp_path):
    home = tmp_path/'home'
    two = with_args(SLICE, symbols='SPX,EURUSD', models='logistic,lightgbm', reports=home/'reports')   # a daily and an hourly series
    mlfin(home, 'run', *with_args(two, end='2017-06-30'))   # a run whose data ended half a year earlier chose
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
    "`--symbols ES:5m` as the tutorial Your own data promises: the one-minute sample resampled on Globex's sessions, futures costs, Globex's year"
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


def test_the_count_follows_the_bars_and_a_lost_record_is_said(small_copy, tmp_path):
    """Issue 51, as a researcher would escape the count: the small run's SPX bars stored as SPXZ in a fresh home that shares the
    user's ledger, its MLflow record of a run trimmed, a narrower window and another horizon tried; then the ledger deleted. The
    question follows the bars, the count never falls, and a record lost makes the verdict "cannot judge" everywhere it is read."""
    from mlfin.data import load_sample
    honest = small_copy['summary']['symbols']['SPX']
    shared = str(small_copy['home']/'ledger.db')   # the user's ledger: the small run's, shared by the fresh home below
    fresh = tmp_path/'fresh'
    env = {'MLFIN_LEDGER': shared}
    bars = load_sample('SPX').rename_axis('Date')
    bars.index = bars.index.strftime('%Y-%m-%d')
    (tmp_path/'spxz.csv').write_text(bars[['open', 'high', 'low', 'close', 'volume']].to_csv())
    mlfin(fresh, 'ingest', str(tmp_path/'spxz.csv'), '--symbol', 'SPXZ', '--timeframe', '1d', env=env)
    renamed = with_args(small_copy['args'], symbols='SPXZ', threshold='0.52', reports=fresh/'reports')   # the small run's, on SPXZ
    mlfin(fresh, 'run', *renamed, env=env)
    first = summary(fresh)['symbols']['SPXZ']
    assert first['skill']['question']['id'] == honest['skill']['question']['id'], first['skill']['question']   # the same bars: one question
    assert first['skill']['question']['earlier_runs'] >= 1 and first['skill']['trials'] >= honest['skill']['trials']
    assert first['skill']['record']['problem'] == '', first['skill']['record']
    # the fresh home's MLflow record of its run trimmed to one row: the ledger still holds every trial
    trials = next(fresh.glob('mlartifacts/**/trials/trials.parquet'))
    pd.read_parquet(trials).head(1).to_parquet(trials)
    narrower = with_args(renamed, end='2017-06-30', horizon='2')   # another window and another horizon of the same bars: more configurations
    mlfin(fresh, 'run', *narrower, env=env)
    second = summary(fresh)['symbols']['SPXZ']
    assert second['skill']['question']['id'] == honest['skill']['question']['id']
    assert second['skill']['trials'] == first['skill']['trials'] + second['skill']['run_trials'], second['skill']   # none lost, the new ones added
    # the user's ledger deleted: the fresh home noted it, and its MLflow holds runs that appended to it
    Path(shared).unlink()
    mlfin(fresh, 'run', *narrower, '--force', env=env)
    lost = summary(fresh)['symbols']['SPXZ']
    assert lost['skill']['record']['problem'].startswith('the trial record was reset (this home noted trial ledger'), lost['skill']['record']
    assert judge(lost) == 'unjudged' and verdict_word(lost).startswith('cannot judge (the trial record was reset'), verdict_word(lost)
    page = (fresh/'run'/'reports'/'tearsheets'/'tearsheet-SPXZ.html').read_text()
    assert 'Cannot judge: the trial record was reset' in page and 'trial(s) are missing' in page
    # the auditor's check says so too; adopting what the fresh home's MLflow still holds makes the ledger whole again, but what only the
    # lost ledger held (the small run's trials) stays unknown: verdicts on the question count afresh, explicitly, with --trials-since
    checked = mlfin(fresh, 'ledger', 'check', env=env, check=False)
    assert checked.returncode == 1 and 'mlfin: not whole: ' in checked.stdout and 'mlfin ledger adopt' in checked.stdout, checked.stdout
    assert 'adopted 2 run(s) on question ' in mlfin(fresh, 'ledger', 'adopt', env=env).stdout
    mended = mlfin(fresh, 'ledger', 'check', env=env).stdout
    assert 'mlfin: whole from ' in mended and ' lost)\n' in mended and 'a verdict counts from then (--trials-since ' in mended, mended
    # the registry keeps the verdict on the leader's version (what /models and /signals answer)
    from mlflow import MlflowClient
    version = summary(fresh)['registry']['SPXZ']['version']
    tags = MlflowClient(f"sqlite:///{fresh/'mlflow.db'}").get_model_version('mlfin.SPXZ.1d', str(version)).tags
    assert (tags['evidence.verdict'], tags['evidence.record'], tags['evidence.trials']) == \
        (verdict_word(lost), lost['skill']['record']['problem'], str(lost['skill']['trials'])), tags


def test_the_next_run_counts_a_notebooks_experiment(small_copy, monkeypatch):
    """Issue 66: an experiment in a notebook (the small run's model on its bars, on two folds instead of three, only trained:
    the call backtests it) recorded with `mlfin.report.record_experiment` in the small run's home files its configurations as
    trials on SPX's question: the next `mlfin run` on those bars counts them in its DSR. (That `mlfin runs` lists it, and
    that recording it twice counts nothing new: nbs/08e_report.experiments.ipynb.)"""
    from functools import partial
    from mlfin import data, features, models
    from mlfin.features import labels
    from mlfin.report import record_experiment   # the one call, as the tutorial gives it
    home, before = small_copy['home'], small_copy['summary']['symbols']['SPX']['skill']
    monkeypatch.setenv('MLFIN_HOME', str(home))   # the notebook's kernel, in the run's home (the ledger: the home's, as conftest sets it)
    bars = {'SPX': data.load_sample('SPX').loc['2016':'2017']}
    _, dataset = features.dataset(bars, partial(labels.fixed_horizon, horizon=1))
    training = models.train_universe(dataset, [models.model_spec(small_copy['summary']['symbols']['SPX']['model'])], folds=2)
    tried = record_experiment('two folds', bars, dataset, training)
    mine = tried.metrics['SPX']['skill']
    assert mine['question']['id'] == before['question']['id'] and mine['question']['earlier_runs'] >= 1, mine['question']
    # the run's trials, and its own beside them: one model at each threshold, on folds the run never tried
    assert (mine['run_trials'], mine['trials']) == (per_model(small_copy['summary']), before['trials'] + per_model(small_copy['summary'])), mine
    # the next run on the same bars (its promotion bar changed: only the report is made again, weighing the question anew)
    mlfin(home, 'run', *with_args(small_copy['args'], promote_min_sharpe='-99'))
    after = summary(home)['symbols']['SPX']['skill']
    assert after['question']['id'] == before['question']['id'], after['question']
    assert (after['run_trials'], after['trials']) == (before['run_trials'], mine['trials']), after   # the notebook's counted
