"""Non-bar series in (issue 55): files, frames, PostgreSQL tables and the embedded series read, validated and stored as a
user meets them. Every refusal is one line naming the file, row and column, and leaves the store as it was; the same
rows twice are stored once; a revision is a later vintage beside the first print. The rows are real (core CPI and
Moody's yields from arch.data), except the fundamentals file, which is made here and labelled synthetic (no
fundamentals ship offline). The stores' own promises (both stores, vintages, stamps) are tests/test_observation_store.py's."""
import gzip
import pandas as pd, pytest
from conftest import mlfin
from mlfin.errors import BadInput, Unavailable
from mlfin.data.observations_sources import EMBEDDED_OBSERVATIONS, ingest_observations, load_observations, read_embedded, store_embedded
from mlfin.data.samples import shipped_file
from mlfin.data.stores import open_store

CPI_RULE = 'day 15 of next month 08:30 America/New_York'


def arch_lines(file: str, rows: slice) -> list[str]:
    "Lines of one of arch's data files, as shipped (the header first)"
    lines = gzip.open(shipped_file('arch', file), 'rt', encoding='utf-8-sig').read().splitlines()
    return [lines[0], *lines[1:][rows]]


def rows(frame) -> list[tuple]: return list(frame[['period', 'known', 'value']].itertuples(index=False, name=None))


def stored(store) -> list[str]:
    return sorted(open_store(store).observation_series()['name'])


def test_refusals_name_file_row_and_column_and_store_nothing(tmp_path):
    store = str(tmp_path/'store')
    header, *rows = arch_lines('data/core_cpi/core-cpi.csv.gz', slice(-6, None))   # Date,CPILFESL; June to November 2018
    def file(name, *lines, head=header):
        (tmp_path/name).write_text('\n'.join([head, *lines]) + '\n'); return str(tmp_path/name)
    good = file('cpi.csv', *rows)
    refusals = [   # (source, what it is told, the one line expected: file, row and column named)
        (file('ragged.csv', *rows[:3], '9/1/2018,257.2,extra'), dict(rule=CPI_RULE), "ragged.csv: not a readable CSV or Parquet file (Error tokenizing data. C error: Expected 2 fields in line 5, saw 3)"),
        (file('text.csv', *rows[:3], '9/1/2018,n/a'), dict(rule=CPI_RULE), "text.csv: row 4, column CPILFESL: 'n/a' is not a number"),
        (file('empty.csv', *rows[:1], '8/1/2018,'), dict(rule=CPI_RULE), "empty.csv: row 2, column CPILFESL: missing value"),
        (file('date.csv', *rows[:1], 'Sept 2018?,1.5'), dict(rule=CPI_RULE), "date.csv: row 2, column Date: 'Sept 2018?' is not a date"),
        (file('twice.csv', *rows[:2], rows[1]), dict(rule=CPI_RULE), "twice.csv: row 3, column Date: period 2018-07-01 known at 2018-08-15 12:30 UTC twice (rows 2 and 3)"),
        (file('early.csv', '6/1/2018,2018-06-20T08:30-04:00,256.6', head='Date,known,CPILFESL'), dict(frequency='M'),
         "early.csv: row 1, column known: released 2018-06-20 12:30 UTC, before its period (2018-06-01, monthly) ends on 2018-06-30: a look-ahead"),
        (file('naive.csv', '6/1/2018,2018-07-12 08:30,256.6', head='Date,known,CPILFESL'), dict(frequency='M'), "naive.csv: row 1, column known: '2018-07-12 08:30' has no time zone"),
        (good, {}, "cpi.csv: no release times (a column named known) and no rule"),
        (good, dict(rule='mid-month'), "cpi.csv: cannot read the release rule 'mid-month'; use one of: day N of next month HH:MM ZONE;"),
        (good, dict(rule=CPI_RULE, frequency='monthly'), "frequency: unknown frequency 'monthly'"),
        (str(tmp_path/'none.csv'), dict(rule=CPI_RULE), "none.csv: no such file"),
    ]
    for source, told, expected in refusals:
        with pytest.raises(Exception) as refused: ingest_observations(source, store=store, **told)
        said = str(refused.value)
        assert (isinstance(refused.value, BadInput) or 'no such file' in said, '\n' not in said) == (True, True), said
        if expected: assert expected in said, said
    assert stored(store) == []   # nothing of any refused file
    # the CLI as a user types it: the refusal is one line on standard error, no traceback, exit 2, nothing stored
    done = mlfin(tmp_path, 'data', 'ingest-observations', str(tmp_path/'text.csv'), '--rule', CPI_RULE, '--store', store, check=False)
    assert (done.returncode, done.stderr.strip().splitlines(), 'Traceback' in done.stderr + done.stdout) == \
           (2, [f"mlfin: error: {tmp_path/'text.csv'}: row 4, column CPILFESL: 'n/a' is not a number"], False), done.stderr
    # a batch is whole or nothing: BAA stored under one rule, a file of AAA and BAA under another stores no AAA either
    yields = arch_lines('data/default/default.csv.gz', slice(-3, None))   # Date,AAA,BAA; October to December 2018
    both = file('yields.csv', *yields[1:], head=yields[0])
    ingest_observations(pd.read_csv(both)[['Date', 'BAA']], rule='day 15 of next month 16:15 America/New_York', store=store)
    with pytest.raises(BadInput, match="baa: stored with rule 'day 15 of next month 16:15 America/New_York', the batch gives 'next session open XNYS'"):
        ingest_observations(both, rule='next session open XNYS', store=store)
    assert stored(store) == ['baa']


