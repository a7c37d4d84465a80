"""Past one host: the README's "Past one machine / Across hosts" commands, run as typed on hosts made here (tests/hosts.py).

h1 holds the home (served over sshfs), the Dask scheduler, PostgreSQL and the team's MLflow server, and runs `mlfin run`; h2 and h3
each mount the home at the same path and run a worker, with their own /tmp, /dev/shm, ~ and hostname and a read-only checkout.
In order (the module's hosts live through all four): h2's cable cut mid-training, then h3 powered off mid-unit, each run ending
with the serial run's products; a fresh h4 sharing an Optuna study with h2 through PostgreSQL (the same on loopback refused); h5,
with a folder of its own at the home's path, refused in one line before any unit.
"""
import json, re, subprocess, sys, time
from pathlib import Path
import pytest
from conftest import ROOT, SLICE, same_products
from hosts import SUBNET, Network, cannot_make_hosts, home_server, own_view

BIN = Path(sys.executable).parent
PASSWORD = 'a-long-admin-password-for-tests'
TEAM = {'MLFLOW_TRACKING_USERNAME': 'admin', 'MLFLOW_TRACKING_PASSWORD': PASSWORD, 'PLOOMBER_STATS_ENABLED': 'false'}
pytestmark = pytest.mark.skipif(cannot_make_hosts() is not None, reason=str(cannot_make_hosts()))


def readme_commands() -> list[str]:
    "The commands of the README's 'Past one machine: across hosts' (its bash blocks, comments dropped), as a person copies them"
    text = (ROOT/'README.md').read_text()
    section = text.split('\n## Past one machine\n', 1)[1].split('\n### Across hosts: what they share\n', 1)[1]
    section = re.split(r'\n#{2,3} ', section, maxsplit=1)[0]
    lines = [line.split('  #', 1)[0].strip() for block in re.findall(r"```bash\n(.*?)```", section, re.S) for line in block.splitlines()]
    return [line for line in lines if line and not line.startswith('#')]


def on_hosts(command: str, team: dict) -> str:
    "A README command as typed on the hosts made here: their addresses, the test's home, this checkout's .venv, 1 worker a host, sshfs as root"
    for theirs, ours in (('mlfin@10.0.0.5:', 'root@10.0.0.5:'), ('10.0.0.5', team['h1'].address), ('10.0.0.6', team['h1'].address), ('/srv/mlfin', str(team['home'])), ('/srv/mlflow', str(team['base']/'mlflow')),
                         ('--nworkers 8', '--nworkers 1'), ('.venv/bin/', f"{BIN}/")):
        command = command.replace(theirs, ours)
    return command


WATCH = '''
import json, sys, time
from distributed import Client
address, what, host = sys.argv[1:4]
with Client(address, timeout=120) as client:
    while True:
        workers, busy = list(client.nthreads()), {w: [str(k) for k in keys] for w, keys in client.processing().items()}
        if what == 'gone' and not any(host in w for w in workers): break
        if what == 'back' and any(host in w for w in workers): break
        if what.endswith('-') and any(host in w and any(k.startswith(what) for k in keys) for w, keys in busy.items()): break
        time.sleep(0.05)
print(json.dumps({'what': what, 'at': time.time(), 'workers': workers, 'busy': busy}), flush=True)
'''


def watch(team: dict, what: str, host: str) -> subprocess.Popen:
    "On h1, a watcher of the scheduler that exits when `what` happens: 'gone' (no worker of `host` left), 'back', or 'train-' (one of its workers at a training unit)"
    return team['h1'].run(str(BIN/'python'), '-c', WATCH, team['scheduler'], what, f"//{host}:", stdout=subprocess.PIPE, text=True)


@pytest.fixture(scope='module')
def team(tmp_path_factory):
    "Three hosts, set up as the README's 'Past one machine' says; every command of it that sets up is run here, as typed"
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
        commands = [on_hosts(c, team) for c in readme_commands()]
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
        h1.call(str(BIN/'python'), '-c', f"from distributed import Client; Client('{team['scheduler']}', timeout=120).wait_for_workers(2, timeout=300)",
                timeout=400)
        yield team
    finally:
        net.close()   # every process of every host killed, PostgreSQL's with them
        for step in cleanup: step()


def start(team: dict, host, command: str):
    "A README command run on `host`: a short one to its end, a server left running (its output in the test's logs folder)"
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


