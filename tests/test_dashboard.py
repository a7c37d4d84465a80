"The dashboard in a real browser (Debian's headless Chromium, driven by Playwright), served by Voila on loopback."
import os, re, socket, subprocess, sys, tempfile, time, urllib.request
from urllib.parse import parse_qs, urlsplit
from contextlib import contextmanager
from pathlib import Path
import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from conftest import CHROMIUM, CHROMIUM_FLAGS as FLAGS, ROOT, free_port   # noqa: F401 (the browser's, for bench_dashboards)
from mlfin.report.products import load_run
from mlfin.report.tables import metrics_table
pytestmark = pytest.mark.e2e   # a user's path end to end (make test-fast leaves it out)


class Served(str):
    "A page's URL on a running `mlfin dashboards`, with `log()`: what the server has logged so far, and `pid`: the command's process"


@contextmanager
def voila(home: Path, page: str = 'run.ipynb', env: dict | None = None, login: bool = False, args: tuple = (), cwd: Path = ROOT):
    """`mlfin dashboards` serving the pages of the project `cwd` with state under `home` (without logins unless `login`), as a user
    starts it; yields `page`'s URL"""
    port = free_port()
    env = {**os.environ, 'MLFIN_HOME': str(home), **(env or {})}
    server = subprocess.Popen([str(Path(sys.executable).with_name('mlfin')), 'dashboards', '--port', str(port), *([] if login else ['--no-login']), *args],
                              cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=(log := tempfile.TemporaryFile()))   # Voila logs each request: not a pipe
    try:
        for _ in range(240):
            try: urllib.request.urlopen(f'http://127.0.0.1:{port}/', timeout=1); break
            except OSError:
                if server.poll() is not None: log.seek(0); raise AssertionError(f"mlfin dashboards exited {server.returncode}: {log.read().decode()[-2000:]}")
                time.sleep(0.5)
        url = Served(f'http://127.0.0.1:{port}/voila/render/{page}')
        url.log = lambda: os.pread(log.fileno(), os.fstat(log.fileno()).st_size, 0).decode(errors='replace')   # the file's offset is the server's: not moved
        url.pid = server.pid
        yield url
    finally:
        server.terminate(); server.wait(timeout=30); log.close()


# a person's mouse entering each chart the page shows as its picture (mlfin.pictures): jupyterlab-plotly draws the interactive chart
MOUSE_ON_CHARTS = ("document.querySelectorAll('.jp-RenderedPlotly img.plot-img').forEach(i => { if (i.offsetWidth && i.dataset.entered !== i.src.slice(-64))"
                   " { i.dataset.entered = i.src.slice(-64); i.dispatchEvent(new MouseEvent('mouseenter')); } })")


def until(page, condition: str, timeout: float = 120_000):
    "Wait until the JavaScript `condition` holds, the mouse entering each chart shown as a picture as a person's would (once each)"
    page.wait_for_function(f"() => {{ {MOUSE_ON_CHARTS}; return {condition}; }}", timeout=timeout, polling=250)


def row_values(page, label: str) -> list[str]:
    "The values of the first table row whose first cell reads `label` exactly"
    row = page.locator('tr', has=page.locator('td:first-child, th:first-child', has_text=re.compile(f"^\\s*{re.escape(label)}\\s*$"))).first
    return [cell.strip() for cell in row.locator('td, th').all_inner_texts()][1:]


def until_row(page, label: str, expected: list[str], timeout: float = 60_000) -> list[str]:
    "What the row `label` reads once it reads `expected`, or when `timeout` ms have passed without it (the caller's assert then shows it)"
    reads = """([label, expected]) => { const row = [...document.querySelectorAll('tr')].find(r => r.cells.length && r.cells[0].innerText.trim() === label);
        return !!row && JSON.stringify([...row.cells].slice(1).map(c => c.innerText.trim())) === JSON.stringify(expected); }"""
    try: page.wait_for_function(reads, arg=[label, expected], timeout=timeout, polling=250)
    except PlaywrightTimeout: pass
    return row_values(page, label)


