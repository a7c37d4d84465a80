"""The store's promises, for the embedded Parquet store and for PostgreSQL alike: a writer killed
mid-write leaves the previous data readable; two concurrent writers of one series both land; range
queries and raw/adjusted reads. Bars for the big writes are synthetic (labelled) scale fillers; the
content checks use the real SPX sample."""
import datetime as dt, signal, subprocess, sys, textwrap, time
from pathlib import Path
import numpy as np, pandas as pd
import pytest
from hypothesis import event, given, settings, strategies as st
from mlfin import data
from mlfin.errors import BadInput, NotFound, Unavailable
from mlfin.data.stores import open_store
from mlfin.data.samples import read_sample
from mlfin.data.sources import plain_records, table_records

WRITER = textwrap.dedent('''
    import sys, time, numpy as np, pandas as pd
    from mlfin.data.bars import bars_frame
    from mlfin.data.stores import open_store
    url, first, n, stop = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] if len(sys.argv) > 4 else ''
    if stop == 'file':   # the Parquet store: halt once the third period file's temporary is written (others renamed in, none committed)
        import itertools
        from mlfin.data.stores import parquet_write   # where the period files are written (data.stores.parquet before)
        real, calls = parquet_write._write_parquet, itertools.count(1)
        def halted(table, tmp):
            real(table, tmp)
            if next(calls) == 3: print('inside', flush=True); time.sleep(3600)
        parquet_write._write_parquet = halted
    if stop == 'append':   # the Parquet store's tail log: halt half-way through an append's bytes (the process's own os.pwrite)
        import os
        real = os.pwrite
        def torn(fd, data, offset):
            real(fd, bytes(data[:len(data) // 2]), offset); print('inside', flush=True); time.sleep(3600)
        os.pwrite = torn
    if stop == 'commit':   # PostgreSQL: halt at the transaction's last statement (every row inserted, nothing committed)
        import psycopg
        real = psycopg.Connection.execute
        def halted(self, query, *args, **kwargs):
            if 'pg_notify' in str(query): print('inside', flush=True); time.sleep(3600)
            return real(self, query, *args, **kwargs)
        psycopg.Connection.execute = halted
    ts = pd.date_range(first, periods=n, freq='1min', tz='UTC')
    close = 100 + np.cumsum(np.random.default_rng(n).normal(0, 0.01, n))   # synthetic: a scale filler
    bars = bars_frame(pd.DataFrame({'open': close, 'high': close + 0.02, 'low': close - 0.02, 'close': close,
                                    'volume': 1.0}, index=ts), 'SYN', '1m')
    store = open_store(url); store.has('SYN', '1m')
    print('writing', flush=True)
    print(store.write(bars), flush=True)
''')


