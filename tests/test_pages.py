"""The dashboards of issue 19 in a real browser (Debian's Chromium through Playwright), served by Voila on loopback, against a
real service and a real run: every page shows real figures (no placeholder, no traceback), each operations button does what it
says end to end, a read_only key is offered no operator button. Each page is screenshotted into reports/screenshots/."""
import json, os, shutil, time
from contextlib import nullcontext
from pathlib import Path
import httpx, pytest, yaml
from conftest import mlfin, service
from test_dashboard import ROOT, browser, voila   # noqa: F401 (the browser fixture)

SHOTS = ROOT/'reports'/'screenshots'


def shot(page, name: str):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS/f"{name}.png"), full_page=True)


def opened(browser, url: str, text: str, seconds: float = 180):
    "A page once `text` shows in it (Voila runs the notebook first); no traceback on it"
    page = browser.new_page(viewport={'width': 1280, 'height': 1200})
    page.goto(url, wait_until='commit', timeout=seconds * 1000)
    page.wait_for_selector(f"text={text}", timeout=seconds * 1000)
    body = page.inner_text('body')
    assert 'Traceback' not in body and 'error when executing' not in body, body[:2000]
    return page


def connect(page, key: str, role: str):
    page.get_by_label('API key').fill(key)
    page.locator('button', has_text='Connect').click()
    page.wait_for_selector(f".mlfin-connected >> text={role}", timeout=120_000)


@pytest.fixture(scope='module')
def site(served_home, tmp_path_factory):
    """A copy of the service tests' home (a run, SPX 1d and ES 1m in production), a monitor run on it, the service on it with its
    job runner and a loopback exchange as EURUSDT's configured source, and Voila on it"""
    from test_remote_sources import Server, binance
    home = tmp_path_factory.mktemp('pages')/'home'
    shutil.copytree(served_home, home, ignore=shutil.ignore_patterns('serve-*.log', 'monitor'))
    mlfin(home, 'scheduled', 'monitor')   # a monitor run recorded as a scheduled one (the health page lists it)
    mlfin(home, 'monitor', '--window', '250')   # the latest run the pages show
    mlfin(home, 'health', '--service-url', 'http://127.0.0.1:9', check=False)   # one round of checks recorded: nothing listens there
    kept = os.environ.get('MLFIN_BACKUP_PASSWORD_FILE')
    os.environ['MLFIN_BACKUP_PASSWORD_FILE'] = str(home.parent/'backup-password')   # outside the home; this module's own
    try: snapshot = mlfin(home, 'backup', '--repo', str(home.parent/'repo')).stdout.split()[1]   # a backup, recorded
    finally:
        if kept is None: del os.environ['MLFIN_BACKUP_PASSWORD_FILE']
        else: os.environ['MLFIN_BACKUP_PASSWORD_FILE'] = kept
    exchange = Server(binance(throttle_first=False))
    config = {'urls': {'api': {'public': f"{exchange.url}/api/v3"}}, 'options': {'fetchMarkets': {'types': ['spot']}}, 'rateLimit': 5}
    (home/'sources.yaml').write_text(yaml.safe_dump({'EURUSDT:1h': {'source': 'ccxt:binance:EUR/USDT', 'start': '2017-11-01', 'config': config}}))
    try:
        with service(home, '--sources', str(home/'sources.yaml')) as svc, voila(home, 'index.ipynb', env={'MLFIN_SERVICE_URL': svc.url}) as index:
            base = index.rsplit('/', 1)[0]   # one Voila for every page: each visit runs its notebook in a kernel of its own
            yield {'home': home, 'service': svc, 'snapshot': snapshot, 'keys': {r: svc.key(r) for r in ('read_only', 'admin')},
                   'voila': lambda page: nullcontext(f"{base}/{page}")}
    finally: exchange.close()


def test_index_models_quality_and_monitoring_pages_show_the_run_registry_store_and_monitor(site, browser):
    figures = json.loads((site['home']/'monitor'/'latest.json').read_text())
    latest = json.loads((site['home']/'monitor'/figures['folder']/'monitor.json').read_text())
    with site['voila']('index.ipynb') as url:
        page = opened(browser, url, 'Monitor (')
        body = page.inner_text('body')
        assert 'SPX: ' in body and 'ES: ' in body and page.locator('a[href="models.ipynb"]').count() == 1, body[:1500]
        shot(page, 'index'); page.close()
    with site['voila']('models.ipynb') as url:
        page = opened(browser, url, 'Registered versions')
        table = page.inner_text('body')
        for v in httpx.get(f"{site['service'].url}/models", headers={'X-API-Key': site['keys']['read_only']}).json():
            assert v['name'] in table
        assert 'production' in table and 'promoted by hand' in table and 'Leaderboard of the latest run' in table
        shot(page, 'models'); page.close()
    with site['voila']('quality.ipynb') as url:
        page = opened(browser, url, 'series stored')
        page.wait_for_selector('.js-plotly-plot .trace', timeout=120_000)   # the coverage chart drew
        assert '2 series stored' in page.inner_text('body')
        shot(page, 'quality'); page.close()
    with site['voila']('monitoring.ipynb') as url:
        page = opened(browser, url, 'Live performance against the out-of-sample record')
        body = page.inner_text('body')
        for m in latest['models']: assert m['verdict'][:60] in body, (m['verdict'], body[:1500])
        page.wait_for_selector('.js-plotly-plot .heatmaplayer', timeout=120_000)   # the drift heatmap drew
        assert 'Alertmanager is not configured for this page' in body
        shot(page, 'monitoring'); page.close()


