"""A new user's first hour (issue 16), replayed through the command line as they typed it: their own real daily series
(Microsoft 1986-2017, from pmdarima's datasets: a real file under an embedded sample's name) ingested and run, new bars
ingested and run again, the run compared under k-fold validation, the reports published elsewhere. Each test names the
defect it holds shut."""
import io, json, tarfile, zipfile
from pathlib import Path
import pandas as pd
import pytest
from conftest import built_once, copied, mlfin
from mlfin import data, pipeline
pytestmark = pytest.mark.e2e   # a user's path end to end (make test-fast leaves it out)


def msft_csv(folder: Path, rows: int | None = None) -> Path:
    "Microsoft's daily bars as pmdarima ships them (Date, Open, High, Low, Close, Volume, OpenInt), the first `rows` of them"
    from mlfin.data.samples import data_wheel
    with zipfile.ZipFile(data_wheel('pmdarima')) as wheel:
        packed = wheel.read('pmdarima/datasets/data/msft.tar.gz')
    with tarfile.open(fileobj=io.BytesIO(packed)) as archive:
        text = archive.extractfile('msft.csv').read().decode()
    lines = text.strip().splitlines()
    path = folder/f"msft-{rows or 'all'}.csv"
    path.write_text('\n'.join(lines[:1 + rows] if rows else lines) + '\n')
    return path


# the user's run, on the smallest choice of models that shows what these tests check (their series, their bars, what reruns)
USER_RUN = ['--symbols', 'MSFT', '--models', 'logistic']


@pytest.fixture(scope='session')
def user_golden(tmp_path_factory):
    "A home where a user stored their own MSFT (all but its last two bars) and ran the pipeline on it, built once"
    def ingest(home: Path) -> str:
        home.mkdir(parents=True)
        return mlfin(home, 'ingest', str(msft_csv(home, 7981)), '--symbol', 'MSFT', '--timeframe', '1d').stdout
    return built_once(tmp_path_factory, 'first-hour', USER_RUN, before=ingest)


@pytest.fixture
def user_home(user_golden):
    "The user's home, read only: the test is failed if it changed any of its files"
    yield user_golden
    user_golden.unchanged()


@pytest.fixture
def user_copy(user_golden, tmp_path):
    "The user's home, a copy of the test's own, to change"
    return copied(user_golden, tmp_path)


def test_a_run_never_overwrites_the_users_own_bars(user_home):
    "Defect 1: `mlfin run --symbols MSFT` read the user's MSFT as stored, credited it, and did not ingest the sample over it"
    home = user_home['home']
    assert '7,981 good row(s) (7,981 new' in user_home['before']
    assert 'Corrupted' not in user_home['stderr'] and 'Warning' not in user_home['stderr'], user_home['stderr']
    raw = data.load('MSFT', '1d', adjust=False, store=home/'store')
    assert len(raw) == 7981 and raw.loc['2000-03-01', 'close'].item() == 34.164       # the user's price, not the sample's 90.81
    assert 'adj_factor' not in data.open_store(home/'store').read('MSFT', '1d')        # no sample adjustment mixed in
    listing = mlfin(home, 'data', 'ls').stdout
    assert 'msft-7981.csv' in listing and 'bokeh' not in listing, listing
    summary = json.loads((home/'run'/'summary.json').read_text())
    entry = summary['symbols']['MSFT']
    assert (entry['bars'], Path(entry['source']).name, entry['licence'], entry['first'][:10]) == (7981, 'msft-7981.csv', '', '1986-03-13')
    for page in [home/'reports'/'ingest.html', home/'reports'/'report.html', home/'reports'/'tearsheets'/'tearsheet-MSFT.html']:
        assert 'Quandl' not in page.read_text(), page
    refused = mlfin(home, 'ingest', 'sample:MSFT', check=False)
    assert refused.returncode == 2 and 'MSFT 1d holds your bars from' in refused.stderr, refused.stderr


