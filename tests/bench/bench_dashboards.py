"""Benchmark: how long a person waits for each dashboard page, in Chromium after logging in, and what one visitor costs the host
(`make bench-dashboards`).

The home is real, as the browser tests have it: the pipeline run through the CLI on the embedded S&P 500 daily and E-mini
one-minute bars (SPX, ES:1m; LightGBM and logistic), a monitor run on it, the service (`mlfin serve`) and a person (analyst)
who logs in on the login page with her password and the code her authenticator shows. Each page is opened in a tab of
her browser; the time runs from the address asked to the page's content shown: its frame (`.mlfin-page`) visible and
every chart on it drawn, or shown as its picture (mlfin.pictures; plotly.js draws the chart when the mouse enters it).

  1. footprint (issue 53): `mlfin dashboards` as a user starts it; one person opens every page, one after the other in one
     tab, and stays on the last. The processes under the pages' server (its kernels and what they start) and their memory
     (PSS, summed: shared libraries counted once) before the visit and after it, once the kernels kept ready are all ready
     again and the number of processes has settled. Target: <= FOOTPRINT_MB after the visit.
  2. warm: `mlfin dashboards` as a user starts it (kernels kept ready for any page, every page's modules loaded:
     `--preheat 2`), each page opened once the server says its kernels are all ready (a person reading each page a few
     seconds). Target (issue 37): <= 3 s a page.
  3. cold: `mlfin dashboards --preheat 0`: a kernel started for the visit, its imports, then the page's work.
     Target (issue 37): <= 10 s a page.
  4. the index opened the moment a freshly started `mlfin dashboards` answers, its kernels still loading (after a restart):
     reported, no target; and a tearsheet's first chart, from the mouse entering its picture to the interactive chart
     (plotly.js loaded and drawing): reported, no target.
  5. phone (issue 69): a read_only person on a phone as Chrome's tools emulate one (390x844, device scale 3, touch, the CPU
     4x slower, "Fast 3G": 562.5 ms latency, 180,000 B/s down), CDP's own throttling: from tapping "Log in" to the meeting
     view's first figure (target <= 5 s) and to the page fully loaded (<= 10 s), the bytes over the wire from the login
     page on (<= 1.5 MB), each beside the same visit unthrottled; the full dashboards' index on the same phone (reported:
     what the meeting view replaces); three phones with the view open at once: the pages' server's memory per visitor
     (PSS, beside before them, one visit first to load its modules; <= 100 MB).
Each page is opened 3 times in 2 and 3. The median is held to the target. The browser, the pages' server, their kernels
and the service share this machine's cores: the figures are a person's wait on one machine, not the server's alone.
BENCH_SCALE=quick (`make bench-all`): every page opened once warm and once cold instead of 3 times (its one time held to
the target instead of the median of 3). --part footprint|times measures one part; --home DIR takes a home holding a run;
--universe 50 makes one first, of 50 synthetic daily books (issue 67: a universe's pages open warm in 3 s); the tearsheet
opened is then the home's first book's. Every page's time is printed beside the targets, met or MISSED.
"""
import argparse, json, shutil, statistics, sys, tempfile, time
from pathlib import Path
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT/'tests'))
from conftest import RUN, mlfin, service  # noqa: E402
from test_dashboard import CHROMIUM, FLAGS, voila  # noqa: E402
from test_pages import DRAWN, log_in, signed_in  # noqa: E402
import test_pages  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402
sys.path.insert(0, str(ROOT/'tests'/'bench'))
from _targets import scale, sized, table, target  # noqa: E402
from mlfin.dashboards.kernels import all_ready  # noqa: E402

WARM, COLD, ROUNDS = 3.0, 10.0, sized(3, 1)
PATIENCE = 600   # seconds the bench waits for the kernels to be ready before it gives up (a hang guard, not a target)


BOOK = 'SPX'   # the book whose tearsheet is opened: the bench's run's first; with --home, that home's first (`first_book`)


def every_page() -> list[str]:
    "The pages one visitor opens: test_pages's, the tearsheet's book the home's (BOOK)"
    return [n.replace('book=SPX', f"book={BOOK}") for n in test_pages.every_page()]


def first_book(home: Path) -> str:
    "The first book of the last run's backtest under `home` (its run/backtest.json)"
    return next(iter(json.loads((home/'run'/'backtest.json').read_text())['metrics']))