def writer(url: str, first: str, n: int, stop: str = '') -> subprocess.Popen:
    "A process writing `n` synthetic minute bars of SYN from `first`; `stop`: where it halts to be killed ('file', 'commit')"
    return subprocess.Popen([sys.executable, '-c', WRITER, url, first, str(n), stop], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def strays(folder: Path) -> list:
    "Files in a Parquet series' folder that its manifest does not name: temporaries and uncommitted period files"
    from mlfin.data.stores.parquet import read_manifest
    parts, retired = read_manifest(folder, retired=True)
    named = set(parts.files) | {name for name, _ in retired}
    return sorted(f.name for f in folder.iterdir() if (f.suffix == '.parquet' and f.name not in named) or f.name.endswith('.tmp'))


def test_a_writer_killed_mid_write_leaves_the_old_data_readable(store_url):
    old = writer(store_url, '2024-01-01', 1_000); assert old.wait(120) == 0, old.stderr.read()
    before = data.load('SYN', '1m', store=store_url)
    # killed at a chosen point inside the write, not after a guessed sleep: a fast machine finished before the guess
    parquet = not store_url.startswith('postgresql://')
    big = writer(store_url, '2023-01-01', 300_000, 'file' if parquet else 'commit')   # thirty weeks: thirty period files
    try:
        assert big.stdout.readline().strip() == 'writing', big.stderr.read()
        assert big.stdout.readline().strip() == 'inside', big.stderr.read()
        if parquet:
            folder = Path(store_url)/'bars'/'timeframe=1m'/'symbol=SYN'
            assert list(folder.glob('.*.tmp')), sorted(f.name for f in folder.iterdir())   # halted inside a file's write
    finally: big.send_signal(signal.SIGKILL); big.wait(30)
    assert big.stdout.read() == ''  # it never finished
    if parquet: assert {'tmp', 'parquet'} <= {name.rsplit('.', 1)[1] for name in strays(folder)}, strays(folder)   # what it left behind
    after = data.load('SYN', '1m', store=store_url)
    pd.testing.assert_frame_equal(after, before)
    again = writer(store_url, '2024-01-01', 1_000); assert again.wait(120) == 0, again.stderr.read()   # the next writer is not blocked either
    assert "'unchanged': 1000" in again.stdout.read()
    if parquet:   # and it cleared what the killed one left: no temporary, no file the manifest does not name
        assert not strays(folder), strays(folder)
    pd.testing.assert_frame_equal(data.load('SYN', '1m', store=store_url), before)


def test_a_collector_killed_mid_append_loses_that_append_only(tmp_path):
    "Parquet: a writer killed half-way through an append to the tail log leaves every bar before it readable; the next append cuts its bytes"
    from mlfin.data.stores.parquet import read_manifest
    url, folder = str(tmp_path/'store'), tmp_path/'store'/'bars'/'timeframe=1m'/'symbol=SYN'
    for first, n in (('2024-01-01', 1_000), ('2024-01-01 16:40', 5)):   # periods, then five new bars: appended to the tail
        done = writer(url, first, n); assert done.wait(120) == 0, done.stderr.read()
    tail = folder/read_manifest(folder).tail['file']
    before, held = data.load('SYN', '1m', store=url), tail.stat().st_size
    assert len(before) == 1_005 and held > 0
    killed = writer(url, '2024-01-01 16:45', 1, 'append')
    try:
        assert killed.stdout.readline().strip() == 'writing', killed.stderr.read()
        assert killed.stdout.readline().strip() == 'inside', killed.stderr.read()
    finally: killed.send_signal(signal.SIGKILL); killed.wait(30)
    assert tail.stat().st_size > held   # half an append on disk
    pd.testing.assert_frame_equal(data.load('SYN', '1m', store=url), before)   # not read: the bars before it are
    again = writer(url, '2024-01-01 16:45', 1); assert again.wait(120) == 0, again.stderr.read()
    assert "'new': 1" in again.stdout.read()
    after = data.load('SYN', '1m', store=url)
    assert len(after) == 1_006 and read_manifest(folder).tail['file'] == tail.name
    assert tail.stat().st_size == held + 12 + 6 * 8   # the torn half cut, then one frame: its head and one bar's time and five values
    pd.testing.assert_frame_equal(after.iloc[:-1], before)


_STEPS = st.lists(st.tuples(st.sampled_from(['append', 'correct', 'resend', 'backfill', 'spread', 'overlap']), st.integers(1, 5)), min_size=1, max_size=14)

@settings(max_examples=60, deadline=None, derandomize=True)
@given(_STEPS)
def test_the_tail_log_reads_as_every_write_in_order(steps):
    """Parquet: whatever mix of a collector's appends, corrections and resends, backfills into the periods, a new column and
    batches straddling both, with the tail folded every fourth append, the store reads back what an upsert of every batch in
    turn gives, in this process and in a new one; its listing and last bars agree"""
    import tempfile
    from unittest import mock
    from mlfin.data.bars import bars_frame
    from mlfin.data.stores import tail as tail_log
    def bars(minutes, close, spread=None):   # synthetic minute bars (a scale filler): open = low = close - 0.5, high = close + 0.5
        index = pd.DatetimeIndex(pd.Timestamp('2024-01-05 20:00', tz='UTC') + pd.to_timedelta(np.asarray(minutes), 'min'))
        frame = pd.DataFrame({'open': close - 0.5, 'high': close + 0.5, 'low': close - 0.5, 'close': close, 'volume': 1.0}, index=index)
        if spread is not None: frame['spread'] = spread
        return bars_frame(frame, 'SYN', '1m')
    def upsert(held, new):   # the store's promise: new values win on equal times, in the columns the batch has
        columns = list(dict.fromkeys([*held.columns, *new.columns]))
        out = held.reindex(columns=columns)
        common = new.index.intersection(out.index)
        out.loc[common, list(new.columns)] = new.loc[common].to_numpy()
        return pd.concat([out, new.drop(index=common).reindex(columns=columns)]).sort_index()
    with tempfile.TemporaryDirectory() as d, mock.patch.object(tail_log, 'TAIL_FRAMES', 4):
        store = open_store(d)
        held = bars(np.arange(0, 600), np.linspace(100, 110, 600))   # across a week's end: two periods
        store.write(held)
        for i, (kind, n) in enumerate(steps):
            last = int((held.index[-1] - held.index[0]).total_seconds() // 60)
            minutes = {'append': np.arange(last + 1, last + 1 + n), 'correct': np.arange(last - n + 1, last + 1),
                       'resend': np.arange(last - n + 1, last + 1), 'backfill': np.arange(10, 10 + n),
                       'spread': np.arange(last + 1, last + 1 + n), 'overlap': np.arange(last - 300, last + n)}[kind]
            close = (held['close'].reindex(held.index[0] + pd.to_timedelta(minutes, 'min')).to_numpy() if kind == 'resend'
                     else 200.0 + i + np.arange(len(minutes)) / 10)
            batch = bars(minutes, close, 0.25 if kind == 'spread' else None)
            if kind == 'resend': batch = held.reindex(batch.index)[list(batch.columns) + (['spread'] if 'spread' in held else [])].dropna(axis=1, how='all')
            batch.attrs.update(symbol='SYN', timeframe='1m')
            counts = store.write(batch)
            before = held
            held = upsert(held, batch)
            assert counts['total'] == len(held), (kind, counts)
            if kind == 'resend': assert counts['unchanged'] == len(batch) and held.equals(before), counts
        for reader in (store, open_store(d)):   # this process (its kept tail) and a new one (the files)
            read = reader.read('SYN', '1m')
            pd.testing.assert_frame_equal(read, held.reindex(columns=read.columns), check_freq=False)
            pd.testing.assert_frame_equal(reader.tail('SYN', '1m', 50), read.iloc[-50:], check_freq=False)
            assert reader.ls().set_index('symbol').loc['SYN', 'bars'] == len(held)


def test_two_concurrent_writers_of_one_series_both_land(store_url):
    a, b = writer(store_url, '2024-01-01', 300_000), writer(store_url, '2025-01-01', 300_000)
    assert a.wait(300) == 0 and b.wait(300) == 0, (a.stderr.read(), b.stderr.read())
    both = data.load('SYN', '1m', store=store_url)
    assert len(both) == 600_000 and both.index.is_monotonic_increasing and both.index.is_unique
    assert data.ls(store_url).set_index('symbol').loc['SYN', 'bars'] == 600_000


def test_range_reads_and_raw_versus_adjusted(store_url):
    report = data.ingest('sample:AAPL', store=store_url)
    assert (report.new, report.total, report.calendar) == (3270, 3270, 'XNYS')
    adjusted = data.load('AAPL', '1d', '2005-02-01', '2005-03-31', store=store_url)
    raw = data.load('AAPL', '1d', '2005-02-01', '2005-03-31', adjust=False, store=store_url)
    assert (adjusted.index[0], adjusted.index[-1]) == (pd.Timestamp('2005-02-01', tz='UTC'), pd.Timestamp('2005-03-31', tz='UTC'))
    assert list(adjusted.columns) == data.BAR_COLUMNS and 'adj_factor' not in raw
    jump = raw['close'].pct_change().loc['2005-02-28']   # the 2:1 split: raw prices halve, adjusted ones do not
    assert jump < -0.45 and abs(adjusted['close'].pct_change().loc['2005-02-28']) < 0.1
    pd.testing.assert_frame_equal(data.load('AAPL', '1d', store=store_url), data.load_sample('AAPL'), check_freq=False)
    one = data.load('AAPL', '1d', '2005-02-28 00:00', '2005-02-28 00:00', store=store_url)
    assert len(one) == 1  # a full timestamp as end is inclusive to the nanosecond
    with pytest.raises(NotFound, match='no 1h bars for AAPL in the store; it holds: AAPL/1d'):
        data.load('AAPL', '1h', store=store_url)


def test_pushed_candles_are_checked_and_stored_like_files(store_url):
    rates = [{'time': 1704153600 + 3600 * i, 'open': 1.1, 'high': 1.2, 'low': 1.0, 'close': 1.15, 'tick_volume': 100 + i,
              'spread': 5, 'real_volume': 0} for i in range(5)]
    rates[2]['low'] = 1.16  # above open and close, below high
    report = data.push({'symbol': 'EURUSD', 'candles': rates}, 'EURUSD', '1h', store=store_url)
    assert (report.new, report.quarantined, report.calendar) == (4, 1, '24/5')
    assert 'row 3, column low: low above open or close' in str(report)
    with pytest.raises(BadInput, match='strict: nothing stored'):
        data.push(rates, 'EURUSD', '1h', strict=True, store=store_url)
    stored = data.load('EURUSD', '1h', store=store_url)
    assert stored['volume'].tolist() == [100.0, 101.0, 103.0, 104.0] and stored['spread'].tolist() == [5.0] * 4


def test_a_refused_batch_resent_is_quarantined_once(store_url):
    "A collector resends what was refused (every candle bad), then the same candles inside a larger batch: each bad candle held once"
    day = lambda i, **bad: {'ts': f"2024-01-{i:02d}T00:00:00Z", 'open': 1.1, 'high': 1.2, 'low': 1.0, 'close': 1.15, 'volume': 10.0, **bad}
    refused = [day(1, low=1.16), day(2, high=0.9), day(3, close=-1.0)]
    for attempt in range(2):
        with pytest.raises(BadInput, match='no valid rows, all 3 quarantined') as e:
            data.push(refused, 'BTCUSD', '1d', calendar='24/7', store=store_url)
        assert (e.value.report.quarantined, e.value.report.held_already) == (3, 3 * attempt)
    mixed = data.push([day(4), *refused, day(5, open=None)], 'BTCUSD', '1d', calendar='24/7', store=store_url)   # the same three, and one new bad candle
    assert (mixed.new, mixed.quarantined, mixed.held_already) == (1, 4, 3)
    held = open_store(store_url).quarantined('BTCUSD')
    assert sorted(held['ts'].str[:10]) == ['2024-01-01', '2024-01-02', '2024-01-03', '2024-01-05']
    assert open_store(store_url).ls().set_index('symbol').loc['BTCUSD', 'quarantined'] == 4


# a collector's push takes a short road (`plain_records`); it must land where the general one (a table) lands
_YEARS = dt.datetime(1990, 1, 1), dt.datetime(2040, 1, 1)
_TIME = st.one_of(
    st.datetimes(*_YEARS).map(lambda t: t.isoformat()), st.datetimes(*_YEARS,
                   timezones=st.sampled_from([dt.timezone.utc, dt.timezone(dt.timedelta(hours=3)), dt.timezone(dt.timedelta(hours=-5, minutes=-30))])).map(
        lambda t: t.isoformat()),
    st.integers(631152000, 2208988800), st.integers(631152000_000, 2208988800_000), st.floats(6.3e8, 2.2e9),
    st.sampled_from(['', ' 2024-01-02T00:00:00Z', '2024-01-02 00:00', '2024-01-02T00:00:00Z', '2024-01-02', '2013-02-30', 'yesterday',
                     '1704153600', '2024-01-02T00:00:00+0100', None, True, 10**20, '2024-03-31T02:30:00']))
_NUMBER = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**6, 10**6), st.integers(2**62, 2**70),
                    st.sampled_from(['1.5', 'n/a', '', None, True, False]))

