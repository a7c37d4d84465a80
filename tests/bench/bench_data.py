"""Benchmark: the data layer beside plain pandas, on the same synthetic data, in one run (`make bench-data`).

SYNTHETIC DATA (labelled): random-walk one-minute bars, generated here; they only give the code
volume to chew on. Real-data correctness lives in the tests.

  1. ingest:  10M one-minute bars in a plain CSV (ts,open,high,low,close,volume)
              ours:   `mlfin.data.ingest(csv, 'SYN', '1m', calendar='24/7')`: parse, pandera checks,
                      duplicates/order, calendar, upsert into the Parquet store (atomic, locked)
              pandas: `pd.read_csv(csv)` + `DataFrame.to_parquet` (no checks; and a second variant
                      with `parse_dates=['ts']`, which a user needs to get times at all)
  2. range:   a store of 100 symbols x 1M one-minute bars; one symbol's month
              ours:   `mlfin.data.load(sym, '1m', start, end)` (DuckDB over the series' Parquet file)
              pandas: `pd.read_parquet(store)` of the whole store, then a boolean filter
Each measurement runs in its own fresh process, so peak memory (ru_maxrss) is its own.
Targets (issue 3): range query >= 10x faster than pandas loading the whole store; ingest within 2x
of pandas despite validation; ingest peak memory < 3x the raw bars (10M x 6 x 8 bytes = 480 MB).
BENCH_SCALE=quick (`make bench-all`): 2M bars ingested, a store of 20 x 1M bars; the two speed ratios are held to their
targets (a smaller store is the harder case for the range query); the peak memory is not measured against the bars there:
at 2M bars (92 MiB) the interpreter and its libraries are most of the peak.
"""
import shutil, sys, tempfile
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
from _child import SYNTH, child  # noqa: E402
from _targets import QUICK, not_measured, scale, sized, table, target  # noqa: E402

N_INGEST, N_SYMBOLS, N_PER_SYMBOL = sized(10_000_000, 2_000_000), sized(100, 20), 1_000_000
work = Path(tempfile.mkdtemp(prefix='mlfin-bench-data-'))


