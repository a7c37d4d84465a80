"""Backup and restore (issue 20): the restore drill on a served home while a collector pushes, a killed backup, a damaged repository, retention by calendar.
Issue 54: a backup counts only once read back (the repository moved away while restic wrote), a repository is made only on purpose (missing, or
another at its path, is refused and pages, per repository), `restore` takes the last snapshot by the repository's order (one made under a clock
a year ahead is not it), restic's error line is what the operator reads, a drill's tag leaves the snapshot held"""
import datetime as dt, json, os, shutil, signal, subprocess, threading, time
from pathlib import Path
import httpx, pandas as pd, pytest
from conftest import ES, MLFIN, ROOT, RUN, alertmanager, mlfin, new_database, service

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(not shutil.which('restic'), reason="restic is installed by env/setup-test.sh")]
SERIES = (('SPX', '1d'), ('ES', '1m'))


@pytest.fixture
def password(tmp_path, monkeypatch):
    "The repository's password file, outside every home (as ~/.config/mlfin/backup-password is)"
    monkeypatch.setenv('MLFIN_BACKUP_PASSWORD_FILE', str(tmp_path/'backup-password'))
    return tmp_path/'backup-password'


def served(svc, key: str) -> dict:
    "What a reader is served now: each production model's prediction (its computing time aside) and the signals history"
    with svc.client(key) as c:
        out = {}
        for symbol, timeframe in SERIES:
            p = c.get('/predict', params={'symbol': symbol, 'timeframe': timeframe}); assert p.status_code == 200, p.text
            out[f'{symbol}:{timeframe}'] = {k: v for k, v in p.json().items() if k != 'computed_at'}
        out['history'] = c.get('/signals/history', params={'symbol': 'SPX', 'timeframe': '1d', 'start': '2000-01-01', 'limit': 100000}).json()
    return out


class Collector(threading.Thread):
    """A MetaTrader-style collector pushing real E-mini minute bars (retimed a week on, a new series) one a request, ten a
    second (half the service's default limit of 1200 a minute), waiting as told on a 429; each acknowledged bar noted with
    when; any other answer ends it and is kept in `failed`, which the test reads"""
    def __init__(self, svc, key: str):
        super().__init__(daemon=True)
        self.client, self.stop, self.acked, self.failed = svc.client(key), threading.Event(), [], None
        self.bars = ES.iloc[:1500].set_axis(ES.index[:1500] + pd.Timedelta(days=7))
    def run(self):
        for ts, r in zip(self.bars.index, self.bars.itertuples()):
            candle = {'ts': ts.isoformat(), 'open': r.open, 'high': r.high, 'low': r.low, 'close': r.close, 'volume': r.volume}
            while not self.stop.wait(0.1):
                answer = self.client.post('/ingest', json={'symbol': 'ESC', 'timeframe': '1m', 'candles': [candle]})
                if answer.status_code == 200: self.acked.append((ts, time.time())); break
                if answer.status_code != 429: self.failed = f"{answer.status_code} {answer.text}"; return
                self.stop.wait(float(answer.headers['Retry-After']))
            if self.stop.is_set(): return