@st.composite
def _pushes(draw):
    shape = draw(st.sampled_from([['ts', 'open', 'high', 'low', 'close', 'volume'], ['ts', 'open', 'high', 'low', 'close', 'volume', 'spread'],
                                  ['time', 'open', 'high', 'low', 'close', 'tick_volume', 'spread', 'real_volume'],
                                  ['time', 'open', 'high', 'low', 'close', 'tick_volume'], ['Date', 'Open', 'High', 'Low', 'Close', 'Volume'],
                                  ['ts', 'open', 'high', 'low', 'close', 'volume', 'adj_close'], ['ts', 'open', 'close']]))
    clean = draw(st.booleans())   # half the batches plain: floats and one kind of time, so that the short road is taken and compared
    kind = draw(st.sampled_from(range(5)))
    def record(i):
        r = {}
        for name in shape:
            if name in ('ts', 'time', 'Date'): r[name] = draw(_TIME if not clean else _TIME.filter(lambda t: type(t) is int) if kind == 2 else
                                                           st.datetimes(*_YEARS).map(lambda t: t.isoformat()) if kind == 3 else   # naive: in `tz`
                                                           st.datetimes(*_YEARS, timezones=st.just(dt.timezone.utc)).map(lambda t: t.isoformat()))
            else: r[name] = draw(st.floats(0.5, 1e6) if clean else _NUMBER)
        if not clean and draw(st.integers(0, 9)) == 0: r.pop(draw(st.sampled_from(shape)))     # a record with a key less
        return r
    return [record(i) for i in range(draw(st.integers(1, 12)))], draw(st.sampled_from(['UTC', 'Europe/Athens', 'America/New_York']))

