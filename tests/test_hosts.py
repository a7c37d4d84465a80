"""Past one host: the "Past one machine / Across hosts" commands of its tutorial (nbs/tutorials), run as typed on hosts made here (tests/hosts.py).

h1 holds the home (served over sshfs), the Dask scheduler, PostgreSQL and the team's MLflow server, and runs `mlfin run`; h2 and h3
each mount the home at the same path and run a worker, with their own /tmp, /dev/shm, ~ and hostname and a read-only checkout.
In order (the module's hosts live through all three tests, which run in file order): while both train, h2's cable is cut and h3 is
powered off; a fresh h4, set up as the tutorial says, takes their place and the run ends with the serial run's products; h2 is
plugged back and its worker started again, and h2 and h4 share an Optuna study through PostgreSQL (the same on loopback refused);
h5, with a folder of its own at the home's path, is refused in one line before any unit.
"""
import json, re, subprocess, sys, time
from pathlib import Path
import pytest
from conftest import MACRO, ROOT, TRACKING_PASSWORD as PASSWORD, same_products
from hosts import SUBNET, Network, cannot_make_hosts, home_server, own_view

BIN = Path(sys.executable).parent
TEAM = {'MLFLOW_TRACKING_USERNAME': 'admin', 'MLFLOW_TRACKING_PASSWORD': PASSWORD, 'PLOOMBER_STATS_ENABLED': 'false'}
# its tests share the hosts (module fixture, namespaces with fixed names and addresses): the module runs on one worker (`together`);
# waits: much of its time is a cut cable's timeout and hosts starting, so it runs beside the tests that compute
pytestmark = [pytest.mark.e2e, pytest.mark.waits, pytest.mark.together,
              pytest.mark.skipif(cannot_make_hosts() is not None, reason=str(cannot_make_hosts()))]


def tutorial_commands() -> list[str]:
    "The commands of the tutorial 'Past one machine: across hosts' (its bash blocks, comments dropped), as a person copies them"
    import nbformat
    nb, = (ROOT/'nbs'/'tutorials').glob('*past_one_machine.ipynb')
    text = '\n\n'.join(c.source for c in nbformat.read(nb, as_version=4).cells if c.cell_type == 'markdown')
    section = text.split('\n### Across hosts: what they share\n', 1)[1]
    section = re.split(r'\n#{2,3} ', section, maxsplit=1)[0]
    lines = [line.split('  #', 1)[0].strip() for block in re.findall(r"```bash\n(.*?)```", section, re.S) for line in block.splitlines()]
    return [line for line in lines if line and not line.startswith('#')]


def on_hosts(command: str, team: dict) -> str:
    "A tutorial command as typed on the hosts made here: their addresses, the test's home, this checkout's .venv, 1 worker a host, sshfs as root"
    for theirs, ours in (('mlfin@10.0.0.5:', 'root@10.0.0.5:'), ('10.0.0.5', team['h1'].address), ('10.0.0.6', team['h1'].address), ('/srv/mlfin', str(team['home'])), ('/srv/mlflow', str(team['base']/'mlflow')),
                         ('--nworkers 8', '--nworkers 1'), ('.venv/bin/', f"{BIN}/")):
        command = command.replace(theirs, ours)
    return command


WATCH = '''
import json, sys, time
from distributed import Client
address, what, hosts = sys.argv[1], sys.argv[2], sys.argv[3].split(',')
with Client(address, timeout=120) as client:
    while True:
        workers, busy = list(client.nthreads()), {w: [str(k) for k in keys] for w, keys in client.processing().items()}
        if what == 'gone' and not any(host in w for w in workers for host in hosts): break
        if what == 'back' and all(any(host in w for w in workers) for host in hosts): break
        if what.endswith('-') and all(any(host in w and any(k.startswith(what) for k in keys) for w, keys in busy.items()) for host in hosts): break
        time.sleep(0.05)
print(json.dumps({'what': what, 'at': time.time(), 'workers': workers, 'busy': busy}), flush=True)
'''


