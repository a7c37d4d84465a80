"The dashboard in a real browser (Debian's headless Chromium, driven by Playwright), served by Voila on loopback."
import os, re, socket, subprocess, sys, tempfile, time, urllib.request
from contextlib import contextmanager
from pathlib import Path
import pytest
from conftest import CHROMIUM, CHROMIUM_FLAGS as FLAGS, ROOT, free_port   # noqa: F401 (the browser's, for bench_dashboards)
from mlfin.report.products import load_run
from mlfin.report.tables import metrics_table
pytestmark = pytest.mark.e2e   # a user's path end to end (make test-fast leaves it out)


class Served(str):
    "A page's URL on a running `mlfin dashboards`, with `log()`: what the server has logged so far"


@contextmanager
def voila(home: Path, page: str = 'run.ipynb', env: dict | None = None, login: bool = False, args: tuple = ()):
    "`mlfin dashboards` serving dashboards/ with state under `home` (without logins unless `login`), as a user starts it; yields `page`'s URL"
    port = free_port()
    env = {**os.environ, 'MLFIN_HOME': str(home), **(env or {})}
    server = subprocess.Popen([str(Path(sys.executable).with_name('mlfin')), 'dashboards', '--port', str(port), *([] if login else ['--no-login']), *args],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=(log := tempfile.TemporaryFile()))   # Voila logs each request: not a pipe
    try:
        for _ in range(240):
            try: urllib.request.urlopen(f'http://127.0.0.1:{port}/', timeout=1); break
            except OSError:
                if server.poll() is not None: log.seek(0); raise AssertionError(f"mlfin dashboards exited {server.returncode}: {log.read().decode()[-2000:]}")
                time.sleep(0.5)
        url = Served(f'http://127.0.0.1:{port}/voila/render/{page}')
        url.log = lambda: os.pread(log.fileno(), os.fstat(log.fileno()).st_size, 0).decode(errors='replace')   # the file's offset is the server's: not moved
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

        symbols = page.locator('.widget-dropdown', has_text='Symbol').locator('select')
        symbols.select_option('EURUSD')  # the symbol selector redraws chart and tables
        until(page, "!!document.querySelector('.gtitle') && document.querySelector('.gtitle').textContent.startsWith('EURUSD')", timeout=60_000)
        assert row_values(page, 'Sharpe ratio') == metrics_table(run, 'EURUSD').loc['Sharpe ratio'].tolist()
        assert 'long' in page.inner_text('body') or 'flat' in page.inner_text('body')
        # the runs MLflow recorded are offered: picking one loads it back from the tracking store (issue 16, comparing runs)
        runs = page.locator('.widget-dropdown', has_text='Run').locator('select')
        offered = [o.replace('\xa0', ' ') for o in runs.locator('option').all_inner_texts()]   # ipywidgets spaces them unbreakably
        assert offered[0] == 'the latest run' and offered[1].startswith(pipeline_run['summary']['mlflow']['parent'][:8]), offered
        runs.select_option(index=1)
        until(page, "document.querySelectorAll('.gtitle').length > 0 && document.querySelector('.gtitle').textContent.startsWith('SPX')", timeout=120_000)
        assert (pipeline_run['home']/'runs'/pipeline_run['summary']['mlflow']['parent'][:8]/'summary.json').exists()
        page.close()


def test_dashboard_without_a_run_says_what_to_do(browser, tmp_path):
    with voila(tmp_path) as url:
        page = browser.new_page()
        page.goto(url, wait_until='commit', timeout=180_000)
        page.wait_for_selector('.mlfin-empty', timeout=180_000)
        assert 'run `make run` (or `mlfin run`) first' in page.inner_text('.mlfin-empty')
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


def test_stopping_mlfin_dashboards_stops_voila_and_its_kernels(small_copy):
    "SIGTERM to `mlfin dashboards`, as a service manager sends it: Voila and the kernels it started go with it (issue 16, defect 9)"
    import signal
    port = free_port()
    env = {**os.environ, 'MLFIN_HOME': str(small_copy['home'])}
    cli = subprocess.Popen([str(Path(sys.executable).with_name('mlfin')), 'dashboards', '--port', str(port), '--no-login'], cwd=ROOT, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        page = None
        deadline = time.time() + 300   # Voila started and a page rendered by a new kernel: generous, for a busy machine
        while page is None and time.time() < deadline:
            try: page = urllib.request.urlopen(f'http://127.0.0.1:{port}/voila/render/run.ipynb', timeout=180).read()
            except OSError: time.sleep(0.5)
        assert page and b'mlfin' in page
        under = descendants(cli.pid)
        assert len(under) >= 1   # Voila, and the kernels it keeps
        cli.send_signal(signal.SIGTERM); cli.wait(120)
        deadline = time.time() + 120
        while time.time() < deadline and any(alive(p) for p in under): time.sleep(0.5)
        assert [p for p in under if alive(p)] == []
        with pytest.raises(OSError): socket.create_connection(('127.0.0.1', port), timeout=1)
    finally:
        if cli.poll() is None: cli.kill()


def person(home: Path, name: str, role: str) -> dict:
    "A person made with `mlfin users add` as an admin makes one (conftest's `Service.person`), no service running: the pages' login needs only the store"
    from types import SimpleNamespace
    from conftest import Service
    return Service.person(SimpleNamespace(home=home, store=None), name, role)