@settings(max_examples=400, deadline=None, derandomize=True)
@given(_pushes())
def test_a_plain_push_lands_where_the_general_parse_lands(push):
    candles, tz = push
    short = plain_records(candles, 'push', tz)
    try: general = table_records(candles, 'push', tz)
    except BadInput:
        assert short is None; return
    if short is None: return
    event('short road taken')
    pd.testing.assert_frame_equal(short.frame, general.frame)
    assert short.layout == general.layout and general.problems.empty
    a, b = short.inspect('X', '1m'), general.inspect('X', '1m')
    pd.testing.assert_frame_equal(a.bars, b.bars); pd.testing.assert_frame_equal(a.rejected, b.rejected); assert a.notes == b.notes


def test_a_collectors_bar_takes_the_short_road():
    "what MetaTrader's copy_rates and the market_data shape send: plain, so parsed without a table"
    rates = [{'time': 1704153600 + 60 * i, 'open': 1.1, 'high': 1.2, 'low': 1.0, 'close': 1.15, 'tick_volume': 100 + i, 'spread': 5, 'real_volume': 0}
             for i in range(3)]
    bar = [{'ts': '2024-01-02T00:01:00+00:00', 'open': 100.0, 'high': 100.5, 'low': 99.5, 'close': 100.25, 'volume': 12}]
    for candles in (rates, bar):
        short = plain_records(candles)
        assert short is not None
        pd.testing.assert_frame_equal(short.frame, table_records(candles).frame)
    assert plain_records([{**bar[0], 'close': 'n/a'}]) is None and plain_records([{**bar[0], 'ts': '2024-02-30'}]) is None


