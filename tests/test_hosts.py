"""Past one host: the README's "Past one machine" commands run on three hosts made here (tests/hosts.py).

h1 holds the home (served over sshfs), the Dask scheduler, PostgreSQL and the team's MLflow server, and runs `mlfin run`; h2 and h3
each mount the home at the same path and run a worker, with their own /tmp, /dev/shm and ~. The run's products equal the serial
run's, with h2's cable cut mid-run and plugged back, and h3 powered off mid-run. What hosts must share is checked before any unit:
a worker that sees another folder at the home's path, and a loopback address a worker would read as itself, are refused in one line.
"""
import json, os, re, subprocess, sys, time
from pathlib import Path
import pytest
from conftest import ROOT, SLICE, same_products
from hosts import SUBNET, Network, can_make_hosts, home_server, own_view

BIN = Path(sys.executable).parent
PASSWORD = 'a-long-admin-password-for-tests'
TEAM = {'MLFLOW_TRACKING_USERNAME': 'admin', 'MLFLOW_TRACKING_PASSWORD': PASSWORD, 'PLOOMBER_STATS_ENABLED': 'false'}
pytestmark = pytest.mark.skipif(can_make_hosts() is not None, reason=str(can_make_hosts()))


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
import sys, time
from distributed import Client
address, what, host = sys.argv[1:4]
with Client(address, timeout=120) as client:
    while True:
        workers = client.scheduler_info()['workers']
        if what == 'gone' and not any(host in w for w in workers): break
        if what == 'back' and any(host in w for w in workers): break
        if what.endswith('-') and any(host in w and any(str(k).startswith(what) for k in keys) for w, keys in client.processing().items()): break
        time.sleep(0.05)
print(what, host, flush=True)
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
        for host in (team['h2'], team['h3']):
            start(team, host, next(c for c in commands if c.startswith(f"{BIN}/dask worker")))
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
    log = open(team['logs']/f"{host.name}-{command.split()[1]}.log", 'ab')
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


def test_the_readme_commands_on_three_hosts_with_a_cable_cut_and_a_host_powered_off(team, pipeline_run):
    "The run on h2's and h3's workers: h2's cable cut while it trains and plugged back once the scheduler gave up on it, h3 powered off while it works; the serial run's products"
    h1, h2, h3, home = team['h1'], team['h2'], team['h3'], team['home']
    run = next(c for c in team['commands'] if ' run --cluster ' in c)
    started = time.time()
    runner = h1.run('bash', '-c', f"{run} {' '.join(SLICE)} --reports {home/'reports'}", env={'MLFIN_HOME': str(home), **TEAM}, cwd=ROOT,
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    events = []
    def at(what, host):
        seen = watch(team, what, host.address); seen.wait(900)
        events.append((what, host.name, round(time.time() - started, 1)))
    at('train-', h2); h2.cut()              # unplugged while it trains a model
    at('gone', h2); h2.mend()               # the scheduler gave up on it (silence, then the TCP timeout): plugged back
    at('back', h2)                          # its nanny's new worker joined
    at('backtest-', h3); h3.power_off()     # h3 gone at once, mid-unit, without a word
    out, err = runner.communicate(timeout=1800)
    assert runner.returncode == 0, out[-3000:] + err[-3000:]
    print(events, f"run: {time.time() - started:.0f} s")
    same_products(pipeline_run['home'], home)
