"""Every file of the malformed-input corpus (tests/corpus, written by make_corpus.py from real AAPL
bars) gets its documented outcome through `mlfin ingest`, as a user types it: a whole-file problem is
one line and exit 2; bad rows are quarantined with their reason while the good rows are stored, or,
with --strict, the file is rejected. After every rejection the store is byte-for-byte unchanged."""
import subprocess, sys
from pathlib import Path
import pytest
from typer.testing import CliRunner
from mlfin.cli import app
from mlfin import data
from conftest import store_snapshot

CORPUS = Path(__file__).parent/'corpus'
# file: (outcome, what the message says, good rows stored when not strict)
CASES = {
    'empty.csv': ('error', 'file is empty', 0),
    'blank_lines.csv': ('error', 'file is empty', 0),
    'header_only.csv': ('error', 'no rows (header only)', 0),
    'missing_column.csv': ('error', 'layout not recognised (columns: ts, open, high, low, volume); missing close', 0),
    'misnamed_columns.csv': ('error', 'layout not recognised (columns: Zeit, Eroeffnung, Hoch, Tief, Schluss, Umsatz)', 0),
    'only_text.csv': ('error', 'layout not recognised', 0),
    'binary_garbage.csv': ('error', 'not a text file (byte 0x', 0),
    'utf16.csv': ('error', 'not a text file', 0),
    'truncated.csv.gz': ('error', 'cannot read (Compressed file ended', 0),
    'truncated.parquet': ('error', 'not a readable Parquet file', 0),
    'text_named.parquet': ('error', 'not a readable Parquet file', 0),
    'invalid.json': ('error', 'not valid JSON', 0),
    'no_candles.json': ('error', 'JSON object without a list of candles', 0),
    'spreadsheet.xlsx': ('error', "unknown file type '.xlsx'", 0),
    'hourly_bars.csv': ('error', 'bars are 1h apart, not 1d', 0),
    'all_bad.csv': ('error', 'row 1, column volume: negative volume (-1.0) (and 9 more bad row(s))', 0),  # not strict: 'no valid rows, all 10 quarantined'
    'european.csv': ('error', "numbers such as '468,85' have a decimal comma: pass --decimal ,", 0),
    'text_in_number.csv': ('quarantine', 'row 3, column close: not a number (n/a?)', 9),
    'ragged_row.csv': ('quarantine', 'row 6, column (row): 8 fields where the header has 6 (line 7) (2013-02-25,', 9),
    'high_below_low.csv': ('quarantine', 'row 2, column high: high < low (440.0)', 9),
    'high_below_close.csv': ('quarantine', 'row 5, column high: high below open or close (450.7)', 9),
    'negative_volume.csv': ('quarantine', 'row 5, column volume: negative volume (-100.0)', 9),
    'zero_price.csv': ('quarantine', 'row 6, column open: non-positive price (0.0)', 9),
    'missing_value.csv': ('quarantine', 'row 7, column low: missing value', 9),
    'infinite_value.csv': ('quarantine', 'row 8, column volume: not a finite number (inf)', 9),
    'unparseable_date.csv': ('quarantine', 'row 2, column ts: not a time (2013-02-30)', 9),
    'mixed_timezones.csv': ('quarantine', 'row 5, column ts: time zone differs from the other rows', 9),
    'duplicate_conflicting.csv': ('quarantine', 'row 4, column ts: timestamp given more than once with different values (rows 4, 5)', 9),
    'duplicate_exact.csv': ('stored', '1 exact duplicate row(s) dropped', 10),
    'unsorted.csv': ('stored', '9 row(s) out of time order, sorted', 10),
    'semicolons.csv': ('stored', '10 good row(s)', 10),
    'good.csv': ('stored', '10 good row(s) (10 new', 10),
    'good.parquet': ('stored', '10 good row(s) (10 new', 10),
    'good.json': ('stored', '10 good row(s) (10 new', 10),
}
runner = CliRunner()


def test_the_corpus_is_complete():
    on_disk = {p.name for p in CORPUS.iterdir() if p.suffix != '.py' and p.name != '__pycache__'}
    assert on_disk == set(CASES)
    assert sum(outcome != 'stored' for outcome, _, _ in CASES.values()) >= 25


@pytest.fixture()
def seeded(store_url):
    "A store of each kind already holding other bars (the SPX sample), so that 'unchanged' means something"
    assert runner.invoke(app, ['ingest', 'sample:SPX', '--store', store_url]).exit_code == 0
    return store_url


def ingest(store, name, *extra):
    return runner.invoke(app, ['ingest', str(CORPUS/name), '--symbol', 'AAPL', '--timeframe', '1d', '--store', str(store), *extra])