def readme_run(team: dict, home: Path) -> subprocess.Popen:
    "The README's run on h1, on the session's slice of the embedded data, with `home` as MLFIN_HOME (the shared home, or a folder of it)"
    run = next(c for c in team['commands'] if ' run --cluster ' in c).replace(f"MLFIN_HOME={team['home']} ", f"MLFIN_HOME={home} ")
    return team['h1'].run('bash', '-c', f"{run} {' '.join(SLICE)} --reports {home/'reports'}", env=TEAM, cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def when(team: dict, what: str, host, runner: subprocess.Popen):
    "Wait for `what` to happen on `host` (see `watch`) while the run goes on; fails if the run ends first"
    seen = watch(team, what, host.address)
    while seen.poll() is None and runner.poll() is None: time.sleep(0.05)
    if seen.poll() is None:
        seen.kill(); out, err = runner.communicate()
        raise AssertionError(f"the run ended (exit {runner.returncode}) before {what} on {host.name}:\n{out[-2000:]}\n{err[-2000:]}")
    assert seen.returncode == 0, f"the watcher of {what} on {host.name} failed"
    print(f"{host.name}: {seen.stdout.read().strip()}", flush=True)


def test_a_worker_host_cut_off_mid_training_and_plugged_back(team, pipeline_run):
    "h2's cable cut while it trains, plugged back once the scheduler gave up on it: the run ends with the serial run's products"
    h2, home = team['h2'], team['home']
    runner = readme_run(team, home)
    when(team, 'train-', h2, runner); h2.cut()     # unplugged while it trains a model: its home mount and its scheduler link go at once
    when(team, 'gone', h2, runner); h2.mend()      # the scheduler gave up on it (no reply within the TCP timeout): plugged back
    out, err = runner.communicate(timeout=1800)
    assert runner.returncode == 0, out[-3000:] + err[-3000:]
    same_products(pipeline_run['home'], home)
    team['workers']['h2'].wait(300)   # a worker that lost its scheduler ends itself (the README: a supervisor starts it again)


def test_a_worker_host_powered_off_mid_unit(team, pipeline_run):
    "h2's worker started again (as its supervisor does); h3 powered off while it trains: the run ends on h2 with the serial run's products"
    h2, h3 = team['h2'], team['h3']
    team['workers']['h2'] = start(team, h2, team['worker'])
    watch(team, 'back', h2.address).wait(600)
    home = team['home']/'second'   # a fresh run in a folder of the shared home
    runner = readme_run(team, home)
    when(team, 'train-', h3, runner); h3.power_off()   # gone at once, mid-unit, without a word: no reset, no goodbye
    out, err = runner.communicate(timeout=1800)
    assert runner.returncode == 0, out[-3000:] + err[-3000:]
    same_products(pipeline_run['home'], home)
    assert not [p for p in home.rglob('*') if p.name.endswith('.tmp') or p.name.startswith('.cluster-')]   # nothing half-written left, no token


def test_a_new_host_takes_the_dead_ones_place_and_shares_a_study_through_postgresql(team):
    "A fresh h4 set up as the README says joins h2; `mlfin tune` spreads one study over both through the team's PostgreSQL; the same on loopback is refused"
    h1, home = team['h1'], team['home']
    h4 = team['net'].host(own_view(ROOT, home, next(c for c in team['commands'] if c.startswith('sshfs ')), team['key']))
    start(team, h4, team['worker'])
    watch(team, 'back', h4.address).wait(600)
    tune = next(c for c in team['commands'] if ' tune ' in c)
    env = {'MLFIN_HOME': str(home), **TEAM}
    done = h1.call('bash', '-c', tune, env=env, cwd=ROOT, timeout=1200)
    assert 'SPX lightgbm: study team-spx: 8 trials' in done.stdout and 'tried: 8}' in done.stdout, done.stdout
    workers = h1.call(str(BIN/'python'), '-c', "import json, optuna, sys; from mlfin.models.tuning import storage_url; "
                      "s = optuna.load_study(study_name='team-spx', storage=storage_url(sys.argv[1])); print(json.dumps(sorted({t.user_attrs['worker'] for t in s.trials})))",
                      f"postgresql://mlfin@{h1.address}/optuna", env=env).stdout
    names = {h.address: h.name for h in team['net'].hosts}
    assert {w.split(':')[0] for w in json.loads(workers)} == {names[w.split('//')[1].split(':')[0]] for w in workers_of(team)}, workers   # every host ran trials of the one study
    assert 'h4' in workers, workers
    loopback = h1.call('bash', '-c', tune.replace(f"@{h1.address}/", '@127.0.0.1/').replace('team-spx', 'team-local'), env=env, cwd=ROOT, check=False)
    assert loopback.returncode == 2 and loopback.stderr.strip().splitlines() == [
        "mlfin: error: --storage postgresql://mlfin@127.0.0.1/optuna: a loopback address, which worker "
        f"{workers_of(team)[0]} on another host would read as itself; "
        "give the address every host reaches (README: Past one machine)"], loopback.stderr


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
        done = h1.call('bash', '-c', f"{run} {' '.join(SLICE)} --reports {home/'reports'} --force", env={'MLFIN_HOME': str(home), **TEAM}, cwd=ROOT,
                       check=False)   # --force: the first test's products are up to date, and a run with nothing to do needs no cluster
        assert done.returncode == 2 and done.stderr.strip().splitlines() == [
            f"mlfin: error: --cluster {team['scheduler']}: worker {blind} sees another folder at {home/'run'} (not the run's: its token is not "
            "there); the home must be one filesystem every worker mounts at the same path, read and written (README: Past one machine)"], done.stderr
        assert products() == before   # no task ran; no token left behind
        attempt = json.loads((home/'run'/'attempt.json').read_text())   # the attempt recorded as failed, with the same line (mlfin health reads it)
        assert attempt['status'] == 'failed' and attempt['error'] == done.stderr.strip().removeprefix('mlfin: error: '), attempt
    finally: worker.terminate(); worker.wait(60)