def test_dashboard_shows_the_run_in_chromium(pipeline_copy, browser, tmp_path):
    pipeline_run = pipeline_copy   # the page fetches a run it is asked for into its home
    run = load_run(pipeline_run['home']/'run')
    with voila(pipeline_run['home']) as url:
        page = browser.new_page(viewport={'width': 1280, 'height': 1600})
        page.goto(url, wait_until='commit', timeout=180_000)
        until(page, "!!document.querySelector('.js-plotly-plot .gtitle')", timeout=180_000)
        first = list(run['symbols'])[0]
        assert page.locator('.gtitle').first.text_content().startswith(f'{first}: value of 10,000')
        assert page.locator('.js-plotly-plot .scatterlayer .trace').count() == 2  # strategy and buy & hold
        expected = metrics_table(run, first)
        for label in ('Total return', 'Sharpe ratio', 'Max drawdown'):
            assert row_values(page, label) == expected.loc[label].tolist(), label
        page.screenshot(path=str(tmp_path/'dashboard.png'), full_page=True)

        # a symbol is a link: its page's address names the symbol and the run, whatever runs next (issue 69)
        parent = pipeline_run['summary']['mlflow']['parent']
        page.locator('.mlfin-books').get_by_role('link', name='EURUSD', exact=True).click()
        until(page, "!!document.querySelector('.gtitle') && document.querySelector('.gtitle').textContent.startsWith('EURUSD')", timeout=180_000)
        assert parse_qs(urlsplit(page.url).query) == {'symbol': ['EURUSD'], 'run': [parent]}, page.url
        sharpe = metrics_table(run, 'EURUSD').loc['Sharpe ratio'].tolist()
        assert until_row(page, 'Sharpe ratio', sharpe) == sharpe
        assert 'long' in page.inner_text('body') or 'flat' in page.inner_text('body')
        # the runs MLflow recorded are offered in a fold, each a link naming it, who ran it said (issue 16, comparing runs); this one in bold
        page.locator('details.mlfin-runs > summary').click()
        offered = page.locator('details.mlfin-runs').inner_text().replace('\xa0', ' ').splitlines()[1:]
        assert offered[0].startswith(parent[:8]) and f" · {pipeline_run['summary']['by']} · " in offered[0], offered
        assert page.locator('details.mlfin-runs b[aria-current=page]').inner_text().startswith(parent[:8])
        # each book's tearsheet link names this run
        sheets = page.get_by_role('link', name='EURUSD', exact=True).all()
        assert any(a.get_attribute('href') == f"tearsheet.ipynb?book=EURUSD&run={parent}" for a in sheets), [a.get_attribute('href') for a in sheets]
        page.close()


def descendants(pid: int) -> set[int]:
    "Every process started under `pid`, however deep"
    found, todo = set(), [pid]
    while todo:
        out = subprocess.run(['pgrep', '-P', str(todo.pop())], capture_output=True, text=True).stdout.split()
        todo += [int(p) for p in out if int(p) not in found]; found |= {int(p) for p in out}
    return found


def alive(pid: int) -> bool:
    state = subprocess.run(['ps', '-p', str(pid), '-o', 'stat='], capture_output=True, text=True).stdout.strip()
    return state not in ('', 'Z') and not state.startswith('Z')


def person(home: Path, name: str, role: str, password: str = 'a passphrase of the tests, long enough') -> dict:
    "A person made in the service's store of `home` as `mlfin users add` makes one (no service running: the pages' login needs only the store)"
    import pyotp
    from mlfin.service.db import engine
    from mlfin.service.people import People
    made = People(engine(str(home/'store')), cache_seconds=0).add(name, role, password, True)
    return {'name': name, 'password': password, 'totp': pyotp.parse_uri(made.uri), 'codes': made.codes}


