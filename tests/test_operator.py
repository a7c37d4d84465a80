"""An operator's first day (issue 17), replayed against real servers: `mlfin serve` on the Parquet store and on the
PostgreSQL server the tests start, Redis, a disk that fills up; a MetaTrader collector posting broker-time candles.
Each test names the defect it holds shut."""
import json, os, signal, socket, subprocess, threading, time
from pathlib import Path
from urllib.parse import urlsplit
import httpx, pandas as pd
import pytest
from conftest import ES, MLFIN, ROOT, Service, free_port, mlfin, new_database, redis_answers, run_lock_held, service, wait_for
pytestmark = pytest.mark.e2e   # a user's path end to end (make test-fast leaves it out)

TRAIN = {'symbols': 'SPX', 'start': '2015-01-01', 'end': '2017-12-31', 'models': 'logistic', 'folds': 2}


def access_lines(path: Path) -> list[dict]:
    "The JSON access lines of a service's log files (the rotated ones too)"
    lines = []
    for f in sorted(path.parent.glob(path.name + '*')):
        lines += [json.loads(l) for l in f.read_text().splitlines() if l.startswith('{')]
    return [l for l in lines if l.get('logger') == 'mlfin.service.access']


def broker_rates(bars: pd.DataFrame, zone: str = 'Etc/GMT-2') -> list[dict]:
    "MetaTrader copy_rates records as a broker on `zone` sends them: `time` counts seconds of the broker's wall clock"
    wall = bars.index.tz_convert(zone).tz_localize(None)
    return [{'time': int((t - pd.Timestamp('1970-01-01')).total_seconds()), 'open': r.open, 'high': r.high, 'low': r.low, 'close': r.close,
             'tick_volume': r.volume, 'spread': 0, 'real_volume': 0} for t, r in zip(wall, bars.itertuples())]


# --- defect 1 and 6: MetaTrader's times, read per row ---------------------------------------------------------------

def test_metatrader_epochs_are_broker_time_and_a_bad_time_is_one_rows_problem(served_home, tmp_path):
    "Defect 1: an epoch `time` from MetaTrader is the broker's wall clock, as the same time in text is; defect 6: one bad time quarantines one row"
    store = str(tmp_path/'store')
    with service(served_home, '--no-jobs', store=store) as svc, svc.client(svc.key('collector')) as client:
        bars = ES.iloc[:30]
        as_epochs = client.post('/ingest', json={'symbol': 'ES', 'timeframe': 'M1', 'tz': 'Etc/GMT-2', 'candles': broker_rates(bars)})
        assert as_epochs.status_code == 200 and as_epochs.json()['quarantined'] == 0, as_epochs.json()
        texts = [{**c, 'time': str(pd.Timestamp(c['time'], unit='s'))} for c in broker_rates(bars)]
        as_text = client.post('/ingest', json={'symbol': 'EST', 'timeframe': 'M1', 'tz': 'Etc/GMT-2', 'candles': texts})
        assert as_text.status_code == 200, as_text.json()
        from mlfin import data
        assert data.load('ES', '1m', store=store).index.equals(bars.index)        # the bars' true UTC times, by either road
        assert data.load('EST', '1m', store=store).index.equals(bars.index)
        # a batch sent in broker time without its zone looks two hours off the market's calendar: the answer says so (EUR/USD's hours
        # around a weekend: read two hours late, Friday's last ones fall after the 17:00 New York close)
        week_end = data.load_sample('EURUSD').loc['2017-06-16 10:00':'2017-06-19 03:00']
        shifted = client.post('/ingest', json={'symbol': 'EURX', 'timeframe': 'H1', 'calendar': '24/5', 'candles': broker_rates(week_end)})
        said = shifted.json().get('detail') or ' '.join(shifted.json()['notes'])   # every bar off the calendar: refused, saying why
        assert 'shifted by +2 h' in said, shifted.json()
        # one unparseable time among epochs: that row quarantined with its reason, the others stored
        later = broker_rates(ES.iloc[30:40])
        later[3]['time'] = 'garbage'
        mixed = client.post('/ingest', json={'symbol': 'ES', 'timeframe': 'M1', 'tz': 'Etc/GMT-2', 'candles': later})
        assert mixed.status_code == 200 and (mixed.json()['new'], mixed.json()['quarantined']) == (9, 1), mixed.json()
        assert 'garbage' in mixed.json()['first_problem'] and '1378' not in mixed.json()['first_problem'], mixed.json()
    assert svc.errors() == ''