def test_resends_are_stored_once_and_revisions_are_vintages(tmp_path):
    store = str(tmp_path/'store')
    header, *rows = arch_lines('data/core_cpi/core-cpi.csv.gz', slice(-3, None))   # September to November 2018
    (tmp_path/'cpi.csv').write_text('\n'.join([header, *rows]) + '\n')
    first = ingest_observations(tmp_path/'cpi.csv', name='cpi_core', rule=CPI_RULE, store=store)
    again = ingest_observations(tmp_path/'cpi.csv', name='cpi_core', rule=CPI_RULE, store=store)
    assert [(first.added, first.unchanged), (again.added, again.unchanged)] == [(3, 0), (0, 3)]
    cpi = load_observations('cpi_core', store=store)
    assert (cpi.attrs['rule'], cpi.loc[cpi['period'] == '2018-10-01', 'known'].tolist()) == (CPI_RULE, [pd.Timestamp('2018-11-15 13:30', tz='UTC')])
    # a vintage file (release times given): October's first print, then a revision known in February
    prints = pd.DataFrame({'date': ['2018-10-01', '2018-10-01'], 'known': ['2018-11-14T08:30-05:00', '2019-02-13T08:30-05:00'], 'value': [258.939, 258.8]})
    assert ingest_observations(prints.iloc[:1], name='cpi_vintages', frequency='M', store=store).added == 1
    assert (ingest_observations(prints, name='cpi_vintages', frequency='M', store=store).added) == 1   # the first print unchanged, the revision added
    both = load_observations('cpi_vintages', store=store)
    assert (both['value'].tolist(), both.attrs['rule']) == ([258.939, 258.8], 'as given')
    # an embedded series is stored by a run that reads it (never by a read), by its own rule, and read from the store after
    assert 'aaa' not in stored(store) and store_embedded(['aaa', 'cpi_core'], store) == ['aaa']
    aaa = load_observations('aaa', store=store)
    assert (len(aaa), aaa.attrs['rule'], stored(store)) == (1200, EMBEDDED_OBSERVATIONS['aaa'].rule, ['aaa', 'cpi_core', 'cpi_vintages'])
    assert aaa['value'].tolist() == read_embedded('aaa')['value'].tolist()


