"""Benchmark: the service under load, in one run (`make bench-service`; ARGS="--profile" adds py-spy profiles).

The model is real: LightGBM trained by the pipeline on the embedded S&P 500 daily bars and registered as production.
The series the ingest timings write into are SYNTHETIC (random-walk one-minute bars, labelled): they give a history of
the wanted length (10 thousand and 10 million bars).

  1. /predict asked 1,000 requests a second for 60 s over loopback, by hey (Debian's load tool, in its own process):
     the rate achieved, p50, p99, errors; beside the floor: a bare FastAPI app under the same uvicorn answering the same
     JSON from memory behind a constant API-key check (no store, registry, limiter or metrics), measured in the same run.
     Target (issue 36): the rate held (at least 97% of the asked requests answered: hey's own pacing drops a few, the
     floor shows how many), 0 errors, p99 at most 1.3x the floor's.
     Measured in 3 rounds alternating with the floor (one minute's p99 varies by 1.5x on a shared machine): the median p99s compared.
     1b. the same with a monitor run written and /metrics scraped by a scraper key (its gauges on) every 15 s (Prometheus's
     default) and every second, in 3 rounds of 30 s alternating with runs without scrapes: median p99 of each beside the
     runs without. Target (issue 19): at most 10% higher.
  2. in-process: `Live.forecast` as each request runs it (the kept forecast), and as the first request after a new bar
     runs it (the kept forecast dropped: the last bars read, features on them and the model): p50 and p99.
  3. POST /ingest of one new minute bar, one request after another, into a series of 10k bars and one of 10M bars, the two
     alternately (since issue 73: a busy moment of the shared machine falls on both alike): p50 and p99 of each. Target (issue 36): p99 < 20 ms in both, the two within 1.2x.
  4. sustained ingest: POST /ingest of 1,000 new minute bars a request, for 20 s: candles a second. Target: >= 40,000. The request bodies
     are made before the clock starts (this process making them took 6 ms a batch of the same two cores the service runs on).
  5. two workers (`--workers 2`, rate limits counted in Redis on loopback, keys and sessions read from the shared service
     database): 1, 3 and 4 again, beside a two-worker floor, each printed against the same targets. Issue 36 asks for these figures
     to be reported (its item 3); the last line gives the one-worker targets' verdict (its item 2) and the two workers' apart.
With --profile, py-spy samples the one-worker service through 20 s of the /predict load and through the one-bar ingests:
their stacks (collapsed: a flame graph in speedscope, flamegraph.pl or inferno) in the working folder, and the functions the
samples spent their own time in, printed.
The service runs as `mlfin serve` in its own process; hey and the clients run beside it on the same cores, which they
share with it: the figures are the service's with its load generator, not alone.
BENCH_SCALE=quick (`make bench-all`): 1 round of 15 s for each /predict comparison (one and two workers) instead of 3 of 60 s;
1b in 3 rounds of 16 s for each scrape rate instead of 3 of 30 s (one round of each read 1.26x and 1.29x where the
unscraped round's p99 was 3.8 ms against the scraped rounds' 4.8 and 4.9 ms and the floor's 5.2: one lucky round); the
one-bar ingests into 10k and 2M bars instead of 10k and 10M; sustained ingest for 10 s instead of 20. Every target held as
at full scale.
"""
import json, os, re, shutil, signal, socket, subprocess, sys, tempfile, time
from pathlib import Path
import numpy as np, pandas as pd
sys.path.insert(0, str(Path(__file__).parent))
from _child import SYNTH, child, production_model  # noqa: E402
from _targets import scale, sized, table, target  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
work = Path(tempfile.mkdtemp(prefix='mlfin-bench-service-'))
os.environ.update(MLFIN_HOME=str(work/'home'), PLOOMBER_STATS_ENABLED='false')   # this process, its children and the server share the home
ENV = dict(os.environ)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


def wait(url: str, process, seconds: float = 120):
    import httpx
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200: return
        except httpx.HTTPError: pass
        if process.poll() is not None: raise SystemExit(f"server exited: {process.returncode}")
        time.sleep(0.2)
    raise SystemExit(f"{url} did not answer")


