"""Health with a history and the daily report (issue 20), from a real service: a check failing three rounds alerts through a real Alertmanager; the report arrives by e-mail.
Issue 54: a series no model serves is history, never a failure; a backup that failed on a full repository disk (a tmpfs in a mount namespace) fails
the very next round with its own line, beside the repository's disk; a record dated ahead of the clock is flagged, and the backup page names its repository"""
import html, json, os, shutil, subprocess, time
from pathlib import Path
import pandas as pd, pytest
from conftest import MLFIN, ROOT, alertmanager, free_port, mlfin, service

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(not (shutil.which('prometheus-alertmanager') and shutil.which('restic')), reason="installed by env/setup-test.sh")]


def test_health_history_alerts_after_three_failures_and_the_daily_report_is_mailed(served_home, tmp_path, monkeypatch, webhook):
    from aiosmtpd.controller import Controller
    home = served_home
    hook_url, notifications = webhook
    class Mailbox:
        def __init__(self): self.messages = []
        async def handle_DATA(self, server, session, envelope):
            self.messages.append((envelope.rcpt_tos, envelope.content.decode('utf8', 'replace'))); return '250 OK'
    with alertmanager(tmp_path, hook_url) as am_url:   # a real Alertmanager delivering to a webhook in the test
        box = Mailbox(); smtp = Controller(box, hostname='127.0.0.1', port=free_port()); smtp.start()
        try:
            with service(home, '--no-jobs') as svc:
                monkeypatch.setenv('MLFIN_SERVICE_URL', svc.url)
                monkeypatch.setenv('MLFIN_SERVICE_KEY', svc.key('read_only'))
                monkeypatch.setenv('MLFIN_ALERTMANAGER_URL', am_url)
                repo = tmp_path/'repo'
                monkeypatch.setenv('MLFIN_BACKUP_REPO', str(repo))
                monkeypatch.setenv('MLFIN_BACKUP_PASSWORD_FILE', str(tmp_path/'password'))
                mlfin(home, 'backup', 'init')   # the repository made on purpose
                assert mlfin(home, 'scheduled', 'backup').returncode == 0
                assert mlfin(home, 'scheduled', 'monitor').returncode == 0
                from mlfin import data
                from mlfin.ops.records import run_ended, run_started, runs
                from mlfin.ops.repository import RESTORED, repository
                data.ingest('sample:AAPL', store=str(home/'store'))   # a series no model serves, no collector pushes, no one marked live: history
                # a restore drill keeps the snapshot it restored from by tagging it, as `mlfin restore` does: restic writes it anew, under a new id
                snapshot = runs('backup', 1, at=home)['summary'].iloc[0]['snapshot']
                repository(str(repo)).restic('tag', '--add', RESTORED, snapshot)
                assert snapshot not in set(repository(str(repo)).snapshots()['id'])
                up = mlfin(home, 'health', check=False)
                assert 'ok    service ' in up.stdout and f"{svc.url}/health and /ready ok" in up.stdout, up.stdout
                assert 'ok    backup ' in up.stdout and 'ok    registry ' in up.stdout, up.stdout   # the drill left the backup check green
                lines = {l[6:29].strip(): l for l in up.stdout.splitlines()}
                assert lines['series AAPL:1d'].startswith('ok') and 'history: last bar 2013-' in lines['series AAPL:1d'], up.stdout
                assert lines['series SPX:1d'].startswith('FAIL') and 'expected live: production model mlfin.SPX.1d' in lines['series SPX:1d'], up.stdout
                assert lines['disk repository'].startswith('ok') and lines['disk repository'].endswith(f" at {repo}"), up.stdout
                assert lines['disk store'].endswith(f" at {home/'store'}") and lines['disk home'].endswith(f" at {home}"), up.stdout
            # the service stopped, and the repository's disk full (a tmpfs over it in a mount namespace of its own, holding a copy, filled):
            # the backup fails, and the very next round says so with restic's own line, beside the repository's disk; the real repository is untouched
            shutil.copytree(repo, tmp_path/'repo-copy')
            full = subprocess.run(['unshare', '--mount', '--propagation', 'private', 'sh', '-c',
                                   'mount -t tmpfs -o size=16m tmpfs "$1" && cp -a "$2"/. "$1"/ && { head -c 16M /dev/zero > "$1"/fill 2>/dev/null; '
                                   '"$3" scheduled backup; echo "=== health"; exec "$3" health; }', 'sh', str(repo), str(tmp_path/'repo-copy'), MLFIN],
                                  cwd=ROOT, env={**os.environ, 'MLFIN_HOME': str(home), 'PLOOMBER_STATS_ENABLED': 'false'}, capture_output=True, text=True, timeout=600)
            failed, said = full.stdout.split('=== health')
            assert 'mlfin: backup: failed: ' in failed + full.stderr and full.returncode == 1, (full.stdout, full.stderr[-3000:])
            lines = {l[6:29].strip(): l for l in said.splitlines()}
            assert lines['disk repository'].startswith('FAIL') and f"(0%) at {repo}; below the 10% and 1.0 GiB kept free" in lines['disk repository'], said
            error = runs('backup', 1, at=home)['error'].iloc[0]   # restic's own line, as the failed backup recorded it
            assert error.startswith('restic ') and f" on {repo}: " in error and lines['backup'].startswith('FAIL'), (error, said)
            assert f"the last backup on {repo} failed, " in lines['backup'] and f" min ago: {error}; the last that succeeded: snapshot " in lines['backup'], said
            assert lines['disk home'].startswith('ok') and lines['series AAPL:1d'].startswith('ok'), said
            rounds = [subprocess.CompletedProcess(full.args, full.returncode, said, full.stderr)]   # the first of three rounds with the service down
            # a backup recorded under a clock two days ahead: flagged, never "ok ... -2,879 min ago"
            ahead = (pd.Timestamp.now(tz='UTC') + pd.Timedelta(days=2)).isoformat()
            record = run_started('backup', home, when=ahead)
            run_ended(record, 'succeeded', 0, summary={'snapshot': '155e3a4a', 'repository': str(repo)}, at=home, when=ahead)
            rounds += [mlfin(home, 'health', check=False) for _ in range(2)]
            assert all(r.returncode == 1 and 'FAIL  service ' in r.stdout for r in rounds), rounds[-1].stdout
            alerted = [next((l.removeprefix('mlfin: alert sent for ').split(', ') for l in r.stderr.splitlines() if l.startswith('mlfin: alert sent for ')), []) for r in rounds]
            assert 'service' in alerted[2] and 'service' not in alerted[1], alerted   # the third failure in a row, not before
            assert 'series SPX:1d' in alerted[1]   # served by a production model and stale by its calendar: failing since the first round
            assert 'backup' in alerted[2] and 'backup' not in alerted[1], alerted   # failing since the round right after the failed backup
            assert not any('series AAPL:1d' in a for a in alerted), alerted   # history never pages
            backup_line = next(l for l in rounds[-1].stdout.splitlines() if l[6:29].strip() == 'backup')
            assert backup_line.startswith('FAIL') and f"backup #{record} is dated {ahead[:10]}" in backup_line and 'ahead of this clock' in backup_line, backup_line
            deadline = time.time() + 60
            while time.time() < deadline and not {'service', 'backup'} <= {a['labels'].get('check') for n in notifications for a in n['alerts']}: time.sleep(0.5)   # each check is its own group: notified apart
            alerts = [a for n in notifications for a in n['alerts'] if a['labels'].get('alertname') == 'MlfinHealthCheckFailing' and a['labels']['check'] == 'service']
            assert alerts and alerts[0]['status'] == 'firing', notifications
            assert 'ConnectError' in alerts[0]['annotations']['summary'] and '(3 checks in a row)' in alerts[0]['annotations']['summary']
            paged = {a['labels']['check']: a['labels'] for n in notifications for a in n['alerts'] if a['labels'].get('alertname') == 'MlfinHealthCheckFailing'}
            assert paged['backup']['repository'] == str(repo) and 'series AAPL:1d' not in paged, paged   # the page names its repository
            history = mlfin(home, 'health', '--history').stdout
            row = next(l for l in history.splitlines() if l.strip().startswith('service ')).split()
            assert (row[1], row[2], row[6]) == ('4', '3', '3'), history   # 4 rounds, 3 failures, 3 in a row (after rounds, failures and 3 timings)
            # the daily report, mailed
            made = mlfin(home, 'report', '--smtp', f"127.0.0.1:{smtp.port}", '--to', 'ops@example.org')
            assert 'mailed to ops@example.org' in made.stdout, made.stdout
            (to, message), = box.messages
            assert to == ['ops@example.org'] and 'Subject: mlfin daily report' in message
            page = Path(made.stdout.split()[0]).read_text()
            verdict = html.unescape(page.split("<p class='verdict'>")[1].split('</p>')[0])
            assert verdict.startswith('4 check(s) failing (service, backup, series ES:1m, series SPX:1d); 1 scheduled run(s) failed in the last day.'), verdict
            assert f"1 record(s) dated ahead of this clock: backup #{record} is dated {ahead[:10]}" in verdict, verdict   # history is not counted; the clock's mistake is named
            for expected in ('mlfin.SPX.1d', 'mlfin.ES.1m', 'snapshot', 'ConnectError', 'monitor', 'backup', 'history: last bar 2013-'):
                assert expected in page, expected
            figures = json.loads(Path(made.stdout.split()[0]).with_suffix('.json').read_text())
            assert {r['job'] for r in figures['runs']} == {'backup', 'monitor'} and sorted(r['status'] for r in figures['runs']) == ['failed', 'succeeded', 'succeeded', 'succeeded']
            assert figures['backups'][0]['snapshot'] and 'service' in {f['check'] for f in figures['health_failures']}
            assert set(figures['production']) == {'mlfin.SPX.1d', 'mlfin.ES.1m'}
            # backups go to another repository, whose last backup is good: its round resolves only its own page, never the first repository's
            other = tmp_path/'other-repo'; other.mkdir()
            record = run_started('backup', home)
            run_ended(record, 'succeeded', 0, summary={'snapshot': '0a0b0c0d', 'repository': str(other)}, at=home)   # a record naming no home: not asked of restic
            passing = mlfin(home, 'health', check=False, env={'MLFIN_BACKUP_REPO': str(other)})
            assert any(l.startswith('ok') and l[6:29].strip() == 'backup' and f"on {other} " in l for l in passing.stdout.splitlines()), passing.stdout
            import httpx
            firing = httpx.get(f"{am_url}/api/v2/alerts", params={'filter': 'alertname="MlfinHealthCheckFailing"'}, timeout=10).json()
            still = [a for a in firing if a['labels'].get('check') == 'backup']
            assert [(a['labels']['repository'], a['status']['state']) for a in still] == [(str(repo), 'active')], still
        finally: smtp.stop()
