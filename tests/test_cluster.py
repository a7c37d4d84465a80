"""Past one machine: the session's serial run made again on a local Dask cluster (after a run killed whole mid-training) and on a
scheduler with two separate worker processes, one SIGKILLed mid-training; every product equal to the serial run's"""
import os, queue, shutil, signal, subprocess, sys, threading, time
from pathlib import Path
import pytest
from conftest import MACRO, MLFIN, ROOT, SLICE, free_port, mlfin, new_database, same_products
from hosts import cannot_make_hosts
pytestmark = pytest.mark.e2e   # a user's path end to end (make test-fast leaves it out)

DASK = str(Path(sys.executable).with_name('dask'))
# as the tutorial "Past one machine" starts workers: one malloc arena (set by the nanny), allocator tuned, libraries imported
PRELOAD = ['--preload-nanny', 'mlfin.cluster.worker', '--preload', 'mlfin.cluster.worker']
def run_in(home: Path, *args: str, run: list[str] = SLICE) -> subprocess.Popen:
    env = {**os.environ, 'MLFIN_HOME': str(home), 'PLOOMBER_STATS_ENABLED': 'false'}
    return subprocess.Popen([MLFIN, 'run', *run, '--reports', str(home/'reports'), *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def test_local_cluster_after_a_run_killed_whole(macro_golden, tmp_path):
    """A run on a local cluster killed (runner and workers) while training; the next run redoes what was cut and equals the serial
    run (the macro golden's: SPX, three models, so both workers train at once; the session's slice, every family on three series,
    took 132 s here for what it shows)"""
    home = tmp_path/'home'
    first = run_in(home, '--cluster', 'local:2', run=MACRO)
    lines = queue.Queue()   # the run's progress lines as it says them (`mlfin.progress`: a line per task started)
    threading.Thread(target=lambda: [*map(lines.put, first.stdout), lines.put(None)], daemon=True).start()
    said = []
    while not said or not said[-1].startswith('mlfin: train'):   # killed as the train task starts: an event, not a pause
        said.append(lines.get(timeout=600))   # a hang guard
        assert said[-1] is not None, said   # the run ended before training
    os.killpg(first.pid, signal.SIGKILL); first.wait()
    assert not (home/'run'/'train.json').exists()   # the train task never finished
    # what a kill a moment earlier leaves: Ploomber writes a task's metadata in place, after the line that says the next
    # task starts (`mlfin.pipeline.runner.mend_metadata`); CI's run once met it by chance, here it is met every time
    cut = home/'run'/'.features.parquet.metadata'
    cut.write_text(cut.read_text()[:20] if cut.exists() else '{"timestamp": 17')
    again = mlfin(home, 'run', *MACRO, '--reports', str(home/'reports'), '--cluster', 'local:2')
    assert '.features.parquet.metadata was half written' in again.stderr, again.stderr
    assert 'train' in again.stdout and 'ingest' not in again.stdout.split('ran (')[1].split(')')[0], again.stdout   # cut: redone; done: kept
    same_products(macro_golden['home'], home, models=3)


class Cluster:
    """A Dask scheduler and workers as separate processes on loopback, as on a cluster: as the tutorial "Past one machine" starts them (`nanny`: one
    `dask worker --nworkers N`, its nanny keeping N worker processes), or N `--no-nanny` workers, so that a killed one stays dead"""
    def __init__(self, workers: int = 2, nanny: bool = False):
        self.address = f"tcp://127.0.0.1:{free_port()}"
        env = {**os.environ, 'PYTHONPATH': str(ROOT)}
        port = self.address.rsplit(':', 1)[1]
        quiet = dict(env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.scheduler = subprocess.Popen([DASK, 'scheduler', '--host', '127.0.0.1', '--port', port], **quiet)   # the tutorial's commands
        self.workers = ([subprocess.Popen([DASK, 'worker', self.address, '--nthreads', '1', '--nworkers', str(workers), *PRELOAD], **quiet)] if nanny
                        else [subprocess.Popen([DASK, 'worker', self.address, '--nthreads', '1', '--no-nanny', '--no-dashboard', '--name', f"w{i}", *PRELOAD],
                                               **quiet) for i in range(workers)])
        from distributed import Client
        self.client = Client(self.address, timeout=120)   # generous: workers import the ML libraries as they start, slower on a busy machine
        self.client.wait_for_workers(workers, timeout=240)

    def stop(self):
        self.client.close()
        for p in [*self.workers, self.scheduler]:   # SIGTERM: a nanny closes its worker processes before it goes
            if p.poll() is None: p.terminate()
            try: p.wait(20)
            except subprocess.TimeoutExpired: p.kill(); p.wait()


@pytest.fixture
def dask_cluster():
    found = Cluster()
    yield found
    found.stop()


@pytest.fixture
def readme_cluster():
    found = Cluster(nanny=True)
    yield found
    found.stop()


# where hosts can be made, tests/test_hosts.py powers a worker host off while it trains (its every process SIGKILLed at once) and
# the run ends with the serial run's products: the same behaviour, on hosts; this one stands in where they cannot be made
@pytest.mark.skipif(cannot_make_hosts() is None, reason="tests/test_hosts.py kills a worker host mid-training: the same, on hosts")
def test_scheduler_with_a_worker_killed_mid_training(pipeline_run, tmp_path, dask_cluster):
    "The run against a scheduler address; one of its two workers SIGKILLed while it trains a model: the same products"
    pids = dask_cluster.client.run(os.getpid)   # worker address -> its process
    killed = {}

    def kill_a_trainer():
        deadline = time.time() + 400
        while time.time() < deadline and not killed:
            for worker, keys in dask_cluster.client.processing().items():
                if any(str(k).startswith('train-') for k in keys):
                    os.kill(pids[worker], signal.SIGKILL); killed.update(worker=worker, keys=[str(k) for k in keys]); return
            time.sleep(0.02)

    watcher = threading.Thread(target=kill_a_trainer, daemon=True); watcher.start()
    home = tmp_path/'home'
    run = run_in(home, '--cluster', dask_cluster.address)
    out, err = run.communicate(timeout=600)
    watcher.join(5)
    assert run.returncode == 0, out + err
    assert killed, "no worker was training when watched"
    assert sum(p.poll() is None for p in dask_cluster.workers) == 1   # one worker left; its partner's units were run again there
    same_products(pipeline_run['home'], home)


def test_one_study_spread_over_two_workers_and_joined_by_another_process_on_postgresql(pipeline_run, tmp_path, readme_cluster, postgres_server):
    """`mlfin tune --cluster ADDRESS --storage postgresql://...` on workers started as the tutorial "Past one machine" starts them: both run trials of the
    one study; a second `mlfin tune` elsewhere (its own process, no cluster) adds its trials to the same study; the study counts them
    all, and each search is recorded on its question so that every later run counts the study's other trials once"""
    import optuna
    from mlfin.models.tuning import storage_url
    home = tmp_path/'home'
    shutil.copytree(pipeline_run['home']/'run', home/'run')   # the run's dataset, which tune reads
    db = new_database(postgres_server)   # Optuna's own database (MLflow's would collide on alembic_version)
    args = ['tune', '--models', 'lightgbm', '--symbols', 'SPX', '--storage', db, '--study', 'team']
    done = mlfin(home, *args, '--trials', '8', '--cluster', readme_cluster.address)
    assert 'SPX lightgbm: study team: 8 trials' in done.stdout and 'tried: 8}' in done.stdout, done.stdout   # the count models.yaml carries to a run's DSR
    held = optuna.load_study(study_name='team', storage=storage_url(db)).get_trials()
    assert len(held) == 8 and len({t.user_attrs['worker'] for t in held}) == 2, [t.user_attrs for t in held]
    best = max((t for t in held if t.state == optuna.trial.TrialState.COMPLETE), key=lambda t: t.value)
    assert f"best mean fold auc {best.value:.4f}" in done.stdout, done.stdout
    joined = mlfin(home, *args, '--trials', '4')   # another process, as a second machine runs it: 4 more trials of the one study
    assert 'SPX lightgbm: study team: 12 trials' in joined.stdout and 'models.yaml:  lightgbm:' in joined.stdout, joined.stdout
    trials = optuna.load_study(study_name='team', storage=storage_url(db)).get_trials(deepcopy=False)
    assert sorted(t.number for t in trials) == list(range(12)) and {t.state.name for t in trials} <= {'COMPLETE', 'PRUNED'}
    from mlfin.tracking import recorded_trials
    from mlfin.tracking.ledger import Ledger
    from mlfin.tracking.filing import ledger_trials
    question = pipeline_run['summary']['symbols']['SPX']['skill']['question']['id']   # the family of SPX's bars: the run's question
    os.environ['MLFIN_HOME'] = str(home)
    try: found = recorded_trials(question)
    finally: del os.environ['MLFIN_HOME']
    searches = found[found['kind'] == 'search']   # each process recorded the search with the study's count when it finished
    assert sorted(searches['models']) == [7, 11] and searches['name'].eq('lightgbm search').all(), searches
    kept = ledger_trials(Ledger(str(home/'ledger.db')).check(), question)   # and appended both to the trial ledger, apart from MLflow
    assert sorted(kept.loc[kept['kind'] == 'search', 'models']) == [7, 11], kept
    assert 'recorded: 7 other trial(s)' in done.stdout and 'recorded: 11 other trial(s)' in joined.stdout, (done.stdout, joined.stdout)


def test_cluster_refused_before_any_task(tmp_path):
    "A scheduler nobody runs: one line, and no task started"
    home = tmp_path/'home'
    address = f"tcp://127.0.0.1:{free_port()}"
    done = mlfin(home, 'run', *SLICE, '--cluster', address, check=False)
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        f"mlfin: error: --cluster {address}: no Dask scheduler answers there within 10 s "
        f"(Timed out trying to connect to {address} after 10 s); start one with `dask scheduler`, or run with --cluster local"], done.stderr
    assert not (home/'run'/'bars.parquet').exists()
    bad = mlfin(home, 'run', '--cluster', 'local:zero', check=False)
    assert bad.returncode == 2 and "--cluster: 'local:zero' needs a number of workers, 1 or more (local:N)" in bad.stderr, bad.stderr