def test_a_resent_candle_keeps_its_volume(served_home, tmp_path):
    "Defect 7: the volume a series takes from MetaTrader's two is chosen once for the series, so a candle resent alone keeps its value"
    store = str(tmp_path/'store')
    with service(served_home, '--no-jobs', store=store) as svc, svc.client(svc.key('collector')) as client:
        batch = [{**c, 'real_volume': 100 if i else 0} for i, c in enumerate(broker_rates(ES.iloc[:20], 'UTC'))]   # real volume: 0 on the first
        assert client.post('/ingest', json={'symbol': 'ES', 'timeframe': 'M1', 'candles': batch}).json()['new'] == 20
        again = client.post('/ingest', json={'symbol': 'ES', 'timeframe': 'M1', 'candles': batch[:1]}).json()
        assert (again['unchanged'], again['changed']) == (1, 0), again
    from mlfin import data
    assert data.load('ES', '1m', store=store)['volume'].iloc[0] == 0


# --- defect 8: signals on closed bars -------------------------------------------------------------------------------

@pytest.mark.waits   # begins at a minute's start (up to a minute's wait)
def test_signals_are_decided_on_closed_bars_and_the_record_keeps_the_final_one(served_home, tmp_path):
    "Defect 8: the forming candle a MetaTrader collector sends is not decided on; a bar corrected after its close is decided again"
    for attempt in range(3):   # the checks need one clock minute throughout: a minute that turned on a busy machine, tried again on a fresh store
        if decided_within_a_minute(served_home, str(tmp_path/f'store{attempt}')): return
    pytest.fail("the clock's minute turned during each of 3 attempts (each had 57 s or more)")


def decided_within_a_minute(served_home, store: str) -> bool:
    "The closed-bar checks of defect 8, begun as a minute starts; False (nothing asserted after it) when the minute turned before they ended"
    with service(served_home, '--no-jobs', store=store) as svc, svc.client(svc.key('admin')) as client:
        while pd.Timestamp.now(tz='UTC').second >= 3: time.sleep(0.2)   # begun at the start of a minute: 57 s or more for what follows
        now = pd.Timestamp.now(tz='UTC').floor('min')
        live = ES.iloc[-1000:].copy()
        live.index = now - (live.index[-1] - live.index)   # the real minutes, moved so that the last one is forming now
        posted = client.post('/ingest', json={'symbol': 'ES', 'timeframe': '1m', 'off_calendar': 'keep', 'calendar': 'CMES',
                                              'candles': broker_rates(live, 'UTC')})
        assert posted.status_code == 200, posted.json()
        ask = lambda **kw: client.get('/signals', params={'symbol': 'ES', 'timeframe': '1m', **kw}).json()
        closed, forming = ask(), ask(closed='false')
        if pd.Timestamp.now(tz='UTC').floor('min') != now: return False   # the forming bar closed meanwhile
        assert pd.Timestamp(closed['ts']) == live.index[-2] and closed['persisted'] is True, closed
        assert pd.Timestamp(forming['ts']) == live.index[-1] and forming['persisted'] is False, forming
        # the collector's next push corrects the closed bar (its final values): decided again, and the record keeps the final decision
        corrected = broker_rates(live.iloc[-2:-1], 'UTC')
        corrected[0].update(close=corrected[0]['close'] * 0.97, low=min(corrected[0]['low'], corrected[0]['close'] * 0.97))
        assert client.post('/ingest', json={'symbol': 'ES', 'timeframe': '1m', 'off_calendar': 'keep', 'candles': corrected}).json()['changed'] == 1
        final = ask()
        history = client.get('/signals/history', params={'symbol': 'ES', 'timeframe': '1m', 'start': str(live.index[-5].date())}).json()
        if pd.Timestamp.now(tz='UTC').floor('min') != now: return False   # the forming bar closed: decided too
        assert [(h['ts'], h['prob_up']) for h in history] == [(final['ts'], final['prob_up'])], history   # one record of the bar: the final one
        assert final['prob_up'] != closed['prob_up']
    assert svc.errors() == ''
    return True