def watch(team: dict, what: str, *hosts: str) -> subprocess.Popen:
    """On h1, a watcher of the scheduler that exits when `what` happens: 'gone' (no worker of the hosts left), 'back' (a worker of
    each), or 'train-' (a worker of each at a training unit, all at once)"""
    return team['h1'].run(str(BIN/'python'), '-c', WATCH, team['scheduler'], what, ','.join(f"//{h}:" for h in hosts), stdout=subprocess.PIPE, text=True)


@pytest.fixture(scope='module')
def team(tmp_path_factory):
    "Three hosts, set up as the tutorial 'Past one machine' says; every command of it that sets up is run here, as typed"
    base = tmp_path_factory.mktemp('hosts')
    net, cleanup = Network(), []
    try:
        h1 = net.host()
        home, logs = base/'srv-mlfin', base/'logs'
        home.mkdir(); logs.mkdir()
        config, key = home_server(base/'sshd', h1.address)
        h1.run('/usr/sbin/sshd', '-D', '-e', '-f', config, stdout=open(logs/'sshd.log', 'ab'), stderr=subprocess.STDOUT)
        h1.wait_for_port(h1.address, 22)
        team = {'net': net, 'cleanup': cleanup, 'h1': h1, 'home': home, 'base': base, 'logs': logs, 'key': key, 'scheduler': f"tcp://{h1.address}:8786"}
        commands = [on_hosts(c, team) for c in tutorial_commands()]
        team['commands'] = commands
        mount = next(c for c in commands if c.startswith('sshfs '))
        team['h2'], team['h3'] = (net.host(own_view(ROOT, home, mount, key)) for _ in range(2))
        start_postgres(team)
        for command in commands:
            if command.startswith(('createdb', f"{BIN}/mlfin tracking serve", f"{BIN}/dask scheduler")):
                start(team, h1, command)
        team['worker'] = next(c for c in commands if c.startswith(f"{BIN}/dask worker"))
        team['workers'] = {host.name: start(team, host, team['worker']) for host in (team['h2'], team['h3'])}
        h1.wait_for_port(h1.address, 5000)
        # both joined, each started by its nanny with cluster.worker's SPAWN_ENV (the tutorial's --preload-nanny)
        h1.call(str(BIN/'python'), '-c', f"import os; from distributed import Client; from mlfin.cluster.worker import SPAWN_ENV; "
                f"c = Client('{team['scheduler']}', timeout=120); c.wait_for_workers(2, timeout=300); "
                "from mlfin.cluster.worker import spawned_with; got = c.run(lambda: {k: spawned_with().get(k) for k in SPAWN_ENV}); "
                "assert list(got.values()) == [SPAWN_ENV] * 2, got",
                timeout=400)
        yield team
    finally:
        net.close()   # every process of every host killed, PostgreSQL's with them
        for step in cleanup: step()


def start(team: dict, host, command: str):
    "A tutorial command run on `host`: a short one to its end, a server left running (its output in the test's logs folder)"
    env = {'MLFLOW_AUTH_ADMIN_PASSWORD': PASSWORD, 'PGUSER': 'mlfin', 'PGHOST': team['h1'].address}
    if command.startswith('createdb'): return host.call('bash', '-c', command, env=env)
    log = open(team['logs']/f"{host.name}-{Path(command.split()[0]).name}-{command.split()[1]}.log", 'ab')
    return host.run('bash', '-c', f"exec {command}", env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)


def start_postgres(team: dict):
    "The team's PostgreSQL server on h1's address (Debian's binaries, run as the postgres user): MLflow's and Optuna's databases"
    import shutil, tempfile
    h1, root = team['h1'], Path(tempfile.mkdtemp(prefix='mlfin-hosts-pg-'))   # outside pytest's folders, which only root may enter
    team['cleanup'].append(lambda: shutil.rmtree(root, ignore_errors=True))
    bindir = sorted(Path('/usr/lib/postgresql').glob('*/bin/initdb'))[-1].parent
    root.chmod(0o755); shutil.chown(root, 'postgres')
    as_owner = ['runuser', '-u', 'postgres', '--']
    h1.call(*as_owner, str(bindir/'initdb'), '-D', str(root/'data'), '-U', 'mlfin', '--auth=trust', '-E', 'UTF8', '--no-sync')
    with open(root/'data'/'pg_hba.conf', 'a') as hba: hba.write(f"host all all {SUBNET}.0/24 trust\n")   # the team's subnet
    h1.call(*as_owner, str(bindir/'pg_ctl'), '-D', str(root/'data'), '-l', str(root/'server.log'), '-w', '-t', '120', 'start', '-o',
            f"-c listen_addresses={h1.address} -p 5432 -k {root} -c fsync=off -c full_page_writes=off")


