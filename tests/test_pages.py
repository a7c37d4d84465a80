"""The dashboards of issues 19 and 22 in a real browser (Debian's Chromium through Playwright), served by `mlfin dashboards` on
loopback against a real service and a real run: only people logged in (password and TOTP code, on the login page) see a page;
every page shows real figures (no placeholder, no traceback); each operations button does what it says end to end, as the person
logged in; a read_only person is offered no operator button and is refused calling one. Without logins (`--no-login`) the
operations page takes a key. Each page is screenshotted into reports/screenshots/."""
import datetime as dt, json, os, re, shutil, time, unicodedata
from pathlib import Path
from urllib.parse import urlsplit
from contextlib import nullcontext
import httpx, pytest, yaml
from conftest import SMALL, binance_klines, mlfin, service, write_klines
from test_dashboard import ROOT, until, voila
from fastcore.xtras import modified_env
from mlfin.dashboards.index import DRAWN_FOR, MEETING, NOT_AHEAD, shown_products
from mlfin.dashboards.kernels import all_ready, ready_kernels
from mlfin.pictures import FAILED, pictures_dir

SHOTS = ROOT/'reports'/'screenshots'
pytestmark = [pytest.mark.e2e, pytest.mark.together]   # its tests share one site (module fixture): one worker runs them


def shot(page, name: str):
    "The whole page as a PNG for a reviewer: Voila scrolls its own box, not the document, so the screen is made as tall as the page first"
    SHOTS.mkdir(parents=True, exist_ok=True)
    size = page.viewport_size
    tall = page.evaluate("() => Math.max(document.documentElement.scrollHeight, ...[...document.querySelectorAll('body *')].map(e => e.scrollHeight))")
    if size and tall > size['height']: page.set_viewport_size({'width': size['width'], 'height': min(tall, 16_000)})
    page.screenshot(path=str(SHOTS/f"{name}.png"), full_page=True)
    if size: page.set_viewport_size(size)


def opened(browser, url: str, text: str, seconds: float = 180):
    "A page once `text` shows in it (Voila runs the notebook first); no traceback on it"
    page = browser.new_page(**({'viewport': {'width': 1280, 'height': 1200}} if hasattr(browser, 'new_context') else {}))   # a browser, or a person's context
    page.goto(url, wait_until='commit', timeout=seconds * 1000)
    page.wait_for_selector(f"text={text}", timeout=seconds * 1000)
    body = page.inner_text('body')
    assert 'Traceback' not in body and 'error when executing' not in body, body[:2000]
    return page


def signed_in(browser, base: str, person: dict, code: str | None = None):
    "A browser context of `person`, logged in on the login page as they would: name, password, the code their app shows now"
    context = browser.new_context(viewport={'width': 1280, 'height': 1200})
    page = context.new_page()
    said = log_in(page, base, person, code)
    assert re.fullmatch(r'/meeting/[0-9a-f]{32}', urlsplit(page.url).path), (said, page.url)   # in, on the meeting view of the run it names
    page.close()
    return context


def log_in(page, base: str, person: dict, code: str | None = None, password: str | None = None) -> str:
    "Fill in and send the login form; what the page said (a refusal's line) or ''"
    page.goto(f"{base}/login", timeout=60_000)
    page.get_by_label('User').fill(person['name'])
    page.get_by_label('Password').fill(password or person['password'])
    page.get_by_label('Code from your authenticator app (or a recovery code)').fill(person['totp'].now() if code is None else code)
    page.get_by_role('button', name='Log in').click()
    page.wait_for_load_state()
    return page.locator('.said').inner_text() if page.locator('.said').count() else ''


def session_of(context) -> str:
    return next(c['value'] for c in context.cookies() if c['name'] == 'mlfin-session')


def connect(page, key: str, role: str):
    page.get_by_label('API key').fill(key)
    page.locator('button', has_text='Connect').click()
    page.wait_for_selector(f".mlfin-connected >> text={role}", timeout=120_000)


@pytest.fixture(scope='module')
def site(served_golden, tmp_path_factory, browser):
    """A copy of the service tests' home (a run, SPX 1d and ES 1m in production), a monitor run on it, the service on it with its
    job runner and a loopback exchange as EURUSDT's configured source; people of each role (`mlfin users add`), each logged in once
    in a browser context of their own; and `mlfin dashboards` on it twice: behind the login (`people`) and without (`solo`)"""
    from test_remote_sources import Server, binance
    home = tmp_path_factory.mktemp('pages')/'home'
    shutil.copytree(served_golden['home'], home, ignore=shutil.ignore_patterns('serve-*.log', 'monitor'))
    mlfin(home, 'scheduled', 'monitor')   # a monitor run recorded as a scheduled one (the health page lists it)
    mlfin(home, 'monitor', '--window', '250')   # the latest run the pages show
    mlfin(home, 'health', '--service-url', 'http://127.0.0.1:9', check=False)   # one round of checks recorded: nothing listens there
    kept = os.environ.get('MLFIN_BACKUP_PASSWORD_FILE')
    os.environ['MLFIN_BACKUP_PASSWORD_FILE'] = str(home.parent/'backup-password')   # outside the home; this module's own
    try: snapshot = mlfin(home, 'backup', '--init', '--repo', str(home.parent/'repo')).stdout.split()[1]   # a first backup (its repository made), recorded
    finally:
        if kept is None: del os.environ['MLFIN_BACKUP_PASSWORD_FILE']
        else: os.environ['MLFIN_BACKUP_PASSWORD_FILE'] = kept
    exchange = Server(binance(throttle_first=False))
    config = {'urls': {'api': {'public': f"{exchange.url}/api/v3"}}, 'options': {'fetchMarkets': {'types': ['spot']}}, 'rateLimit': 5}
    (home/'sources.yaml').write_text(yaml.safe_dump({'EURUSDT:1h': {'source': 'ccxt:binance:EUR/USDT', 'start': '2017-11-01', 'config': config}}))
    try:
        with service(home, '--sources', str(home/'sources.yaml')) as svc:
            people = {name: svc.person(name, role) for name, role in (('reader', 'read_only'), ('ana', 'analyst'), ('root', 'admin'), ('pat', 'read_only'))}
            at = {'MLFIN_SERVICE_URL': svc.url}
            with voila(home, 'index.ipynb', env=at, login=True) as served, voila(home, 'index.ipynb', env=at, args=('--preheat', '0')) as solo:   # alone: a kernel started per visit
                gated, solo = served.rsplit('/', 1)[0], solo.rsplit('/', 1)[0]   # one Voila each: every visit runs its notebook in a kernel of its own
                base = gated.removesuffix('/voila/render')
                contexts = {name: signed_in(browser, base, people[name]) for name in ('reader', 'ana', 'root')}
                # the served run's meeting view as reader sees it now, before a test of the module makes a newer run: what a link
                # sent today shows (test_a_shared_meeting_link...)
                served_run = served_golden['summary']['mlflow']['parent']
                first = contexts['reader'].new_page(); first.goto(f"{base}/{MEETING}/{served_run}")
                before = {'run': served_run, 'answers': meeting_answers(first)}; first.close()
                try:
                    yield {'home': home, 'service': svc, 'snapshot': snapshot, 'keys': {r: svc.key(r) for r in ('read_only', 'admin')}, 'before': before,
                           'people': people, 'contexts': contexts, 'base': base, 'log': served.log, 'served': served_golden,
                           'voila': lambda page: nullcontext(f"{gated}/{page}"), 'solo': lambda page: nullcontext(f"{solo}/{page}")}
                finally:
                    for c in contexts.values(): c.close()
                    (home.parent/'voila.log').write_text(served.log())   # what the pages' server said, kept beside the home for a failure's reader
    finally: exchange.close()