def universe(home: Path, symbols: int):
    """A home holding a run over `symbols` SYNTHETIC daily books (bench_universe's GARCH bars, a year each, ingested in one
    command), logistic on 3 folds, then a monitor run: the pages of a universe"""
    import bench_universe as u   # here, not at the top: only --universe needs it (it makes a working folder as it loads)
    shutil.rmtree(u.work, ignore_errors=True); u.work = home.parent/'csv'; u.work.mkdir(parents=True)
    print(f"{symbols} synthetic daily symbols ingested, then the pipeline (logistic, 3 folds) and a monitor run ...", flush=True)
    u.write_universe(symbols, ('1d',))
    names = [u.SYMBOL(i) for i in range(symbols)]
    mlfin(home, 'ingest', *(str(u.work/'1d'/f"{s}.csv") for s in names), '--timeframe', '1d', '--calendar', 'XNYS')
    mlfin(home, 'run', '--symbols', ','.join(names), '--timeframe', '1d', '--models', 'logistic', '--folds', '3',
          '--reports', str(home/'reports'))
    mlfin(home, 'monitor', '--window', '250')


def until_ready(served) -> float:
    "Wait until the server `served` says it has as many kernels ready as it keeps, none given out since: seconds waited"
    started = time.perf_counter()
    while not all_ready(log := served.log()):
        if time.perf_counter() - started > PATIENCE: raise SystemExit(f"the pages' kernels were not all ready after {PATIENCE} s:\n{log[-3000:]}")
        time.sleep(0.5)
    return time.perf_counter() - started


def shown(context, url: str) -> float:
    "Seconds from asking for `url` to its content shown (the page's frame visible, every chart drawn)"
    page = context.new_page()
    page.set_viewport_size({'width': 1440, 'height': 1000})   # a desktop's screen
    started = time.perf_counter()
    page.goto(url, wait_until='commit', timeout=300_000)
    page.wait_for_selector('.mlfin-page', state='visible', timeout=300_000)
    page.wait_for_function(DRAWN, timeout=300_000)
    took = time.perf_counter() - started
    body = page.inner_text('body')
    if 'Traceback' in body: raise SystemExit(f"{url} shows a traceback:\n{body[:2000]}")
    page.close(run_before_unload=True)   # as a person closes a tab: the page asks for its kernel's end
    return took


def after_the_mouse(context, url: str) -> float | None:
    "Seconds from the mouse entering a page's first chart shown as its picture to plotly.js's interactive chart in its place; None: no picture shown"
    page = context.new_page()
    page.set_viewport_size({'width': 1440, 'height': 1000})
    page.goto(url, wait_until='commit', timeout=300_000)
    page.wait_for_selector('.mlfin-page', state='visible', timeout=300_000)
    page.wait_for_function(DRAWN, timeout=300_000)
    picture = page.locator('.jp-RenderedPlotly img.plot-img').first
    if not picture.evaluate("i => i.complete && i.naturalWidth > 0 && i.offsetWidth > 0"): page.close(run_before_unload=True); return None
    picture.scroll_into_view_if_needed(); box = picture.bounding_box()   # on the screen, where a mouse can reach it
    started = time.perf_counter()
    page.mouse.move(box['x'] + box['width'] / 2, box['y'] + box['height'] / 2)   # the mouse onto the chart: jupyterlab-plotly draws it in place
    page.wait_for_selector('.jp-RenderedPlotly.js-plotly-plot .main-svg', timeout=300_000)
    took = time.perf_counter() - started
    page.close(run_before_unload=True)   # as a person closes a tab: the page asks for its kernel's end
    return took


def held(served) -> dict:
    "What the pages' server `served` holds now: the processes under it (its kernels, and what they started) with their memory summed (PSS), its kernels, and the server's own"
    import psutil
    def pss(procs) -> float:
        total = 0
        for p in procs:
            try: total += p.memory_full_info().pss
            except psutil.NoSuchProcess: pass   # ended meanwhile
        return total / 2**20
    server = psutil.Process(served.pid).children()   # the one child of `mlfin dashboards`: Voila (dashboards.server)
    under = [p for s in server for p in s.children(recursive=True)]
    def kernel(p):
        try: return 'ipykernel' in ' '.join(p.cmdline())
        except psutil.NoSuchProcess: return False
    kernels = [p for p in under if kernel(p)]
    return {'processes': len(under), 'kernels': len(kernels), 'mb': pss(under), 'server_mb': pss(server)}