def drill(served_home: Path, tmp_path: Path, store: str | None = None, restore_into: str | None = None, products: bool = False, ahead: bool = False):
    """A served home backed up while a collector pushes (`products`: its run's products too), the home deleted, restored into an empty folder: the same
    service answers. `ahead`: a backup made before it under a clock a year ahead (restic's --time), which the restore of the latest does not take"""
    home, repo = served_home, str(tmp_path/'repo')
    mlfin(home, 'backup', 'init', '--repo', repo)   # made on purpose: a backup never makes one
    if ahead:
        from mlfin.ops.backup import backup
        from mlfin.ops.restore import in_home
        with in_home(home): future = backup(repo, store, taken=dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=365)).snapshot
    if store:
        from mlfin import data
        data.ingest('sample:SPX', store=store)
        data.ingest(ES, 'ES', '1m', calendar='CMES', store=store)
    from arch.data import core_cpi
    from mlfin.data.observations import observations_frame
    from mlfin.data.stores import open_store
    cpi = core_cpi.load()['CPILFESL']   # a non-bar series (issue 55), real core CPI with its release rule: backed up and restored with the bars
    open_store(store or home/'store').write_observations(observations_frame(cpi.index, cpi.to_numpy(), rule='day 15 of next month 08:30 America/New_York',
                                                                            frequency='M', name='cpi_core', source='FRED CPILFESL (arch.data)'))
    observed = open_store(store or home/'store').read_observations('cpi_core')
    with service(home, '--no-jobs', store=store) as svc:
        reader = svc.key('read_only')
        with svc.client(reader) as c: assert c.get('/signals', params={'symbol': 'SPX', 'timeframe': '1d'}).status_code == 200   # a signal served and kept
        before = served(svc, reader)
        collector = Collector(svc, svc.key('collector')); collector.start()
        while len(collector.acked) < 30 and collector.is_alive(): time.sleep(0.05)
        assert len(collector.acked) >= 30, collector.failed
        began = time.time()
        made = mlfin(home, 'backup', '--repo', repo, *(['--store', store] if store else []), *(['--products'] if products else []))
        ended = time.time()
        collector.stop.set(); collector.join(60)
        assert collector.failed is None, collector.failed
        assert any(began < at < ended for _, at in collector.acked), "the collector pushed nothing while the backup ran"
        wanted = {ts for ts, at in collector.acked if at < began}
        assert 'snapshot ' in made.stdout and '2 production model(s) fingerprinted' in made.stdout, made.stdout
        taken = made.stdout.split()[1]
        records = {what: mlfin(home, *what.split()).stdout for what in ('runs', 'models ls')}
    shutil.rmtree(home)   # the disk is lost
    restored = tmp_path/'restored'
    done = mlfin(tmp_path, 'restore', str(restored), '--repo', repo, *(['--store', restore_into] if restore_into else []))
    assert done.stdout.count(': identical') == 2, done.stdout   # each production model's fingerprint reproduced
    assert done.stdout.startswith(f"restored snapshot {taken} into "), done.stdout   # the last taken, whatever the dates say
    if ahead:
        assert done.stderr.startswith(f"mlfin: warning: snapshot {future} is dated {dt.date.today().year + 1}-") and f", after {taken} (" in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    with service(restored, '--no-jobs', store=restore_into) as svc:
        assert served(svc, reader) == before   # the old key works, the same predictions, the same signals
        assert svc.errors() == ''
    assert {what: mlfin(restored, *what.split()).stdout for what in records} == records   # run history and registry
    if not products:   # the run is in MLflow though its products were not backed up: health says so, and passes
        checked = mlfin(restored, 'health', '--service-url', 'http://127.0.0.1:9', check=False).stdout
        line = next(l for l in checked.splitlines() if ' last run ' in l)
        assert line.startswith('ok') and 'MLflow run ' in line and 'restored without --products' in line, line
    from mlfin import data
    held = set(data.load('ESC', '1m', store=restore_into or str(restored/'store')).index)
    assert wanted and wanted <= held, sorted(wanted - held)[:5]   # every bar acknowledged before the backup began
    back = data.open_store(restore_into or restored/'store').read_observations('cpi_core')
    pd.testing.assert_frame_equal(back, observed); assert back.attrs == observed.attrs   # every row and its record
    assert json.loads((restored/'.backup'/'restored'/'MANIFEST.json').read_text())['store']['observations'] == {'cpi_core': 743}   # what the restore checked
    assert '  cpi_core: 743 rows' in done.stdout, done.stdout   # and said
    return restored, repo


def test_a_served_home_backed_up_while_a_collector_pushes_is_restored_whole(served_home, tmp_path, password):
    restored, repo = drill(served_home, tmp_path, products=True, ahead=True)
    again = mlfin(restored, 'run', *RUN, '--reports', str(tmp_path/'published'))   # its run's products restored with it: nothing reruns
    assert '0 task(s) ran (nothing changed)' in again.stdout, again.stdout
    # a restore never overwrites a home without being told
    again = mlfin(tmp_path, 'restore', str(restored), '--repo', repo, check=False)
    assert again.returncode == 2 and again.stderr.strip() == (f"mlfin: error: {restored}: not empty; restore rebuilds a home in an empty folder "
                                                             "(--force replaces what the snapshot holds there)"), again.stderr