def test_a_teams_postgresql_table_is_a_source(postgres_server, tmp_path):
    "Bars a team keeps in its own table (its own column names, several symbols) ingested into either store"
    import psycopg, uuid
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"{postgres_server}/postgres", autocommit=True) as con: con.execute(f"CREATE DATABASE {name}")
    url = f"{postgres_server}/{name}"
    spx, ixic = (data.load_sample(s).loc['2018'] for s in ('SPX', 'IXIC'))
    with psycopg.connect(url) as con:
        con.execute("CREATE TABLE prices (ticker text, day date, o numeric, h numeric, l numeric, c numeric, v bigint)")
        with con.cursor().copy("COPY prices FROM STDIN") as copy:
            for ticker, bars in (('SPX', spx), ('IXIC', ixic)):
                for t, r in zip(bars.index, bars.itertuples()):
                    copy.write_row((ticker, t.date(), round(r.open, 4), round(r.high, 4), round(r.low, 4), round(r.close, 4), int(r.volume)))
    report = data.ingest(f"{url}?table=prices&symbol_column=ticker", 'SPX', '1d', columns={'ts': 'day', 'open': 'o', 'high': 'h', 'low': 'l', 'close': 'c', 'volume': 'v'},
                         store=tmp_path)
    assert (report.new, report.quarantined, report.calendar) == (len(spx), 0, 'XNYS')
    np.testing.assert_allclose(data.load('SPX', '1d', store=tmp_path)['close'], spx['close'], atol=1e-4)
    with pytest.raises(BadInput, match='name the table'):
        data.ingest(url, 'SPX', '1d', store=tmp_path)


def test_splits_and_dividends_from_an_actions_table(store_url, tmp_path):
    "Raw AAPL prices (the sample without its adjusted close) adjusted by the 2:1 split of 28 Feb 2005; raw kept"
    batch = read_sample('AAPL'); batch.frame = batch.frame.drop(columns='adj_factor')
    (tmp_path/'actions.csv').write_text("ex_date,split,dividend\n2005-02-28,2.0,\n")
    report = data.ingest(batch, 'AAPL', '1d', actions=tmp_path/'actions.csv', store=store_url)
    assert report.new == 3270
    adjusted = data.load('AAPL', '1d', '2005-02-01', '2005-03-31', store=store_url)
    stored_raw = data.load('AAPL', '1d', '2005-02-01', '2005-03-31', adjust=False, store=store_url)
    assert stored_raw['close'].pct_change().loc['2005-02-28'] < -0.45     # the raw print halves
    assert abs(adjusted['close'].pct_change().loc['2005-02-28']) < 0.1    # the adjusted series does not
    assert adjusted['close'].loc['2005-02-25'] == pytest.approx(stored_raw['close'].loc['2005-02-25'] / 2)


BATCHES = textwrap.dedent('''
    import sys, numpy as np, pandas as pd
    from mlfin.data.bars import bars_frame
    from mlfin.data.stores import open_store
    url, batches = sys.argv[1], int(sys.argv[2])
    store = open_store(url)
    for b in range(batches):   # 240 one-minute bars from 22:00 to 02:00: every batch spans two days (two files)
        ts = pd.date_range(pd.Timestamp('2024-01-01 22:00', tz='UTC') + pd.Timedelta(days=b), periods=240, freq='1min')
        close = np.full(240, 100.0 + b)                                  # synthetic: a scale filler
        store.write(bars_frame(pd.DataFrame({'open': close, 'high': close, 'low': close, 'close': close, 'volume': 1.0},
                                            index=ts), 'SYN', '1m'))
    print('done', flush=True)
''')


