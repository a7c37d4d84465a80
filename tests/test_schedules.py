"Schedules (issue 20): the generated units pass systemd's own checks, the cron line and the timer fire at the same times, runs never overlap"
import datetime as dt, os, shutil, signal, subprocess, sys
import pytest
from conftest import MLFIN, ROOT, mlfin, run_lock_held

pytestmark = pytest.mark.skipif(not shutil.which('systemd-analyze'), reason="systemd-analyze is installed by env/setup-test.sh")


def test_the_units_pass_systemd_analyze_verify(tmp_path):
    "Every service and timer, for the user's systemd and the system's, as systemd itself reads them"
    from mlfin.ops.schedules import units
    for system in (False, True):
        folder = tmp_path/('system' if system else 'user'); folder.mkdir()
        carried = {'MLFIN_HOME': str(tmp_path/'home'), 'MLFIN_BACKUP_REPO': str(tmp_path/'repo'),
                   'MLFIN_RESTIC_OPTIONS': 'sftp.command=ssh -p 2222 -i "/keys/id 1" backup@host -s sftp'}   # spaces, quotes
        for name, text in units(system=system, env=carried, project=ROOT).items():
            (folder/name).write_text(text)
        # the template unit is checked through an instance, as OnFailure= starts it
        shutil.copy(folder/'mlfin-alert@.service', folder/'mlfin-alert@mlfin-run.service.service')
        files = sorted(str(p) for p in folder.iterdir() if p.name != 'mlfin-alert@.service')
        runtime = tmp_path/'runtime'; runtime.mkdir(mode=0o700, exist_ok=True)   # the user manager's runtime folder (no login session here)
        done = subprocess.run(['systemd-analyze', *([] if system else ['--user']), 'verify', *files], capture_output=True, text=True,
                              env={**os.environ, 'XDG_RUNTIME_DIR': str(runtime)})
        complaints = [l for l in (done.stdout + done.stderr).splitlines() if 'mlfin' in l]
        assert done.returncode == 0 and not complaints, done.stdout + done.stderr


def test_each_timer_and_its_cron_line_fire_at_the_same_times():
    "One definition, two renderings: systemd-analyze calendar and cron's fields give the same next times for every job"
    from mlfin.ops.schedules import JOBS
    for name, job in JOBS.items():
        said = subprocess.run(['systemd-analyze', 'calendar', '--iterations=5', job.calendar()], capture_output=True, text=True,
                              env={**os.environ, 'TZ': 'UTC'}, check=True).stdout
        times = [l.split(':', 1)[1].strip() for l in said.splitlines() if l.strip().startswith(('Next elapse', 'Iter. #'))]
        systemd = [dt.datetime.strptime(' '.join(t.split()[1:3]), '%Y-%m-%d %H:%M:%S') for t in times]
        assert len(systemd) == 5, said
        cron = cron_times(job.cron(), systemd[0] - dt.timedelta(seconds=1), 5)
        assert cron == systemd, (name, job.cron(), cron, systemd)


def cron_times(line: str, after: dt.datetime, n: int) -> list[dt.datetime]:
    "The next `n` times a five-field cron line fires after `after`, by cron's rules (minute and hour fields; the others are *)"
    minute, hour, *rest = line.split()
    assert rest == ['*', '*', '*'], line
    field = lambda f, top: set(range(0, top, int(f[2:]))) if f.startswith('*/') else set(range(top)) if f == '*' else {int(f)}
    minutes, hours = field(minute, 60), field(hour, 24)
    t, out = after.replace(second=0, microsecond=0) + dt.timedelta(minutes=1), []
    while len(out) < n:
        if t.minute in minutes and t.hour in hours: out.append(t)
        t += dt.timedelta(minutes=1)
    return out


