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
    'ragged_row.csv': ('error', 'line 7: 8 fields where the header has 6', 0),
    'truncated.parquet': ('error', 'not a readable Parquet file', 0),
    'text_named.parquet': ('error', 'not a readable Parquet file', 0),
    'invalid.json': ('error', 'not valid JSON', 0),
    'no_candles.json': ('error', 'JSON object without a list of candles', 0),
    'spreadsheet.xlsx': ('error', "unknown file type '.xlsx'", 0),
    'hourly_bars.csv': ('error', 'bars are 1h apart, not 1d', 0),
    'all_bad.csv': ('error', 'row 1, column volume: negative volume (-1.0) (and 9 more bad row(s))', 0),  # not strict: 'no valid rows, all 10 quarantined'
    'text_in_number.csv': ('quarantine', 'row 3, column close: not a number (n/a?)', 9),
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