def main():
    print(f"bench-data: working in {work} (SYNTHETIC bars, labelled)", flush=True)
    scale(f"{N_INGEST / 1e6:.0f}M bars ingested, a store of {N_SYMBOLS} x 1M", "10M bars ingested, a store of 100 x 1M")
    print()
    csv = work/'bars.csv'
    child(SYNTH + '''
import sys
synthetic(int(sys.argv[2])).to_csv(sys.argv[1], float_format='%.6f', date_format='%Y-%m-%dT%H:%M:%SZ')
RESULT = {}
''', csv, N_INGEST)
    raw_mb = N_INGEST * 6 * 8 / 2**20
    print(f"1. ingest {N_INGEST:,} one-minute bars from CSV ({csv.stat().st_size / 2**20:,.0f} MiB on disk, {raw_mb:,.0f} MiB as bars)")
    ours = child('''
import sys, time
from mlfin import data
t = time.perf_counter()
report = data.ingest(sys.argv[1], 'SYN', '1m', calendar='24/7', store=sys.argv[2])
RESULT = {'seconds': time.perf_counter() - t, 'stored': report.total, 'quarantined': report.quarantined}
''', csv, work/'store-ingest')
    plain = child('''
import sys, time, pandas as pd
t = time.perf_counter()
pd.read_csv(sys.argv[1]).to_parquet(sys.argv[2])
RESULT = {'seconds': time.perf_counter() - t}
''', csv, work/'pandas.parquet')
    dated = child('''
import sys, time, pandas as pd
t = time.perf_counter()
pd.read_csv(sys.argv[1], parse_dates=['ts']).to_parquet(sys.argv[2])
RESULT = {'seconds': time.perf_counter() - t}
''', csv, work/'pandas-dated.parquet')
    assert ours['stored'] == N_INGEST and ours['quarantined'] == 0
    print(f"   ours (parse + validate + store): {ours['seconds']:6.1f} s  {N_INGEST / ours['seconds'] / 1e6:5.2f} M bars/s  peak {ours['peak_mb']:6,.0f} MiB ({ours['peak_mb'] / raw_mb:.2f}x the bars)")
    print(f"   pandas read_csv + to_parquet:   {plain['seconds']:6.1f} s  {N_INGEST / plain['seconds'] / 1e6:5.2f} M bars/s  peak {plain['peak_mb']:6,.0f} MiB")
    print(f"   pandas, parse_dates=['ts']:     {dated['seconds']:6.1f} s  {N_INGEST / dated['seconds'] / 1e6:5.2f} M bars/s  peak {dated['peak_mb']:6,.0f} MiB")
    ratio, peak = ours['seconds'] / plain['seconds'], ours['peak_mb'] / raw_mb
    print(f"   ratio ours / pandas: {ratio:.2f}x; with dates: {ours['seconds'] / dated['seconds']:.2f}x; peak {peak:.2f}x the bars", flush=True)
    target('ingest: ours / pandas read_csv + to_parquet', f"{ratio:.2f}x", '<= 2x', ratio <= 2)
    if QUICK: not_measured('ingest: peak memory / the bars', '< 3x', f"at {N_INGEST / 1e6:.0f}M bars ({raw_mb:.0f} MiB) the interpreter and "
                           f"its libraries are most of the {ours['peak_mb']:.0f} MiB peak", 'make bench-data')
    else: target('ingest: peak memory / the bars', f"{peak:.2f}x", '< 3x', peak < 3)
    print(flush=True)
    csv.unlink()

    store = work/'store-100'
    print(f"2. range query: store of {N_SYMBOLS} symbols x {N_PER_SYMBOL:,} one-minute bars (SYNTHETIC); one symbol, one month")
    build = child(SYNTH + '''
import sys, time
from mlfin.data.stores import ParquetStore
from mlfin.data.bars import bars_frame
store, n, k = ParquetStore(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
t = time.perf_counter()
for i in range(k):
    bars = synthetic(n, seed=i); bars.attrs.update(symbol=f"S{i:03d}", timeframe='1m'); store.write(bars)
RESULT = {'seconds': time.perf_counter() - t}
''', store, N_PER_SYMBOL, N_SYMBOLS)
    print(f"   (store built in {build['seconds']:.0f} s, {sum(f.stat().st_size for f in store.rglob('*.parquet')) / 2**20:,.0f} MiB of Parquet)")
    query = dict(symbol=f"S{N_SYMBOLS * 42 // 100:03d}", start='2011-03-01', end='2011-03-31')   # S042 of 100
    ours = child('''
import sys, time
from mlfin import data
t = time.perf_counter()
bars = data.load(sys.argv[1], '1m', sys.argv[2], sys.argv[3], store=sys.argv[4])
RESULT = {'seconds': time.perf_counter() - t, 'rows': len(bars), 'first': str(bars.index[0]), 'last': str(bars.index[-1])}
''', query['symbol'], query['start'], query['end'], store)
    peer = child('''
import sys, time, pandas as pd
t = time.perf_counter()
frame = pd.read_parquet(sys.argv[4] + '/bars')
frame = frame.reset_index() if 'ts' not in frame.columns else frame
rows = frame[(frame['symbol'] == sys.argv[1]) & (frame['ts'] >= pd.Timestamp(sys.argv[2], tz='UTC'))
             & (frame['ts'] < pd.Timestamp(sys.argv[3], tz='UTC') + pd.Timedelta(days=1))]
RESULT = {'seconds': time.perf_counter() - t, 'rows': len(rows), 'first': str(rows['ts'].min()), 'last': str(rows['ts'].max())}
''', query['symbol'], query['start'], query['end'], store)
    assert (ours['rows'], ours['first'], ours['last']) == (peer['rows'], peer['first'], peer['last']), (ours, peer)
    print(f"   ours  data.load (DuckDB):              {ours['seconds'] * 1000:8.1f} ms  peak {ours['peak_mb']:6,.0f} MiB  ({ours['rows']:,} bars)")
    print(f"   pandas read_parquet(store) + filter:   {peer['seconds'] * 1000:8.1f} ms  peak {peer['peak_mb']:6,.0f} MiB")
    speedup = peer['seconds'] / ours['seconds']
    target('range query: pandas loading the whole store / ours', f"{speedup:.0f}x", '>= 10x', speedup >= 10)
    table()
    shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__': main()