def test_a_reader_during_writes_sees_whole_batches_only(store_url):
    "Each batch spans two periods (two files): a reader taking no lock sees all of a batch or none, and never fails"
    writing = subprocess.Popen([sys.executable, '-c', BATCHES, store_url, '150'], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    store, seen = open_store(store_url), []
    while writing.poll() is None:
        if not store.has('SYN', '1m'): time.sleep(0.01); continue   # the writer still starting: no third busy CPU beside it
        bars = store.read('SYN', '1m')
        seen.append(len(bars))
        assert len(bars) % 240 == 0 and bars.index.is_unique and bars.index.is_monotonic_increasing
        assert len(bars) == 0 or bars['close'].iloc[-1] == 100.0 + len(bars) // 240 - 1   # the latest batch, whole
        tail = store.tail('SYN', '1m', 300)
        assert len(tail) == min(300, max(len(bars), len(tail))) and tail.index.is_monotonic_increasing
    assert writing.wait(300) == 0, writing.stderr.read()
    assert len(store.read('SYN', '1m')) == 150 * 240 and len(set(seen)) > 3, seen   # it read while the writer wrote


def test_tail_and_stamp(store_url):
    """The last bars of a series and a stamp that moves only when the series changes, on either store; a mark in the series'
    record (issue 54: an operator's `mlfin data live`) is no change of its bars, and a later write keeps it"""
    from mlfin.monitor.freshness import live_series
    store = open_store(store_url)
    data.ingest('sample:EURUSD', store=store)
    first = store.stamp('EURUSD', '1h')
    pd.testing.assert_frame_equal(store.tail('EURUSD', '1h', 5), store.read('EURUSD', '1h').iloc[-5:])
    assert live_series(store, production=[]) == {}   # the sample is history
    assert store.mark('EURUSD', '1h', live=True)['live'] is True and store.stamp('EURUSD', '1h') == first
    data.ingest('sample:EURUSD', store=store)
    assert store.stamp('EURUSD', '1h') == first and store.stamp('EURUSD', '1d') is None   # unchanged; not stored
    assert live_series(store, production=[]) == {('EURUSD', '1h'): 'marked live'}   # kept through the write
    with pytest.raises(NotFound, match='no 1d bars for EURUSD'): store.mark('EURUSD', '1d', live=True)
    bar = data.load_sample('EURUSD').iloc[[-1]].copy(); bar['close'] = bar['high']
    assert data.ingest(bar, 'EURUSD', '1h', store=store).changed == 1
    assert store.stamp('EURUSD', '1h') != first
    assert data.ls(store).set_index('symbol').loc['EURUSD', 'bars'] == len(data.load_sample('EURUSD'))
    if store.kind == 'parquet':   # a copied (moved, restored) store: the same bars, the same stamp, so a run there reruns nothing
        import shutil
        copy = open_store(shutil.copytree(store_url, Path(store_url).with_name('copied')))
        assert copy.stamp('EURUSD', '1h') == store.stamp('EURUSD', '1h')


def test_a_postgresql_store_of_an_earlier_version_gets_its_counts(postgres_server):
    "mlfin_series rows written before the counts existed get them from mlfin_bars on first use"
    import psycopg, uuid
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"{postgres_server}/postgres", autocommit=True) as con: con.execute(f"CREATE DATABASE {name}")
    url = f"{postgres_server}/{name}"
    data.ingest('sample:SPX', store=url)
    with psycopg.connect(url) as con:   # as an earlier version left it: no counts
        con.execute("ALTER TABLE mlfin_series DROP COLUMN bars, DROP COLUMN first_ts, DROP COLUMN last_ts, DROP COLUMN changes")
    held = data.ls(url).set_index('symbol')
    assert held.loc['SPX', 'bars'] == 5031 and held.loc['SPX', 'last'] == pd.Timestamp('2018-12-31', tz='UTC')
    assert data.ingest('sample:SPX', store=url).total == 5031


def test_a_batch_without_an_optional_column_does_not_erase_it(store_url):
    "A source with spread, then one without (the same bars): nothing changed, the spread kept; a new spread is a change"
    store = open_store(store_url)
    bars = data.load_sample('EURUSD').iloc[:50].copy()
    bars['spread'] = 0.5
    assert store.write(bars)['new'] == 50
    assert store.write(bars.drop(columns='spread'))['unchanged'] == 50
    assert store.read('EURUSD', '1h')['spread'].tolist() == [0.5] * 50
    wider = bars.iloc[-5:].copy(); wider['spread'] = 0.7
    assert store.write(wider)['changed'] == 5
    assert store.read('EURUSD', '1h')['spread'].tolist() == [0.5] * 45 + [0.7] * 5


# --- issue 17: what an operator's MetaTrader collector met, end to end on either store ---