# --- defect 9: a body is read only for a credential --------------------------------------------------------------------

def rss(pid: int) -> int:
    "Resident memory of a process and its children, bytes"
    total = 0
    for p in [pid, *[int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]]:
        total += int(next(l.split()[1] for l in Path(f"/proc/{p}/status").read_text().splitlines() if l.startswith('VmRSS'))) * 1024
    return total


def test_bodies_without_a_credential_cost_nothing_and_slow_bodies_time_out(served_home, tmp_path):
    "Defect 9: 40 unauthenticated 9 MB bodies at once are refused from their headers (memory flat); a body that trickles gets 408"
    with service(served_home, '--no-jobs', '--body-timeout', '2', store=str(tmp_path/'store')) as svc:
        key = svc.key('collector')
        before = rss(svc.process.pid)
        body = b'{"symbol": "ES", "timeframe": "1m", "candles": [' + b' ' * (9 * 2**20) + b']}'
        statuses = []
        def post(): statuses.append(httpx.post(f"{svc.url}/ingest", content=body, headers={'Content-Type': 'application/json'}, timeout=60).status_code)
        threads = [threading.Thread(target=post) for _ in range(40)]
        for t in threads: t.start()
        for t in threads: t.join(120)
        grown = rss(svc.process.pid) - before
        assert statuses == [401] * 40
        assert grown < 40 * 2**20, f"{grown / 2**20:.0f} MB more after 40 refused bodies"
        with socket.create_connection(('127.0.0.1', svc.port)) as s:   # a client that sends 10 bytes of a 1,000-byte body, then waits
            s.sendall(f"POST /ingest HTTP/1.1\r\nHost: x\r\nX-API-Key: {key}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n".encode() + b'{"symbol":')
            s.settimeout(60); started = time.time()
            answer = s.recv(4096).decode()
        # answered by the 2 s body timeout, not by the client giving up (a bound for a busy machine, far under the 60 s it would wait)
        assert answer.startswith('HTTP/1.1 408') and 'not received within 2 s' in answer and time.time() - started < 30, answer
    assert svc.errors() == ''


# --- defect 5: a service an operator can read ---------------------------------------------------------------------

def test_every_request_writes_one_access_line_and_the_log_rotates(served_home, tmp_path):
    "Defect 5: every request, answered or refused, gives one JSON access line (route, status, latency, key, request id) in a rotated file"
    log = tmp_path/'logs'/'service.log'
    with service(served_home, '--no-jobs', '--log-json', '--log-file', str(log), '--log-max-bytes', '10000', store=str(tmp_path/'store')) as svc:
        key = svc.key('read_only')
        sent = []
        with svc.client(key) as client:
            for i in range(60):
                r = client.get('/prices/latest', params={'symbol': 'ES' if i % 3 else 'NOPE', 'timeframe': '1m', 'n': 2},
                               headers={'X-Request-ID': f"t-{i}"} if i % 2 else {})
                sent.append((r.status_code, r.headers['x-request-id']))
            sent.append((client.get('/health').status_code, client.get('/health').headers['x-request-id']))
        refused = httpx.get(f"{svc.url}/predict", params={'symbol': 'ES', 'timeframe': '1m'})
        sent.append((refused.status_code, refused.headers['x-request-id']))
        time.sleep(0.5)
    lines = access_lines(log)
    assert len([l for l in lines if l['path'] != '/health']) == 61 and len(list(log.parent.glob('service.log.*'))) >= 1   # and /health: the start's polls
    by_id = {l['request_id']: l for l in lines}
    assert all(by_id[rid]['status'] == status for status, rid in sent if rid in by_id)
    assert {f"t-{i}" for i in range(1, 60, 2)} <= set(by_id)   # the caller's own ids kept
    first = by_id['t-1']
    assert first['route'] == '/prices/latest' and first['key_id'] and first['ms'] > 0 and first['time'].endswith('Z') and first['level'] == 'INFO'
    assert by_id[sent[-1][1]]['status'] == 401 and by_id[sent[-1][1]]['key_id'] is None