def test_fundamentals_long_layout(tmp_path):
    "SYNTHETIC filings (made here: no fundamentals ship offline) in the documented long layout, as CSV and as Parquet"
    store = str(tmp_path/'store')
    filings = pd.DataFrame({'Symbol': ['AAPL', 'AAPL', 'AAPL', 'AAPL', 'MSFT', 'MSFT'],
                            'Field': ['eps', 'eps', 'eps', 'shares', 'eps', 'eps'],
                            'Period End': ['2023-07-01', '2023-09-30', '2023-09-30', '2023-09-30', '2023-09-30', '2023-12-31'],
                            'Filed At': ['2023-08-04', '2023-11-03', '2024-02-02', '2023-11-03', '2023-10-26', '2024-01-30'],   # the third: a restatement
                            'value': [1.26, 1.46, 1.47, 15_550.1, 2.99, 2.93]})
    filings.to_csv(tmp_path/'filings.csv', index=False)
    done = ingest_observations(tmp_path/'filings.csv', frequency='Q', store=store)
    assert done.series[['name', 'symbol', 'rows', 'rule']].values.tolist() == [
        ['eps', 'AAPL', 3, 'filed, next session open XNYS'], ['shares', 'AAPL', 1, 'filed, next session open XNYS'], ['eps', 'MSFT', 2, 'filed, next session open XNYS']]
    eps = load_observations('eps', 'AAPL', store=store)
    assert rows(eps) == [   # a 52-week year's quarter ending 1 July is the second quarter
        (pd.Timestamp('2023-04-01'), pd.Timestamp('2023-08-07 13:30', tz='UTC'), 1.26),   # filed on a Friday: Monday's open
        (pd.Timestamp('2023-07-01'), pd.Timestamp('2023-11-06 14:30', tz='UTC'), 1.46),
        (pd.Timestamp('2023-07-01'), pd.Timestamp('2024-02-05 14:30', tz='UTC'), 1.47)]   # the restatement: a later vintage
    assert eps.attrs['symbol'] == 'AAPL'
    filings.to_parquet(tmp_path/'filings.parquet')
    assert ingest_observations(tmp_path/'filings.parquet', frequency='Q', store=store).unchanged == 6   # the same rows, as Parquet
    # filing times with their zone are taken as given; a filing before its period ends is refused, naming row and column
    timed = filings.assign(**{'Filed At': [f"{d}T16:30-04:00" for d in filings['Filed At']]}).iloc[[0, 4]]
    assert ingest_observations(timed, frequency='Q', store=str(tmp_path/'other')).series['rule'].tolist() == ['as given', 'as given']
    filings.loc[5, 'Filed At'] = '2023-12-29'
    filings.to_csv(tmp_path/'early.csv', index=False)
    with pytest.raises(BadInput, match=r"early\.csv: row 6, column Filed At: filed 2023-12-29, before its period ends on 2023-12-31: a look-ahead$"):
        ingest_observations(tmp_path/'early.csv', frequency='Q', store=store)
    assert load_observations('eps', 'MSFT', store=store)['value'].tolist() == [2.99, 2.93]
    # the CLI as a user types it: a company's series is NAME:SYMBOL, its restatement a second vintage of its period; rm asks, --yes does not
    shown = mlfin(tmp_path, 'data', 'show', 'eps:AAPL', '--observations', '--last', '2', '--store', store).stdout.splitlines()
    assert [line.split() for line in shown[-3:]] == [['period', 'known', 'value', 'vintage'], ['2023-07-01', '2023-11-06', '14:30', 'UTC', '1.46', '1'],
                                                     ['2023-07-01', '2024-02-05', '14:30', 'UTC', '1.47', '2']], shown
    assert '  3 row(s): 2 period(s) from 2023-04-01 to 2023-07-01, at most 2 vintage(s) a period' in shown[3], shown
    asked = mlfin(tmp_path, 'data', 'rm', 'eps:MSFT', '--observations', '--store', store, input='n\n', check=False)
    gone = mlfin(tmp_path, 'data', 'rm', 'eps:MSFT', '--observations', '--yes', '--store', store)
    unknown = mlfin(tmp_path, 'data', 'show', 'eps', '--observations', '--store', store, check=False)
    assert (asked.returncode, gone.stdout.strip(), unknown.returncode, unknown.stderr.strip(), stored(store)) == \
           (1, 'removed eps of MSFT: 2 row(s) and its record', 2, 'mlfin: error: no observations of eps in the store; it holds eps of AAPL, shares of AAPL', ['eps', 'shares'])
    # a store of non-bar series only: `mlfin quality` lists them (the quality page's table), where it said the store was empty
    said = mlfin(tmp_path, 'quality', '--store', store).stdout.splitlines()
    assert (said[0], [line.split()[:4] for line in said[4:]]) == \
           ('no bars stored (`mlfin ingest`)', [['eps', 'of', 'AAPL', 'Q'], ['shares', 'of', 'AAPL', 'Q']]), said


def test_postgresql_table_source(postgres_server, tmp_path):
    "A team's table of real core CPI with its release times (timestamptz), read like bars' postgresql://host/db?table=T"
    import psycopg, uuid
    db = f"o_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"{postgres_server}/postgres", autocommit=True) as con: con.execute(f"CREATE DATABASE {db}")
    cpi = read_embedded('cpi_core').tail(3)
    with psycopg.connect(f"{postgres_server}/{db}", autocommit=True) as con:
        con.execute("CREATE TABLE cpi (period date, released timestamptz, core_cpi numeric)")
        for row in cpi.itertuples(): con.execute("INSERT INTO cpi VALUES (%s, %s, %s)", (row.period.date(), row.known.to_pydatetime(), str(row.value)))
    store = str(tmp_path/'store')
    done = ingest_observations(f"{postgres_server}/{db}?table=cpi", store=store)
    back = load_observations('core_cpi', store=store)
    assert (done.added, back.attrs['rule'], rows(back)) == \
           (3, 'as given', rows(cpi))
    with pytest.raises(Unavailable, match=r'^postgresql table nothing: relation "nothing" does not exist'):
        ingest_observations(f"{postgres_server}/{db}?table=nothing", store=store)
    # the address is read as bars' are (data.postgres_address): an option a series table does not take is refused, not ignored
    with pytest.raises(BadInput, match=r'^127\.0\.0\.1:\d+: unknown option symbol_column; the address is postgresql://host/db\?table=T$'):
        ingest_observations(f"{postgres_server}/{db}?table=cpi&symbol_column=ticker", store=store)