def tutorial_run(team: dict, home: Path) -> subprocess.Popen:
    """The tutorial's run on h1 with the macro golden's arguments (`MACRO`: SPX, three models, so both workers train at once, at a
    fraction of the session's slice's cost), with `home` as MLFIN_HOME (the shared home, or a folder of it)"""
    run = next(c for c in team['commands'] if ' run --cluster ' in c).replace(f"MLFIN_HOME={team['home']} ", f"MLFIN_HOME={home} ")
    return team['h1'].run('bash', '-c', f"{run} {' '.join(MACRO)} --reports {home/'reports'}", env=TEAM, cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def when(team: dict, what: str, runner: subprocess.Popen, *hosts):
    "Wait for `what` to happen on `hosts` (see `watch`) while the run goes on; fails if the run ends first"
    seen, names = watch(team, what, *(h.address for h in hosts)), ' and '.join(h.name for h in hosts)
    while seen.poll() is None and runner.poll() is None: time.sleep(0.05)
    if seen.poll() is None:
        seen.kill(); out, err = runner.communicate()
        raise AssertionError(f"the run ended (exit {runner.returncode}) before {what} on {names}:\n{out[-2000:]}\n{err[-2000:]}")
    assert seen.returncode == 0, f"the watcher of {what} on {names} failed"
    print(f"{names}: {seen.stdout.read().strip()}", flush=True)


def new_host(team: dict):
    "A fresh host set up by the tutorial's lines (the home mounted over sshfs, a `dask worker`), once its worker is known to the scheduler"
    host = team['net'].host(own_view(ROOT, team['home'], next(c for c in team['commands'] if c.startswith('sshfs ')), team['key']))
    team['workers'][host.name], team[host.name] = start(team, host, team['worker']), host
    return host


def test_a_cable_cut_and_a_power_off_mid_training_and_a_new_host_in_their_place(team, macro_golden):
    """While h2 and h3 both train, h2's cable is cut (a partition: no reset, its peers learn it from silence) and h3 is powered off
    (every process gone at once, mid-unit); a fresh h4 set up as the tutorial says takes their place; h2 is plugged back once the
    scheduler gave up on it. The run ends with the serial run's products, nothing half-written left; h2's cut-off worker ended itself"""
    h2, h3, home = team['h2'], team['h3'], team['home']
    runner = tutorial_run(team, home)
    when(team, 'train-', runner, h2, h3)   # both at a training unit
    h2.cut(); h3.power_off()               # h2's home mount and scheduler link go at once; h3 without a word
    h4 = new_host(team)                    # the run waits for a worker: h4 joins and takes the units
    when(team, 'gone', runner, h2); h2.mend()   # the scheduler gave up on h2 (no reply within the TCP timeout): plugged back
    out, err = runner.communicate(timeout=1800)
    assert runner.returncode == 0, out[-3000:] + err[-3000:]
    same_products(macro_golden['home'], home, models=3)
    assert not [p for p in home.rglob('*') if p.name.endswith('.tmp') or p.name.startswith('.cluster-')]   # nothing half-written left, no token
    team['workers']['h2'].wait(300)   # a worker that lost its scheduler ends itself (the tutorial: a supervisor starts it again)
    assert team['workers']['h4'].poll() is None and h4.name == 'h4'


def test_hosts_share_a_study_through_postgresql_and_a_loopback_address_is_refused(team):
    "h2's worker started again (as its supervisor does) beside h4; `mlfin tune` spreads one study over both through the team's PostgreSQL; the same on loopback is refused"
    h1, h2, home = team['h1'], team['h2'], team['home']
    team['workers']['h2'] = start(team, h2, team['worker'])
    watch(team, 'back', h2.address, team['h4'].address).wait(600)
    tune = next(c for c in team['commands'] if ' tune ' in c)
    env = {'MLFIN_HOME': str(home), **TEAM}
    done = h1.call('bash', '-c', tune, env=env, cwd=ROOT, timeout=1200)
    assert 'SPX lightgbm: study team-spx: 8 trials' in done.stdout and 'tried: 8}' in done.stdout, done.stdout
    workers = h1.call(str(BIN/'python'), '-c', "import json, optuna, sys; from mlfin.models.tuning import storage_url; "
                      "s = optuna.load_study(study_name='team-spx', storage=storage_url(sys.argv[1])); print(json.dumps(sorted({t.user_attrs['worker'] for t in s.trials})))",
                      f"postgresql://mlfin@{h1.address}/optuna", env=env).stdout
    names = {h.address: h.name for h in team['net'].hosts}
    assert {w.split(':')[0] for w in json.loads(workers)} == {names[w.split('//')[1].split(':')[0]] for w in workers_of(team)}, workers   # every host ran trials of the one study
    assert 'h2' in workers and 'h4' in workers, workers
    loopback = h1.call('bash', '-c', tune.replace(f"@{h1.address}/", '@127.0.0.1/').replace('team-spx', 'team-local'), env=env, cwd=ROOT, check=False)
    assert loopback.returncode == 2 and loopback.stderr.strip().splitlines() == [
        "mlfin: error: --storage postgresql://mlfin@127.0.0.1/optuna: a loopback address, which worker "
        f"{workers_of(team)[0]} on another host would read as itself; "
        "give the address every host reaches (tutorial: Past one machine)"], loopback.stderr


def workers_of(team: dict) -> list[str]:
    "The scheduler's workers now, asked on h1"
    return json.loads(team['h1'].call(str(BIN/'python'), '-c', f"import json; from distributed import Client; "
                                      f"print(json.dumps(sorted(Client('{team['scheduler']}', timeout=60).nthreads())))").stdout)


def test_a_host_that_does_not_share_the_home_is_refused_before_any_unit(team):
    "h5 has a folder of its own at the home's path (its run folder too): the run stops in one line naming its worker, nothing run"
    h1, home = team['h1'], team['home']
    h5 = team['net'].host(own_view(ROOT, home, None, team['key']))
    h5.call('mkdir', '-p', str(home/'run'))
    worker = start(team, h5, team['worker'].replace(' --preload mlfin.cluster.worker', ''))   # quicker to start; checked all the same
    try:
        watch(team, 'back', h5.address).wait(600)
        blind = next(w for w in workers_of(team) if f"//{h5.address}:" in w)
        products = lambda: sorted((p.name, p.stat().st_mtime_ns) for p in (home/'run').iterdir() if p.name != 'attempt.json')
        before = products()
        run = next(c for c in team['commands'] if ' run --cluster ' in c)
        done = h1.call('bash', '-c', f"{run} {' '.join(MACRO)} --reports {home/'reports'} --force", env={'MLFIN_HOME': str(home), **TEAM}, cwd=ROOT,
                       check=False)   # --force: the first test's products are up to date, and a run with nothing to do needs no cluster
        assert done.returncode == 2 and done.stderr.strip().splitlines() == [
            f"mlfin: error: --cluster {team['scheduler']}: worker {blind} sees another folder at {home/'run'} (not the run's: its token is not "
            "there); the home must be one filesystem every worker mounts at the same path, read and written (tutorial: Past one machine)"], done.stderr
        assert products() == before   # no task ran; no token left behind
        attempt = json.loads((home/'run'/'attempt.json').read_text())   # the attempt recorded as failed, with the same line (mlfin health reads it)
        assert attempt['status'] == 'failed' and attempt['error'] == done.stderr.strip().removeprefix('mlfin: error: '), attempt
    finally: worker.terminate(); worker.wait(60)