# --- defect 4: outages are 503 naming what is down -------------------------------------------------------------------

def failure_lines(svc) -> list[str]:
    return [l for l in svc.log.read_text().splitlines() if ' WARNING ' in l or ' ERROR ' in l]


def test_redis_down_is_a_503_naming_it_and_back_up_is_served(served_home, tmp_path):
    "Defect 4: Redis stopped and started under a running service; a service is not started without it"
    import shutil
    port = free_port()
    redis = lambda: subprocess.Popen([shutil.which('redis-server'), '--port', str(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}"
    refused = mlfin(tmp_path, 'serve', '--port', str(free_port()), '--limits-storage', url, check=False)
    assert refused.returncode == 2 and f"rate-limit store {url} does not answer" in refused.stderr and 'serving on' not in refused.stderr
    server = redis(); redis_answers(port)
    from mlfin import data
    data.ingest(ES.iloc[:50], 'ES', '1m', calendar='CMES', store=str(tmp_path/'store'))   # a series with a production model: ready when all is up
    try:
        with service(served_home, '--no-jobs', '--limits-storage', url, store=str(tmp_path/'store')) as svc, svc.client(svc.key('read_only')) as client:
            assert client.get('/models').status_code == 200
            server.terminate(); server.wait(10)
            down = [client.get('/models') for _ in range(5)]
            assert {r.status_code for r in down} == {503} and down[0].json()['detail'] == 'unavailable: the rate-limit store does not answer; try again later'
            ready = client.get('/ready')
            assert ready.status_code == 503   # its own credential check cannot count it either
            server = redis(); redis_answers(port)
            assert client.get('/models').status_code == 200
            assert client.get('/ready').json()['checks']['rate_limits'] == 'ok'
        lines = failure_lines(svc)
        assert len([l for l in lines if f"the rate-limit store {url} does not answer" in l]) == 6 and 'Traceback' not in svc.log.read_text()   # where: the log's
    finally: server.terminate(); server.wait(10)


def test_postgresql_down_is_a_503_naming_it_and_ready_fails_until_it_is_back(served_home, postgres_server):
    """Defect 4: the database stopped under a running service: 503 naming it, /ready failing; served again once it is back.
    Issue 53, attack 10: the 503 a key holder got (a collector's too) named the database's URL, user, host and port; now its kind
    alone, and the operator's log says where. Issue 54: meanwhile a /predict for a bar already forecast is answered from the
    forecast the service made (a bar not forecast yet: the 503), and /metrics still answers, its store figure 0, which
    MlfinStoreDown pages on after a minute (promtool proves the rule: env/monitoring/alerts.test.yml)"""
    store = new_database(postgres_server)
    from mlfin import data
    data.ingest(ES, 'ES', '1m', calendar='CMES', store=store)   # the production model's look-back and more
    with service(served_home, '--no-jobs', store=store) as svc:
        key, scraper = svc.key('read_only'), svc.key('scraper')
        with svc.client(key) as client, svc.client(token=scraper) as scrape:
            assert client.get('/prices/latest', params={'symbol': 'ES', 'timeframe': '1m'}).status_code == 200
            served = client.get('/predict', params={'symbol': 'ES', 'timeframe': '1m'})
            assert served.status_code == 200, served.json()
            figures = scrape.get('/metrics').text
            assert 'mlfin_store_up 1.0' in figures, figures
            live = [l for l in figures.splitlines() if l.startswith('mlfin_series_live{')]   # in production: expected live
            assert live == ['mlfin_series_live{symbol="ES",timeframe="1m"} 1.0'], live
            postgres_server.stop()
            try:
                down = client.get('/prices/latest', params={'symbol': 'ES', 'timeframe': '1m'})
                ready = client.get('/ready')
                kept = client.get('/predict', params={'symbol': 'ES', 'timeframe': '1m'})
                unforecast = client.get('/predict', params={'symbol': 'ES', 'timeframe': '1m', 'closed': 'false'})   # never asked: not made
                scraped = scrape.get('/metrics')
            finally: postgres_server.start()
            said = down.json()['detail']
            assert down.status_code == 503 and said == "unavailable: the service's database does not answer; try again later", said
            assert kept.status_code == 200 and kept.json() == served.json(), kept.json()   # the forecast made for ES's last bar, from memory
            assert unforecast.status_code == 503 and unforecast.json()['detail'] == said, unforecast.json()
            assert scraped.status_code == 200 and 'mlfin_store_up 0.0' in scraped.text, scraped.text   # what MlfinStoreDown pages on
            place = urlsplit(store)
            assert ready.status_code == 503, ready.json()   # 'not ready: ...', or the key's check could not be read either
            for answer in (said, ready.text):   # no URL, user, host, port or database name in what a key holder reads
                assert not [p for p in (store, place.hostname, str(place.port), place.username, place.path.strip('/')) if p in answer], answer
            assert f"{place.hostname}:{place.port}" in svc.log.read_text()   # where it is: the operator's log
            deadline = time.time() + 60
            while (back := client.get('/prices/latest', params={'symbol': 'ES', 'timeframe': '1m'})).status_code != 200 and time.time() < deadline:
                time.sleep(0.5)   # a pooled connection that died with the server is found out and replaced
            assert back.status_code == 200, back.json()
    assert 'Traceback' not in svc.log.read_text()


def test_a_full_disk_is_a_503_naming_it_and_loses_no_acknowledged_candle(served_home, tmp_path):
    "Defect 4: the store's filesystem fills up (a 4 MB tmpfs in a mount namespace of its own): 503, /ready failing, every acknowledged candle kept"
    store = tmp_path/'small'
    store.mkdir()
    wrap = ['unshare', '--mount', '--propagation', 'private', *([] if os.geteuid() == 0 else ['--user', '--map-root-user']),
            'sh', '-c', f'mount -t tmpfs -o size=4m tmpfs {store} && exec "$@"', 'sh']
    with service(served_home, '--no-jobs', '--min-free-mb', '1', store=str(store), wrap=wrap) as svc:
        inside = Path(f"/proc/{svc.process.pid}/root") / str(store).lstrip('/')   # the service's view of its store
        enter = ['nsenter', '-t', str(svc.process.pid), '-m', *([] if os.geteuid() == 0 else ['-U', '--preserve-credentials'])]
        key = lambda role: subprocess.run([*enter, MLFIN, 'keys', 'create', '--role', role, '--store', str(store)], env=svc.env, cwd=ROOT,
                                          capture_output=True, text=True, check=True).stdout.strip()   # the keys live on its disk
        client, reader = svc.client(key('collector')), svc.client(key('read_only'))   # made while there is room for them
        acknowledged = []
        def push(rows):
            r = client.post('/ingest', json={'symbol': 'ES', 'timeframe': 'M1', 'candles': broker_rates(rows, 'UTC')})
            if r.status_code == 200: acknowledged.extend(rows.index)
            return r
        assert push(ES.iloc[:200]).status_code == 200
        with open(inside/'filler', 'wb') as f:   # everything else fills the disk
            try:
                while True: f.write(b'\0' * 2**16); f.flush()
            except OSError: pass
        answers = [push(ES.iloc[200 + 50 * i:250 + 50 * i]) for i in range(3)]
        assert any(r.status_code == 503 for r in answers), [r.json() for r in answers]
        refused = next(r for r in answers if r.status_code == 503)
        assert 'full or read-only' in refused.json()['detail'] and refused.headers.get('retry-after') == '5', refused.json()
        # issue 54: `mlfin ingest FILE` on the full disk printed pyarrow's 174-line traceback; now one line naming the folder,
        # and nothing it made is left behind
        ES.iloc[200:2000].rename_axis('ts').reset_index().to_csv(tmp_path/'es.csv', index=False)
        before = sorted(p.name for p in inside.rglob('*') if p.is_file())
        cli = subprocess.run([*enter, MLFIN, 'ingest', str(tmp_path/'es.csv'), '--symbol', 'ES', '--timeframe', '1m', '--store', str(store)],
                             env=svc.env, cwd=ROOT, capture_output=True, text=True)
        assert cli.returncode == 2 and cli.stderr.strip().startswith(f"mlfin: error: the store's disk is full: no room under {store} ("), cli.stderr
        assert len(cli.stderr.strip().splitlines()) == 1 and cli.stdout == '', cli.stderr
        assert sorted(p.name for p in inside.rglob('*') if p.is_file()) == before   # the store as it was
        with reader:
            ready = reader.get('/ready')
            assert ready.status_code == 503 and 'disk' in ready.json()['detail'], ready.json()
            (inside/'filler').unlink()
            assert push(ES.iloc[400:500]).status_code == 200
            assert reader.get('/ready').json()['checks']['disk'] == 'ok'
            stored = reader.get('/prices/latest', params={'symbol': 'ES', 'timeframe': '1m', 'n': 10000}).json()['bars']
        assert set(pd.Timestamp(b['ts']) for b in stored) >= set(acknowledged)   # nothing acknowledged was lost
    assert 'Traceback' not in svc.log.read_text()


# --- defect 2: one job runner, also after the database restarts ---------------------------------------------------

def test_two_workers_after_a_database_restart_run_one_job_at_a_time_and_none_twice(postgres_server, tmp_path):
    "Defect 2: PostgreSQL restarts while a job runs under two workers: the runner that lost its lock ends its job; the queue goes on, one at a time"
    store = new_database(postgres_server)
    from mlfin import data
    data.ingest('sample:SPX', store=store)
    with service(tmp_path/'home', '--workers', '2', store=store) as svc, svc.client(svc.key('analyst')) as client:   # its jobs' runs: a home of its own
        with run_lock_held(tmp_path/'home'):   # the first job stays running (waiting for the home's run lock) until the restart is over
            first = client.post('/train', json={'params': TRAIN}).json()
            second = client.post('/train', json={'params': {**TRAIN, 'seed': 1}}).json()
            wait_for(client, first['id'], {'running'}, 60)
            time.sleep(5)   # past its reads of the store, waiting for the lock by now (else the restart fails its reads: also allowed below)
            postgres_server.restart()
            jobs = [wait_for(client, first['id'], {'succeeded', 'failed', 'interrupted'}, 400)]
        jobs.append(wait_for(client, second['id'], {'succeeded', 'failed', 'interrupted'}, 400))   # after the restart, the lock free
        # a worker killed while its job runs: the other worker takes the lock and reports the job interrupted
        third = client.post('/train', json={'params': {**TRAIN, 'seed': 2}}).json()
        running = wait_for(client, third['id'], {'running'}, 60)
        os.kill(int(running['runner'].rsplit(':', 1)[1]), signal.SIGKILL)
        gone = wait_for(client, third['id'], {'interrupted', 'failed', 'succeeded'}, 90)
    # the first ends interrupted by its runner once the lock is gone (or failed, when the restart broke its own reads first)
    assert jobs[0]['state'] in ('interrupted', 'failed') and jobs[1]['state'] == 'succeeded', jobs
    assert 'runner lock lost' in svc.log.read_text()
    spans = sorted((pd.Timestamp(j['started_at']), pd.Timestamp(j['ended_at'])) for j in jobs)
    assert spans[0][1] <= spans[1][0], spans   # never two at once
    assert gone['state'] == 'interrupted' and gone['error'].startswith('interrupted: its runner stopped'), gone


# --- defect 10: the smaller ones ---------------------------------------------------------------------------------

def test_kill_9_of_the_master_takes_its_workers_and_the_port_is_free_again(served_home, tmp_path):
    "Defect 10: kill -9 of the master of two workers: the workers go with it; a restart on the same port serves; a port in use is refused before 'serving on'"
    with service(served_home, '--no-jobs', '--workers', '2', store=str(tmp_path/'store')) as svc:
        workers = [int(c) for c in Path(f"/proc/{svc.process.pid}/task/{svc.process.pid}/children").read_text().split()]
        busy = mlfin(tmp_path, 'serve', '--port', str(svc.port), '--store', str(tmp_path/'store'), check=False)
        assert busy.returncode == 2 and f"cannot listen on 127.0.0.1:{svc.port}" in busy.stderr and 'serving on' not in busy.stderr, busy.stderr
        svc.stop(signal.SIGKILL)
        deadline = time.time() + 60
        while any(Path(f"/proc/{w}").exists() and 'zombie' not in Path(f"/proc/{w}/status").read_text() for w in workers) and time.time() < deadline:
            time.sleep(0.2)
        assert not any(Path(f"/proc/{w}").exists() and 'zombie' not in Path(f"/proc/{w}/status").read_text() for w in workers)
        svc.start()
        assert httpx.get(f"{svc.url}/health").status_code == 200


def test_jobs_cancelled_keys_that_expire_a_collectors_key_and_mt_timeframes(served_home, tmp_path):
    "Defect 10: a queued job cancelled; POST /train reads H1 as 1h; a collector's key may only ingest; a key made to expire says so"
    with service(served_home, '--no-jobs', store=str(tmp_path/'store')) as svc:
        with svc.client(svc.key('analyst')) as client:
            queued = client.post('/train', json={'params': {'symbols': 'EURUSD:H1', 'models': 'logistic'}})
            assert queued.status_code == 202 and queued.json()['params']['symbols'] == 'EURUSD:1h', queued.json()
            cancelled = client.delete(f"/jobs/{queued.json()['id']}").json()
            assert cancelled['state'] == 'cancelled' and client.delete(f"/jobs/{queued.json()['id']}").status_code == 400
        with svc.client(svc.key('collector')) as collector:
            assert collector.post('/ingest', json={'symbol': 'ES', 'timeframe': 'M1', 'candles': broker_rates(ES.iloc[:5], 'UTC')}).status_code == 200
            assert collector.get('/prices/latest', params={'symbol': 'ES', 'timeframe': '1m'}).status_code == 403
            assert collector.delete('/series/ES/1m').status_code == 403
        with svc.client(svc.key('admin')) as admin:   # a range of bars, then the whole series
            cut = admin.delete('/series/ES/M1', params={'start': str(ES.index[3]), 'end': str(ES.index[4])}).json()
            assert (cut['timeframe'], cut['removed']) == ('1m', 2), cut
            assert len(admin.get('/prices/latest', params={'symbol': 'ES', 'timeframe': '1m'}).json()['bars']) == 3
            assert admin.delete('/series/ES/1m').json()['removed'] == 3
            assert admin.get('/prices/latest', params={'symbol': 'ES', 'timeframe': '1m'}).status_code == 404
        made = mlfin(served_home, 'keys', 'create', '--role', 'read_only', '--days', '30', '--store', str(tmp_path/'store')).stdout.strip()
        listed = mlfin(served_home, 'keys', 'ls', '--store', str(tmp_path/'store')).stdout
        assert 'expires' in listed and made.startswith('mlfin_')


def port_free(port: int, timeout: float = 30):
    "Wait until nothing listens on `port` (a killed master's workers gone)"
    deadline = time.time() + timeout
    while time.time() < deadline:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try: s.bind(('127.0.0.1', port)); return
            except OSError: time.sleep(0.2)
    raise AssertionError(f"port {port} still taken after {timeout} s")


# --- the soak: collectors through a kill -9 and a database restart ----------------------------------------------------

def test_collector_soak_through_a_kill_and_a_database_restart(postgres_server, tmp_path):
    """Three MetaTrader collectors post overlapping broker-time batches every 0.2 s to two workers on PostgreSQL, retrying as
    a collector does; the service is killed with -9 mid-stream and started again, then the database restarts. Every
    acknowledged candle is stored once at its true UTC time, the job queued before it all ran at most once, and every
    answered request has its access line"""
    from mlfin import data
    store = new_database(postgres_server)
    data.ingest(ES.iloc[:1000], 'ES', '1m', calendar='CMES', store=store)
    log = tmp_path/'service.log'
    svc = Service(tmp_path/'home', '--workers', '2', '--log-json', '--log-file', str(log), '--rate-limit', '1000000/minute', store=store)
    try:
        collector, analyst = svc.key('collector'), svc.key('analyst')
        with svc.client(analyst) as client: job = client.post('/train', json={'params': TRAIN}).json()
        answered, acknowledged, lock = [], set(), threading.Lock()
        def collect(k):
            with svc.client(collector) as client:
                for start in range(1000 + 7 * k, len(ES), 20):
                    rows = ES.iloc[start:start + 40]
                    deadline = time.time() + 600
                    while time.time() < deadline:   # a collector retries what was not acknowledged
                        try: r = client.post('/ingest', json={'symbol': 'ES', 'timeframe': 'M1', 'tz': 'Etc/GMT-2', 'candles': broker_rates(rows)})
                        except httpx.HTTPError: time.sleep(0.2); continue
                        with lock: answered.append((r.status_code, r.headers.get('x-request-id')))
                        if r.status_code == 200:
                            with lock: acknowledged.update(rows.index)
                            break
                        time.sleep(0.2)
                    time.sleep(0.2)
        threads = [threading.Thread(target=collect, args=(k,)) for k in range(3)]
        for t in threads: t.start()
        time.sleep(4)
        svc.stop(signal.SIGKILL)   # mid-stream: its workers end with it (they finish what they were answering)
        port_free(svc.port)
        svc.start()
        time.sleep(4)
        postgres_server.restart()
        for t in threads: t.join(900)
        with svc.client(analyst) as client:
            ended = wait_for(client, job['id'], {'succeeded', 'failed', 'interrupted', 'cancelled'}, 300)
            jobs = client.get('/jobs').json()
    finally: svc.stop()
    stored = data.load('ES', '1m', store=store)
    assert acknowledged == set(ES.index[1000:]) and stored.index.is_unique
    pd.testing.assert_frame_equal(stored[data.BAR_COLUMNS], ES[data.BAR_COLUMNS], check_freq=False)   # at the true UTC times, once
    assert [j['id'] for j in jobs] == [job['id']] and ended['started_at'] is not None   # one job, started once: never queued again
    lines = {l['request_id']: l for l in access_lines(log)}
    assert [rid for status, rid in answered if rid not in lines] == []
    assert all(lines[rid]['status'] == status for status, rid in answered)
    assert {s for s, _ in answered} <= {200, 503}, {s for s, _ in answered}   # refused only while the database was away