def test_two_scheduled_runs_started_together_never_overlap(served_home, tmp_path):
    "Two monitors started at once: the second waits for the first's lock (their records do not overlap); one told not to wait is skipped"
    home = served_home
    env = {**os.environ, 'MLFIN_HOME': str(home), 'PLOOMBER_STATS_ENABLED': 'false'}
    # the lock held by another process while the two start and the third is told not to wait: an event, not a race with their speed
    with run_lock_held(home, 'monitor') as holder:
        both = [subprocess.Popen([MLFIN, 'scheduled', 'monitor', '--wait', '3600'], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 text=True) for _ in range(2)]
        skipped = mlfin(home, 'scheduled', 'monitor', '--wait', '0', check=False)
        assert skipped.returncode == 75 and f'mlfin: monitor: skipped: monitor: pid {holder.pid} ' in skipped.stdout, skipped.stdout + skipped.stderr
        assert [p.poll() for p in both] == [None, None]   # both still waiting for it
    outs = [p.communicate(timeout=1800)[0] for p in both]
    assert [p.returncode for p in both] == [0, 0], outs
    from mlfin.ops.records import runs
    done = runs('monitor', at=home)
    ran = done[done['status'] == 'succeeded'].sort_values('started')
    assert len(ran) == 2 and list(done['status']).count('skipped') == 1, done
    assert ran['started'].iloc[1] >= ran['ended'].iloc[0], ran[['started', 'ended']]   # one after the other
    assert all('mlfin.SPX.1d v' in str(s) for s in ran['summary']), ran['summary']
    listed = mlfin(home, 'schedule', 'ls').stdout
    assert listed.count('succeeded') == 2 and listed.count('skipped') == 1, listed


def test_mlfin_run_waits_for_or_refuses_a_run_already_working_on_the_home(tmp_path):
    "The pipeline's own lock: whoever holds the home's run lock, `mlfin run --wait 0` says so in one line and starts nothing"
    env = {**os.environ, 'MLFIN_HOME': str(tmp_path), 'PLOOMBER_STATS_ENABLED': 'false'}
    code = "import time; from mlfin.processes import exclusive\nwith exclusive('run'): print('held', flush=True); time.sleep(120)"
    holder = subprocess.Popen([sys.executable, '-c', code], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == 'held'
        done = mlfin(tmp_path, 'run', '--wait', '0', check=False)
        assert done.returncode == 2 and done.stderr.strip().startswith(f"mlfin: error: run: pid {holder.pid} since "), done.stderr
        assert done.stderr.strip().endswith("; not started") and not (tmp_path/'run').exists()
    finally: holder.kill(); holder.wait()


def test_every_attempt_is_recorded_with_its_outcome_and_a_waiting_run_says_whom_it_waits_for(tmp_path):
    """Issue 35: a report run waits for the one holding its lock and says whom; stopped by SIGTERM (a unit's TimeoutStartSec) it is
    recorded as failed with why; one killed outright (SIGKILL) is recorded as failed by the next scheduled run of any job"""
    from mlfin.ops.records import runs
    env = {**os.environ, 'MLFIN_HOME': str(tmp_path), 'PLOOMBER_STATS_ENABLED': 'false'}
    code = "import time; from mlfin.processes import exclusive\nwith exclusive('report'): print('held', flush=True); time.sleep(600)"
    holder = subprocess.Popen([sys.executable, '-c', code], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == 'held'
        for stop in (signal.SIGTERM, signal.SIGKILL):
            waiting = subprocess.Popen([MLFIN, 'scheduled', 'report'], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            said = waiting.stdout.readline()
            assert said.startswith(f"mlfin: report: waiting for pid {holder.pid} since "), said
            waiting.send_signal(stop); waiting.wait(60)
            if stop == signal.SIGTERM:
                last = runs('report', at=tmp_path).iloc[0]
                assert (last['status'], last['exit_code']) == ('failed', 143) and last['error'].startswith('Stopped while waiting for the previous run: SIGTERM'), last.to_dict()
    finally: holder.kill(); holder.wait()
    mlfin(tmp_path, 'scheduled', 'health', check=False)   # the next scheduled run, of any job, settles what a killed one left
    done = runs('report', at=tmp_path)
    assert len(done) == 2 and set(done['status']) == {'failed'}, done
    assert any(isinstance(e, str) and e.startswith('died while waiting: its process ') for e in done['error']), done['error'].tolist()