def test_new_bars_rerun_the_run_and_nothing_else_does(user_copy):
    "Defect 2 (and 10): two more bars rerun every task; then nothing changed runs nothing, whatever folder reports go to"
    home = user_copy['home']
    more = mlfin(home, 'ingest', str(msft_csv(home)), '--symbol', 'MSFT', '--timeframe', '1d')
    assert '(2 new, 0 changed, 7,981 unchanged; 7,983 stored)' in more.stdout, more.stdout
    again = mlfin(home, 'run', *USER_RUN, '--reports', str(home/'reports'))
    assert '5 task(s) ran (ingest, features, train, backtest, report)' in again.stdout, again.stdout
    summary = json.loads((home/'run'/'summary.json').read_text())
    assert (summary['symbols']['MSFT']['bars'], summary['symbols']['MSFT']['last'][:10]) == (7983, '2017-11-10')
    nothing = mlfin(home, 'run', *USER_RUN, '--reports', str(home/'elsewhere'))
    assert '0 task(s) ran (nothing changed)' in nothing.stdout, nothing.stdout
    # every task's executed notebook, as HTML and .ipynb, and the tearsheets
    assert sorted(p.name for p in (home/'elsewhere').iterdir()) == sorted(
        ['tearsheets', *(f"{task}.{kind}" for task in pipeline.TASKS for kind in ('html', 'ipynb'))])
    for done in (again, nothing):
        assert 'Corrupted' not in done.stderr and 'Warning' not in done.stderr, done.stderr


def test_the_same_bars_under_another_name_give_the_same_results(user_copy):
    "Defect 1: nothing but the bars decides a run's numbers (the sample's name once pulled in its bars and adjustment)"
    home = user_copy['home']
    mlfin(home, 'ingest', str(msft_csv(home, 7981)), '--symbol', 'MYMSFT', '--timeframe', '1d')   # the very bars stored as MSFT
    results, asked = {}, {}
    for symbol in ('MSFT', 'MYMSFT'):
        mlfin(home, 'run', '--symbols', symbol, '--start', '2012-01-01', '--models', 'logistic,lightgbm', '--reports', str(home/'reports'))
        entry = json.loads((home/'run'/'summary.json').read_text())['symbols'][symbol]
        results[symbol] = (entry['fingerprint'], entry['model'], entry['strategy']['total_return'], entry['classification']['auc'])
        asked[symbol] = entry['skill']
    assert results['MSFT'] == results['MYMSFT'], results
    # and the same question (issue 51): MYMSFT's run counts MSFT's as an earlier run on the same bars, not a first try at a new one
    assert asked['MYMSFT']['question']['id'] == asked['MSFT']['question']['id'] and asked['MYMSFT']['question']['earlier_runs'] >= 1
    assert asked['MYMSFT']['trials'] >= asked['MSFT']['trials'], (asked['MSFT']['trials'], asked['MYMSFT']['trials'])


def test_a_k_fold_record_is_not_sold_as_a_trading_record(tmp_path):
    "Defect 3: under purged k-fold or CPCV, the report, tearsheet and dashboard text say the trading figures measure skill only"
    done = mlfin(tmp_path, 'run', '--symbols', 'SPX', '--start', '2012-01-01', '--cv', 'cpcv', '--folds', '4', '--models', 'logistic',
                 '--reports', str(tmp_path/'reports'))
    summary = json.loads((tmp_path/'run'/'summary.json').read_text())
    # the end-of-run table: its Sharpe ratios beside 'skill only', a line above saying why (as `mlfin runs` does)
    table = done.stdout.split('\nreports:')[0]
    assert 'they are not a record that could have been traded in time order' in table, done.stdout
    assert next(line for line in table.splitlines() if line.startswith('SPX ')).endswith('(skill only: not tradeable in time order)'), table
    assert summary['validation']['tradeable'] is False and summary['validation']['cv'] == 'cpcv'
    assert 'not a record that could have been traded in time order' in summary['execution_model']
    predictions = pd.read_parquet(tmp_path/'run'/'predictions.parquet')
    assert predictions.index.is_unique   # one prediction per bar: the mean of the splits that tested it
    page = (tmp_path/'reports'/'tearsheets'/'tearsheet-SPX.html').read_text()
    assert 'Not a trading record' in page and '(walk-forward, purged)' not in page
    report = (tmp_path/'reports'/'report.html').read_text()
    assert 'combinatorial purged' in report and 'walk-forward, purged' not in report
    from mlfin.report.products import load_run
    from mlfin.report.tables import symbol_tables_html
    assert 'Not a trading record' in symbol_tables_html(load_run(tmp_path/'run'), 'SPX')   # what the dashboard shows
    refused = mlfin(tmp_path, 'run', '--symbols', 'SPX', '--cv', 'purged_kfold', '--sizing', 'kelly', check=False)
    assert refused.returncode == 2 and 'it needs --cv walk_forward or rolling' in refused.stderr