def test_the_same_drill_on_a_postgresql_store(served_home, tmp_path, password, postgres_server):
    store = new_database(postgres_server)
    drill(served_home, tmp_path, store, restore_into=new_database(postgres_server))


def test_a_backup_killed_midway_leaves_the_previous_snapshot_restorable(served_home, tmp_path, password):
    home, repo = served_home, str(tmp_path/'repo')
    env = {**os.environ, 'MLFIN_HOME': str(home), 'PLOOMBER_STATS_ENABLED': 'false'}
    elsewhere = subprocess.run([MLFIN, 'backup', '--init', '--repo', repo], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)   # as cron runs it: not in the project
    assert elsewhere.returncode == 0, elsewhere.stdout + elsewhere.stderr
    first = elsewhere.stdout.split()[1]
    second = subprocess.Popen([MLFIN, 'backup', '--repo', repo], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              start_new_session=True)
    deadline = time.time() + 120   # killed once restic is at work (the stage written): mlfin alone, SIGKILL, no handler of ours runs
    while time.time() < deadline and not (found := subprocess.run(['pgrep', '-s', str(second.pid), 'restic'], capture_output=True).stdout): time.sleep(0.02)
    assert found, "restic never started"
    os.kill(second.pid, signal.SIGKILL); second.wait()
    assert second.returncode == -signal.SIGKILL
    deadline = time.time() + 120   # restic is told by the kernel (its parent died) and stops, removing its lock
    while time.time() < deadline and subprocess.run(['pgrep', '-s', str(second.pid), 'restic'], capture_output=True).stdout: time.sleep(0.1)
    assert not subprocess.run(['pgrep', '-s', str(second.pid), 'restic'], capture_output=True).stdout, "restic outlived mlfin backup"
    assert not any((Path(repo)/'locks').iterdir()), "restic's lock was left"
    listed = mlfin(home, 'backup', 'ls', '--repo', repo).stdout
    assert first in listed, listed
    checked = mlfin(home, 'backup', 'check', '--repo', repo, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    done = mlfin(tmp_path, 'restore', str(tmp_path/'restored'), '--repo', repo, '--snapshot', first)
    assert done.stdout.count(': identical') == 2, done.stdout
    assert sorted(p.name for p in (tmp_path/'restored'/'project').iterdir()) == ['env.yaml', 'features.yaml', 'models.yaml', 'pipeline.yaml']   # found from the home's record
    later = mlfin(home, 'backup', '--repo', repo)   # and the next backup goes on (the killed one's lock was stale)
    assert 'snapshot ' in later.stdout


def test_a_damaged_pack_is_found_by_the_daily_check_within_a_week_health_fails_and_a_restore_names_it(served_home, tmp_path, password, monkeypatch):
    """Issue 35: one flipped byte in a data pack. The structural check passes; the daily check reads a seventh of the packs in
    turn, so on exactly one day of any seven it reads the damaged one; that day's backup records the failure and health fails
    on it; a restore names the file it could not read and what to try, and places nothing"""
    import datetime as dt
    from mlfin.ops.repository import READ_EVERY, Repository, todays_share
    home, repo = served_home, tmp_path/'repo'
    mlfin(home, 'backup', '--init', '--repo', str(repo))
    packs = sorted((p for p in (repo/'data').rglob('*') if p.is_file()), key=lambda p: p.stat().st_size)
    damaged = packs[-1]   # the largest pack: bars and models
    content = bytearray(damaged.read_bytes()); content[len(content) // 2] ^= 0xFF
    damaged.chmod(0o600); damaged.write_bytes(bytes(content))
    assert mlfin(home, 'backup', 'check', '--repo', str(repo)).returncode == 0   # the structure is whole: only reading the data shows it
    repository = Repository(str(repo), password)
    week = [dt.date(2026, 11, 23) + dt.timedelta(days=k) for k in range(READ_EVERY)]
    verdicts = {day: repository.check(share=todays_share(day)) for day in week}
    failing = [day for day, (passed, _) in verdicts.items() if not passed]
    assert len(failing) == 1 and damaged.name in verdicts[failing[0]][1], {str(d): p for d, (p, _) in verdicts.items()}
    monkeypatch.setenv('MLFIN_HOME', str(home))   # that day's scheduled backup, in this process with the day handed in (the clock injected)
    from mlfin.ops.backup import backup
    from mlfin.ops.schedules import scheduled
    assert scheduled('backup', None, echo=lambda line: None, work=lambda wait: backup(str(repo), retention=True, day=failing[0]).summary()) == 0
    health = mlfin(home, 'health', '--service-url', 'http://127.0.0.1:9', check=False)
    line = next(l for l in health.stdout.splitlines() if ' backup ' in l)
    assert health.returncode == 1 and line.startswith('FAIL') and 'repository check FAILED' in line and f"packs {todays_share(failing[0])} read back" in line, line
    checked = mlfin(home, 'backup', 'check', '--repo', str(repo), '--read-data', check=False)
    assert checked.returncode == 1 and 'the repository is damaged' in checked.stderr, checked.stdout + checked.stderr
    done = mlfin(tmp_path, 'restore', str(tmp_path/'restored'), '--repo', str(repo), check=False)
    assert done.returncode == 2 and 'could not be restored, ' in done.stderr and 'file(s) unreadable: ' in done.stderr, done.stderr
    assert 'try an earlier snapshot' in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not (tmp_path/'restored').exists() or not any((tmp_path/'restored').iterdir())   # nothing placed


def firing(url: str) -> dict:
    "The MlfinScheduledRunFailed alerts Alertmanager holds active now: repository -> their summary"
    alerts = httpx.get(f"{url}/api/v2/alerts", params={'filter': 'alertname="MlfinScheduledRunFailed"', 'active': 'true'}).json()
    return {a['labels'].get('repository', ''): a['annotations']['summary'] for a in alerts if a['status']['state'] == 'active'}


@pytest.mark.skipif(not shutil.which('prometheus-alertmanager'), reason="installed by env/setup-test.sh")
def test_a_backup_counts_only_once_read_back_and_never_makes_a_repository(served_home, tmp_path, password, webhook):
    """Issue 54, items 1-3: the repository folder moved away while restic wrote (restic, holding the key, made data/, index/ and snapshots/
    anew at the old path and said done): the backup fails in one line, recorded on its repository, and pages; the next scheduled backup refuses
    that folder, and a path with no disk mounted, making nothing; a success on another repository resolves only its own alert"""
    home, hook = served_home, webhook[0]
    disk, other, unmounted = tmp_path/'disk'/'repo', tmp_path/'other'/'repo', tmp_path/'unmounted'/'repo'
    with alertmanager(tmp_path, hook) as am:
        env = {'MLFIN_ALERTMANAGER_URL': am}
        for repo in (disk, other):
            repo.parent.mkdir(); mlfin(home, 'backup', 'init', '--repo', str(repo))
        backing = subprocess.Popen([MLFIN, 'backup', '--products', '--repo', str(disk)], cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   env={**os.environ, 'MLFIN_HOME': str(home), 'PLOOMBER_STATS_ENABLED': 'false', **env}, start_new_session=True)
        deadline, restic = time.time() + 300, None   # restic's backup holding its lock (the key read): stopped there, by that event
        while time.time() < deadline and backing.poll() is None:
            found = subprocess.run(['pgrep', '-s', str(backing.pid), '-f', 'restic .*backup --json'], capture_output=True, text=True).stdout.split()
            if found and any((disk/'locks').iterdir()): restic = int(found[0]); os.kill(restic, signal.SIGSTOP); break
            time.sleep(0.01)
        assert restic, backing.communicate()
        lock = next((disk/'locks').iterdir())
        disk.rename(tmp_path/'disk'/'moved')   # the repository moves away
        (disk/'locks').mkdir(parents=True); shutil.copy(tmp_path/'disk'/'moved'/'locks'/lock.name, disk/'locks'/lock.name)   # else restic retries its unlock for 90 s
        os.kill(restic, signal.SIGCONT)
        out, err = backing.communicate(timeout=600)
        assert (disk/'snapshots').is_dir() and any((disk/'snapshots').iterdir()) and not (disk/'config').exists()   # what restic did: a snapshot nobody can read
        assert backing.returncode == 2 and out == '' and len(err.strip().splitlines()) == 1, (out, err)
        assert err.startswith("mlfin: error: snapshot ") and f" could not be read back from {disk}: unable to open config file: stat {disk}/config: no such file or directory; it is not recorded as a backup" in err, err
        from mlfin.ops.records import runs
        from mlfin.ops.restore import in_home
        with in_home(home): attempt = runs('backup', 1).iloc[0]
        assert (attempt['status'], attempt['error'], attempt['summary']) == ('failed', err.strip().removeprefix('mlfin: error: '), {'repository': str(disk)}), attempt.to_dict()
        # the next scheduled backups: that folder, and a path with no disk mounted, refused; nothing made
        refused = {}
        for repo in (disk, unmounted):
            done = mlfin(home, 'scheduled', 'backup', check=False, env={**env, 'MLFIN_BACKUP_REPO': str(repo)})
            assert done.returncode == 2, done.stdout + done.stderr
            refused[str(repo)] = done.stdout.strip().removeprefix('mlfin: backup: failed: ')
        assert refused[str(disk)].startswith(f"no backup repository at {disk} (a folder without its config: left by restic after the repository moved?); a backup never makes one: "
                                             f"`mlfin backup init --repo {disk}`"), refused
        assert refused[str(unmounted)].startswith(f"no backup repository at {unmounted}: no such folder (a backup disk not mounted?)"), refused
        assert not (disk/'config').exists() and not unmounted.parent.exists()
        done = mlfin(home, 'scheduled', 'backup', env={**env, 'MLFIN_BACKUP_REPO': str(other)})   # another repository's success
        assert 'mlfin: backup: done: ' in done.stdout, done.stdout
        pages = firing(am)
        assert pages == {str(disk): f"scheduled backup failed: {refused[str(disk)]}", str(unmounted): f"scheduled backup failed: {refused[str(unmounted)]}"}, pages
        deadline = time.time() + 30   # notified per repository: one group for each (Alertmanager's group_by names it)
        while time.time() < deadline and not {str(disk), str(unmounted)} <= {n['groupLabels'].get('repository') for n in webhook[1] if n['status'] == 'firing'}: time.sleep(0.1)
        assert {str(disk), str(unmounted)} <= {n['groupLabels'].get('repository') for n in webhook[1] if n['status'] == 'firing'}, webhook[1]


def test_retention_keeps_restore_points_thirty_daily_and_thirteen_weekly_on_a_calendar_of_snapshots(tmp_path, password):
    """Snapshots at 04:00 over 100 days (every other day, then daily; some days also at 12:00, the last two days every 15 minutes),
    one restored from long ago, and another home's: every one of the last 48 hours, the newest each of the last 30 days and
    each of the last 13 weeks, and the restored-from one stay; the other home's are not touched"""
    from mlfin.ops.repository import RESTORED, repository
    repo = repository(str(tmp_path/'repo'), making=True); repo.init()
    folder = tmp_path/'stage'; folder.mkdir(); (folder/'MANIFEST.json').write_text('{}')
    start, taken = dt.datetime(2026, 7, 1, 4, 0), []
    def snapshot(when, home='drill', *tags):
        (folder/'day.txt').write_text(f"{when}")
        repo.restic('backup', '--tag', ','.join(('mlfin', f"home:{home}", *tags)), '--host', 'drill', '--time', when.strftime('%Y-%m-%d %H:%M:%S'), '.', cwd=folder)
    for day in range(100):   # every other day until the last 35, then daily, every fifth of those also at 12:00
        recent = day >= 65
        if not recent and day % 2: continue
        for hour in ((4, 12) if recent and day % 5 == 0 else (4,)):
            taken.append(start + dt.timedelta(days=day, hours=hour - 4))
    taken += [taken[-1] - dt.timedelta(minutes=15 * k) for k in range(1, 12)]   # the last hours' restore points, every 15 minutes
    for when in sorted(taken): snapshot(when)
    restored_from = start + dt.timedelta(days=6, hours=8)   # 12:00 on day 6, restored from: in no tier
    snapshot(restored_from, 'drill', RESTORED)
    snapshot(start + dt.timedelta(days=3), 'other')          # another home's, old: its own retention's business
    plan = repo.forget('drill', dry_run=True)
    assert len(repo.snapshots()) == len(taken) + 2   # a dry run forgets nothing
    repo.forget('drill')
    left = repo.snapshots()
    kept = sorted(t.tz_convert(None).to_pydatetime() for t in left.loc[left['home'] == 'drill', 'time'])
    newest = max(taken)
    within = {t for t in taken if t > newest - dt.timedelta(days=2)}
    daily = {max(t for t in taken if t.date() == d) for d in {t.date() for t in taken if t > newest - dt.timedelta(days=30)}}   # restic: strictly within
    weekly = {max(t for t in taken if t.isocalendar()[:2] == w) for w in {t.isocalendar()[:2] for t in taken if t > newest - dt.timedelta(days=90)}}
    assert kept == sorted(within | daily | weekly | {restored_from}), (len(kept), len(within | daily | weekly))
    assert len(within) == 13   # 48 hours: the last 12 quarter-hours and the day before's
    assert len({t.date() for t in kept if t >= newest - dt.timedelta(days=29)}) == 30 and len({t.isocalendar()[:2] for t in kept}) >= 13
    assert (left['home'] == 'other').sum() == 1
    said = plan['plan'].set_index('time')['why']
    assert said[pd.Timestamp(restored_from, tz='UTC')] == 'a home was restored from it'
    assert said[pd.Timestamp(newest, tz='UTC')].startswith('every snapshot of the last 48 hours')


def test_two_homes_on_one_repository_a_restore_and_backups_after_it_forget_no_restore_point(tmp_path, password):
    """Issue 35: two homes back up into one repository every few minutes; one is lost and restored from an earlier snapshot;
    the restored home and the other back up with retention: no snapshot of either is forgotten, the restored-from one is kept
    (tagged), the restored home goes on as the same home; a read never makes a password"""
    repo = str(tmp_path/'repo')
    kept_password = password.parent/'kept-password'
    os.environ.pop('MLFIN_BACKUP_PASSWORD_FILE', None)   # (the fixture's monkeypatch restores it)
    for command in (['backup', 'ls'], ['backup', 'check'], ['restore', str(tmp_path/'nowhere')]):   # no password file yet, no repository
        done = mlfin(tmp_path, *command, '--repo', repo, '--password', str(kept_password), check=False)
        assert done.returncode == 2 and f"the backup password file {kept_password} is missing" in done.stderr, done.stderr
    assert not kept_password.exists()   # no read made one
    homes = {name: tmp_path/name for name in ('research', 'service')}
    for name, home in homes.items(): mlfin(home, 'ingest', 'sample:SPX' if name == 'research' else 'sample:EURUSD')
    snapshots = {name: [] for name in homes}
    for name, home in homes.items():   # the first makes the repository, the second takes it on: each records its id
        said = mlfin(home, 'backup', 'init', '--repo', repo, '--password', str(kept_password)).stderr
        assert said.startswith('mlfin: made the repository' if name == 'research' else 'mlfin: this home backs up into the repository'), said
    for round_ in range(3):   # a backup of each every few minutes (the clock does not matter: all within the 48 hours)
        for name, home in homes.items():
            if round_ == 2: (home/'monitor').mkdir(exist_ok=True); (home/'monitor'/'watched.json').write_text('{}')   # something new to keep
            made = mlfin(home, 'backup', '--repo', repo, '--password', str(kept_password))
            quiet = round_ == 1   # nothing changed since the first: that snapshot still holds the home, told without restic
            assert ('the home unchanged since it' in made.stdout) == quiet, made.stdout
            if not quiet: snapshots[name].append(made.stdout.split()[1])
            else: assert made.stdout.split()[1] == snapshots[name][-1], made.stdout
    assert kept_password.exists()   # made with the repository
    ids = {name: (home/'home-id').read_text().strip() for name, home in homes.items()}
    assert ids['research'] != ids['service']
    listed = mlfin(tmp_path, 'backup', 'ls', '--repo', repo, '--password', str(kept_password)).stdout
    assert all(s in listed for ss in snapshots.values() for s in ss) and listed.count(ids['research']) == 2, listed
    shutil.rmtree(homes['research'])   # the research disk is lost: back to its first snapshot
    restored = tmp_path/'restored'
    done = mlfin(tmp_path, 'restore', str(restored), '--repo', repo, '--password', str(kept_password), '--snapshot', snapshots['research'][0])
    assert 'kept as restored-from' in done.stdout, done.stdout
    from mlfin.ops.repository import Repository
    tagged = Repository(repo, kept_password)
    assert snapshots['research'][0] not in set(tagged.snapshots()['id']) and tagged.holds(snapshots['research'][0])   # rewritten under a new id, still held
    assert (restored/'home-id').read_text().strip() == ids['research']   # the same home to retention
    for home in (restored, homes['service']):
        after = mlfin(home, 'backup', '--repo', repo, '--password', str(kept_password), '--retention')
        assert 'removed 0' in after.stdout, after.stdout
    left = tagged.snapshots()
    assert (left['home'] == ids['research']).sum() == 3 and (left['home'] == ids['service']).sum() == 3   # 2 + 1 each: nothing forgotten
    assert [t for t in left['tags'] if 'restored-from' in t] and len(left) == 6
    plan = mlfin(restored, 'backup', 'forget', '--dry-run', '--repo', repo, '--password', str(kept_password)).stdout
    assert 'a home was restored from it' in plan and 'would forget 0' in plan, plan


def test_a_quiet_home_is_told_unchanged_without_restic_and_any_doubt_is_a_whole_backup(tmp_path, password):
    """Issue 73: a backup of a home unchanged since its snapshot (the 15-minute timer's commonest run) is answered from the home's
    print and the snapshot's own file, without restic: no new snapshot, recorded as a success naming the snapshot that still holds
    the home, health's backup check green. Each doubt makes a whole backup: a bar more; the snapshot forgotten behind its back;
    retention due; and a repository moved away fails in its own line, never told as unchanged"""
    from mlfin.ops.records import runs
    from mlfin.ops.repository import Repository
    home, repo = tmp_path/'home', str(tmp_path/'repo')
    mlfin(home, 'ingest', 'sample:SPX')
    first = mlfin(home, 'backup', '--init', '--repo', repo).stdout.split()[1]
    held = Repository(repo, password).snapshots()
    quiet = mlfin(home, 'backup', '--repo', repo)
    assert quiet.stdout.startswith(f"snapshot {first} in {repo}: the home unchanged since it ("), quiet.stdout
    timer = mlfin(home, 'scheduled', 'backup', env={'MLFIN_BACKUP_REPO': repo})   # as the timer runs it
    assert timer.stdout.startswith('mlfin: backup: done: ') and f"'snapshot': '{first}'" in timer.stdout and "'unchanged': True" in timer.stdout, timer.stdout
    assert Repository(repo, password).snapshots()['full_id'].tolist() == held['full_id'].tolist()   # no snapshot made
    from mlfin.ops.restore import in_home
    with in_home(home): recorded = runs('backup', 2)
    assert recorded['status'].tolist() == ['succeeded'] * 2 and [s['snapshot'] for s in recorded['summary']] == [first] * 2, recorded.to_dict()
    health = mlfin(home, 'health', '--service-url', 'http://127.0.0.1:9', check=False).stdout
    line = next(l for l in health.splitlines() if ' backup ' in l)
    assert line.startswith('ok') and f"last snapshot {first} on {repo} 0 min ago" in line, line
    mlfin(home, 'ingest', 'sample:AAPL')   # a series more: backed up whole
    second = mlfin(home, 'backup', '--repo', repo).stdout
    assert 'unchanged' not in second and second.split()[1] != first, second
    Repository(repo, password).restic('forget', second.split()[1])   # the snapshot forgotten behind the home's back
    third = mlfin(home, 'backup', '--repo', repo).stdout
    assert 'unchanged' not in third and third.split()[1] not in (first, second.split()[1]), third
    retained = home/'.backup'/'retention.json'   # retention last ran a day ago: due, and only a whole backup runs it
    retained.write_text(json.dumps({k: v - 86400 for k, v in json.loads(retained.read_text()).items()}))
    due = mlfin(home, 'backup', '--repo', repo).stdout
    assert 'unchanged' not in due and '; retention kept ' in due and '; repository check passed' in due, due
    assert 'the home unchanged since it' in mlfin(home, 'backup', '--repo', repo).stdout   # and quiet again
    os.rename(repo, tmp_path/'moved')   # the repository moved away: a whole backup, which says so
    gone = mlfin(home, 'backup', '--repo', repo, check=False)
    assert gone.returncode == 2 and gone.stdout == '' and gone.stderr.startswith(f"mlfin: error: no backup repository at {repo}"), (gone.stdout, gone.stderr)


@pytest.fixture
def sshd(tmp_path):
    "A private OpenSSH server on loopback (Debian's), letting in one key: the remote side of an sftp repository"
    if not Path('/usr/sbin/sshd').exists(): pytest.skip("openssh-server is installed by env/setup-test.sh")
    from conftest import free_port
    import getpass
    folder = tmp_path/'sshd'; folder.mkdir()
    subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f', str(folder/'host')], check=True)
    subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f', str(folder/'client')], check=True)
    shutil.copy(folder/'client.pub', folder/'authorized_keys')
    port = free_port()
    (folder/'sshd_config').write_text(f"Port {port}\nListenAddress 127.0.0.1\nHostKey {folder/'host'}\nAuthorizedKeysFile {folder/'authorized_keys'}\n"
                                      "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\n"
                                      f"PidFile {folder/'sshd.pid'}\nSubsystem sftp internal-sftp\n")
    Path('/run/sshd').mkdir(exist_ok=True)   # its privilege-separation folder
    server = subprocess.Popen(['/usr/sbin/sshd', '-D', '-e', '-f', str(folder/'sshd_config')], stdout=open(folder/'sshd.log', 'ab'), stderr=subprocess.STDOUT)
    command = (f"ssh -p {port} -i {folder/'client'} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes "
               f"{getpass.getuser()}@127.0.0.1 -s sftp")
    deadline = time.time() + 30
    while time.time() < deadline and subprocess.run(['ssh-keyscan', '-p', str(port), '127.0.0.1'], capture_output=True).returncode: time.sleep(0.2)
    try: yield {'command': command, 'user': getpass.getuser()}
    finally: server.terminate(); server.wait(30)


def test_a_repository_over_sftp_backs_up_and_restores(served_home, tmp_path, password, sshd, monkeypatch):
    "restic's sftp backend against a real OpenSSH server on loopback: the repository lives on the far side"
    monkeypatch.setenv('MLFIN_RESTIC_OPTIONS', f"sftp.command={sshd['command']}")
    home, far = served_home, tmp_path/'far'
    repo = f"sftp:{sshd['user']}@127.0.0.1:{far}/repo"
    made = mlfin(home, 'backup', '--init', '--repo', repo)
    assert 'snapshot ' in made.stdout and (far/'repo'/'config').exists(), made.stdout   # written through the server
    done = mlfin(tmp_path, 'restore', str(tmp_path/'restored'), '--repo', repo)
    assert done.stdout.count(': identical') == 2, done.stdout