def audit(site, **params) -> list[dict]:
    "The service's audit log, as an admin reads it (GET /audit)"
    return httpx.get(f"{site['service'].url}/audit", params=params, headers={'X-API-Key': site['keys']['admin']}, timeout=60).json()


def test_without_a_session_every_dashboard_url_leads_to_the_login_page(site, browser):
    from mlfin.dashboards.index import PAGES
    page = browser.new_page()   # a context of its own: no cookie
    for path in ['/', '/voila/render/index.ipynb', *(f"/voila/render/{p}" for p, *_ in PAGES), '/voila/tree']:
        page.goto(site['base'] + path, timeout=60_000)
        assert urlsplit(page.url).path == '/login' and page.get_by_label('Password').count() == 1, (path, page.url)
    # a kernel's channels and the folder's files as they are: refused outright (no file of the folder is served, logged in or not)
    for path in ('/api/kernels/0b3c2f5e-9a51-4c1e-8d3e-000000000000/channels', '/voila/files/index.ipynb'):
        assert httpx.get(site['base'] + path, timeout=60, follow_redirects=False).status_code == 403, path
    shot(page, 'login'); page.close()


def test_the_login_page_refuses_a_wrong_password_a_wrong_or_replayed_code_an_expired_session_and_a_disabled_account(site, browser):
    from mlfin.service import db as tables
    pat, base = site['people']['pat'], site['base']
    page = browser.new_page()
    assert log_in(page, base, pat, password='not the passphrase, long enough') == 'wrong user name, password or code'
    assert urlsplit(page.url).path == '/login' and 'mlfin-session' not in {c['name'] for c in page.context.cookies()}
    wrong = f"{(int(pat['totp'].now()) + 1) % 10**6:06d}"
    assert log_in(page, base, pat, code=wrong) == 'wrong user name, password or code'
    code = pat['totp'].now()
    inside = signed_in(browser, base, pat, code)   # the right code: in
    assert log_in(page, base, pat, code=code) == 'wrong user name, password or code'   # the same code again, from another browser
    assert log_in(page, base, pat, code='') == 'wrong user name, password or code'   # the right password, no code: answered as a wrong one
    assert log_in(page, base, {**pat, 'name': 'nobody-at-all'}) == 'wrong user name, password or code'   # a made-up name: the same line (issue 53)
    page.close()
    # her session reaches its end (8 hours, brought forward in the database): the next page leads to the login
    with tables.engine(site['home']/'store').begin() as con:
        hers = tables.users.select().with_only_columns(tables.users.c.id).where(tables.users.c.name == 'pat').scalar_subquery()
        con.execute(tables.sessions.update().where(tables.sessions.c.user_id == hers).values(expires_at=dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)))
    time.sleep(1.2)   # a session's record is trusted for a second
    later = inside.new_page()
    later.goto(f"{base}/voila/render/index.ipynb", timeout=60_000)
    assert urlsplit(later.url).path == '/login', later.url
    # logged in again (a recovery code), then disabled by an admin: the open session ends, and the next login is refused
    again = signed_in(browser, base, pat, pat['codes'][0])
    mlfin(site['home'], 'users', 'disable', 'pat')
    time.sleep(1.2)
    shut = again.new_page()
    shut.goto(f"{base}/voila/render/index.ipynb", timeout=60_000)
    assert urlsplit(shut.url).path == '/login', shut.url
    assert log_in(shut, base, pat, code=pat['codes'][1]) == 'user pat: account disabled; ask an admin'
    inside.close(); again.close()
    refused = [(e['outcome'], e['detail']) for e in audit(site, actor='user:pat', action='login')][::-1]
    assert refused == [('refused', 'wrong password'), ('refused', 'wrong code'), ('ok', ''), ('refused', 'wrong code'), ('refused', 'no code'), ('ok', ''),
                       ('refused', 'account disabled')], refused


