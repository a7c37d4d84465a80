"Schedules (issue 20): the generated units pass systemd's own checks, the cron line and the timer fire at the same times, runs never overlap"
import datetime as dt, os, shutil, signal, subprocess, sys
import pytest
from conftest import MLFIN, ROOT, mlfin, run_lock_held

analyze = pytest.mark.skipif(not shutil.which('systemd-analyze'), reason="systemd-analyze is installed by env/setup-test.sh")


@analyze
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


@analyze
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


# `systemctl` as each machine answers it ($MACHINE: a container without systemd, systemd with no user manager for this user,
# or systemd running), every call it gets noted in $NOTED: what `mlfin schedule install` meets is the test's, never this machine's
SYSTEMCTL = """#!/bin/sh
echo "$*" >> "$NOTED"
case "$MACHINE $*" in
  'container is-system-running') echo offline; exit 1;;
  'container '*) echo "System has not been booted with systemd as init system (PID 1). Can't operate." >&2; exit 1;;
  'no-manager is-system-running') echo running;;
  'no-manager --user '*) echo 'Failed to connect to bus: No medium found' >&2; exit 1;;
esac
"""


def test_schedule_install_enables_the_timers_or_exits_2_saying_why_and_what_to_do_instead(tmp_path):
    """Issue 70: where systemd is not the init system (a container) or `systemctl --user` reaches no user manager, `mlfin schedule
    install` enables nothing and says so: exit 2, one line naming why, where the units are and the cron lines instead (it exited 0
    having enabled nothing). Where systemd runs it reloads it and enables the timers, as before; `--dir` writes and asks nothing"""
    (tmp_path/'bin').mkdir(); (tmp_path/'bin'/'systemctl').write_text(SYSTEMCTL); (tmp_path/'bin'/'systemctl').chmod(0o755)
    noted, units = tmp_path/'systemctl.log', tmp_path/'config'/'systemd'/'user'
    timers = 'mlfin-run.timer mlfin-monitor.timer mlfin-backup.timer mlfin-health.timer mlfin-report.timer'
    def install(machine: str, *args: str) -> subprocess.CompletedProcess:
        noted.write_text('')
        env = {'PATH': f"{tmp_path/'bin'}{os.pathsep}{os.environ['PATH']}", 'XDG_CONFIG_HOME': str(tmp_path/'config'),
               'MACHINE': machine, 'NOTED': str(noted)}
        return mlfin(tmp_path/'home', 'schedule', 'install', *args, env=env, check=False)
    for machine, why in (('container', "systemd is not running as the init system here (PID 1 is "),
                         ('no-manager', "`systemctl --user` cannot reach a user manager (Failed to connect to bus: No medium found): "
                                        "none runs for ")):
        done = install(machine)
        assert done.returncode == 2 and done.stdout == '' and len(done.stderr.splitlines()) == 1, (machine, done.stdout, done.stderr)
        line = done.stderr.strip()
        assert line.startswith(f"mlfin: error: no timer enabled: {why}") and line.endswith(
            f". The units are written in {units}: enable them where systemd runs (systemctl --user daemon-reload && systemctl --user "
            f"enable --now {timers}), or schedule the jobs with cron instead: `mlfin schedule cron | crontab -` (each line runs "
            "`mlfin scheduled JOB`)"), line
        assert 'enable' not in noted.read_text() and 'daemon-reload' not in noted.read_text(), noted.read_text()
        assert len(list(units.glob('mlfin-*'))) == 11   # five services, five timers, the alert's template: there to copy or read
    done = install('running')
    assert done.returncode == 0 and done.stdout.strip() == (
        f"mlfin: 5 timer(s) enabled: {timers}; `systemctl --user list-timers 'mlfin-*'` shows them"), done.stdout + done.stderr
    assert noted.read_text().splitlines()[-2:] == ['--user daemon-reload', f"--user enable --now {timers}"], noted.read_text()
    done = install('container', '--dir', str(tmp_path/'elsewhere'), '--jobs', 'run')
    assert done.returncode == 0 and done.stdout.startswith(f"mlfin: units written to {tmp_path/'elsewhere'}; to start them: ") and \
        noted.read_text() == '', done.stdout + done.stderr


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