def settled(served, patience: float = 120) -> dict:
    "`held(served)` once its kernels kept ready are all ready again and the number of processes has stayed the same for 5 s (kernels of pages left ended)"
    until_ready(served)
    last, since, started = None, time.perf_counter(), time.perf_counter()
    while time.perf_counter() - started < patience:
        now = held(served)
        if last is None or now['processes'] != last['processes']: last, since = now, time.perf_counter()
        elif time.perf_counter() - since >= 5: return now
        time.sleep(0.5)
    return held(served)


def one_visitor(browser, served, person: dict) -> tuple[dict, dict]:
    "What the server holds before and after one person logs in and opens every page, one after the other in one tab, and reads the last"
    base = served.split('/voila/')[0]
    before = settled(served)
    context = browser.new_context(viewport={'width': 1440, 'height': 1000})
    log_in(page := context.new_page(), base, person)   # the login leads to the meeting view (no kernel); she goes on in its tab
    for name in every_page():
        page.goto(f"{base}/voila/render/{name}", wait_until='commit', timeout=300_000)
        page.wait_for_selector('.mlfin-page', state='visible', timeout=300_000)
        page.wait_for_function(DRAWN, timeout=300_000)   # read, before she goes on: the page's script runs (and asks for its kernel's end as she leaves)
        now = held(served)   # what this visitor costs so far, page by page
        print(f"  footprint: {name} shown; the server holds {now['processes']} processes, {now['mb']:.0f} MB", flush=True)
    after = settled(served)   # the visitor still on the last page
    context.close()
    return before, after


def measure(browser, served, person: dict, label: str, warm: bool) -> dict[str, list[float]]:
    base = served.split('/voila/')[0]
    context = signed_in(browser, base, person)   # logged in on the login page, as the browser tests do (a person of her own: see `main`)
    times = {name: [] for name in every_page()}
    for round_ in range(ROUNDS):
        for name in times:
            if warm: until_ready(served)   # a person reading the page before: the kernels kept ready are ready again
            times[name].append(shown(context, f"{base}/voila/render/{name}"))
            print(f"  {label} round {round_ + 1}: {name:<26} {times[name][-1]:5.2f} s", flush=True)
    context.close()
    return times


def main():
    ap = argparse.ArgumentParser(description="time to content of every page, warm and cold; one visitor's footprint")
    ap.add_argument('--part', choices=('all', 'times', 'footprint', 'phone'), default='all', help="what to measure (default: all)")
    ap.add_argument('--home', help="a home holding a finished run (the bench's: conftest's RUN, then a monitor run), copied: no pipeline run first")
    ap.add_argument('--universe', type=int, metavar='N', help="a home made first: N synthetic daily books (logistic, 3 folds); 50: issue 67's pages of a universe")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix='mlfin-bench-dashboards-'))
    home = work/'home'
    try:
        scale(f"every page opened {ROUNDS} time(s) warm and cold", "every page opened 3 times warm and cold")
        global BOOK
        if args.home:
            shutil.copytree(args.home, home, symlinks=True, ignore=shutil.ignore_patterns('serve-*.log'))
            BOOK = first_book(home)
        elif args.universe:
            universe(home, args.universe); BOOK = first_book(home)
        else:
            print("the pipeline on the embedded SPX 1d and ES 1m bars, then a monitor run ...", flush=True)
            mlfin(home, 'run', *RUN, '--reports', str(home/'reports'))
            mlfin(home, 'monitor', '--window', '250')
        missed = []
        with service(home) as svc, sync_playwright() as p:
            people = iter([svc.person(f"bench{i}", 'analyst') for i in range(5)])   # a person per login (5): the service refuses a code
            person = lambda: next(people)                                            # used twice, and logins here come within one code's 30 s
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            at = {'MLFIN_SERVICE_URL': svc.url}
            if args.part in ('all', 'footprint'):
                with voila(home, 'index.ipynb', env=at, login=True) as url:
                    before, after = one_visitor(browser, url, person())
                missed += footprint(before, after)
            if args.part in ('all', 'times'): missed += times(browser, home, at, person)
            if args.part in ('all', 'phone'):
                readers = iter([svc.person(f"reader{i}", 'read_only') for i in range(8)])
                missed += phone(browser, home, at, lambda: next(readers))
            browser.close()
        table()
        return 1 if missed else 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


