"""Series that are not bars in both stores (issue 55): every vintage kept, a resend unchanged, an overwrite of what was
known refused in one line, a batch stored whole or not at all, read back as written, listed, stamped and deleted; the
same promises on the Parquet store and on a real PostgreSQL server. The rows are real: core CPI from arch.data."""
import pandas as pd, pytest
from arch.data import core_cpi
from conftest import store_snapshot
from mlfin.errors import BadInput, NotFound, Unavailable
from mlfin.data.observations import observations_frame
from mlfin.data.stores import open_store
from mlfin.data.stores.observations import as_observations, record

RULE = 'day 15 of next month 08:30 America/New_York'
CPI = core_cpi.load()['CPILFESL']   # 743 months, 1957-2018


def cpi(rows=slice(None), name='cpi_core', symbol=None, rule=RULE, later=None, add=0.0):
    "Real core CPI as an observations frame; `later`: the same months known that much later (a vintage); `add`: values moved (an overwrite)"
    part = CPI.iloc[rows]
    frame = observations_frame(part.index, part.to_numpy() + add, rule=rule, frequency='M', name=name, symbol=symbol,
                               source='FRED CPILFESL (arch.data)', licence='NCSA')
    if later is not None:
        attrs = frame.attrs; frame = frame.assign(known=frame['known'] + pd.Timedelta(later)); frame.attrs = attrs
    return frame


def test_vintages_resends_and_refusals_leave_the_store_as_it_was(store_url):
    store = open_store(store_url)
    # nothing stored yet (no observation tables on PostgreSQL): an empty listing, no stamp, a one-line NotFound
    assert (len(store.observation_series()), store.observations_stamp('cpi_core')) == (0, None)
    with pytest.raises(NotFound, match="^no observations of cpi_core in the store; it holds none$"): store.read_observations('cpi_core')
    assert store.write_observations(cpi()) == {'added': 743, 'unchanged': 0}
    assert store.write_observations(cpi(slice(-24, None))) == {'added': 0, 'unchanged': 24}   # the last two years resent
    stamp = store.observations_stamp('cpi_core')
    assert stamp == record(as_observations(cpi()), {})['digest']   # the rows' digest: the same in both stores
    # a revision of the last year, known 60 days after each first print, and a company's series, in one batch
    assert store.write_observations([cpi(slice(-12, None), later='60D', add=0.1), cpi(slice(-8, None), name='eps', symbol='AAPL')]) == \
           {'added': 20, 'unchanged': 0}
    assert store.observations_stamp('cpi_core') != stamp
    before = store_snapshot(store_url)
    # a batch whose second series overwrites a known value: refused in one line, its first series (new) not stored either
    with pytest.raises(BadInput) as refused:
        store.write_observations([cpi(slice(0, 12), name='cpi_again'), cpi(slice(-3, None), add=0.2)])
    assert str(refused.value) == ("cpi_core: period 2018-09-01 known 2018-10-15 12:30 UTC is stored as 258.441, the batch gives 258.641; "
                                  "a revision is a new row known later, never an overwrite; nothing stored")
    with pytest.raises(BadInput, match=f"^cpi_core: stored with rule '{RULE}', the batch gives 'next session open XNYS'; a series keeps its rule"):
        store.write_observations(cpi(slice(0, 3), rule='next session open XNYS'))
    assert store_snapshot(store_url) == before
    # read back: every vintage, the first prints as written, the record as attrs
    back = store.read_observations('cpi_core')
    assert (len(back), back.attrs['rule'], back.attrs['source'], back.attrs['symbol']) == (755, RULE, 'FRED CPILFESL (arch.data)', None)
    pd.testing.assert_frame_equal(back.groupby('period').head(1).reset_index(drop=True), as_observations(cpi()))
    october = back[back['period'] == '2018-10-01']
    assert october['known'].tolist() == [pd.Timestamp('2018-11-15 13:30', tz='UTC'), pd.Timestamp('2019-01-14 13:30', tz='UTC')]
    assert october['value'].round(3).tolist() == [258.939, 259.039]
    listed = store.observation_series()
    assert listed[['name', 'symbol', 'frequency', 'rule', 'rows', 'periods', 'vintages']].values.tolist() == \
           [['cpi_core', None, 'M', RULE, 755, 743, 2], ['eps', 'AAPL', 'M', RULE, 8, 8, 1]]
    assert (listed['first_period'][0], listed['last_known'][0]) == (pd.Timestamp('1957-01-01'), pd.Timestamp('2019-02-13 13:30', tz='UTC'))
    assert store.read_observations('eps', 'AAPL').attrs['symbol'] == 'AAPL'
    with pytest.raises(NotFound, match="^no observations of eps of MSFT in the store; it holds cpi_core, eps of AAPL$"): store.read_observations('eps', 'MSFT')
    # deleted whole; stored again, the same rows give the same stamp
    assert store.delete_observations('cpi_core') == 755
    assert (store.observations_stamp('cpi_core'), store.observation_series()['name'].tolist()) == (None, ['eps'])
    store.write_observations(cpi())
    assert store.observations_stamp('cpi_core') == stamp


