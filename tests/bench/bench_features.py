"""Benchmark: a 12-indicator feature spec over 50M bars, ours beside the floor and the peer, in one run (`make bench-features`).

SYNTHETIC DATA (labelled): 100 symbols x 500,000 random-walk one-minute bars = 50M bars, generated
here; they only give the code volume to chew on. Real-data correctness (and the no-look-ahead
proof) lives in the tests.

The spec: rsi_14 macd_12_26_9 mom_14 sma_20 ema_50 bbands_20_2 atr_14 obv adx_14 cci_20 mfi_14
willr_14 (16 output columns). Every contender runs in its own fresh process (so its peak memory,
ru_maxrss, is its own), reads each symbol's bars from Parquet (not timed), and keeps every output
in memory, as a user building a dataset would:
  floor:  a bare loop of the 12 TA-Lib calls on NumPy arrays: no frames, no names; the least any
          TA-Lib-based build can cost
  ours:   `mlfin.features.build(bars, SPEC)`: one named frame per symbol aligned to bars.index,
          values checked equal to the floor's, column for column
  peer:   pandas-ta-classic (its default, pure-pandas path) calling the same 12 indicators, one
          frame per symbol (pd.concat of its outputs)
  store:  `mlfin.features.FeatureStore(root).build(bars, SPEC)`: a cold build (compute and
          write), then a hit in a new process (fingerprint the bars, map the cached files); the hit
          is timed bare and with every value read once (sum of each column), and checked equal to
          a fresh build; the hit timed in 3 fresh processes, the median round held to the target
          (issue 73: one round of 10 hits moved from 28 to 50 ms with the machine's other work)
Both the floor and ours keep 6 GiB of fresh outputs: allocating and first touching that memory is
part of every contender's time. The floor and ours are timed in one process, symbol by symbol in
turn, so both meet the same memory conditions; ours runs once more alone for its peak memory.
Targets (issue 4): ours within 1.25x of the floor; at least 5x faster than the peer; our peak
memory under 2x the output frames; a store hit at least 20x faster than a build.
BENCH_SCALE=quick (`make bench-all`): 10 symbols x 500,000 bars = 5M bars, every target held as at full scale
(BENCH_SYMBOLS overrides the symbols at either scale).
"""
import shutil, sys, tempfile
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
from _child import child, write_synthetic  # noqa: E402
from _targets import scale, sized, table, target  # noqa: E402

import os
# the store hit is the shortest figure here (quick scale: 10 hits of 2-3 ms, 28 ms in all; a 20-ms pause of a busy machine
# moved it by 70%): timed in this many fresh processes, the median held to its target
HIT_ROUNDS = 3
N_SYMBOLS, N_BARS = int(os.environ.get("BENCH_SYMBOLS", sized(100, 10))), 500_000
SPEC = ['rsi_14', 'macd_12_26_9', 'mom_14', 'sma_20', 'ema_50', 'bbands_20_2', 'atr_14', 'obv', 'adx_14', 'cci_20',
        'mfi_14', 'willr_14']
work = Path(tempfile.mkdtemp(prefix='mlfin-bench-features-'))

LOAD = f'''
import sys, time, numpy as np, pandas as pd
from pathlib import Path
folder, n_symbols = Path(sys.argv[1]), int(sys.argv[2])
SPEC = {SPEC!r}
from mlfin.data.bars import bars_frame
def bars_of(i):  # canonical bars (UTC nanosecond index, float64 columns), as mlfin.data.load gives them
    return bars_frame(pd.read_parquet(folder/f"S{{i:03d}}.parquet"), f"S{{i:03d}}", '1m')
def warm():  # names resolved and TA-Lib loaded once, as in any session
    from mlfin import features
    features.build(bars_of(0).head(1000), SPEC)
def frame_mb(frames):  # values and index of every output frame
    return sum(f.memory_usage(index=True).sum() for f in frames) / 2**20
'''