def test_index_models_quality_and_monitoring_pages_show_the_run_registry_store_and_monitor(site):
    figures = json.loads((site['home']/'monitor'/'latest.json').read_text())
    latest = json.loads((site['home']/'monitor'/figures['folder']/'monitor.json').read_text())
    reader = site['contexts']['reader']   # a read_only person sees every result
    with site['voila']('index.ipynb') as url:
        page = opened(reader, url, 'Books of the last finished run')
        body = page.inner_text('body')
        summary = json.loads((site['home']/'run'/'summary.json').read_text())
        # the run's state and the monitor's on top, in coloured lines
        states = page.locator('.mlfin-status').all_inner_texts()
        assert len(states) == 2 and states[0].startswith('✓ Last run finished ') and states[1].startswith(('✓ Monitor, ', '! Monitor, ')), states
        # a card per book: its badge, its line against buy-and-hold, the figures beside buy-and-hold's, DSR with its trials, PBO
        cards = page.locator('.mlfin-card')
        assert cards.count() == len(summary['symbols']) + bool(summary.get('portfolio')), body[:1500]
        for i, (name, m) in enumerate(summary['symbols'].items()):
            card = cards.nth(i).inner_text()
            assert card.startswith(name) and f"after {m['skill']['trials']:,} trials" in card and 'Buy & hold' in card and 'Max drawdown' in card, card
            assert cards.nth(i).locator('.mlfin-badge').count() == 1 and cards.nth(i).locator('svg.mlfin-spark polyline').count() == 2, card
        # links that look like links: coloured and underlined
        link = page.locator('a[href="models.ipynb"]')
        assert link.count() == 1 and link.evaluate("a => getComputedStyle(a).textDecorationLine") == 'underline', body[-800:]
        assert link.evaluate("a => getComputedStyle(a).color") == 'rgb(26, 86, 219)'
        assert 'Signed in as reader (read_only)' in body and page.get_by_role('link', name='Log out').count() == 1, body[:500]
        shot(page, 'index'); page.close()
    with site['voila']('models.ipynb') as url:
        page = opened(reader, url, 'Registered versions')
        table = page.inner_text('body')
        for v in httpx.get(f"{site['service'].url}/models", headers={'X-API-Key': site['keys']['read_only']}).json():
            assert v['name'] in table
        assert 'production' in table and 'promoted by hand' in table and 'Leaderboard of the latest run' in table
        shot(page, 'models'); page.close()
    with site['voila']('quality.ipynb') as url:
        page = opened(reader, url, 'series stored')
        until(page, "!!document.querySelector('.js-plotly-plot .trace')")   # the coverage chart drew (interactive once the mouse is on it)
        assert '2 series stored' in page.inner_text('body')
        shot(page, 'quality'); page.close()
    with site['voila']('monitoring.ipynb') as url:
        page = opened(reader, url, 'Live performance against the out-of-sample record')
        body = page.inner_text('body')
        for m in latest['models']: assert m['verdict'][:60] in body, (m['verdict'], body[:1500])
        until(page, "!!document.querySelector('.js-plotly-plot .heatmaplayer')")   # the drift heatmap drew
        assert 'Alertmanager is not configured for this page' in body
        shot(page, 'monitoring'); page.close()


def test_health_page_reads_the_service_metrics_as_the_person_logged_in(site):
    with site['voila']('health.ipynb') as url:
        page = opened(site['contexts']['reader'], url, 'Requests per route')
        body = page.inner_text('body')
        assert 'Connected to' in body and 'as reader (read_only)' in body and page.get_by_label('API key').count() == 0, body[:800]
        assert '/me' in body and 'SPX' in body and 'mlfin.SPX.1d' in body, body[:2000]   # its own call (GET /me) counted among the routes
        assert 'Scheduled runs' in body and 'monitor' in body and 'succeeded' in body, body[-2000:]   # the home's operations record
        failing = next((l for l in body.splitlines() if l.startswith('failing now: ')), '')
        assert 'service' in failing.removeprefix('failing now: ').split(', ') and 'ConnectError' in body, body[-3000:]
        assert 'Backups' in body and site['snapshot'] in body, body[-1500:]
        # numbers as people read them: the stale series overdue by years, not seconds in exponent notation; times in UTC
        assert 'e+0' not in body and re.search(r'\b\d+\.\d years\b', body) and re.search(r'\d{4}-\d\d-\d\d \d\d:\d\d UTC', body), body[-3000:]
        shot(page, 'health'); page.close()


def test_a_read_only_person_sees_no_operator_button_and_is_refused_calling_one(site):
    svc, reader = site['service'], site['contexts']['reader']
    with site['voila']('operations.ipynb') as url:
        page = opened(reader, url, 'Your role, read_only, may: predict.')
        assert [page.locator('button', has_text=b).count() for b in ('Ingest now', 'Train', 'Promote')] == [0, 0, 0]
        assert page.get_by_label('API key').count() == 0   # the page acts with her session, asks for no key
        shot(page, 'operations-read-only-person'); page.close()
    as_reader = {'Authorization': f"Bearer {session_of(reader)}"}   # what her browser holds, sent straight to the service
    for method, path, body in (('POST', '/train', {'params': {'symbols': 'SPX'}}), ('POST', '/ingest/run', {'symbol': 'SPX', 'timeframe': '1d'}),
                               ('POST', '/models/mlfin.SPX.1d/promote', {'version': 1, 'reason': 'a read_only person tries'})):
        answer = httpx.request(method, f"{svc.url}{path}", json=body, headers=as_reader, timeout=60)
        assert answer.status_code == 403 and answer.json()['detail'].startswith('role read_only may not do this'), (path, answer.text)
    denied = [e['target'] for e in audit(site, actor='user:reader', action='denied')]
    assert sorted(denied) == ['POST /ingest/run', 'POST /models/{name}/promote', 'POST /train'], denied   # by route: one row a minute each