def handshake(base: str, context, path: str) -> int:
    "The status a websocket handshake for `path` gets, sent with the cookies of a person's browser `context` (101: connected)"
    import base64
    host, port = urlsplit(base).hostname, urlsplit(base).port
    cookies = '; '.join(f"{c['name']}={c['value']}" for c in context.cookies())
    with socket.create_connection((host, port), timeout=60) as s:
        s.sendall((f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                   f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\nCookie: {cookies}\r\n\r\n").encode())
        return int(s.recv(64).split()[1])


def api(context, method: str, url: str):
    "A request from a person's browser `context` (their cookies, and the _xsrf token as a header, as Voila's page sends it)"
    xsrf = next((c['value'] for c in context.cookies() if c['name'] == '_xsrf'), '')
    return context.request.fetch(url, method=method, headers={'X-XSRFToken': xsrf}, max_redirects=0)


def test_a_person_reaches_only_their_own_kernels_and_holds_a_bounded_number(browser, tmp_path):
    """Issue 53, items 2 and 9: each page's kernel is its person's. Another person gets 403 reading, ending (DELETE, and Voila's
    end-on-leave request), or connecting to it, and lists only their own; a tab closed ends its own; an admin may end anyone's. With
    at most one page a person and two in all (`mlfin dashboards --kernels-per-person 1 --kernels-total 2`): a second page while the
    first is open is refused with a page naming the bound and what to do (its button ends her other page and opens the one asked),
    another person is not held back by her bound, and a third meets the server's. The home has no run: the run page says what to do.
    Stopping `mlfin dashboards` as a service manager does (SIGTERM) stops Voila and its kernels (issue 16, defect 9)"""
    import signal
    from test_pages import log_in
    home = tmp_path/'home'
    people = {name: person(home, name, role) for name, role in (('ana', 'read_only'), ('bob', 'read_only'), ('root', 'admin'))}
    bounds = ('--preheat', '0', '--kernels-per-person', '1', '--kernels-total', '2')
    with voila(home, 'index.ipynb', login=True, args=bounds) as served:
        base = served.split('/voila/')[0]
        mine = lambda context: [k['id'] for k in api(context, 'GET', f"{base}/api/kernels").json()]
        def visitor(name: str):   # a person logged in, on the index, left open
            log_in(landing := (context := browser.new_context()).new_page(), base, people[name])
            landing.goto(served)   # the login leads to the meeting view (no kernel); the index is a page's kernel
            landing.wait_for_selector('.mlfin-page', timeout=120_000)
            return context, landing
        ana, first = visitor('ana')
        landed, page = mine(ana), ana.new_page()
        refused = page.goto(f"{base}/voila/render/run.ipynb")
        said = page.inner_text('body')
        assert refused.status == 429 and 'You have 1 page open' in said and '--kernels-per-person 1' in said and 'Close a tab' in said, said
        page.get_by_role('button', name='End my 1 open page and open this one').click()   # what the page offers: her other page ended
        page.wait_for_selector('.mlfin-empty', timeout=120_000)
        assert 'run `make run` (or `mlfin run`) first' in page.inner_text('.mlfin-empty')   # no run yet: what to do
        assert urlsplit(page.url).path == '/voila/render/run.ipynb' and len(landed) == 1 and landed != (hers := mine(ana)), (landed, hers)

        bob, _ = visitor('bob')   # her bound is hers: bob's page opens (two in all now)
        assert len(his := mine(bob)) == 1 and his != hers
        at = f"{base}/api/kernels/{hers[0]}"
        assert [api(bob, method, at).status for method in ('GET', 'DELETE')] == [403, 403]
        assert api(bob, 'POST', f"{base}/voila/api/shutdown/{hers[0]}").status == 403   # Voila's end-on-leave request
        assert [api(bob, 'POST', f"{at}/{action}").status for action in ('interrupt', 'restart')] == [404, 404]
        assert [handshake(base, who, f"/api/kernels/{hers[0]}/channels") for who in (bob, ana)] == [403, 101]   # she alone connects to it
        assert api(ana, 'GET', at).status == 200 and mine(ana) == hers

        log_in(third := (root := browser.new_context()).new_page(), base, people['root'])   # a third person: the server holds two pages in use
        third.goto(served)   # the index (the meeting view the login leads to takes no kernel)
        said = third.inner_text('body')
        assert "The pages' server has 2 pages open" in said and '--kernels-total 2' in said, said
        page.close(run_before_unload=True)   # she closes her tab: Voila's page asks for its kernel's end as it goes
        deadline = time.monotonic() + 60   # a hang guard
        while mine(ana): assert time.monotonic() < deadline, mine(ana); time.sleep(0.2)
        assert api(root, 'DELETE', f"{base}/api/kernels/{his[0]}").status == 204 and mine(bob) == []   # an admin may end anyone's
        third.reload(); third.wait_for_selector('.mlfin-page', timeout=120_000)   # room again: his page opens

        under = descendants(served.pid)
        assert len(under) >= 2 and mine(root)   # Voila, and the kernel it started for him
        under.add(served.pid)   # and the command itself: the port is closed once all of them are gone
        os.kill(served.pid, signal.SIGTERM)   # as a service manager stops it
        deadline = time.monotonic() + 120
        while any(alive(p) for p in under): assert time.monotonic() < deadline, [p for p in under if alive(p)]; time.sleep(0.5)
        with pytest.raises(OSError): socket.create_connection(('127.0.0.1', urlsplit(base).port), timeout=1)
        for context in (ana, bob, root): context.close()