@pytest.mark.parametrize('name', sorted(CASES))
def test_strict_ingest_rejects_or_stores_and_never_half_writes(seeded, name):
    outcome, message, good = CASES[name]
    before = store_snapshot(seeded)
    result = ingest(seeded, name, '--strict')
    if outcome == 'stored':
        assert result.exit_code == 0, result.output
        assert message in result.output
        assert len(data.load('AAPL', '1d', store=seeded)) == good
        return
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"mlfin: error: {CORPUS/name}: "), result.output
    assert message in lines[0]
    if outcome == 'quarantine': assert lines[0].endswith('strict: nothing stored')
    assert store_snapshot(seeded) == before  # byte for byte: no bars, no quarantine, no metadata


@pytest.mark.parametrize('name', sorted(n for n, c in CASES.items() if c[0] == 'quarantine'))
def test_default_ingest_stores_the_good_rows_and_quarantines_the_bad(seeded, name):
    _, message, good = CASES[name]
    result = ingest(seeded, name)
    assert result.exit_code == 0, result.output
    assert f"quarantined, first: {message}" in result.output
    assert len(data.load('AAPL', '1d', store=seeded)) == good
    rows = len((CORPUS/name).read_text().strip().splitlines()) - 1
    kept = data.open_store(seeded).quarantined('AAPL')
    assert len(kept) == rows - good and (kept['source'] == str(CORPUS/name)).all()
    assert message.split(': ', 1)[1].split(' (')[0] in kept['reason'].iloc[0]
    assert data.ls(seeded).set_index('symbol').loc['AAPL', 'quarantined'] == rows - good


def test_the_same_file_twice_is_stored_once(store_url):
    for _ in range(2): result = ingest(store_url, 'good.csv')
    assert '(0 new, 0 changed, 10 unchanged; 10 stored)' in result.output
    assert len(data.load('AAPL', '1d', store=store_url)) == 10


def test_a_user_error_is_one_line_without_a_traceback_from_the_real_command(tmp_path):
    done = subprocess.run([str(Path(sys.executable).parent/'mlfin'), 'ingest', str(CORPUS/'truncated.parquet'), '--symbol', 'AAPL',
                           '--timeframe', '1d', '--store', str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 2 and done.stdout == ''
    assert done.stderr.count('\n') == 1 and 'Traceback' not in done.stderr
    assert done.stderr.startswith(f"mlfin: error: {CORPUS/'truncated.parquet'}: not a readable Parquet file")


def test_a_european_file_is_read_with_its_options_and_told_what_they_are(tmp_path):
    "Decimal commas and day-first dates (a German export): each named with the option that reads it, then read to the same bars"
    store = tmp_path/'store'
    told = ingest(store, 'european.csv', '--decimal', ',')
    assert told.exit_code == 2 and "dates such as '15.02.2013' are not ISO (2024-12-31): pass --dayfirst" in told.output, told.output
    done = ingest(store, 'european.csv', '--decimal', ',', '--dayfirst')
    assert done.exit_code == 0 and '10 good row(s) (10 new' in done.output, done.output
    plain = tmp_path/'plain'
    assert ingest(plain, 'good.csv').exit_code == 0
    import pandas as pd
    pd.testing.assert_frame_equal(data.load('AAPL', '1d', store=store), data.load('AAPL', '1d', store=plain), check_like=True)
    assert ingest(store, 'european.csv', '--decimal', ';').output.strip().endswith("--decimal ';': use . or ,")


def test_a_row_with_an_extra_field_is_quarantined_by_its_line_and_the_rest_stored(tmp_path):
    "One ragged row no longer rejects the file: the other rows are stored and keep their numbers (defect 8 of issue 16)"
    store = tmp_path/'store'
    text = (CORPUS/'good.csv').read_text().splitlines()
    text[3] += ',99'; text[8] = text[8].rsplit(',', 1)[0]   # row 3 has a field too many, row 8 one too few
    text[6] = text[6].replace(text[6].split(',')[1], '-5', 1)  # and row 6 a bad price, numbered as the file numbers it
    (tmp_path/'two.csv').write_text('\n'.join(text) + '\n')
    result = runner.invoke(app, ['ingest', str(tmp_path/'two.csv'), '--symbol', 'AAPL', '--timeframe', '1d', '--store', str(store)])
    assert result.exit_code == 0 and '7 good row(s)' in result.output, result.output
    kept = data.open_store(store).quarantined('AAPL')
    assert kept[['row', 'column']].values.tolist() == [[3, '(row)'], [6, 'open'], [8, '(row)']], kept
    assert kept['reason'].tolist()[0] == '7 fields where the header has 6 (line 4)' and kept['reason'].tolist()[2] == '5 fields where the header has 6 (line 9)'