def test_operations_page_offers_a_read_only_key_prediction_alone_and_it_equals_the_api(site, browser):
    "Without logins (`mlfin dashboards --no-login`, a researcher alone) the page asks for a key"
    key = site['keys']['read_only']
    with site['solo']('operations.ipynb') as url:
        page = opened(browser, url, 'API key')
        assert 'Signed in' not in page.inner_text('body')
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
def test_an_analyst_ingests_and_trains_on_the_operations_page_recorded_under_their_name(site, tmp_path):
    key, svc = site['keys']['admin'], site['service']
    ask = lambda path, **kw: httpx.get(f"{svc.url}{path}", headers={'X-API-Key': key}, timeout=60, **kw)
    # a crypto desk's file: two days of one-minute klines from a Saturday (weekend bars: crypto's 24/7 calendar), no source configured
    klines = write_klines(tmp_path/'BTCUSDT-1m-2025-01-04.csv', binance_klines(days=2, start='2025-01-04', seed=52, price=95_000.0))
    assert ask('/models/mlfin.BTCUSDT.1m').status_code == 404   # no model of it yet
    with site['voila']('operations.ipynb') as url:
        page = opened(site['contexts']['ana'], url, 'Your role, analyst, may: predict, ingest now and train.')
        assert page.locator('button', has_text='Promote').count() == 0
        # Predict asks for the series in its own box, whatever the Ingest box holds (it once predicted the Ingest box's)
        page.get_by_label('Series').nth(0).fill('SPX:1d')
        page.get_by_label('Series').nth(1).fill('EURUSDT:1h')   # ingest now: from the series' configured source (a loopback exchange)
        page.locator('button', has_text='Predict the next bar').click()
        page.wait_for_selector(".mlfin-answer:has-text('prob_up')", timeout=120_000)
        said = page.locator(".mlfin-answer:has-text('prob_up')").inner_text()
        assert 'SPX' in said and 'EURUSDT' not in said, said
        page.locator('button', has_text='Ingest now').click()
        page.wait_for_selector(".mlfin-answer:has-text('EURUSDT')", timeout=120_000)
        bars = ask('/prices/latest', params={'symbol': 'EURUSDT', 'timeframe': '1h', 'n': 5}).json()
        assert len(bars['bars']) == 5, bars   # the bars it added are the service's now
        # ingest now with a file chosen: the file, for the series typed (BTCUSDT has no configured source)
        page.get_by_label('Series').nth(1).fill('BTCUSDT:1m')
        with page.expect_file_chooser() as chooser: page.locator('.widget-upload').click()
        chooser.value.set_files(str(klines))
        page.wait_for_selector(".widget-upload:has-text('(1)')", timeout=60_000)   # the file read into the page's kernel
        page.locator('button', has_text='Ingest now').click()
        page.wait_for_selector(".mlfin-answer:has-text('BTCUSDT')", timeout=120_000)
        said = page.locator('.mlfin-answer').nth(1).inner_text()
        assert all(f in said for f in ('binance', '24/7', 'crypto', '2880')), said   # read as Binance's layout, every kline new
        stored = ask('/prices/latest', params={'symbol': 'BTCUSDT', 'timeframe': '1m', 'n': 1}).json()['bars'][-1]
        assert stored['close'] == float(klines.read_text().splitlines()[-1].split(',')[4]), stored
        assert page.get_by_label('Parameters').input_value() == ''   # Train starts from the project's run (models.yaml), not a last winner
        page.get_by_label('Symbols').fill('BTCUSDT:1m')
        page.get_by_label('Parameters').fill('--fold 3')   # as a command line takes them: a misspelt option is named, nothing queued
        page.locator('button', has_text='Train').click()
        page.wait_for_selector(".mlfin-refused:has-text('--fold is not a run parameter; did you mean --folds?')", timeout=60_000)
        page.get_by_label('Parameters').fill('--label next_close --models ridge --spec returns,returns_5,log_returns --folds 3')
        page.locator('button', has_text='Train').click()
        page.wait_for_selector('.mlfin-job:has-text("running") .mlfin-step', timeout=120_000)   # where the run is, while it runs
        page.wait_for_selector('.mlfin-job >> text=succeeded', timeout=600_000)
        assert "mlfin.BTCUSDT.1m" in page.inner_text('body')   # the versions of the run's symbols, listed when it ends
        versions = ask('/models/mlfin.BTCUSDT.1m').json()
        assert [(v['version'], v['kind'], v['lineage']['label']) for v in versions] == [(1, 'regressor', 'next_close')], versions
        # the forecast does not beat the random walk (it cannot: the bars are one), so no rule made it production; an admin chooses to serve it
        promoted = httpx.post(f"{svc.url}/models/mlfin.BTCUSDT.1m/promote", json={'version': 1, 'reason': 'the desk watches it live'},
                              headers={'X-API-Key': key}, timeout=60)
        assert promoted.status_code == 200, promoted.text
        page.get_by_label('Series').nth(0).fill('BTCUSDT:1m')
        page.locator('button', has_text='Predict the next bar').click()
        page.wait_for_selector(".mlfin-card[data-figure='predicted-close']", timeout=120_000)
        shown = {f: float(page.locator(f".mlfin-card[data-figure='{f}'] .mlfin-value").get_attribute('data-value')) for f in ('last-close', 'predicted-close')}
        cards = page.locator('.mlfin-cards').inner_text()
        api = ask('/predict', params={'symbol': 'BTCUSDT', 'timeframe': '1m'}).json()
        assert (shown['last-close'], shown['predicted-close']) == (api['last_close'], api['predicted_close']), (shown, api)
        assert f"{api['last_close']:,.2f}" in cards and f"{api['predicted_close']:,.2f}" in cards and f"{api['change_pct']:+.4f}%" in cards, (cards, api)
        assert api['last_close'] == stored['close'] and f"{api['ratio_to_random_walk']:.3f}× the random walk's" in cards, (cards, api)
        shot(page, 'operations-analyst'); page.close()
    trained = audit(site, actor='user:ana', action='train')
    assert len(trained) == 1 and trained[0]['outcome'] == 'ok', trained
    job = ask(f"/jobs/{trained[0]['target']}").json()
    assert (job['actor'], job['state']) == ('user:ana', 'succeeded'), job
    assert [e['action'] for e in audit(site, actor='user:ana', action='ingest.run')] == ['ingest.run']
    assert [e['target'] for e in audit(site, actor='user:ana', action='ingest.file')] == ['BTCUSDT:1m']
    assert svc.errors() == ''