def test_concurrent_writers_of_one_series_all_land_and_a_read_only_role_reads(store_url):
    "Four writers of one series at once (overlapping months, a vintage among them) each land whole; a role that may only read reads, and is told in one line it may not write"
    import threading
    store = open_store(store_url)
    batches = [cpi(slice(0, 300)), cpi(slice(200, 500)), cpi(slice(400, None)), cpi(slice(0, 100), later='45D')]
    said = []
    def write(frame):
        try: said.append(open_store(store_url).write_observations(frame))
        except Exception as e: said.append(e)
    writers = [threading.Thread(target=write, args=(b,)) for b in batches]
    for w in writers: w.start()
    for w in writers: w.join(60)
    assert sum(s['added'] for s in said) == 843 and sum(s['unchanged'] for s in said) == 200, said   # 743 first prints and 100 vintages, each once
    back = store.read_observations('cpi_core')
    expected = pd.concat([cpi(), batches[-1]], ignore_index=True); expected.attrs = batches[-1].attrs
    assert (len(back), back['period'].nunique(), store.observations_stamp('cpi_core')) == (843, 743, record(as_observations(expected), {})['digest'])
    if not store_url.startswith('postgresql://'): return
    import psycopg, uuid
    role = f"reader_{uuid.uuid4().hex[:8]}"   # roles are the server's, not the database's: one of the test's own
    with psycopg.connect(store_url, autocommit=True) as con:
        con.execute(f"CREATE ROLE {role} LOGIN"); con.execute(f"GRANT SELECT ON mlfin_observations, mlfin_observation_series TO {role}")
    reader = open_store(store_url.replace('://mlfin@', f'://{role}@'))
    assert len(reader.read_observations('cpi_core')) == 843 and reader.observation_series()['rows'].tolist() == [843]
    with pytest.raises(Unavailable, match="this role may not change the store") as refused: reader.write_observations(cpi(slice(0, 3), name='aaa'))
    assert len(str(refused.value).splitlines()) == 1


KILLED = '''
import os, sys, time
from arch.data import core_cpi
from mlfin.data.observations import observations_frame
from mlfin.data.stores import open_store
real = os.replace
def halted(source, target):   # every series' file and record on disk, no record renamed in: the moment before the commit
    if str(target).endswith('_meta.json'): print('inside', flush=True); time.sleep(3600)
    return real(source, target)
os.replace = halted
cpi = core_cpi.load()['CPILFESL']
open_store(sys.argv[1]).write_observations(observations_frame(cpi.index, cpi.to_numpy(), rule=sys.argv[2], frequency='M', name='cpi_core'))
'''


def test_a_writer_killed_before_its_commit_leaves_the_series_as_it_was(tmp_path):
    "Parquet (PostgreSQL's is its transaction): the writer killed with its new file and record on disk; readers see the old rows, the next write clears what it left"
    import signal, subprocess, sys
    store = open_store(tmp_path/'store')
    store.write_observations(cpi(slice(0, 600)))
    before, folder = store.read_observations('cpi_core'), tmp_path/'store'/'observations'/'name=cpi_core'/'symbol=_'
    child = subprocess.Popen([sys.executable, '-c', KILLED, str(tmp_path/'store'), RULE], stdout=subprocess.PIPE, text=True)
    try: assert child.stdout.readline().strip() == 'inside'
    finally: child.send_signal(signal.SIGKILL); child.wait(30)
    left = sorted(p.name for p in folder.iterdir())
    assert len(left) == 5 and sum(n.endswith('.tmp') for n in left) == 1, left   # .lock, the record, the old file, the new one, the staged record
    pd.testing.assert_frame_equal(store.read_observations('cpi_core'), before)
    assert store.write_observations(cpi()) == {'added': 143, 'unchanged': 600}
    assert sorted(p.name for p in folder.iterdir() if p.name != '.lock') == ['_meta.json', store._record(folder)['file']]


FULL = '''
import os, shutil, sys
from arch.data import core_cpi
from mlfin.data.observations import observations_frame
from mlfin.data.stores import open_store
from mlfin.errors import Unavailable
cpi, store = core_cpi.load()['CPILFESL'], open_store(sys.argv[1])
frame = lambda n: observations_frame(cpi.index[:n], cpi.to_numpy()[:n], rule=sys.argv[2], frequency='M', name='cpi_core')
store.write_observations(frame(3))
with open(os.path.join(sys.argv[1], 'fill'), 'wb') as f: f.write(b'0' * (shutil.disk_usage(sys.argv[1]).free - 4096))   # a page left
try: store.write_observations(frame(743)); print('stored')
except Unavailable as e: print(e)
folder = os.path.join(sys.argv[1], 'observations', 'name=cpi_core', 'symbol=_')
print(len(store.read_observations('cpi_core')), sorted(n for n in os.listdir(folder) if n != '.lock'))
'''


def test_a_full_disk_refuses_the_write_in_one_line_and_keeps_the_series(tmp_path):
    "Parquet on a 1 MB tmpfs in a mount namespace of its own, filled: the write is refused naming the folder, its files cleared, the series as it was"
    import subprocess, sys
    store = tmp_path/'store'; store.mkdir()
    done = subprocess.run(['unshare', '--mount', '--propagation', 'private', 'sh', '-c', f'mount -t tmpfs -o size=1m tmpfs {store} && exec "$@"', 'sh',
                           sys.executable, '-c', FULL, str(store), RULE], capture_output=True, text=True, timeout=120)
    said = done.stdout.splitlines()
    assert done.returncode == 0 and len(said) == 2, (done.stdout, done.stderr[-2000:])
    assert said[0].startswith(f"the store's disk is full: no room under {store} (") and said[0].endswith("nothing of this batch was stored"), said[0]
    assert said[1].startswith("3 ['_meta.json', 'observations.") and said[1].count('.parquet') == 1, said[1]   # three rows, one file: nothing left of the refused write
