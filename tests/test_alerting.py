"""Alerts (issues 19, 34): the shipped rules pass `promtool test rules` (Debian's Prometheus 2.42); every rule has a case that
fires it, a case (another series, or another time) where it stays quiet, and a case where the service's scrape target is down or
gone; the rules on the watched figures are the ones their table makes."""
import subprocess
from pathlib import Path
import yaml

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT/'env'/'monitoring'
FILES = ('alerts.yml', 'figures.yml')
TESTS = ('alerts.test.yml', 'alerts.days.test.yml')   # evaluated every 15 s, and the cases spanning days every minute


def test_promtool_checks_and_unit_tests_the_shipped_rules():
    checked = subprocess.run(['promtool', 'check', 'rules', *(str(RULES/f) for f in FILES)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run(['promtool', 'test', 'rules', *TESTS], cwd=RULES, capture_output=True, text=True)
    assert tested.returncode == 0 and 'SUCCESS' in tested.stdout, tested.stdout + tested.stderr


def test_the_figures_rules_are_the_ones_their_table_makes():
    from mlfin.monitor.alerting import RULE_FILES
    from mlfin.monitor.figures import rules_text
    assert RULE_FILES == FILES
    assert (RULES/'figures.yml').read_text() == rules_text(), "env/monitoring/figures.yml differs from mlfin.monitor.figures: run `make export`"


def test_every_rule_has_a_firing_a_quiet_and_a_target_gone_case():
    rules = [r['alert'] for f in FILES for g in yaml.safe_load((RULES/f).read_text())['groups'] for r in g['rules'] if 'alert' in r]
    tests = [t for f in TESTS for t in yaml.safe_load((RULES/f).read_text())['tests']]
    cases = [c for t in tests for c in t['alert_rule_test']]
    gone = {c['alertname'] for t in tests if 'target gone' in t['name'] for c in t['alert_rule_test']}
    fires = {c['alertname'] for c in cases if c.get('exp_alerts')}
    quiet = {c['alertname'] for c in cases if not c.get('exp_alerts')}
    series = {c['alertname']: t for t in tests for c in t['alert_rule_test']}
    # quiet beside firing: a second series in the same test that the expected alerts do not name
    beside = {name for name, t in series.items() if len(t['input_series']) > 1}
    assert sorted(rules) == sorted(set(rules)) and len(rules) >= 12
    assert set(rules) <= fires, set(rules) - fires
    assert set(rules) - {'MlfinDeadMansSwitch'} <= quiet | beside, set(rules) - quiet - beside   # the switch is meant to fire always
    assert set(rules) - {'MlfinDeadMansSwitch'} <= gone, set(rules) - gone - {'MlfinDeadMansSwitch'}


# --- end to end: a real Prometheus scraping a real `mlfin serve`, a real Alertmanager delivering to a webhook and by e-mail ---

import signal, threading, time
import numpy as np, pandas as pd
import pytest
from conftest import free_port, market_data, mlfin, service


def continued(bars: pd.DataFrame, segment: pd.DataFrame, start: pd.Timestamp, scale: float = 1.0, trend: float = 0.0) -> pd.DataFrame:
    """`segment`'s bars as the continuation of `bars` from minute `start`: its moves (times `scale`, plus `trend` a minute)
    from the last close, its ranges alike; scale 1 and trend 0 are an unchanged copy of past bars"""
    seg = segment.copy()
    moves = np.log(seg['close']).diff().fillna(0.0) * scale + trend
    close = bars['close'].iloc[-1] * np.exp(moves.cumsum())
    for c in ('open', 'high', 'low'): seg[c] = close + (seg[c] - seg['close']) * scale * close / seg['close']
    seg['close'] = close
    seg['high'], seg['low'] = seg[['open', 'high', 'close']].max(axis=1), seg[['open', 'low', 'close']].min(axis=1)
    seg.index = pd.date_range(start, periods=len(seg), freq='min', tz='UTC')
    return seg


def firing(notifications: list[dict]) -> set[tuple]:
    "(alert, name or symbol) of every firing alert notified"
    return {(a['labels']['alertname'], a['labels'].get('name') or a['labels'].get('symbol', '')) for n in notifications
            for a in n['alerts'] if a['status'] == 'firing'}


@pytest.mark.waits   # Prometheus's and Alertmanager's rounds and the drift's `for:` on the wall clock
@pytest.mark.timeout(900)
def test_a_planted_drift_and_a_stopped_collector_reach_the_webhook_and_the_mailbox_an_unchanged_copy_nothing(tmp_path, webhook):
    """ESA and ESB: models of real E-mini minute bars (retimed to end 4.5 hours ago), in production. Then collectors push, through
    the service, 270 more bars of each: ESA's an unchanged copy of its past bars (and it keeps pushing each minute), ESB's the same
    bars with moves tripled and a trend. ESC's collector stopped 11 minutes ago. `mlfin monitor` runs; Prometheus scrapes the
    service with a scraper key as bearer and evaluates the shipped rules (their `for:` shortened to 2 s: promtool tests the real
    ones); Alertmanager delivers to a webhook and to an SMTP server, both in this test. ESB's drift, ESC's staleness and ESC asked
    for without a production model arrive by both; nothing names ESA."""
    from aiosmtpd.controller import Controller
    from mlfin.data import load_sample
    from mlfin.monitor.alerting import rules_files, start_monitoring
    home, es = tmp_path/'home', load_sample('ES')
    now = pd.Timestamp.now(tz='UTC').floor('min')
    start = now - pd.Timedelta(minutes=271) - pd.Timedelta(minutes=len(es) - 1)   # the training bars end at now - 271 min
    past = es.set_axis(pd.date_range(start, periods=len(es), freq='min', tz='UTC'))
    for symbol in ('ESA', 'ESB', 'ESC'):
        past.rename_axis('ts').reset_index().to_csv(tmp_path/f"{symbol}.csv", index=False)
        mlfin(home, 'ingest', str(tmp_path/f"{symbol}.csv"), '--symbol', symbol, '--timeframe', '1m', '--calendar', '24/7')
    mlfin(home, 'run', '--symbols', 'ESA:1m,ESB:1m', '--models', 'logistic', '--folds', '3', '--promote-min-auc', '0',
          '--promote-min-sharpe', '-100', '--reports', str(home/'reports'))
    for series in ('ESA:1m', 'ESB:1m'): mlfin(home, 'models', 'promote', series, '--reason', 'the alerting test watches it')
    first = past.index[-1] + pd.Timedelta(minutes=1)
    copy = continued(past, es.iloc[900:1500], first)                       # unchanged: bars it has seen, one after another
    shifted = continued(past, es.iloc[900:1170], first, scale=3, trend=3e-4)
    stopped = continued(past, es.iloc[900:1160], first)                    # its collector stopped at now - 11 min
    hook_url, notified = webhook
    mails = []
    class Mailbox:
        async def handle_DATA(self, server, session, envelope):
            mails.append(envelope.content.decode(errors='replace')); return '250 OK'
    smtp = Controller(Mailbox(), hostname='127.0.0.1', port=free_port()); smtp.start()
    fast = [tmp_path/p.name for p in rules_files()]   # the shipped rules, each `for:` 2 s
    for shipped, quick in zip(rules_files(), fast):
        quick.write_text(shipped.read_text().replace('for: 2m', 'for: 2s').replace('for: 5m', 'for: 2s').replace('for: 10m', 'for: 2s').replace('for: 30s', 'for: 2s'))
    pushing, stack = threading.Event(), None
    with service(home, '--no-jobs') as svc:
        try:
            collector = svc.client(svc.key('collector'))
            def push(symbol, bars):
                answer = collector.post('/ingest', json={'symbol': symbol, 'timeframe': '1m', 'candles': market_data(bars)})
                assert answer.status_code == 200, answer.text
            push('ESA', copy[copy.index < now]); push('ESB', shifted); push('ESC', stopped)
            def keep_pushing():   # ESA's collector goes on: each minute's bar once it has closed
                sent = now
                while not pushing.wait(2):
                    closed = pd.Timestamp.now(tz='UTC').floor('min')
                    if closed > sent: push('ESA', copy[(copy.index >= sent) & (copy.index < closed)]); sent = closed
            pusher = threading.Thread(target=keep_pushing, daemon=True); pusher.start()
            watched = mlfin(home, 'monitor', '--window', '250').stdout
            assert 'mlfin.ESB.1m v' in watched and 'mlfin.ESA.1m v' in watched, watched
            stack = start_monitoring(tmp_path/'monitoring', f"127.0.0.1:{svc.port}", svc.key('scraper'), rules=fast,
                                     webhook=hook_url, smtp=f"127.0.0.1:{smtp.port}", email_to='ops@example.org',
                                     prometheus_port=free_port(), alertmanager_port=free_port(), every='1s',
                                     timing={'wait': '1s', 'interval': '1s', 'repeat': '1h'})
            unserved = svc.client(svc.key('read_only')).get('/predict', params={'symbol': 'ESC', 'timeframe': '1m'})
            assert unserved.status_code == 404, unserved.text   # a stored series without a production model, asked for while watched
            wanted = {('MlfinInputsDrifted', 'mlfin.ESB.1m'), ('MlfinSeriesStale', 'ESC'), ('MlfinNoProductionModel', 'ESC')}
            deadline = time.time() + 180
            while time.time() < deadline and not (wanted <= firing(notified) and all(any(a in m for m in mails) for a, _ in wanted)):
                time.sleep(1)
            # anything else that was going to fire has had its chance: every rule evaluated again 5 s after now (each `for:` is 2 s here),
            # however slowly this machine's Prometheus goes round
            seen, deadline = pd.Timestamp.now(tz='UTC') + pd.Timedelta(seconds=5), time.time() + 180
            while time.time() < deadline and not all(pd.Timestamp(r['lastEvaluation']) > seen for r in stack.rules()): time.sleep(1)
            assert all(pd.Timestamp(r['lastEvaluation']) > seen for r in stack.rules()), stack.rules()
            time.sleep(3)   # and Alertmanager's group wait (1 s) and interval (1 s) for what they would have sent
            assert [(r['name'], a['labels']) for r in stack.rules() for a in r.get('alerts', []) if 'ESA' in str(a['labels'])] == []
            got = firing(notified)
            assert wanted <= got, (got, watched, stack.rules())
            assert [a for a, _ in wanted if not any(a in m and 'ops@example.org' in m for m in mails)] == [], mails[:2]
            assert [g for g in got if 'ESA' in g[1]] == [], (got, watched)   # the unchanged copy fires nothing
            assert ('MlfinDeadMansSwitch', '') in got   # the path itself is up
            assert svc.errors() == ''
            # the service killed while they fire: MlfinServiceDown is sent, and none of them is resolved (held by their rules,
            # inhibited by Alertmanager while the service is down)
            pushing.set(); pusher.join(120)   # ESA's collector stops first (a push under way finished): its pushes would fail
            assert not pusher.is_alive()
            killed_at = len(notified)
            svc.stop(signal.SIGKILL)
            deadline = time.time() + 180
            while time.time() < deadline and ('MlfinServiceDown', '') not in firing(notified[killed_at:]): time.sleep(1)
            assert ('MlfinServiceDown', '') in firing(notified[killed_at:]), (notified[killed_at:], stack.rules())
            time.sleep(10)   # any resolution the kill would cause has had its chance
            resolved = {(a['labels']['alertname'], a['labels'].get('name') or a['labels'].get('symbol', '')) for n in notified[killed_at:]
                        for a in n['alerts'] if a['status'] == 'resolved'}
            assert resolved & wanted == set(), resolved
            held = {(a['labels']['alertname'], a['labels'].get('name') or a['labels'].get('symbol', '')): a['status'] for a in stack.alerts()}
            for alert in wanted - {('MlfinNoProductionModel', 'ESC')}:   # a request rate's alert lapses with its rate: ServiceDown stands in
                assert held.get(alert, {}).get('state') == 'suppressed' and held[alert]['inhibitedBy'], (alert, held.get(alert))
            assert {r['name']: r['state'] for r in stack.rules()}['MlfinInputsDrifted'] == 'firing'
        finally:
            pushing.set()
            if stack is not None: stack.stop()
            smtp.stop()


@pytest.mark.waits   # three minutes of a stopped collector, on the wall clock
@pytest.mark.timeout(900)
def test_a_minute_collector_that_stops_pages_within_three_minutes_of_its_last_push(tmp_path, webhook):
    """Issue 34: a collector pushes ESD's minute candles as MetaTrader does (the current candle again and again while it forms),
    then stops in the middle of a minute. The shipped rules as they are (no `for:` shortened), scraped and evaluated every 15 s as
    `mlfin monitoring` does: while it pushes, the series is fresh; MlfinSeriesStale fires within 3 minutes of its last push
    (the half candle is no closed bar: counted as one, the series would be due a minute later) and reaches the webhook"""
    from mlfin.data import load_sample
    from mlfin.monitor.alerting import start_monitoring
    home, es = tmp_path/'home', load_sample('ES')
    now = pd.Timestamp.now(tz='UTC').floor('min')
    past = es.iloc[:600].set_axis(pd.date_range(now - pd.Timedelta(minutes=600), periods=600, freq='min', tz='UTC'))
    past.rename_axis('ts').reset_index().to_csv(tmp_path/'ESD.csv', index=False)
    mlfin(home, 'ingest', str(tmp_path/'ESD.csv'), '--symbol', 'ESD', '--timeframe', '1m', '--calendar', '24/7')
    live = continued(past, es.iloc[600:700], now)
    hook_url, notified = webhook
    stack = None
    with service(home, '--no-jobs') as svc:
        try:
            collector, scraper = svc.client(svc.key('collector')), svc.client(token=svc.key('scraper'))
            stack = start_monitoring(tmp_path/'monitoring', f"127.0.0.1:{svc.port}", svc.key('scraper'), webhook=hook_url,
                                     prometheus_port=free_port(), alertmanager_port=free_port(), every='15s',
                                     timing={'wait': '1s', 'interval': '1s', 'repeat': '1h'})
            def push():   # the closed bars since the last push and the current candle, still forming
                at = pd.Timestamp.now(tz='UTC')
                bars = live[live.index <= at.floor('min')]
                answer = collector.post('/ingest', json={'symbol': 'ESD', 'timeframe': '1m', 'candles': market_data(bars.iloc[-3:])})
                assert answer.status_code == 200, answer.text
                return at
            began = push()
            while pd.Timestamp.now(tz='UTC').second < 30 or time.time() - began.timestamp() < 20: push(); time.sleep(2)   # stops mid-minute
            overdue = [l for l in scraper.get('/metrics').text.splitlines() if l.startswith('mlfin_series_overdue_seconds{symbol="ESD"')]
            assert overdue == ['mlfin_series_overdue_seconds{symbol="ESD",timeframe="1m"} 0.0'], overdue   # fresh while it pushes
            stopped, fired = time.time(), None
            while time.time() - stopped < 240 and fired is None:
                if any(r['name'] == 'MlfinSeriesStale' and r['state'] == 'firing' for r in stack.rules()): fired = time.time()
                time.sleep(1)
            assert fired is not None and fired - stopped <= 180, (fired and fired - stopped, stack.rules())
            print(f"MlfinSeriesStale fired {fired - stopped:.0f} s after the collector's last push (target: 180 s)")
            deadline = time.time() + 30
            while time.time() < deadline and ('MlfinSeriesStale', 'ESD') not in firing(notified): time.sleep(1)
            assert ('MlfinSeriesStale', 'ESD') in firing(notified), notified
            assert svc.errors() == ''
        finally:
            if stack is not None: stack.stop()
