"""Writes the malformed-input corpus (tests/corpus/*), from ten real AAPL daily bars (Quandl WIKI,
public domain, shipped by bokeh-sampledata). Run it to regenerate; the files are committed so that
each can be opened and read. tests/test_ingest_corpus.py holds the documented outcome of each."""
import gzip, io, json
from pathlib import Path
import numpy as np, pandas as pd

HERE = Path(__file__).parent
def _good() -> str:
    "The last ten raw AAPL bars of the sample, as a plain CSV"
    from mlfin.data.samples import read_sample
    frame = read_sample('AAPL').frame.tail(10)
    frame = frame.assign(ts=frame['ts'].dt.strftime('%Y-%m-%d'))[['ts', 'open', 'high', 'low', 'close', 'volume']]
    return frame.to_csv(index=False, float_format='%.10g')

GOOD = _good()

def lines(): return GOOD.strip().splitlines()
def edit(row, col, value):
    out = lines(); cells = out[row].split(','); cells[col] = value; out[row] = ','.join(cells); return '\n'.join(out) + '\n'

def write(name, content, mode='w'):
    path = HERE/name
    if isinstance(content, bytes): path.write_bytes(content)
    else: path.write_text(content)

def main():
    frame = pd.read_csv(io.StringIO(GOOD))
    write('good.csv', GOOD)
    write('empty.csv', '')
    write('header_only.csv', lines()[0] + '\n')
    write('blank_lines.csv', '\n\n   \n')
    write('missing_column.csv', '\n'.join(','.join(l.split(',')[:4] + l.split(',')[5:]) for l in lines()) + '\n')  # no close
    write('misnamed_columns.csv', GOOD.replace('ts,open,high,low,close,volume', 'Zeit,Eroeffnung,Hoch,Tief,Schluss,Umsatz'))
    write('text_in_number.csv', edit(3, 4, 'n/a?'))
    write('high_below_low.csv', edit(2, 2, '440.0'))
    write('high_below_close.csv', edit(5, 2, '450.7'))  # above low and open, below close
    write('negative_volume.csv', edit(5, 5, '-100'))
    write('zero_price.csv', edit(6, 1, '0'))
    write('missing_value.csv', edit(7, 3, ''))
    write('infinite_value.csv', edit(8, 5, 'inf'))
    dup = lines(); dup.insert(5, dup[4].replace('446.06', '447.00')); write('duplicate_conflicting.csv', '\n'.join(dup) + '\n')
    dup = lines(); dup.insert(4, dup[3]); write('duplicate_exact.csv', '\n'.join(dup) + '\n')
    rows = lines(); write('unsorted.csv', '\n'.join([rows[0]] + rows[1:][::-1]) + '\n')
    rows = lines(); rows = [rows[0]] + [r.replace(r[:10], r[:10] + 'T21:00:00Z', 1) for r in rows[1:]]
    rows[5] = rows[5].replace('T21:00:00Z', 'T16:00:00', 1)  # one time without its zone
    write('mixed_timezones.csv', '\n'.join(rows) + '\n')
    write('unparseable_date.csv', edit(2, 0, '2013-02-30'))
    write('binary_garbage.csv', np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    write('utf16.csv', GOOD.encode('utf-16'))
    buf = io.BytesIO(); frame.to_parquet(buf, index=False); whole = buf.getvalue()
    write('good.parquet', whole)
    write('truncated.parquet', whole[: len(whole) // 2])
    write('text_named.parquet', GOOD)
    write('invalid.json', '[{"ts": "2013-02-15", "open": 466.99,')
    write('no_candles.json', json.dumps({'symbol': 'AAPL', 'status': 'ok'}))
    write('good.json', frame.to_json(orient='records'))
    rows = lines(); rows[6] += ',17910700,extra'; write('ragged_row.csv', '\n'.join(rows) + '\n')
    hours = pd.DataFrame({'ts': pd.date_range('2024-01-02 14:00', periods=10, freq='1h', tz='UTC').astype(str),
                          'open': 1.0, 'high': 1.1, 'low': 0.9, 'close': 1.05, 'volume': 10.0})
    write('hourly_bars.csv', hours.to_csv(index=False))  # ingested as 1d: the wrong bar size
    rows = lines(); write('all_bad.csv', '\n'.join([rows[0]] + [r.replace(r.split(',')[5], '-1') for r in rows[1:]]) + '\n')
    write('spreadsheet.xlsx', b'PK\x03\x04' + bytes(60))
    zipped = gzip.compress(GOOD.encode()); write('truncated.csv.gz', zipped[: len(zipped) // 2])
    write('semicolons.csv', GOOD.replace(',', ';'))
    write('only_text.csv', 'this is not a price file\nat all\n')
    european = frame.assign(ts=pd.to_datetime(frame['ts']).dt.strftime('%d.%m.%Y'))   # a German export: 15.02.2013;468,85;...
    write('european.csv', european.to_csv(index=False, sep=';', decimal=',', float_format='%.10g'))

if __name__ == '__main__': main()