def test_health_page_reads_the_service_metrics_with_a_visitors_key(site, browser):
    with site['voila']('health.ipynb') as url:
        page = opened(browser, url, 'API key')
        connect(page, site['keys']['read_only'], 'read_only')
        page.wait_for_selector('text=Requests per route', timeout=120_000)
        body = page.inner_text('body')
        assert '/token' in body and 'SPX' in body and 'mlfin.SPX.1d' in body, body[:2000]
        assert 'Scheduled runs' in body and 'monitor' in body and 'succeeded' in body, body[-2000:]   # the home's operations record
        failing = next((l for l in body.splitlines() if l.startswith('failing now: ')), '')
        assert 'service' in failing.removeprefix('failing now: ').split(', ') and 'ConnectError' in body, body[-3000:]
        assert 'Backups' in body and site['snapshot'] in body, body[-1500:]
        shot(page, 'health'); page.close()


def test_operations_page_offers_a_read_only_key_prediction_alone_and_it_equals_the_api(site, browser):
    key = site['keys']['read_only']
    with site['voila']('operations.ipynb') as url:
        page = opened(browser, url, 'API key')
        connect(page, key, 'read_only')
        assert [page.locator('button', has_text=b).count() for b in ('Ingest now', 'Train', 'Promote')] == [0, 0, 0]
        page.get_by_label('Series').first.fill('SPX:1d')
        page.locator('button', has_text='Predict the next bar').click()
        page.wait_for_selector(".mlfin-answer:has-text('prob_up')", timeout=120_000)
        shown = page.inner_text('body')
        api = httpx.get(f"{site['service'].url}/predict", params={'symbol': 'SPX', 'timeframe': '1d'}, headers={'X-API-Key': key}).json()
        assert str(api['prob_up']) in shown and str(api['version']) in shown, (api, shown[-1500:])
        shot(page, 'operations-read-only'); page.close()


@pytest.mark.timeout(900)
def test_operations_page_ingests_trains_and_promotes_with_an_admin_key(site, browser):
    key, svc = site['keys']['admin'], site['service']
    ask = lambda path, **kw: httpx.get(f"{svc.url}{path}", headers={'X-API-Key': key}, timeout=60, **kw)
    before = max(v['version'] for v in ask('/models/mlfin.SPX.1d').json())
    with site['voila']('operations.ipynb') as url:
        page = opened(browser, url, 'API key')
        connect(page, key, 'admin')
        page.get_by_label('Series').nth(1).fill('EURUSDT:1h')   # ingest now: from the series' configured source (a loopback exchange)
        page.locator('button', has_text='Ingest now').click()
        page.wait_for_selector(".mlfin-answer:has-text('quarantined')", timeout=120_000)
        bars = ask('/prices/latest', params={'symbol': 'EURUSDT', 'timeframe': '1h', 'n': 5}).json()
        assert len(bars['bars']) == 5, bars   # the bars it added are the service's now
        page.get_by_label('Symbols').fill('SPX')   # train: a small run of SPX
        page.get_by_label('Parameters').fill('models=logistic,folds=3,start=2016-01-01')
        page.locator('button', has_text='Train').click()
        page.wait_for_selector('.mlfin-job >> text=succeeded', timeout=600_000)
        after = max(v['version'] for v in ask('/models/mlfin.SPX.1d').json())
        assert after > before and f"mlfin.SPX.1d" in page.inner_text('body')
        page.get_by_label('Model').select_option('mlfin.SPX.1d')
        page.get_by_label('Version', exact=True).fill(str(after))
        promote = page.locator('button', has_text='Promote')
        assert promote.is_disabled()   # not before the confirmation is ticked
        page.get_by_label('I confirm').check()
        promote.click()
        page.wait_for_selector(".mlfin-answer:has-text('production')", timeout=60_000)
        production = [v['version'] for v in ask('/models/mlfin.SPX.1d').json() if 'production' in v['aliases']]
        assert production == [after], production
        shot(page, 'operations-admin'); page.close()
    assert svc.errors() == ''