def test_production_moves_only_for_a_better_model_of_the_same_question_and_never_over_a_person(tmp_path):
    "Defect 6, through the command line on the E-mini S&P minute bars (where a forest beats the base rate): the policy, end to end"
    base = ['run', '--symbols', 'ES:1m', '--models', 'random_forest,logistic', '--model-params', 'random_forest.n_estimators=40',
            '--folds', '3', '--promote-min-sharpe', '-100',
            '--reports', str(tmp_path/'reports')]
    said = []
    def run(*extra):
        said.append(mlfin(tmp_path, *base, *extra).stdout)
        return json.loads((tmp_path/'run'/'summary.json').read_text())['registry']['ES']
    def production():
        from mlfin.paths import set_home
        set_home(tmp_path)
        from mlfin.models import describe
        return next((v['version'] for v in describe('mlfin.ES.1m') if 'production' in v['aliases']), None)
    first = run()
    assert first['decision'] == 'promoted' and production() == first['version'], first   # gates passed, nothing in production yet
    assert f"production: mlfin.ES.1m version {first['version']} (promoted by this run)" in said[-1], said[-1]   # the run's last lines say what is served
    second = run('--seed', '1')
    assert 'out-of-sample bars:' in second['reason'] and second['versus']['bars'] >= 100, second   # compared on the bars both predicted
    beat = second['versus']['candidate'] > second['versus']['incumbent']
    assert second['production'] == beat and production() == (second['version'] if beat else first['version']), second
    held = production()
    done = mlfin(tmp_path, 'models', 'promote', 'mlfin.ES.1m', str(first['version'] - 1), '--reason', 'a person prefers the baseline')
    assert 'runs leave it be' in done.stdout
    third = run('--seed', '2')
    assert (third['decision'], production()) == ('held', first['version'] - 1) and 'chosen by a person' in third['reason'], third
    assert f"production: mlfin.ES.1m version {first['version'] - 1} (kept: this run's version {third['version']} held: " in said[-1], said[-1]
    assert 'released' in mlfin(tmp_path, 'models', 'release', 'ES:1m').stdout
    other = run('--label', 'triple_barrier', '--horizon', '5')   # another question: never switched to by a run
    assert production() == first['version'] - 1 and other['decision'] in ('held', 'refused'), other
    if other['decision'] == 'held': assert 'answers another question: label direction (this one: triple_barrier)' in other['reason']
    listing = mlfin(tmp_path, 'models', 'ls', 'ES').stdout
    assert 'triple_barrier' in listing and 'walk_forward' in listing and held


def test_reading_the_data_and_a_wrong_bar_size(user_copy, tmp_path):
    "What the user missed: a series' anomalies and gaps dated, its quarantine, its bars shown and exported; defect 7's wrong bar size refused"
    home = user_copy['home']
    details = mlfin(home, 'quality', 'MSFT', '--details').stdout
    assert 'stale 1986-04-09' in ' '.join(details.split()) and 'gap' in details and '1 1d bar(s) missing' in details, details
    shown = mlfin(home, 'data', 'show', 'MSFT', '--start', '2000-03-01', '--end', '2000-03-01', '--raw').stdout
    assert '34.164' in shown and 'msft-' in shown, shown
    mlfin(home, 'data', 'export', 'MSFT:1d', str(tmp_path/'back.csv'), '--start', '2017-01-01')
    again = mlfin(home, 'ingest', str(tmp_path/'back.csv'), '--symbol', 'MSFT', '--timeframe', '1d')
    assert '0 new, 0 changed' in again.stdout, again.stdout   # the export reads back as the very bars stored
    hourly = mlfin(home, 'ingest', str(msft_csv(tmp_path)), '--symbol', 'MSFT', '--timeframe', '1h', check=False)
    assert hourly.returncode == 2 and 'bars are 1d apart, not 1h: ingest them as --timeframe 1d' in hourly.stderr, hourly.stderr
    assert 'nothing quarantined' in mlfin(home, 'data', 'quarantine', 'MSFT').stdout