def test_an_admin_promotes_on_the_operations_page(site):
    key, svc = site['keys']['admin'], site['service']
    versions = httpx.get(f"{svc.url}/models/mlfin.SPX.1d", headers={'X-API-Key': key}, timeout=60).json()
    chosen = max(v['version'] for v in versions if 'production' not in v['aliases'])
    with site['voila']('operations.ipynb') as url:
        page = opened(site['contexts']['root'], url, 'Promote a version (admin)')
        page.get_by_label('Model').select_option('mlfin.SPX.1d')
        page.get_by_label('Version', exact=True).fill(str(chosen))
        promote = page.locator('button', has_text='Promote')
        assert promote.is_disabled()   # not before the confirmation is ticked
        page.get_by_label('I confirm').check()
        promote.click()
        page.wait_for_selector(".mlfin-answer:has-text('production')", timeout=60_000)
        shot(page, 'operations-admin'); page.close()
    production = [v['version'] for v in httpx.get(f"{svc.url}/models/mlfin.SPX.1d", headers={'X-API-Key': key}, timeout=60).json()
                  if 'production' in v['aliases']]
    assert production == [chosen], production
    promoted = audit(site, actor='user:root', action='promote')
    assert [e['target'] for e in promoted] == [f"mlfin.SPX.1d v{chosen}"], promoted
    assert svc.errors() == ''


FIT = """() => {   // what sticks out of the screen: elements whose right edge passes the viewport's, unless a box that scrolls or clips holds them
  const w = document.documentElement.clientWidth, wide = [];
  for (const el of document.querySelectorAll('body *')) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0) continue;
    let held = false;
    for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
      const o = getComputedStyle(p).overflowX;
      if ((o === 'auto' || o === 'scroll' || o === 'hidden') && p.getBoundingClientRect().right <= w + 1) { held = true; break; }
    }
    if (!held && r.right > w + 1) wide.push(`${el.tagName.toLowerCase()}.${typeof el.className === 'string' ? el.className.split(' ')[0] : ''} to ${Math.round(r.right)} px`);
  }
  return {page: document.documentElement.scrollWidth, screen: w, wide: wide.slice(0, 6)};
}"""
# every chart shown: drawn by plotly.js, or as its picture (mlfin.pictures: loaded, on screen), until the mouse comes
DRAWN = ("() => [...document.querySelectorAll('.widget-output')].every(o => o.querySelector('.js-plotly-plot .main-svg')"
         " || [...o.querySelectorAll('img.plot-img')].some(i => i.complete && i.naturalWidth > 0 && i.offsetWidth > 0)"
         " || !o.textContent.trim() && !o.children.length)")


# on a phone, whether each chart shown as its picture shows the one drawn for the phone for it (`style.chart`: the page's picture
# replaced by the one in its own output's style): a picture each, and each chart's its own
PHONE_PICTURES = """() => {
  const shown = [...document.querySelectorAll('img.plot-img')].filter(i => i.offsetWidth > 0).map(i => getComputedStyle(i).content);
  const own = shown.map(c => c.startsWith('url("data:image/png'));
  return new Set(shown).size === shown.length ? own : [...own, false];
}"""
# where a tearsheet's detail begins: the bottom of its fold's summary, in CSS px from the page's top
DETAIL = "() => { const s = document.querySelector('details.mlfin-detail > summary'); return s && s.getBoundingClientRect().bottom + window.scrollY; }"


def every_page() -> list[str]:
    from mlfin.dashboards.index import PAGES
    return ['index.ipynb', *(p for p, *_ in PAGES), 'tearsheet.ipynb?book=SPX']


def test_every_page_fits_the_screen_at_1440_and_390_pixels_for_every_role(site):
    """Nothing on any page is wider than the screen, for each role, on a desktop and a phone; both kept as screenshots for a reviewer.
    On the phone, every link, button, picker and fold is at least 44x44 CSS px and no text is under 12 px (`GLASS`), each chart's picture
    is the one drawn for a phone, and a tearsheet's essentials end within 5 phone screens, where its detail's fold begins.
    A role changes the operations page (its buttons) and the line naming who is signed in (on every page, the same code): that
    page is seen by every role, with its line; the others, the same for all, by the admin"""
    found = {}
    for role in ('reader', 'ana', 'root'):
        for name in every_page() if role == 'root' else ['operations.ipynb']:
            with site['voila'](name) as url:
                page = opened(site['contexts'][role], url, 'All pages' if name != 'index.ipynb' else 'Books of the last finished run')
                page.wait_for_function(DRAWN, timeout=120_000)   # every chart drawn
                for width in (1440, 390):
                    page.set_viewport_size({'width': width, 'height': 900})
                    page.wait_for_function(f"() => document.documentElement.clientWidth === {width}")
                    page.wait_for_function(DRAWN, timeout=60_000)   # plotly redraws to the new width
                    fit = page.evaluate(FIT)
                    if fit['wide'] or fit['page'] > width: found[(role, name, width)] = fit
                    if width == 390 and ((glass := page.evaluate(GLASS))['small'] or glass['tiny']):   # a thumb's taps, an eye's text
                        found[(role, name, 'glass')] = glass
                    if width == 390 and not all(pictured := page.evaluate(PHONE_PICTURES)):   # each chart's picture, the phone's
                        found[(role, name, 'phone pictures')] = pictured
                    if width == 390 and name.startswith('tearsheet'):   # the essentials within 5 phone screens, then the detail's fold
                        fold = page.evaluate(DETAIL)
                        if fold is None or fold > 5 * PHONE['viewport']['height']: found[(role, name, 'screens')] = fold
                    shot(page, f"{name.split('.')[0]}{'-' + name.split('=')[1] if '=' in name else ''}-{role}-{width}")
                page.close()
    assert not found, found