SPEED = LOAD + '''
import talib
from mlfin import features
warm()
def floor(b):
    h, l, c, v = (b[k].to_numpy() for k in ('high', 'low', 'close', 'volume'))
    return [talib.RSI(c, 14), *talib.MACD(c, 12, 26, 9), talib.MOM(c, 14), talib.SMA(c, 20), talib.EMA(c, 50),
            *talib.BBANDS(c, 20, 2, 2), talib.ATR(h, l, c, 14), talib.OBV(c, v), talib.ADX(h, l, c, 14),
            talib.CCI(h, l, c, 20), talib.MFI(h, l, c, v, 14), talib.WILLR(h, l, c, 14)]
spent, kept = {'floor': 0.0, 'ours': 0.0}, {'floor': [], 'ours': []}
for i in range(n_symbols):
    b = bars_of(i)
    for who in (('floor', 'ours') if i % 2 == 0 else ('ours', 'floor')):  # alternating which goes first
        t = time.perf_counter()
        kept[who].append(floor(b) if who == 'floor' else features.build(b, SPEC))
        spent[who] += time.perf_counter() - t
first = kept['ours'][0]
assert len(first.columns) == len(kept['floor'][0])
for column, values in zip(first, kept['floor'][0]):  # the same numbers as the bare calls, column for column
    np.testing.assert_array_equal(first[column].to_numpy(), values)
RESULT = {'floor': spent['floor'], 'ours': spent['ours'], 'columns': len(first.columns)}
'''

OURS = LOAD + '''
from mlfin import features
warm()
frames, spent = [], 0.0
for i in range(n_symbols):
    b = bars_of(i)
    t = time.perf_counter()
    frames.append(features.build(b, SPEC))
    spent += time.perf_counter() - t
    del b
RESULT = {'seconds': spent, 'columns': frames[0].shape[1], 'output_mb': frame_mb(frames)}
'''

PEER = LOAD + '''
import warnings; warnings.filterwarnings('ignore')
import pandas_ta_classic as ta
frames, spent = [], 0.0
for i in range(n_symbols):
    d = bars_of(i)
    t = time.perf_counter()
    parts = [ta.rsi(d.close, 14), ta.macd(d.close, 12, 26, 9), ta.mom(d.close, 14), ta.sma(d.close, 20),
             ta.ema(d.close, 50), ta.bbands(d.close, 20, 2), ta.atr(d.high, d.low, d.close, 14), ta.obv(d.close, d.volume),
             ta.adx(d.high, d.low, d.close, 14), ta.cci(d.high, d.low, d.close, 20),
             ta.mfi(d.high, d.low, d.close, d.volume, 14), ta.willr(d.high, d.low, d.close, 14)]
    frames.append(pd.concat(parts, axis=1))
    spent += time.perf_counter() - t
    del d, parts
RESULT = {'seconds': spent, 'columns': frames[0].shape[1], 'output_mb': frame_mb(frames), 'version': ta.version}
'''

STORE_COLD = LOAD + '''
from mlfin import features
from mlfin.features import FeatureStore
warm()
store, frames, spent = FeatureStore(Path(sys.argv[3])), [], 0.0
for i in range(n_symbols):
    b = bars_of(i)
    t = time.perf_counter()
    frames.append(store.build(b, SPEC))
    spent += time.perf_counter() - t
RESULT = {'seconds': spent, 'misses': store.misses, 'hits': store.hits, 'output_mb': frame_mb(frames),
          'disk_mb': sum(p.stat().st_size for p in Path(sys.argv[3]).glob('*.f64')) / 2**20}
'''

STORE_HIT = LOAD + '''
from mlfin import features
from mlfin.features import FeatureStore
warm()
store, frames, spent, touched, total = FeatureStore(Path(sys.argv[3])), [], 0.0, 0.0, 0.0
for i in range(n_symbols):
    b = bars_of(i)
    t = time.perf_counter()
    frame = store.build(b, SPEC)
    spent += time.perf_counter() - t
    total += sum(float(np.nansum(frame[c].to_numpy())) for c in frame)  # every value read once
    touched += time.perf_counter() - t
    frames.append(frame)
pd.testing.assert_frame_equal(frames[0], features.build(bars_of(0), SPEC))  # a hit serves what a build computes
RESULT = {'seconds': spent, 'touched_seconds': touched, 'misses': store.misses, 'hits': store.hits}
'''


