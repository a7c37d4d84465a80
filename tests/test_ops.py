"Health with a history and the daily report (issue 20), from a real service: a check failing three rounds alerts through a real Alertmanager; the report arrives by e-mail"
import json, shutil, subprocess, time
from pathlib import Path
import pytest, yaml
from conftest import free_port, mlfin, service

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(not (shutil.which('prometheus-alertmanager') and shutil.which('restic')), reason="installed by env/setup-test.sh")]


def test_health_history_alerts_after_three_failures_and_the_daily_report_is_mailed(served_home, tmp_path, monkeypatch, webhook):
    from aiosmtpd.controller import Controller
    from mlfin.monitor.alerting import alertmanager_config
    home = served_home
    # a real Alertmanager delivering to a webhook in the test
    hook_url, notifications = webhook
    am_port = free_port()
    (tmp_path/'am.yml').write_text(yaml.safe_dump(alertmanager_config(hook_url, wait='1s', interval='1s', repeat='1h')))
    am = subprocess.Popen(['prometheus-alertmanager', f"--config.file={tmp_path/'am.yml'}", f"--storage.path={tmp_path/'am-data'}",
                           f"--web.listen-address=127.0.0.1:{am_port}", '--cluster.listen-address=', '--log.level=warn'],
                          stdout=open(tmp_path/'am.log', 'ab'), stderr=subprocess.STDOUT)
    class Mailbox:
        def __init__(self): self.messages = []
        async def handle_DATA(self, server, session, envelope):
            self.messages.append((envelope.rcpt_tos, envelope.content.decode('utf8', 'replace'))); return '250 OK'
    box = Mailbox(); smtp = Controller(box, hostname='127.0.0.1', port=free_port()); smtp.start()
    try:
        with service(home, '--no-jobs') as svc:
            monkeypatch.setenv('MLFIN_SERVICE_URL', svc.url)
            monkeypatch.setenv('MLFIN_SERVICE_KEY', svc.key('read_only'))
            monkeypatch.setenv('MLFIN_ALERTMANAGER_URL', f"http://127.0.0.1:{am_port}")
            monkeypatch.setenv('MLFIN_BACKUP_REPO', str(tmp_path/'repo'))
            monkeypatch.setenv('MLFIN_BACKUP_PASSWORD_FILE', str(tmp_path/'password'))
            assert mlfin(home, 'scheduled', 'backup').returncode == 0
            assert mlfin(home, 'scheduled', 'monitor').returncode == 0
            up = mlfin(home, 'health', check=False)
            assert 'ok    service ' in up.stdout and f"{svc.url}/health and /ready ok" in up.stdout, up.stdout
            assert 'ok    backup ' in up.stdout and 'ok    registry ' in up.stdout, up.stdout
        # the service stopped: three rounds in a row find it down; the third alerts
        rounds = [mlfin(home, 'health', check=False) for _ in range(3)]
        assert all(r.returncode == 1 and 'FAIL  service ' in r.stdout for r in rounds), rounds[-1].stdout
        alerted = [r.stderr.strip().removeprefix('mlfin: alert sent for ').split(', ') for r in rounds]
        assert 'service' in alerted[2] and 'service' not in alerted[1], alerted   # the third failure in a row, not before
        assert 'series SPX:1d' in alerted[1]   # the samples' series are stale by their calendars: failing since the first round
        deadline = time.time() + 60
        while time.time() < deadline and not any(a['labels'].get('check') == 'service' for n in notifications for a in n['alerts']): time.sleep(0.5)
        alerts = [a for n in notifications for a in n['alerts'] if a['labels'].get('alertname') == 'MlfinHealthCheckFailing' and a['labels']['check'] == 'service']
        assert alerts and alerts[0]['status'] == 'firing', notifications
        assert 'ConnectError' in alerts[0]['annotations']['summary'] and '(3 checks in a row)' in alerts[0]['annotations']['summary']
        history = mlfin(home, 'health', '--history').stdout
        row = next(l for l in history.splitlines() if l.strip().startswith('service ')).split()
        assert (row[1], row[2], row[6]) == ('4', '3', '3'), history   # 4 rounds, 3 failures, 3 in a row (after rounds, failures and 3 timings)
        # the daily report, mailed
        made = mlfin(home, 'report', '--smtp', f"127.0.0.1:{smtp.port}", '--to', 'ops@example.org')
        assert 'mailed to ops@example.org' in made.stdout, made.stdout
        (to, message), = box.messages
        assert to == ['ops@example.org'] and 'Subject: mlfin daily report' in message
        page = Path(made.stdout.split()[0]).read_text()
        for expected in ('3 check(s) failing (service, series ES:1m, series SPX:1d)', 'mlfin.SPX.1d', 'mlfin.ES.1m', 'snapshot', 'ConnectError', 'monitor', 'backup'):
            assert expected in page, expected
        figures = json.loads(Path(made.stdout.split()[0]).with_suffix('.json').read_text())
        assert {r['job'] for r in figures['runs']} == {'backup', 'monitor'} and all(r['status'] == 'succeeded' for r in figures['runs'])
        assert figures['backups'][0]['snapshot'] and 'service' in {f['check'] for f in figures['health_failures']}
        assert set(figures['production']) == {'mlfin.SPX.1d', 'mlfin.ES.1m'}
    finally:
        smtp.stop(); am.terminate(); am.wait(30)