def test_a_page_prints_as_its_reader_sees_it_with_every_fold_open(site):
    """A read_only person taps "PDF of this page" on a book's tearsheet: the page at its address (the book), run and drawn as her own
    visit, printed by Chromium; the PDF reads like the page (its title, the verdict in words) with its folds open (the method, the
    detail past the essentials). A bad page name, a page that is not there and a visitor without a session are answered in a line"""
    import io
    from pypdf import PdfReader
    # a PDF's text breaks its lines where the paper does, and its fonts join letters (fi, fl: one glyph each, NFKC parts them)
    reader, squeeze = site['contexts']['reader'], lambda text: re.sub(r'\s+', '', unicodedata.normalize('NFKC', text))
    with site['voila']('tearsheet.ipynb?book=SPX') as url:
        page = opened(reader, url, 'All pages')
        link = page.get_by_role('link', name='PDF of this page')
        assert link.get_attribute('href') == '/print/tearsheet.ipynb?book=SPX'
        said = {'title': page.locator('h1').nth(1).inner_text(), 'verdict': page.locator('p.verdict').inner_text(),
                'method': page.locator('details.mlfin-method > summary').inner_text(),
                'folded': page.locator('details.mlfin-method p').first.text_content(),   # the method's first line, inside its fold
                'detail': page.locator('details.mlfin-detail h2').last.text_content()}   # the detail's last table's title, inside its fold
        with page.expect_download(timeout=300_000) as got: link.click()
        download = got.value
        pdf = Path(download.path()).read_bytes()
        page.close()
    assert re.fullmatch(r'mlfin-tearsheet-\d{4}-\d{2}-\d{2}\.pdf', download.suggested_filename), download.suggested_filename
    text = squeeze(' '.join(p.extract_text() for p in PdfReader(io.BytesIO(pdf)).pages))
    missing = {k: v for k, v in said.items() if squeeze(v) not in text}
    assert said['title'].endswith(': tearsheet') and not missing, (list(missing), missing, text[:3000])
    for path, status, line in (('/print/..%2Fsettings.ini', 400, "print: '../settings.ini' is not a page's name"),
                               ('/print/nothere.ipynb', 404, 'print: no page nothere.ipynb on this server')):
        answer = reader.request.get(site['base'] + path)
        assert (answer.status, answer.text()) == (status, line + '\n'), (path, answer.status, answer.text())
    stranger = httpx.get(site['base'] + '/print/run.ipynb', timeout=60, follow_redirects=False)
    assert stranger.status_code == 302 and urlsplit(stranger.headers['location']).path == '/login', stranger.headers


def test_the_kernels_kept_ready_are_made_again_after_the_visits_one_at_a_time(site):
    """The visits so far took kernels kept ready; once no page is in use the server makes them ready again, as many as it keeps, and no
    replacement started while another was loading the pages' modules: a visit never shares the cores with two. (How many replacements
    come between visits is the visits' pace: a replacement waits for a quiet moment, so the test waits for the server's own line.)"""
    deadline = time.monotonic() + 600   # a hang guard: a replacement waits for 3 s without a visitor's message, or at most 120 s, then starts
    while not all_ready(site['log']()):
        assert time.monotonic() < deadline, site['log']()[-3000:]
        time.sleep(1)
    log = site['log']()
    ready, kept = set(ready_kernels(log)), int(re.findall(r"mlfin: (\d+) kernel\(s\) ready for the pages", log)[-1])
    given = set(re.findall(r"mlfin: kernel (\S+) given to a visit", log))
    assert kept >= 1 and given and given <= ready and len(ready) >= kept + len(given), (kept, len(given), len(ready), log[-3000:])   # each given one replaced
    loading = None
    for line in log.splitlines():
        if (started := re.search(r'Kernel started: (\S+)', line)) and started.group(1) in ready:
            assert loading is None, f"{started.group(1)} started while {loading} was loading its page"
            loading = started.group(1)
        elif made := ready_kernels(line):
            assert made == [loading], (made, loading); loading = None


def test_the_run_page_opened_once_the_kernels_are_ready_shows_its_chart_as_the_picture_drawn_ahead(site):
    """The kernels made ready draw the pages' pictures before anyone asks (dashboards.index.keep_pictures, in a process of its own),
    so a warm visit's chart arrives as its picture: plotly.js draws nothing until a mouse comes. Every picture kept is removed first
    (a visitor's kernel also draws its page's charts for the next visit), then a visit to a page without charts has its kernel
    replaced, and the replacement draws them. (Issue 73: the drawing's command named a module the function had left; it failed
    unseen, and every visit's browser drew the run page's chart, a second of its three.)"""
    with modified_env(MLFIN_HOME=str(site['home'])): kept, now = pictures_dir(), shown_products()
    def ready():
        deadline = time.monotonic() + 600   # a hang guard: a kernel made ready draws the pictures (seconds), then says it is ready
        while not all_ready(site['log']()):
            assert time.monotonic() < deadline, site['log']()[-3000:]
            time.sleep(1)
    ready()
    for gone in [kept/DRAWN_FOR, kept/FAILED, *kept.glob('*.png')]: gone.unlink(missing_ok=True)   # nothing drawn, nothing said
    with site['voila']('models.ipynb') as url: opened(site['contexts']['reader'], url, 'All pages').close()   # a page without charts
    ready()   # the kernel it took replaced: the replacement drew the pages' pictures as it was made ready
    said = (kept/FAILED).read_text() if (kept/FAILED).exists() else ''
    assert (kept/DRAWN_FOR).read_text() == now and NOT_AHEAD not in said, said
    with site['voila']('run.ipynb') as url:
        page = opened(site['contexts']['reader'], url, 'All pages')
        page.wait_for_function(DRAWN, timeout=120_000)
        shown = page.evaluate("() => [...document.querySelectorAll('.jp-RenderedPlotly')].map(c => [c.querySelector('img.plot-img').naturalWidth, c.classList.contains('js-plotly-plot')])")
        page.close()
    assert shown and all(width and not drawn for width, drawn in shown), shown   # each chart its picture, none drawn by plotly.js