FOOTPRINT_MB = 1000   # target (issue 53): what the server holds once one visitor has opened every page, PSS summed (before: 2,102 MB in 9 kernels, one kept per page)
def footprint(before: dict, after: dict) -> list[str]:
    "Say one visitor's footprint (what the server holds after they opened every page, beside before) and hold it to its target"
    print("\none visitor opening every page, one after the other in one tab (PSS summed; a kernel's children, a page's Chromium, included)")
    print(f"{'':<34} {'processes':>9} {'kernels':>7} {'MB':>7} {'server MB':>9}")
    for label, h in (("before (the kernels kept ready)", before), ("after, on the last page", after)):
        print(f"{label:<34} {h['processes']:9d} {h['kernels']:7d} {h['mb']:7.0f} {h['server_mb']:9.0f}")
    met = after['mb'] <= FOOTPRINT_MB
    target("one visitor's footprint: the processes under the pages' server after opening every page (PSS)", f"{after['mb']:.0f} MB",
           f"<= {FOOTPRINT_MB} MB", met, f"{after['processes']} processes, {after['kernels']} kernels; before the visit "
           f"{before['processes']} processes, {before['mb']:.0f} MB")
    return [] if met else ['footprint']


def times(browser, home: Path, at: dict, person) -> list[str]:
    "Time to content of every page, warm and cold, and the first visit after a restart; held to their targets"
    results = {}
    with voila(home, 'index.ipynb', env=at, login=True) as url:   # it returns once the server answers
        base = url.split('/voila/')[0]
        context = signed_in(browser, base, person())
        first = shown(context, f"{base}/voila/render/index.ipynb"); context.close()
        print(f"  the index, the moment the server answers (its kernels still loading): {first:.2f} s", flush=True)
        results['warm'] = measure(browser, url, person(), 'warm', warm=True)
        until_ready(url); context = signed_in(browser, base, person())
        mouse = after_the_mouse(context, f"{base}/voila/render/tearsheet.ipynb"); context.close()
    with voila(home, 'index.ipynb', env=at, login=True, args=('--preheat', '0')) as url:
        results['cold'] = measure(browser, url, person(), 'cold', warm=False)
    print(f"\ntime to content after login, median of {ROUNDS} (Chromium, 1440 px; this machine's cores shared by browser, server and kernels)")
    print(f"{'page':<30} {'warm (s)':>9} {f'<= {WARM:.0f} s':>7} {'cold (s)':>9} {f'<= {COLD:.0f} s':>7}")
    verdict = lambda figure, limit: 'met' if figure <= limit else 'MISSED'
    for name in every_page():
        warm, cold = (statistics.median(results[k][name]) for k in ('warm', 'cold'))
        print(f"{name:<30} {warm:9.2f} {verdict(warm, WARM):>7} {cold:9.2f} {verdict(cold, COLD):>7}")
    missed = []
    for kind, limit in (('warm', WARM), ('cold', COLD)):
        worst = max(every_page(), key=lambda n: statistics.median(results[kind][n]))
        figure = statistics.median(results[kind][worst])
        late = [n for n in every_page() if statistics.median(results[kind][n]) > limit]
        target(f"{kind}: time to content, the slowest page", f"{figure:.2f} s", f"<= {limit:.0f} s", not late,
               f"{worst}, median of {ROUNDS}" + (f"; over it: {', '.join(late)}" if late else ''))
        if late: missed.append(kind)
    print(f"the index the moment a fresh server answers: {first:.2f} s (reported)")
    print("a tearsheet's first chart interactive after the mouse enters its picture: "
          + (f"{mouse:.2f} s (reported)" if mouse is not None else "no picture was shown (drawn by plotly.js from the start)"))
    return missed



# Chrome DevTools' "Fast 3G" preset (its own figures: 1.6 Mbps down x 0.9, 750 kbps up x 0.9, 150 ms x 3.75) and "4x slowdown"
FAST_3G = {'offline': False, 'latency': 562.5, 'downloadThroughput': 180_000, 'uploadThroughput': 84_375}
CPU_SLOWDOWN = 4
FIRST_FIGURE, WHOLE, WIRE_MB, VISITOR_MB = 5.0, 10.0, 1.5, 100   # targets (issue 69)