def main():
    print(f"bench-features: working in {work} (SYNTHETIC bars, labelled)", flush=True)
    scale(f"{N_SYMBOLS} symbols x 500,000 bars = {N_SYMBOLS * N_BARS / 1e6:g}M bars", "100 symbols x 500,000 bars = 50M bars")
    bars = work/'bars'
    made = write_synthetic(bars, N_SYMBOLS, N_BARS)
    print(f"{N_SYMBOLS} symbols x {N_BARS:,} one-minute bars = {N_SYMBOLS * N_BARS / 1e6:.0f}M bars "
          f"(written in {made['seconds']:.0f} s); spec of {len(SPEC)} indicators: {' '.join(SPEC)}\n", flush=True)
    # The time ratio comes from one process that runs the bare loop and ours on each symbol in turn
    # (alternating which goes first), keeping both outputs: the two see the same memory conditions.
    # Run apart, each growing to 6 GiB, their times on this 2-core VM varied by up to 2.5x from run to
    # run with memory (page faults, huge-page compaction), not computing, making the difference.
    speed = child(SPEED, bars, N_SYMBOLS)
    print(f"floor  bare TA-Lib loop:       {speed['floor']:7.2f} s  {speed['columns']} arrays per symbol", flush=True)
    print(f"ours   features.build:         {speed['ours']:7.2f} s  {speed['columns']} named columns per symbol (values equal to the floor's)", flush=True)
    ours = child(OURS, bars, N_SYMBOLS)  # alone, for its memory
    print(f"ours   alone, for memory:      {ours['seconds']:7.2f} s  peak {ours['peak_mb']:7,.0f} MiB  outputs {ours['output_mb']:6,.0f} MiB", flush=True)
    peer = child(PEER, bars, N_SYMBOLS)
    print(f"peer   pandas-ta-classic {peer['version']}: {peer['seconds']:7.2f} s  {peer['columns']} columns/symbol  peak {peer['peak_mb']:7,.0f} MiB  outputs {peer['output_mb']:6,.0f} MiB", flush=True)
    root = work/'features'
    cold = child(STORE_COLD, bars, N_SYMBOLS, root)
    assert cold['misses'] == N_SYMBOLS * len(SPEC) and cold['hits'] == 0
    print(f"store  cold (compute + write): {cold['seconds']:7.2f} s  {cold['disk_mb']:,.0f} MiB of .f64  peak {cold['peak_mb']:7,.0f} MiB", flush=True)
    hits = [child(STORE_HIT, bars, N_SYMBOLS, root) for _ in range(HIT_ROUNDS)]
    assert all(h['hits'] == N_SYMBOLS * len(SPEC) and h['misses'] == 0 for h in hits), hits
    hit = sorted(hits, key=lambda h: h['seconds'])[len(hits) // 2]   # the median round
    rounds = ', '.join(f"{h['seconds'] * 1000:.0f}" for h in hits)
    print(f"store  hit (fingerprint + map): {hit['seconds']:6.2f} s  with every value read: {hit['touched_seconds']:.2f} s  peak {hit['peak_mb']:7,.0f} MiB "
          f"(files in the OS page cache, just written; the median of {HIT_ROUNDS} fresh processes: {rounds} ms)\n")
    print(f"peer / ours against ours interleaved: {peer['seconds'] / speed['ours']:.1f}x; build / store hit against ours interleaved: "
          f"{speed['ours'] / hit['seconds']:.1f}x, with every value read: {ours['seconds'] / hit['touched_seconds']:.1f}x; "
          f"cold store build / build: {cold['seconds'] / ours['seconds']:.2f}x")
    floor_ratio, peer_ratio = speed['ours'] / speed['floor'], peer['seconds'] / ours['seconds']
    memory, hit_ratio = ours['peak_mb'] / ours['output_mb'], ours['seconds'] / hit['seconds']
    target('ours / the bare TA-Lib loop (same process, interleaved)', f"{floor_ratio:.2f}x", '<= 1.25x', floor_ratio <= 1.25)
    target('pandas-ta-classic / ours (each alone in its process)', f"{peer_ratio:.1f}x", '>= 5x', peer_ratio >= 5)
    target('our peak memory / our outputs', f"{memory:.2f}x", '< 2x', memory < 2,
           'the peak includes the interpreter, libraries and one symbol\'s bars')
    target('build (ours alone) / store hit', f"{hit_ratio:.1f}x", '>= 20x', hit_ratio >= 20)
    table()
    shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__': main()