def test_a_chart_shows_at_once_as_its_picture_and_the_mouse_brings_the_interactive_chart(site):
    "A page's charts arrive as the pictures drawn for them (plotly.js draws nothing before they show); a person's mouse on one draws it with plotly.js"
    reader, kept = site['contexts']['reader'], site['home']/'cache'/'pictures'
    for attempt in range(2):   # the first visit of a chart nobody has seen yet shows it drawn by plotly.js, and its picture is drawn for the next
        before = set(kept.glob('*.png'))
        with site['voila']('tearsheet.ipynb?book=SPX') as url:
            page = opened(reader, url, 'All pages')
            page.wait_for_function(DRAWN, timeout=120_000)
            shown = page.evaluate("() => [...document.querySelectorAll('.jp-RenderedPlotly')].map(c => [c.querySelector('img.plot-img').naturalWidth, c.classList.contains('js-plotly-plot')])")
            if shown and all(width and not drawn for width, drawn in shown): break
            page.close()
            deadline = time.monotonic() + 300   # a hang guard: drawing a page's pictures takes seconds
            while not set(kept.glob('*.png')) - before:   # the visitor's kernel drew them, for the next visit
                assert time.monotonic() < deadline, (kept/'last-failure.txt').read_text() if (kept/'last-failure.txt').exists() else 'no picture drawn'
                time.sleep(1)
    assert len(shown) >= 2 and all(width == 1200 and not drawn for width, drawn in shown), shown   # pictures as wide as a page, no plotly.js chart yet
    picture = page.locator('.jp-RenderedPlotly img.plot-img').first
    picture.scroll_into_view_if_needed(); box = picture.bounding_box()   # on the screen, where a mouse can reach it
    page.mouse.move(box['x'] + box['width'] / 2, box['y'] + box['height'] / 2)   # a person's mouse onto the first chart
    page.wait_for_selector('.jp-RenderedPlotly.js-plotly-plot .main-svg', timeout=60_000)
    page.wait_for_function("() => getComputedStyle(document.querySelector('.jp-RenderedPlotly img.plot-img')).display === 'none'")   # the chart in its place
    assert len(list((site['home']/'cache'/'pictures').glob('*.png'))) >= len(shown)
    shot(page, 'tearsheet-after-the-mouse'); page.close()


def test_a_run_that_fails_in_training_is_said_on_every_page_which_keep_showing_the_last_finished_one(site):
    "A run that fails in its train task: every page leads with it (its task and its error), the index's first line is it; the figures shown stay the last finished run's"
    home, reader = site['home'], site['contexts']['reader']
    before = json.loads((home/'run'/'summary.json').read_text())
    failed = mlfin(home, 'run', '--symbols', 'SPX', '--start', '2018-09-01', '--folds', '3', '--models', 'logistic', '--reports', str(home/'reports'), check=False)
    assert failed.returncode != 0 and 'training rows' in failed.stderr, failed.stderr
    for name in every_page():
        with site['voila'](name) as url:
            page = opened(reader, url, 'failed in train')
            said = page.locator('.mlfin-failed').first.inner_text()
            assert said.startswith('✗ The latest run, started') and 'on SPX' in said and 'keeps 8 training rows' in said and 'the last that finished' in said, (name, said)
            if name == 'index.ipynb':
                assert page.locator('.mlfin-status').first.inner_text() == said   # the run's line leads the index
                cards = page.locator('.mlfin-card')
                assert cards.count() == len(before['symbols']) + bool(before.get('portfolio')) and cards.first.inner_text().startswith(next(iter(before['symbols'])))
                shot(page, 'index-after-a-failed-run')
            page.close()


# a phone as Chrome's tools emulate one (the issue's): 390x844 CSS px, three device pixels to one, touch
PHONE = {'viewport': {'width': 390, 'height': 844}, 'device_scale_factor': 3, 'is_mobile': True, 'has_touch': True}
GLASS = """() => {   // what a thumb and an eye meet: tap targets under 44x44 CSS px, text under 12 px, anything wider than the screen
  const small = [], tiny = [], seen = el => { const s = getComputedStyle(el); return s.display !== 'none' && s.visibility !== 'hidden' && el.getClientRects().length; };
  for (const el of document.querySelectorAll('a, button, summary, input, select')) {
    const r = el.getBoundingClientRect();
    if (seen(el) && (r.width < 44 || r.height < 44)) small.push([el.tagName, el.textContent.trim().slice(0, 40), Math.round(r.width), Math.round(r.height)]);
  }
  for (const el of document.querySelectorAll('body *')) {
    const own = [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
    if (own && seen(el) && parseFloat(getComputedStyle(el).fontSize) < 12) tiny.push([el.tagName, el.textContent.trim().slice(0, 40), getComputedStyle(el).fontSize]);
  }
  return {small, tiny, wide: document.documentElement.scrollWidth - document.documentElement.clientWidth};
}"""


def meeting_answers(page) -> dict:
    "The four answers of a meeting view: each question's word and its text"
    return {q.get_attribute('data-question'): q.inner_text() for q in page.locator('[data-question]').all()}