def phone_visit(browser, base: str, person: dict, throttled: bool, page_after: str | None = None) -> dict:
    """A person on the emulated phone: the login page, then from the tap on "Log in" the seconds to the meeting view's first
    figure and to its load event, the bytes over the wire (encoded: as sent) and requests from the login page on; with
    `page_after`, that page opened next in the same tab, timed to its content"""
    context = browser.new_context(**test_pages.PHONE)
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    cdp.send('Network.enable')
    wire = {'bytes': 0, 'requests': 0}
    def done(e): wire['bytes'] += e['encodedDataLength']
    def asked(e): wire['requests'] += 1   # each request, a redirect's next one too (a redirect's own answer is a few headers)
    cdp.on('Network.loadingFinished', done); cdp.on('Network.requestWillBeSent', asked)
    if throttled:
        cdp.send('Network.emulateNetworkConditions', FAST_3G)
        cdp.send('Emulation.setCPUThrottlingRate', {'rate': CPU_SLOWDOWN})
    page.goto(f"{base}/login", timeout=300_000)
    page.get_by_label('User').fill(person['name']); page.get_by_label('Password').fill(person['password'])
    page.get_by_label('Code from your authenticator app (or a recovery code)').fill(person['totp'].now())
    started = time.perf_counter()
    page.get_by_role('button', name='Log in').click()
    page.wait_for_selector('[data-question] svg', state='visible', timeout=300_000)
    first = time.perf_counter() - started
    page.wait_for_load_state('load', timeout=300_000)
    found = {'first': first, 'whole': time.perf_counter() - started, **wire, 'url': page.url}
    if page_after:
        started = time.perf_counter()
        page.goto(f"{base}/{page_after}", wait_until='commit', timeout=600_000)
        page.wait_for_selector('.mlfin-page', state='visible', timeout=600_000)
        page.wait_for_function(DRAWN, timeout=600_000)
        found['after'] = time.perf_counter() - started
    context.close()
    return found


def phone(browser, home: Path, at: dict, reader) -> list[str]:
    "The meeting view on the emulated phone, throttled and not; the full index there; three phones at once; held to the targets"
    missed = []
    with voila(home, 'index.ipynb', env=at, login=True) as url:
        base = url.split('/voila/')[0]
        loaded = settled(url)
        phone_visit(browser, base, reader(), throttled=False)   # the first visit loads the view's modules into the server, once
        plain = phone_visit(browser, base, reader(), throttled=False)
        before = settled(url)
        contexts = []
        for _ in range(3):   # three phones with the view open at once
            contexts.append(context := browser.new_context(**test_pages.PHONE))
            log_in(context.new_page(), base, reader())
        during = held(url)
        for c in contexts: c.close()
        # last: the index it leads to takes a kernel kept ready, and the server starts another in its place
        slow = phone_visit(browser, base, reader(), throttled=True, page_after='voila/render/index.ipynb')
    per = (during['mb'] + during['server_mb'] - before['mb'] - before['server_mb']) / 3
    print("\nthe meeting view after tapping \"Log in\" on a phone (390x844, scale 3, touch), Chromium on this machine's cores")
    print(f"{'':<34} {'first figure (s)':>16} {'loaded (s)':>10} {'MB over the wire':>16} {'requests':>8}")
    for label, v in (('unthrottled', plain), (f"Fast 3G, CPU {CPU_SLOWDOWN}x slower", slow)):
        print(f"{label:<34} {v['first']:16.2f} {v['whole']:10.2f} {v['bytes'] / 1e6:16.3f} {v['requests']:8d}")
    ratio = lambda k: f"{slow[k] / plain[k]:.1f}x the unthrottled {plain[k]:.2f} s"
    for name, key, limit in (('first figure after tapping Log in', 'first', FIRST_FIGURE), ('the page fully shown', 'whole', WHOLE)):
        target(f"phone (Fast 3G, CPU {CPU_SLOWDOWN}x): {name}", f"{slow[key]:.2f} s", f"<= {limit:.0f} s", slow[key] <= limit, ratio(key))
        if slow[key] > limit: missed.append(key)
    target("phone: a first visit over the wire (login page and meeting view)", f"{slow['bytes'] / 1e6:.3f} MB", f"<= {WIRE_MB} MB",
           slow['bytes'] <= WIRE_MB * 1e6, f"{slow['requests']} requests")
    if slow['bytes'] > WIRE_MB * 1e6: missed.append('wire')
    target("phone: server memory per visitor, three at once (PSS)", f"{per:.1f} MB", f"<= {VISITOR_MB} MB", per <= VISITOR_MB,
           f"the server and its processes {before['mb'] + before['server_mb']:.0f} MB before, {during['mb'] + during['server_mb']:.0f} MB "
           f"with three; the view's modules loaded once: {before['server_mb'] - loaded['server_mb']:+.0f} MB")
    if per > VISITOR_MB: missed.append('memory')
    print(f"the full dashboards' index on the same throttled phone, after the meeting view: {slow['after']:.2f} s (reported: what "
          "the meeting view spares a reader)")
    return missed


if __name__ == '__main__':
    sys.exit(main())