def hey(url: str, key: str, seconds: int = 60, rate: int = 1000, clients: int = 10) -> dict:
    "hey at `rate` requests a second (clients x their own rate) for `seconds`: p50, p99, requests a second, errors"
    out = subprocess.run(['hey', '-z', f'{seconds}s', '-q', str(rate // clients), '-c', str(clients), '-H', f'X-API-Key: {key}', url],
                         capture_output=True, text=True, check=True).stdout
    q = lambda p: float(re.search(rf"{p}% in ([\d.]+) secs", out).group(1)) * 1e3
    codes = dict((int(c), int(n)) for c, n in re.findall(r"\[(\d+)\]\s+(\d+) responses", out))
    errors = sum(n for c, n in codes.items() if c != 200) + len(re.findall(r"^\s+\[\d+\]\s+Get", out, re.M))
    return {'p50_ms': q(50), 'p99_ms': q(99), 'rps': float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            'requests': sum(codes.values()), 'errors': errors, 'codes': codes}


FLOOR = """
import json
from fastapi import FastAPI, Header, HTTPException
BODY = json.loads(__import__('os').environ['FLOOR_BODY'])
app = FastAPI()
@app.get('/predict')
def predict(symbol: str, timeframe: str, x_api_key: str | None = Header(None)):
    if x_api_key != __import__('os').environ['FLOOR_KEY']: raise HTTPException(401, 'unknown API key')
    return BODY
"""
RATE, HELD, FLOOR_RATIO = 1000, 0.97, 1.3   # issue 36's targets: asked rate, share answered, p99 against the floor
SECONDS = sized(60, 15)   # a round of /predict under hey, the service's and the floor's alike
ROUNDS = sized(3, 1)      # alternating with the floor's: one minute's p99 on a shared machine varies by 1.5x from one minute to the next
GAUGE_ROUNDS, GAUGE_SECONDS = 3, sized(30, 16)   # 1b: rounds of each scrape rate (every 15 s needs 15 s or more)
SMALL, BIG = 10_000, sized(10_000_000, 2_000_000)          # bars in the two series the one-bar ingests go into
SMALL_SYMBOL, BIG_SYMBOL = 'SYN10K', f"SYN{BIG // 1_000_000}M"
SUSTAINED_SECONDS = sized(20, 10)
ONE_BAR_MS, ONE_BAR_RATIO, SUSTAINED = 20.0, 1.2, 40_000


def verdict(ok: bool) -> str: return 'met' if ok else 'MISSED'


def serve(port: int, workers: int = 1, limits: str = 'memory://'):
    "`mlfin serve` on `port`, its log in the working folder"
    return subprocess.Popen([str(BIN/'mlfin'), 'serve', '--port', str(port), '--no-jobs', '--rate-limit', '100000000/minute',
                             '--workers', str(workers), '--limits-storage', limits], cwd=ROOT, env=ENV,
                            stdout=open(work/f'serve-{port}.log', 'w'), stderr=subprocess.STDOUT)


def stop(process):
    process.terminate()
    try: process.wait(30)
    except subprocess.TimeoutExpired: process.kill(); process.wait()


def floor_run(body: dict, key: str, workers: int = 1) -> dict:
    "hey against the bare FastAPI floor under uvicorn with `workers` processes"
    port = free_port()
    (work/'floor.py').write_text(FLOOR)
    floor = subprocess.Popen([sys.executable, '-m', 'uvicorn', 'floor:app', '--port', str(port), '--log-level', 'warning', '--workers', str(workers),
                              '--no-access-log', '--http', 'httptools', '--app-dir', str(work)],
                             env={**ENV, 'FLOOR_BODY': json.dumps(body), 'FLOOR_KEY': key}, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        wait(f"http://127.0.0.1:{port}/docs", floor)
        return hey(f"http://127.0.0.1:{port}/predict?symbol=SPX&timeframe=1d", key, SECONDS)
    finally: stop(floor)


def rounds(url: str, body: dict, key: str, workers: int = 1, n: int = ROUNDS) -> tuple[list, list]:
    "/predict on the service and on the floor, 60 s each, alternating `n` times: the loopback's and the machine's drift falls on both alike"
    ours, bare = [], []
    for _ in range(n):
        ours.append(hey(f"{url}/predict?symbol=SPX&timeframe=1d", key, SECONDS)); bare.append(floor_run(body, key, workers))
    return ours, bare


def predict_targets(label: str, ours: list, bare: list) -> bool:
    "Print the /predict rounds beside the floor's with issue 36's targets, met or missed: every round held the rate with 0 errors, median p99 within 1.3x"
    asked = RATE * SECONDS
    each = lambda runs, k, f='.1f': ', '.join(format(r[k], f) for r in runs)
    print(f"{label} /predict asked {RATE:,}/s for {SECONDS} s (hey, 10 clients), {len(ours)} rounds alternating with the floor: answered "
          f"{each(ours, 'requests', ',')} of {asked:,}; p50 {each(ours, 'p50_ms')} ms; p99 {each(ours, 'p99_ms')} ms; errors {sum(r['errors'] for r in ours)}", flush=True)
    print(f"   the floor, a bare FastAPI app answering the same JSON from memory: answered {each(bare, 'requests', ',')}; p50 {each(bare, 'p50_ms')} ms; "
          f"p99 {each(bare, 'p99_ms')} ms; errors {sum(r['errors'] for r in bare)}", flush=True)
    held = min(r['requests'] for r in ours) / asked
    errors = sum(r['errors'] for r in ours)
    p99, floor99 = float(np.median([r['p99_ms'] for r in ours])), float(np.median([r['p99_ms'] for r in bare]))
    ratio = p99 / floor99
    who = 'two workers: ' if label.startswith('5') else ''
    target(f"{who}/predict: the rate held (the fewest answered of those asked)", f"{held:.1%}", f">= {HELD:.0%}", held >= HELD)
    target(f"{who}/predict: errors", f"{errors}", '0', errors == 0)
    target(f"{who}/predict: median p99 / the bare FastAPI floor's", f"{ratio:.2f}x", f"<= {FLOOR_RATIO}x", ratio <= FLOOR_RATIO,
           f"{p99:.1f} against {floor99:.1f} ms")
    return held >= HELD and errors == 0 and ratio <= FLOOR_RATIO


def one_bar(client, symbols: tuple, n: int = 400) -> dict:
    """POST /ingest of one new minute bar `n` times into each series, alternating between them (a busy moment of the machine
    falls on both alike): per series p50 and p99 in ms (the first 20 of each warm the path), and the bars now held"""
    last = {s: pd.Timestamp(client.get('/prices/latest', params={'symbol': s, 'timeframe': '1m', 'n': 1}).json()['bars'][0]['ts'])
            for s in symbols}
    close, spent, held = 100.0, {s: [] for s in symbols}, {}
    for i in range(1, n + 1):
        for symbol in symbols:
            ts = last[symbol] + pd.Timedelta(minutes=i)
            candle = {'ts': ts.isoformat(), 'open': close, 'high': close + 0.02, 'low': close - 0.02, 'close': close + 0.01, 'volume': 5.0}
            t = time.perf_counter()
            r = client.post('/ingest', json={'symbol': symbol, 'timeframe': '1m', 'candles': [candle]})
            spent[symbol].append(time.perf_counter() - t)
            assert r.status_code == 200 and r.json()['new'] == 1, r.text
            held[symbol] = r.json()['total']
    out = {}
    for symbol in symbols:
        ms = np.array(spent[symbol][20:]) * 1e3
        out[symbol] = (float(np.percentile(ms, 50)), float(np.percentile(ms, 99)), held[symbol])
    return out


def ingest_targets(label: str, client, sustained_label: str) -> dict:
    "3 and 4: one bar into 10k and 10M bars, then 1,000-candle batches for 20 s; printed with their targets"
    timings = one_bar(client, (SMALL_SYMBOL, BIG_SYMBOL))
    for symbol in (SMALL_SYMBOL, BIG_SYMBOL):
        p50, p99, total = timings[symbol]
        print(f"{label} POST /ingest of one new minute bar into {total:,} bars (SYNTHETIC; the two series alternately): p50 {p50:.1f} ms, "
              f"p99 {p99:.1f} ms", flush=True)
    small, big = timings[SMALL_SYMBOL], timings[BIG_SYMBOL]
    ratio = max(big[0] / small[0], big[1] / small[1], small[1] / big[1])
    print(f"   {BIG:,} against {SMALL:,}: p50 {big[0] / small[0]:.2f}x, p99 {big[1] / small[1]:.2f}x", flush=True)
    who = 'two workers: ' if label.startswith('5') else ''
    target(f"{who}one-bar ingest: p99 into {SMALL:,} and {BIG:,} bars, the larger", f"{max(small[1], big[1]):.1f} ms", f"< {ONE_BAR_MS:.0f} ms",
           max(small[1], big[1]) < ONE_BAR_MS)
    target(f"{who}one-bar ingest: {BIG:,} bars against {SMALL:,} (p50, p99: the larger ratio)", f"{ratio:.2f}x", f"<= {ONE_BAR_RATIO}x",
           ratio <= ONE_BAR_RATIO)
    last = pd.Timestamp(client.get('/prices/latest', params={'symbol': BIG_SYMBOL, 'timeframe': '1m', 'n': 1}).json()['bars'][0]['ts'])
    bodies = []   # made before the clock starts: the rate is the service's, not this process's JSON making (6 ms a batch, on the same cores)
    for k in range(SUSTAINED * SUSTAINED_SECONDS * 5 // 4 // 1000):   # enough for the time at 1.25x the target
        times = pd.date_range(last + pd.Timedelta(minutes=1 + 1000 * k), periods=1000, freq='1min')
        close = 100 + np.cumsum(np.random.default_rng(k).normal(0, 0.01, 1000))
        bodies.append(json.dumps({'symbol': BIG_SYMBOL, 'timeframe': '1m', 'candles': [
            {'ts': t.isoformat(), 'open': c, 'high': c + 0.02, 'low': c - 0.02, 'close': c, 'volume': 1.0} for t, c in zip(times, close)]}).encode())
    sent, started = 0, time.perf_counter()
    for body in bodies:
        r = client.post('/ingest', content=body, headers={'content-type': 'application/json'})
        assert r.status_code == 200 and r.json()['new'] == 1000, r.text
        sent += 1000
        if time.perf_counter() - started >= SUSTAINED_SECONDS: break
    rate = sent / (time.perf_counter() - started)
    print(f"{sustained_label} sustained ingest, 1,000-candle batches one after another into the {BIG:,}-bar series: {rate:,.0f} candles/s "
          f"({sent:,} candles)", flush=True)
    target(f"{who}sustained ingest, 1,000-candle batches", f"{rate:,.0f}/s", f">= {SUSTAINED:,}/s", rate >= SUSTAINED)
    return {'one_bar': timings, 'per_s': rate, 'met': max(small[1], big[1]) < ONE_BAR_MS and ratio <= ONE_BAR_RATIO and rate >= SUSTAINED}


IDLE = ('Runner.run ', 'Condition.wait ', 'select ', 'epoll ', 'Thread.wait ')   # a sample whose innermost Python frame is one of these waits


def profiled(pid: int, name: str, during) -> None:
    "py-spy sampling `pid` while `during()` runs: its stacks collapsed (a flame graph's input) and the functions holding the most samples (their own time), printed"
    py_spy = BIN/'py-spy'
    raw = work/f'profile-{name}.txt'
    spy = subprocess.Popen([str(py_spy), 'record', '--pid', str(pid), '--rate', '250', '--format', 'raw', '--output', str(raw), '--nonblocking'],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(2)   # attached
    try: during()
    finally:
        spy.send_signal(signal.SIGINT)
        try: spy.wait(60)
        except subprocess.TimeoutExpired: spy.kill()
    if not raw.exists(): print(f"   profile {name}: py-spy wrote nothing ({spy.stderr.read().decode()[-300:].strip()})"); return
    own, total, idle = {}, 0, 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(' ')
        frames = [re.sub(r':\d+\)$', ')', re.sub(r' \(.*?/(site-packages|lib/python3\.\d+)/', ' (', f)) for f in stack.split(';') if f.strip()]
        if not frames or frames[-1].startswith(IDLE): idle += int(count); continue   # waiting: for a request (uvloop's C loop), or a thread for work
        own[frames[-1]] = own.get(frames[-1], 0) + int(count); total += int(count)
    print(f"   profile {name}: {total:,} busy samples ({idle:,} waiting), their stacks in {raw} (collapsed stacks: open in speedscope, or "
          f"flamegraph.pl/inferno for an SVG); own time by function:", flush=True)
    for frame, n in sorted(own.items(), key=lambda kv: -kv[1])[:12]: print(f"     {n / total:6.1%}  {frame[:150]}")


def gauges(url: str, key: str):
    "1b: the same load with the monitor's gauges on, /metrics scraped every 15 s and every second, rounds alternating with runs without"
    import threading, httpx
    subprocess.run([str(BIN/'mlfin'), 'monitor', '--window', '250'], cwd=ROOT, env=ENV, check=True, capture_output=True)
    scraper = subprocess.run([str(BIN/'mlfin'), 'keys', 'create', '--role', 'scraper'], env=ENV, capture_output=True, text=True, check=True).stdout.strip()
    def gauged(every: float | None, seconds: int = GAUGE_SECONDS) -> dict:
        done, scrapes = threading.Event(), []
        def scrape():
            with httpx.Client(base_url=url, headers={'Authorization': f"Bearer {scraper}"}, timeout=30) as c:
                while not done.wait(every):
                    t = time.perf_counter(); text = c.get('/metrics').text; scrapes.append(time.perf_counter() - t)
                    assert 'mlfin_monitor_drifted_share' in text
        watcher = threading.Thread(target=scrape)
        if every: watcher.start()
        try: found = hey(f"{url}/predict?symbol=SPX&timeframe=1d", key, seconds)
        finally:
            done.set()
            if every: watcher.join()
        return {**found, 'scrapes': len(scrapes), 'scrape_ms': 1000 * float(np.median(scrapes)) if scrapes else None}
    rounds = {'without': [], 'every 15 s': [], 'every 1 s': []}
    for _ in range(GAUGE_ROUNDS):
        for name, every in (('without', None), ('every 15 s', 15.0), ('every 1 s', 1.0)): rounds[name].append(gauged(every))
    p99 = {name: float(np.median([r['p99_ms'] for r in runs])) for name, runs in rounds.items()}
    for name, runs in rounds.items():
        scraped = [r['scrape_ms'] for r in runs if r['scrape_ms'] is not None]
        how = 'not scraped' if name == 'without' else f"scraped {name} (scrape median {np.median(scraped):.0f} ms)"
        each = ', '.join(f"{r['p99_ms']:.1f}" for r in runs)
        ratio = '' if name == 'without' else f" -> {p99[name] / p99['without']:.2f}x without"
        print(f"1b. /predict at 1,000 requests/s, {GAUGE_ROUNDS} round(s) of {GAUGE_SECONDS} s, /metrics {how}: p99 {each} ms (median {p99[name]:.1f}), "
              f"{np.mean([r['rps'] for r in runs]):.0f}/s, errors {sum(r['errors'] for r in runs)}{ratio}", flush=True)
        if name != 'without':
            target(f"/predict p99 with /metrics scraped {name} / without", f"{p99[name] / p99['without']:.2f}x", '<= 1.10x',
                   p99[name] / p99['without'] <= 1.10)
    return rounds


IN_PROCESS = '''
import sys, time, numpy as np
from mlfin.serving import Live
from mlfin.data.stores import open_store
live = Live(open_store(sys.argv[1]))
live.forecast('SPX', '1d')
kept = []
for _ in range(20_000):
    t = time.perf_counter(); live.forecast('SPX', '1d'); kept.append(time.perf_counter() - t)
fresh, entry = [], live._series[('SPX', '1d')]
for _ in range(200):
    entry.forecasts.clear()   # as after a new bar: the kept forecast no longer answers, the bars are read and the model run again
    t = time.perf_counter(); made = live.forecast('SPX', '1d'); fresh.append(time.perf_counter() - t)
    assert made is entry.forecasts[True][2]
q = lambda x, p: float(np.percentile(x, p)) * 1e3
RESULT = {'kept_p50': q(kept, 50), 'kept_p99': q(kept, 99), 'fresh_p50': q(fresh, 50), 'fresh_p99': q(fresh, 99), 'tail': live.tail}
'''


def main():
    if not shutil.which('hey'): raise SystemExit("hey is missing: `bash env/setup-test.sh` installs it (Debian package hey)")
    profile = '--profile' in sys.argv[1:]
    print(f"bench-service: working in {work}", flush=True)
    scale(f"/predict {ROUNDS} x {SECONDS} s, 1b {GAUGE_ROUNDS} x {GAUGE_SECONDS} s, ingest into {SMALL:,} and {BIG:,} bars, {SUSTAINED_SECONDS} s sustained",
          "/predict 3 x 60 s, 1b 3 x 30 s, ingest into 10,000 and 10,000,000 bars, 20 s sustained")
    print(flush=True)
    seconds = production_model(ENV, work/'reports', 'bench-service serves it')
    print(f"   a production model: LightGBM on the S&P 500 daily bars, trained by the pipeline ({seconds:.0f} s)", flush=True)
    # SYNTHETIC series for the ingest timings, written before the service starts
    child(SYNTH + '''
import sys
from mlfin.data.stores import open_store
store = open_store(sys.argv[1])
for symbol, n in ((sys.argv[2], int(sys.argv[3])), (sys.argv[4], int(sys.argv[5]))):
    for first in range(0, n, 2_000_000):
        bars = synthetic(min(2_000_000, n - first), first=str(pd.Timestamp('2000-01-01') + pd.Timedelta(minutes=first)), seed=first)
        bars.attrs.update(symbol=symbol, timeframe='1m'); store.write(bars, {'calendar': '24/7'})
RESULT = {}
''', work/'home'/'store', SMALL_SYMBOL, SMALL, BIG_SYMBOL, BIG)
    key = subprocess.run([str(BIN/'mlfin'), 'keys', 'create', '--role', 'analyst'], env=ENV, capture_output=True, text=True, check=True).stdout.strip()
    import httpx
    results, met = {}, []
    port = free_port()
    server, url = serve(port), f"http://127.0.0.1:{port}"
    try:
        wait(url + '/health', server)
        client = httpx.Client(base_url=url, headers={'X-API-Key': key}, timeout=30)
        body = client.get('/predict', params={'symbol': 'SPX', 'timeframe': '1d'}).json()
        ours, bare = rounds(url, body, key)
        met.append(predict_targets('1.', ours, bare))
        results.update(predict=ours, floor=bare)
        if profile:
            profiled(server.pid, 'predict', lambda: hey(f"{url}/predict?symbol=SPX&timeframe=1d", key, 20))
            profiled(server.pid, 'ingest', lambda: one_bar(client, ('SYN10K',), 300))
        results['gauged'] = gauges(url, key)

        inproc = results['in_process'] = child(IN_PROCESS, work/'home'/'store')
        print(f"2. in process: the kept forecast p50 {inproc['kept_p50'] * 1e3:.0f} us, p99 {inproc['kept_p99'] * 1e3:.0f} us; after a new bar "
              f"(the last {inproc['tail']:,} bars read, features on them, LightGBM) p50 {inproc['fresh_p50']:.1f} ms, p99 {inproc['fresh_p99']:.1f} ms", flush=True)
        ingested = results['ingest'] = ingest_targets('3.', client, '4.')
        met.append(ingested['met'])
        errors = (work/f'serve-{port}.log').read_text().count('Traceback')
        print(f"   server errors in its log: {errors}", flush=True)
    finally: stop(server)

    # two workers: rate limits counted in Redis (keys and sessions: the shared service database, each worker's cache 1 s)
    redis_port = free_port()
    redis = subprocess.Popen([shutil.which('redis-server') or 'redis-server', '--port', str(redis_port), '--bind', '127.0.0.1', '--save', '',
                              '--appendonly', 'no'], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    port = free_port()
    server, url = serve(port, workers=2, limits=f"redis://127.0.0.1:{redis_port}"), f"http://127.0.0.1:{port}"
    try:
        wait(url + '/health', server)
        client = httpx.Client(base_url=url, headers={'X-API-Key': key}, timeout=30)
        for _ in range(20): client.get('/predict', params={'symbol': 'SPX', 'timeframe': '1d'})   # each worker's forecast kept
        ours2, bare2 = rounds(url, body, key, workers=2)
        print("5. two workers, rate limits counted in Redis:", flush=True)
        met.append(predict_targets('5.1', ours2, bare2))
        med = lambda runs: float(np.median([r['p99_ms'] for r in runs]))
        print(f"   one worker against two: median p99 {med(results['predict']):.1f} against {med(ours2):.1f} ms", flush=True)
        ingested2 = ingest_targets('5.3', client, '5.4')
        met.append(ingested2['met'])
        results.update(two_workers={'predict': ours2, 'floor': bare2, 'ingest': ingested2})
        errors = (work/f'serve-{port}.log').read_text().count('Traceback')
        print(f"   server errors in its log: {errors}", flush=True)
    finally: stop(server); stop(redis)
    print(f"\nbench-service: issue 36's targets on one worker {'all met' if all(met[:2]) else 'NOT all met'} "
          f"(/predict: {verdict(met[0])}, ingest: {verdict(met[1])}); on two workers with limits in Redis, reported beside them: "
          f"/predict {verdict(met[2])}, ingest {verdict(met[3])}")
    print(json.dumps(results))
    table()


if __name__ == '__main__': main()