def _rates(first: int, n: int, step: int = 3600) -> list[dict]:
    "MetaTrader copy_rates records: `time` in epoch seconds of the broker's clock"
    return [{'time': first + step * i, 'open': 1.1, 'high': 1.2, 'low': 1.0, 'close': 1.15, 'tick_volume': 100 + i,
             'spread': 5, 'real_volume': 0} for i in range(n)]


def test_metatrader_times_are_the_brokers_clock_whatever_their_encoding(store_url):
    "Defect 1 of issue 17: with tz=Etc/GMT-2 an epoch lands where the same time written as text lands, on either road"
    epochs = _rates(1704153600, 3)    # 2024-01-02 00:00 on a UTC+2 server's clock: 2024-01-01 22:00 UTC
    text = [{**r, 'time': pd.Timestamp(r['time'], unit='s').strftime('%Y-%m-%d %H:%M')} for r in epochs]
    short = data.push(epochs, 'EURUSD', '1h', tz='Etc/GMT-2', store=store_url)                   # a plain list: the short road
    table = data.push({'candles': epochs}, 'EURUSD', '1h', tz='Etc/GMT-2', store=store_url)      # wrapped: through a table
    written = data.push({'candles': text}, 'EURUSD', '1h', tz='Etc/GMT-2', store=store_url)
    assert (short.new, table.unchanged, written.unchanged) == (3, 3, 3)
    assert data.load('EURUSD', '1h', store=store_url).index[0] == pd.Timestamp('2024-01-01 22:00', tz='UTC')


def test_a_batch_in_the_brokers_zone_sent_as_utc_is_told_so(store_url):
    "Defect 1 of issue 17: Friday's last candles of a UTC+2 server sent without tz fall after the FX close; the note says why"
    late = _rates(1704490200, 150, 60)   # Friday 2024-01-05 21:30 to 23:59 on the server's clock (19:30 to 21:59 UTC)
    report = data.push(late, 'EURUSD', '1m', calendar='24/5', store=store_url)
    assert (report.new, report.quarantined) == (30, 120)
    assert ("times look shifted by +2 h against calendar 24/5: are they in the broker's zone? send tz=Etc/GMT-2"
            in ' '.join(report.notes)), report.notes
    right = data.push(late, 'EURUSD2', '1m', calendar='24/5', tz='Etc/GMT-2', store=store_url)
    assert (right.new, right.quarantined, right.notes) == (150, 0, [])


def test_one_bad_time_quarantines_its_row_and_no_other(store_url):
    "Defect 6 of issue 17: one unparseable time among epochs (numbers, or digits as text) is that row's problem alone"
    rates = _rates(1704153600, 4); rates[2]['time'] = 'garbage'
    report = data.push(rates, 'EURUSD', '1h', store=store_url)
    assert (report.new, report.quarantined, report.first_problem) == (3, 1, 'row 3, column time: not a time (garbage)')
    digits = [{**r, 'time': str(r['time'])} for r in _rates(1704168000, 3)]; digits[1]['time'] = 'soon'
    report = data.push(digits, 'EURUSD', '1h', store=store_url)
    assert (report.new, report.quarantined, report.first_problem) == (2, 1, 'row 2, column time: not a time (soon)')
    assert len(data.load('EURUSD', '1h', store=store_url)) == 5


def test_a_candles_volume_is_the_series_choice_and_a_change_is_named(store_url):
    "Defect 7 of issue 17: the volume a series uses is recorded by its first batch; a resent candle keeps it; a change is named"
    rates = _rates(1704153600, 3); rates[1]['real_volume'] = 7   # the broker reports real volume for this instrument
    data.push(rates, 'XAUUSD', '1h', store=store_url)
    store = open_store(store_url)
    assert store.meta('XAUUSD', '1h')['volume'] == 'real_volume'
    again = data.push(rates[:1], 'XAUUSD', '1h', store=store_url)   # alone, its real volume is 0 like the whole batch's
    assert (again.unchanged, again.changed) == (1, 0)
    assert data.load('XAUUSD', '1h', store=store_url)['volume'].tolist() == [0.0, 7.0, 0.0]
    fixed = data.push([{**rates[2], 'real_volume': 3, 'close': 1.16}], 'XAUUSD', '1h', store=store_url)
    assert fixed.changed == 1
    assert 'first change: 2024-01-02 02:00:00+00:00 close 1.15 -> 1.16' in str(fixed), str(fixed)
    assert data.ls(store_url).set_index('symbol').loc['XAUUSD', 'volume'] == 'real_volume'
    data.push(_rates(1704153600, 2), 'EURUSD', '1h', store=store_url)   # no real volume: ticks, recorded as such
    assert store.meta('EURUSD', '1h')['volume'] == 'tick_volume'