def test_the_meeting_view_answers_the_desks_four_questions_on_a_phone_and_prints_them(site, browser):
    """A read_only person (the head of desk) logs in on a phone and lands on the meeting view, its address naming the run: the four answers in plain
    words (the skill answer the run's figures give), each question on the first screen (production's forecasts said with the day they are for and the data's end: the
    served run's data end in 2018 and 2013), health in one word, no command to type; every tap target 44 px, no text under 12 px,
    nothing sideways, on it and on the login page. Its PDF, opened, reads like the page. No kernel was started for it. The pages
    of a kernel show the reader no command either (the index, the health page)"""
    from pypdf import PdfReader
    import io
    from mlfin.dashboards.meeting import book_lines, skill_answer
    from mlfin.paths import finished_folder
    from mlfin.report.products import load_run
    shown = load_run(finished_folder(site['home']/'run'))   # the latest finished: the served run, or one an earlier test of the module made
    run = shown['mlflow']['parent']
    phone = browser.new_context(**PHONE)
    try:
        page = phone.new_page()
        page.goto(f"{site['base']}/login")
        assert page.evaluate(GLASS) == {'small': [], 'tiny': [], 'wide': 0}, page.evaluate(GLASS)   # the login page, on the glass
        assert log_in(page, site['base'], site['service'].person('desk', 'read_only')) == ''   # a read_only person's first login
        assert urlsplit(page.url).path == f"/meeting/{run}", page.url   # the address names the run
        answers = meeting_answers(page)
        assert list(answers) == ['skill', 'tomorrow', 'health', 'holding'], answers
        word, said = skill_answer(book_lines(shown), shown.get('validation', {}).get('tradeable', True))   # the run the view shows
        assert answers['skill'].split('\n')[0].endswith(word) and said in answers['skill'], (word, said, answers['skill'])
        assert 'SPX 1d: the data end on 2018-12-31: no forecast for tomorrow' in answers['tomorrow'], answers['tomorrow']
        assert 'ES 1m: the data end on 2013-09-03: no forecast for tomorrow' in answers['tomorrow'], answers['tomorrow']
        assert answers['health'].split('\n')[0].split()[-1] in ('healthy', 'attention', 'failing'), answers['health']
        assert all(f"{b}: " in answers['holding'] for b in shown['symbols']) and 'for holding, after costs' in answers['holding'], answers['holding']
        shot(page, 'meeting-read_only-390')
        tops = page.evaluate("() => [...document.querySelectorAll('[data-question] h2')].map(h => h.getBoundingClientRect().bottom)")
        assert all(0 < bottom <= 844 for bottom in tops), tops   # every question and its word on the first screen
        assert page.locator('[data-question] svg').first.is_visible()   # the first figure
        assert '`' not in page.inner_text('body'), page.inner_text('body')   # no command shown to a read_only reader
        assert page.evaluate(GLASS) == {'small': [], 'tiny': [], 'wide': 0}, page.evaluate(GLASS)
        pdf = page.request.get(f"{site['base']}/meeting/{run}.pdf")
        assert pdf.status == 200 and pdf.headers['content-type'] == 'application/pdf', (pdf.status, pdf.headers)
        text = ' '.join(' '.join(p.extract_text().split()) for p in PdfReader(io.BytesIO(pdf.body())).pages)
        for said in ('Is there a model with evidence of skill?', 'What does it say for tomorrow?', 'Is the system healthy?',
                     'How did it do against simply holding?', said[:50],
                     'How this was measured', 'Words on this page'):
            assert said in text, (said, text[:3000])
        sent = page.request.get(f"{site['base']}/meeting/{run}")   # compressed, asked again (the forecasts are of now)
        assert (sent.headers.get('content-encoding'), sent.headers['cache-control']) == ('gzip', 'private, no-cache'), sent.headers
        bad = page.request.get(f"{site['base']}/meeting/..%2f..%2fetc")
        assert bad.status == 400 and '32 hexadecimal characters' in bad.text(), (bad.status, bad.text()[:500])
        held = page.request.get(f"{site['base']}/api/kernels")   # the kernels the server holds for her (dashboards.server.OwnList)
        assert held.status == 200 and held.json() == [], held.text()   # the view and its PDF took no kernel
        for name, text in (('index.ipynb', 'Books of the last finished run'), ('health.ipynb', 'Backups')):   # a page of its own kernel
            shown = opened(phone, f"{site['base']}/voila/render/{name}", text).inner_text('body')
            assert '`' not in shown, (name, shown)   # the operator's lines up to their command: no command to type
    finally: phone.close()
    # the pages' scripts (plotly's 4.8 MB among them) kept a year by a phone when named by their content, and compressed
    import sys
    from mlfin.dashboards.server import HASHED
    root = Path(sys.prefix)/'share'/'jupyter'/'labextensions'
    built = max((p for p in root.rglob('*.js') if HASHED.search(p.name)), key=lambda p: p.stat().st_size)
    got = httpx.get(f"{site['base']}/voila/labextensions/{built.relative_to(root)}", headers={'Accept-Encoding': 'gzip'}, timeout=60)
    assert got.status_code == 200 and got.headers['cache-control'] == 'public, max-age=31536000, immutable', (built, got.headers)
    assert got.headers['content-encoding'] == 'gzip' and got.num_bytes_downloaded < built.stat().st_size / 2, (built, got.num_bytes_downloaded, got.headers)


def test_a_shared_meeting_link_shows_the_same_figures_after_a_newer_run_with_a_line_to_the_latest(site, browser):
    """A meeting view's link, opened by reader (a read_only person) after a newer run finished: the same run's skill and holding
    answers, word for word, and a line leading to the latest; with the home's copy of that run gone, read back from the tracking
    server. The latest leads with the newer run. A book's tearsheet linked from it (its address naming the run) shows the same
    verdict after the newer run, with a line to the latest"""
    from mlfin.backtest.tearsheet import verdict
    home, reader = site['home'], site['contexts']['reader']
    before, first = site['before']['run'], site['before']['answers']   # the served run's view, as the module's site opened
    link = f"{site['base']}/meeting/{before}"
    latest = json.loads((home/'run'/'summary.json').read_text())['mlflow']['parent']
    if latest == before:   # alone (-k): no earlier test of the module made a newer run (the analyst's training does); one here
        mlfin(home, 'run', *SMALL, '--reports', str(home/'reports'))   # conftest's smallest run
        latest = json.loads((home/'run'/'summary.json').read_text())['mlflow']['parent']
    assert latest != before
    served = site['served']['summary']   # the served run's SPX verdict, as its tearsheet words it (`tearsheet_parts`)
    said = verdict(served['symbols']['SPX'], served.get('validation', {}).get('tradeable', True))
    sheet = f"{site['base']}/voila/render/tearsheet.ipynb?book=SPX&run={before}"   # the book's link in the meeting view's fold
    for gone in (False, True):
        if gone:   # the home keeps the run before the latest; one older is read from the tracking server
            for kept in (home/'run').glob('finished-*'):
                if json.loads((kept/'summary.json').read_text())['mlflow']['parent'] == before: shutil.rmtree(kept)
        page = reader.new_page(); page.goto(link)
        again = meeting_answers(page)
        assert {k: again[k] for k in ('skill', 'holding')} == {k: first[k] for k in ('skill', 'holding')}, (gone, first, again)
        page.get_by_role('link', name='see the latest').click(); page.wait_for_load_state()
        assert urlsplit(page.url).path == f"/meeting/{latest}", page.url
        assert f"Figures of run {latest[:8]}" in page.inner_text('body') and 'This is the latest run.' in page.inner_text('body')
        page.close()
        if not gone:   # the tearsheet's link too: the same run's verdict, a line to the latest
            page = opened(reader, sheet, 'a newer run exists')
            assert page.locator('p.verdict').first.inner_text() == said, (said, page.locator('p.verdict').first.inner_text())
            page.close()