def test_a_range_of_bars_or_a_whole_series_is_deleted(store_url):
    "Defect 10 of issue 17: `data.delete` and `mlfin data rm` remove a range (the rest kept) or a series with its record"
    from typer.testing import CliRunner
    from mlfin.cli import app
    store = open_store(store_url)
    data.ingest('sample:EURUSD', store=store)
    with pytest.raises(BadInput, match='high below open'):   # a bad candle: kept in quarantine
        data.push([{'ts': '2017-12-29T20:00:00Z', 'open': 1.2, 'high': 1.19, 'low': 1.18, 'close': 1.2, 'volume': 5.0}], 'EURUSD', '1h', store=store)
    total, june = len(data.load('EURUSD', '1h', store=store)), len(data.load('EURUSD', '1h', '2017-06-01', '2017-06-30', store=store))
    assert data.delete('EURUSD', '1h', '2017-06-01', '2017-06-30', store=store) == june > 0
    assert len(data.load('EURUSD', '1h', '2017-06-01', '2017-06-30', store=store)) == 0
    assert len(data.load('EURUSD', '1h', store=store)) == data.ls(store).set_index('symbol').loc['EURUSD', 'bars'] == total - june
    assert store.meta('EURUSD', '1h')['calendar'] == '24/5' and len(store.quarantined('EURUSD')) == 1   # a range leaves the record
    assert data.delete('EURUSD', '1h', '2017-06-01', '2017-06-30', store=store) == 0
    with pytest.raises(BadInput, match='after'): data.delete('EURUSD', '1h', '2017-07-01', '2017-06-01', store=store)
    with pytest.raises(BadInput, match='not a time'): data.delete('EURUSD', '1h', 'yesterday', store=store)
    runner = CliRunner()
    declined = runner.invoke(app, ['data', 'rm', 'EURUSD:1h', '--store', store_url], input='n\n')
    assert declined.exit_code == 1 and len(data.load('EURUSD', '1h', store=store)) == total - june, declined.output
    done = runner.invoke(app, ['data', 'rm', 'EURUSD:1h', '--store', store_url, '--yes'])
    assert (done.exit_code, done.output.strip()) == (0, f"removed EURUSD 1h: {total - june:,} bar(s), its record and 1 quarantined row(s)")
    assert data.ls(store).empty and store.meta('EURUSD', '1h') == {} and store.quarantined('EURUSD').empty
    assert store.stamp('EURUSD', '1h') is None
    with pytest.raises(NotFound, match='no 1h bars for EURUSD'): data.delete('EURUSD', '1h', store=store)
    assert data.ingest('sample:EURUSD', store=store).new == total   # stored anew
    gone = runner.invoke(app, ['data', 'rm', 'EURUSD:1h', '--start', '2017-12-01', '--store', store_url], input='y\n')
    assert gone.exit_code == 0 and gone.output.strip().endswith('removed EURUSD 1h: 487 bar(s) from 2017-12-01 to the end'), gone.output


def test_a_read_only_role_reads_the_postgresql_store(postgres_server):
    "Defect 10 of issue 17: a role with SELECT rights only lists and reads the store; nothing is created for a reader"
    import psycopg, uuid
    from typer.testing import CliRunner
    from mlfin.cli import app
    name, role = f"t_{uuid.uuid4().hex[:12]}", f"reader_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{postgres_server}/postgres", autocommit=True) as con:
        con.execute(f"CREATE DATABASE {name}"); con.execute(f"CREATE ROLE {role} LOGIN")
    owner, reader = f"{postgres_server}/{name}", f"{postgres_server.replace('mlfin@', f'{role}@')}/{name}"
    tables = lambda: psycopg.connect(owner).execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()[0]
    assert data.ls(reader).empty and open_store(reader).meta('SPX', '1d') == {} and tables() == 0   # an empty database stays empty
    data.ingest('sample:SPX', store=owner)
    with psycopg.connect(owner, autocommit=True) as con: con.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
    listed = CliRunner().invoke(app, ['data', 'ls', '--store', reader])
    assert listed.exit_code == 0 and listed.output.split('\n')[1].split()[:3] == ['SPX', '1d', '5031'], listed.output
    store = open_store(reader)
    assert len(data.load('SPX', '1d', '2018-12-01', store=reader)) == 19 and len(store.tail('SPX', '1d', 5)) == 5
    assert store.meta('SPX', '1d')['calendar'] == 'XNYS' and store.stamp('SPX', '1d') is not None and store.quarantined().empty
    with pytest.raises(Unavailable, match='this role may not change the store'): data.delete('SPX', '1d', store=reader)
