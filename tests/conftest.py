"""Shared fixtures. Runs are built once: a few golden runs per session (small slices of the embedded real data), each
built by whichever pytest-xdist worker asks first while the others wait for it, and never changed by a test (each test
that reads one is checked afterwards to have left every file of it as it was). A test that writes takes its own copy
(`copied`). Servers (PostgreSQL, Redis, Chromium) start once per worker; a test that needs a server of its own (a
service with its flags, Prometheus with its rules) starts it."""
import json, os, random, resource, shutil, signal, subprocess, sys, tempfile, time
from contextlib import contextmanager
from pathlib import Path
import nbformat, pytest, yaml
from filelock import FileLock

pytest_plugins = ['scheduling']   # where each test runs (tests/scheduling.py)
ROOT = Path(__file__).resolve().parents[1]
MLFIN = str(Path(sys.executable).with_name('mlfin'))
import zygote
ZYGOTE_LOGS = Path(tempfile.gettempdir())/'mlfin-zygote'   # each worker's server's own messages (none when all is well)
# a slice of real data: two daily series (index and stock, NYSE) and hourly FX (24/5)
SLICE = ['--symbols', 'SPX,GOOGL,EURUSD', '--start', '2016-01-01', '--end', '2017-12-31', '--folds', '3']
# the smallest run that shows what a run does: one daily series, the baseline model
SMALL = ['--symbols', 'SPX', '--start', '2016-01-01', '--end', '2017-12-31', '--folds', '3', '--models', 'logistic']
# every home a test makes keeps its own trial ledger (`mlfin.tracking.ledger`; the default, the user's data folder, is shared by
# every home): a copy of a golden run takes its ledger with it, and no count depends on another test (make test says so too)
os.environ.setdefault('MLFIN_LEDGER', 'home')


# --- the order files run in ----------------------------------------------------------------------------------------------
# The suite passes in any file order: `make test` shuffles the files (`--file-order random`, its seed printed in the header so
# that a failure's order can be run again) and pytest-xdist spreads them over the workers. A file's own tests keep their order:
# a module whose tests tell one story on module fixtures (tests/test_hosts.py's hosts) is marked `together` and runs whole, in its
# order, on one worker (tests/scheduling.py, which also gives the tests marked `waits` a worker of their own). (pytest-randomly
# shuffles the tests inside each file too, with no way to keep a file's order; pytest-reverse reverses them.)

def pytest_addoption(parser):
    parser.addoption('--file-order', default='as-found', help="the order test files run in: as-found, reversed, random, or random:SEED")


def pytest_configure(config):
    if hasattr(config, 'workerinput'): config.file_order = config.workerinput['mlfin_file_order']   # a worker: the controller's choice
    else:
        order = config.getoption('--file-order')
        if order not in ('as-found', 'reversed') and not order.startswith('random'):
            raise pytest.UsageError(f"--file-order: {order!r} is not one of as-found, reversed, random, random:SEED")
        config.file_order = f"random:{random.SystemRandom().randrange(10**6)}" if order == 'random' else order


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    "pytest-xdist: every worker collects the files in the controller's order (workers that collect differently are refused)"
    node.workerinput['mlfin_file_order'] = node.config.file_order


def pytest_report_header(config):
    return f"file order: {config.file_order} (again: --file-order {config.file_order})"


# --- CPU per test --------------------------------------------------------------------------------------------------------
# The suite is bound by the two cores, not by the clock (each worker's wall time swings with what runs beside it), so what a
# test costs is its CPU: this worker's own (every thread), the processes it started and waited for, and the commands its fork
# server ran (tests/zygote.py's `CPU`, from each command's wait4). A service a fixture starts is counted where it is stopped
# and waited for. The dearest 30 are listed after the durations; MLFIN_TEST_CPU=FILE writes every test's figure there (JSON).
def _cpu() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime + zygote.CPU['commands']


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    item.mlfin_cpu = _cpu()
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    made = yield
    if call.when == 'teardown' and hasattr(item, 'mlfin_cpu'):   # setup, call and teardown: the test's whole cost
        made.get_result().user_properties.append(('cpu', round(_cpu() - item.mlfin_cpu, 2)))


CPU_SPENT: dict[str, float] = {}   # test -> CPU seconds, as its reports reach this process (xdist's controller: every worker's)


def pytest_runtest_logreport(report):
    if report.when == 'teardown': CPU_SPENT.update((report.nodeid, v) for k, v in report.user_properties if k == 'cpu')


def pytest_terminal_summary(terminalreporter, config):
    if hasattr(config, 'workerinput') or not CPU_SPENT: return
    dearest = sorted(CPU_SPENT.items(), key=lambda kv: -kv[1])
    terminalreporter.write_sep('=', f"CPU per test: {sum(CPU_SPENT.values()):,.0f} s over {len(CPU_SPENT)} tests, the dearest 30")
    for nodeid, cpu in dearest[:30]: terminalreporter.write_line(f"{cpu:9.1f}s  {nodeid}")
    if path := os.environ.get('MLFIN_TEST_CPU'): Path(path).write_text(json.dumps(dict(dearest), indent=0))


# What makes a test end to end (`make test-fast` leaves those out): a run built once, a browser, an alert receiver, a shared
# server; a module that plays a user's whole path says so itself (pytestmark = pytest.mark.e2e)
E2E_FIXTURES = {'research_golden', 'small_golden', 'served_golden', 'user_golden', 'browser', 'webhook', 'redis_server'}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if E2E_FIXTURES & set(item.fixturenames): item.add_marker(pytest.mark.e2e)
    if config.file_order == 'as-found': return
    files = list(dict.fromkeys(item.path for item in items))
    if config.file_order == 'reversed': files.reverse()
    else: random.Random(int(config.file_order.split(':')[1])).shuffle(files)
    rank = {path: i for i, path in enumerate(files)}
    items.sort(key=lambda item: rank[item.path])   # stable: each file's tests in their own order


def mlfin(home: Path, *args: str, check: bool = True, input: str | None = None, env: dict | None = None,
          cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """Run the `mlfin` command as a user types it, with state under `home` (and `input` on its standard input, `env` besides), in
    the project `cwd` (default: this one)"""
    env = {**os.environ, 'MLFIN_HOME': str(home), 'PLOOMBER_STATS_ENABLED': 'false', **(env or {})}
    # forked from this worker's server of imported libraries (tests/zygote.py says why that is the same command), else a process
    done = (zygote.run(sys.executable, MLFIN, list(args), env, cwd, input, 3600, ZYGOTE_LOGS) or   # a hang guard, for a busy machine
            subprocess.run([MLFIN, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=3600, input=input))
    if check and done.returncode != 0:
        raise AssertionError(f"mlfin {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done


def binance_klines(days: int = 3, seed: int = 7, start: str = '2024-01-04', price: float = 100_000.0, phi: float = 0.0):
    """One-minute BTCUSDT candles in Binance's headerless kline layout (SYNTHETIC, made for tests): log returns `phi` x the last
    one plus Student-t noise (5 degrees of freedom) under GARCH(1,1) volatility (omega 2e-8, alpha 0.08, beta 0.9: a minute's
    volatility about 1 bp, clustered, as BTC's). phi 0 is a random walk: nothing beats "the next close is the last close"."""
    import numpy as np, pandas as pd
    rng = np.random.default_rng(seed)
    n, omega, alpha, beta = days * 1440, 2e-8, 0.08, 0.9
    var, r, shock = omega / (1 - alpha - beta), np.zeros(n), 0.0
    for i in range(n):
        shock = np.sqrt(var) * rng.standard_t(5) * np.sqrt(3 / 5)
        r[i] = (phi * r[i - 1] if i else 0.0) + shock
        var = omega + alpha * shock ** 2 + beta * var
    close = price * np.exp(np.cumsum(r))
    open_ = np.r_[price, close[:-1]]
    wick = np.abs(rng.normal(0, 3e-4, (2, n)))
    volume = rng.gamma(2.0, 5.0, n)
    t = pd.date_range(start, periods=n, freq='1min', tz='UTC').as_unit('ms').asi8
    return pd.DataFrame({'open_time': t, 'open': open_, 'high': np.maximum(open_, close) * (1 + wick[0]),
                         'low': np.minimum(open_, close) * (1 - wick[1]), 'close': close, 'volume': volume, 'close_time': t + 59_999,
                         'quote_volume': volume * close, 'trades': rng.integers(50, 500, n), 'taker_base': volume / 2,
                         'taker_quote': volume * close / 2, 'ignore': 0})


def write_klines(path: Path, klines) -> Path:
    "The candles as Binance's files hold them: no header, prices to the cent"
    klines.to_csv(path, header=False, index=False, float_format='%.2f')
    return path


def early_in_a_minute(left: float = 30):
    """Wait until `left` seconds or more remain of the clock's minute, before a burst that counts a rate limit: the
    service's windows are the epoch's minutes, and limits' sliding counter floors the previous minute's weighted count,
    so a burst that crosses a minute's turn is let through one more"""
    while 60 - time.time() % 60 < left: time.sleep(0.2)


@contextmanager
def run_lock_held(home: Path, name: str = 'run'):
    """The home's lock `name` (the run lock by default) held by another process (as a person's `mlfin run` holds it) while the block
    runs: a job started meanwhile stays running, waiting for it, however fast the machine; released (the holder killed) when the block ends"""
    code = ("import sys, time; from pathlib import Path; from mlfin.processes import exclusive\n"
            "with exclusive(sys.argv[2], at=Path(sys.argv[1])): print('held', flush=True); time.sleep(3600)")
    env = {k: v for k, v in os.environ.items() if k != 'MLFIN_HOME'}   # not counted among the home's own processes
    holder = subprocess.Popen([sys.executable, '-c', code, str(home), name], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == 'held', holder.poll()
        yield holder
    finally: holder.kill(); holder.wait(30)


# --- runs built once --------------------------------------------------------------------------------------------------

SIDE_FILES = ('-wal', '-shm', '-journal')   # SQLite's files beside a database a reader has open: not the data


def files_state(folder: Path) -> dict[str, tuple[int, int]]:
    "Every file under `folder` (SQLite's side files aside) with its size and modification time"
    return {str(p.relative_to(folder)): (st.st_size, st.st_mtime_ns) for p in sorted(folder.rglob('*'))
            if not p.name.endswith(SIDE_FILES) and p.is_file() and (st := p.stat())}


def shared_folder(tmp_path_factory) -> Path:
    "The session's folder that every pytest-xdist worker sees (each worker's own base folder is inside it)"
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get('PYTEST_XDIST_WORKER') else base


class Golden(dict):
    """A run built once for the session (`home`, `reports`, `summary`, `stdout`, `stderr`, `args`: the `mlfin run` arguments
    that made it, its reports inside its home); `unchanged()` fails naming what a test changed in it"""
    def unchanged(self):
        now = files_state(self['home'])
        changed = sorted(k for k in set(now) | set(self.state) if now.get(k) != self.state.get(k))
        assert not changed, (f"the golden run {self['home'].name} was changed by this test ({len(changed)} file(s): "
                             f"{', '.join(changed[:8])}); a test that writes takes its own copy: copied(...)")


def built_once(tmp_path_factory, name: str, args: list[str], before=None, after=()) -> Golden:
    """The run `mlfin run *args` in a home of its own (`before(home)` first, whose standard output is kept as `before`; then each
    `mlfin *command` of `after`), built by the first worker to ask (under a file lock; a build that failed fails every test that
    asks, with its output) and read by every other"""
    root = shared_folder(tmp_path_factory)
    home, built, failed = root/name, root/f"{name}.built.json", root/f"{name}.failed"
    args = [*args, '--reports', str(home/'reports')]
    with FileLock(str(root/f"{name}.lock")):
        if failed.exists(): raise AssertionError(failed.read_text())
        if not built.exists():
            shutil.rmtree(home, ignore_errors=True)
            try:
                said = before(home) if before else ''
                done = mlfin(home, 'run', *args)
                for command in after: mlfin(home, *command)
            except BaseException as e:
                failed.write_text(f"the golden run {name} could not be built: {e}"); raise
            built.write_text(json.dumps({'stdout': done.stdout, 'stderr': done.stderr, 'before': said, 'state': files_state(home)}))
    record = json.loads(built.read_text())
    golden = Golden(home=home, reports=home/'reports', summary=json.loads((home/'run'/'summary.json').read_text()),
                    stdout=record['stdout'], stderr=record['stderr'], before=record['before'], args=args)
    golden.state = {k: tuple(v) for k, v in record['state'].items()}
    return golden


def with_args(args: list[str], **changes) -> list[str]:
    "`mlfin run` arguments with some replaced (symbols='SPX' for --symbols SPX) or added"
    out = list(args)
    for name, value in changes.items():
        option = '--' + name.replace('_', '-')
        if option in out: out[out.index(option) + 1] = str(value)
        else: out += [option, str(value)]
    return out


def copied(golden: Golden, tmp_path: Path) -> dict:
    "A home of the test's own: a copy of `golden`'s (its run up to date there), with the same arguments publishing its reports in it"
    home = tmp_path/golden['home'].name
    shutil.copytree(golden['home'], home, symlinks=True)
    args = [*golden['args'][:-2], '--reports', str(home/'reports')]
    return {**golden, 'home': home, 'reports': home/'reports', 'args': args}


@pytest.fixture(scope='session')
def research_golden(tmp_path_factory) -> Golden:
    "Every family of models.yaml on the session's slice (SPX, GOOGL, EURUSD), through the CLI: the research run"
    return built_once(tmp_path_factory, 'research', SLICE)


@pytest.fixture
def pipeline_run(research_golden):
    "The research run, read only: the test is failed if it changed any of its files"
    yield research_golden
    research_golden.unchanged()


@pytest.fixture
def pipeline_copy(research_golden, tmp_path) -> dict:
    "The research run in a home of the test's own, to change"
    return copied(research_golden, tmp_path)


@pytest.fixture(scope='session')
def small_golden(tmp_path_factory) -> Golden:
    "The smallest run (`SMALL`: SPX 2016-2017, the baseline model): for what any run shows, such as what a change reruns"
    return built_once(tmp_path_factory, 'small', SMALL)


@pytest.fixture
def small_copy(small_golden, tmp_path) -> dict:
    "The small run in a home of the test's own, to change"
    return copied(small_golden, tmp_path)


# --- a project of the researcher's own: mlfin's tasks and one of theirs (pipeline.yaml's own tasks: mlfin.pipeline.spec) ---
PROJECT_FILES = ('settings.ini', 'env.yaml', 'features.yaml', 'models.yaml')   # what makes a folder a project, and its parameters


def notebook(parameters: str, *cells: str, title: str = '# A research notebook') -> nbformat.NotebookNode:
    "A task notebook as a researcher writes one: a title, a cell tagged `parameters`, then its code cells"
    nb = nbformat.v4.new_notebook(metadata={'kernelspec': {'name': 'mlfin', 'display_name': 'mlfin', 'language': 'python'}})
    nb.cells = [nbformat.v4.new_markdown_cell(title), nbformat.v4.new_code_cell(parameters, metadata={'tags': ['parameters']}),
                *map(nbformat.v4.new_code_cell, cells)]
    return nb


# a research notebook of the researcher's own, outside nbs/tasks: reads the features task's dataset, writes a table of its own
MOMENTUM = {'source': 'research/momentum.ipynb', 'name': 'momentum', 'upstream': ['features'],
            'product': {'nb': '{{home}}/run/reports/momentum.html', 'table': '{{home}}/run/momentum.parquet'},
            'params': {'window': 20}}
MOMENTUM_NOTEBOOK = notebook(
    "upstream = None\nproduct = None\nwindow = 20",
    "import pandas as pd\ndataset = pd.read_parquet(upstream['features']['dataset'])",
    "table = dataset.groupby('symbol').size().rename('rows').to_frame().assign(window=window)\n"
    "table.to_parquet(product['table'])\ntable",
    title='# Momentum\n\nRows per symbol and the window asked for: a research notebook run as a task of the DAG.')


def own_project(folder: Path, tasks: list[dict], notebooks: dict[str, nbformat.NotebookNode]) -> Path:
    """A project of the researcher's own in `folder`: this one's settings, run parameters, specs, task notebooks and pages, its
    pipeline.yaml with `tasks` added, and their `notebooks` (path in the project -> notebook)"""
    from mlfin.paths import DASHBOARDS
    folder.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES: shutil.copy(ROOT/name, folder)
    for name in ('nbs/tasks', DASHBOARDS): shutil.copytree(ROOT/name, folder/name)
    spec = yaml.safe_load((ROOT/'pipeline.yaml').read_text())
    (folder/'pipeline.yaml').write_text(yaml.safe_dump({**spec, 'tasks': [*spec['tasks'], *tasks]}, sort_keys=False))
    for path, nb in notebooks.items():
        (folder/path).parent.mkdir(parents=True, exist_ok=True); nbformat.write(nb, folder/path)
    return folder


# what the economy added (issue 55): SPX 2016-2017 on the macro spec, lightgbm beside the same model without the macro group
MACRO = ['--symbols', 'SPX', '--start', '2016-01-01', '--end', '2017-12-31', '--folds', '3', '--spec', 'macro',
         '--models', 'logistic,lightgbm,lightgbm_without_macro']


@pytest.fixture(scope='session')
def macro_golden(tmp_path_factory) -> Golden:
    "The macro run (`MACRO`): features.yaml's macro spec (non-bar series joined as known) and models.yaml's lightgbm_without_macro"
    return built_once(tmp_path_factory, 'macro', MACRO)


# --- products of two runs compared: what "the same run" means wherever and in whatever order it ran ---
VOLATILE = {'created_at'}                  # signals: when each was made
MODEL_VOLATILE = {'saved', 'sha256'}       # model.json: when the file was written, and its hash (zip timestamps, LightGBM's thread count)


def same_products(serial: Path, other: Path, models: int = 6):
    """Every product of `other`'s run equals `serial`'s: Parquet frames value for value, task records as JSON, final models'
    predictions (at least `models` of them: a run that made none proves nothing)"""
    import numpy as np
    from mlfin.features import inputs_of
    from mlfin.models.core import load_model
    a, b = serial/'run', other/'run'
    parquet = sorted(p.name for p in a.glob('*.parquet'))
    assert parquet and parquet == sorted(p.name for p in b.glob('*.parquet'))
    for name in parquet:
        x, y = pd.read_parquet(a/name), pd.read_parquet(b/name)
        pd.testing.assert_frame_equal(x.drop(columns=[c for c in VOLATILE if c in x]), y.drop(columns=[c for c in VOLATILE if c in y]),
                                      obj=name)
    # what was made, as a task records it: its units by their keys, whether each was made or read back (a run cut short
    # keeps what it had made) is how, not what
    made = lambda path: {k: ({'keys': v['keys']} if k == 'units' else v) for k, v in json.loads(path.read_text()).items()}
    for name in ('ingest.json', 'train.json', 'backtest.json'):
        assert made(a/name) == made(b/name), name
    data = pd.read_parquet(a/'dataset.parquet')
    folders = sorted(p.parent.relative_to(a/'models') for p in (a/'models').rglob('model.json'))
    assert folders == sorted(p.parent.relative_to(b/'models') for p in (b/'models').rglob('model.json')) and len(folders) >= models
    for folder in folders:
        x, y = (json.loads((root/'models'/folder/'model.json').read_text()) for root in (a, b))
        assert {k: v for k, v in x.items() if k not in MODEL_VOLATILE} == {k: v for k, v in y.items() if k not in MODEL_VOLATILE}, folder
        rows = data[data['symbol'] == folder.parts[0]]
        rows = (rows[x['inputs']] if x.get('inputs') else inputs_of(rows)).to_numpy()   # its own inputs (a model without a group)
        np.testing.assert_array_equal(load_model(a/'models'/folder).predict(rows), load_model(b/'models'/folder).predict(rows), str(folder))


# --- a team's MLflow: `mlfin tracking serve` on a real PostgreSQL (tests/test_tracking.py, tests/test_team.py) ---

TRACKING_PASSWORD = 'a-long-admin-password-for-tests'   # its admin's


class TrackingServer:
    "`mlfin tracking serve` as an operator starts it, on a free loopback port, until stopped"
    def __init__(self, home: Path, db: str, artifacts: Path, *args: str):
        self.db, self.artifacts, self.port = db, artifacts, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, 'MLFIN_HOME': str(home), 'MLFLOW_AUTH_ADMIN_PASSWORD': TRACKING_PASSWORD, 'HOME': str(home)}
        home.mkdir(parents=True, exist_ok=True)
        self.log = home/f"tracking-{self.port}.log"
        self.process = subprocess.Popen([MLFIN, 'tracking', 'serve', '--db', db, '--artifacts', str(artifacts), '--port', str(self.port),
                                         '--workers', '1', *args], cwd=ROOT, env=env, stdout=open(self.log, 'ab'), stderr=subprocess.STDOUT,
                                        start_new_session=True)
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200: return
            except httpx.HTTPError: pass
            if self.process.poll() is not None: raise AssertionError(f"mlfin tracking serve exited {self.process.returncode}:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.3)
        raise AssertionError(f"mlfin tracking serve did not answer /health in 120 s:\n{self.log.read_text()[-3000:]}")

    def client_env(self) -> dict:
        "What a client of the server sets: MLflow's own variables"
        return {'MLFLOW_TRACKING_URI': self.url, 'MLFLOW_TRACKING_USERNAME': 'admin', 'MLFLOW_TRACKING_PASSWORD': TRACKING_PASSWORD}

    def stop(self):
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM); self.process.wait(60)


# --- stores: the embedded Parquet store and a real PostgreSQL server, behind the same tests ---

def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


class PgServer(str):
    "The test server's base URL, which can also be stopped and started again (as an operator's database restarts)"
    def __new__(cls, url, pg_ctl, options, log):
        made = super().__new__(cls, url); made.pg_ctl, made.options, made.log = pg_ctl, options, log; return made
    def stop(self): self.pg_ctl('-m', 'fast', '-w', 'stop')   # every session ended: the clients' connections break
    def start(self): self.pg_ctl('-l', str(self.log), '-w', '-t', '60', 'start', '-o', self.options)
    def restart(self): self.stop(); self.start()


@pytest.fixture(scope='session')
def postgres_server():
    "A private PostgreSQL server on loopback (Debian's binaries, installed by env/setup-test.sh); yields its base URL"
    import shutil, tempfile
    initdb = sorted(Path('/usr/lib/postgresql').glob('*/bin/initdb'))
    assert initdb, "PostgreSQL is missing: env/setup-test.sh installs it"
    bindir = initdb[-1].parent
    root = Path(tempfile.mkdtemp(prefix='mlfin-pg-'))
    root.chmod(0o755)
    as_owner = []
    if os.geteuid() == 0:  # the server refuses to run as root: run it as Debian's postgres user
        shutil.chown(root, 'postgres'); as_owner = ['runuser', '-u', 'postgres', '--']
    port = free_port()
    run = lambda *cmd: subprocess.run([*as_owner, *cmd], check=True, capture_output=True, text=True, timeout=120)
    run(str(bindir/'initdb'), '-D', str(root/'data'), '-U', 'mlfin', '--auth=trust', '-E', 'UTF8', '--no-sync')
    # fsync off: a throw-away test server (atomicity is the transaction's, not the disk's)
    run(str(bindir/'pg_ctl'), '-D', str(root/'data'), '-l', str(root/'server.log'), '-w', '-t', '60', 'start',
        '-o', f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off -c full_page_writes=off")
    try: yield PgServer(f"postgresql://mlfin@127.0.0.1:{port}", lambda *a: run(str(bindir/'pg_ctl'), '-D', str(root/'data'), *a),
                        f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off -c full_page_writes=off", root/'server.log')
    finally:
        subprocess.run([*as_owner, str(bindir/'pg_ctl'), '-D', str(root/'data'), '-m', 'immediate', 'stop'], capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


def redis_answers(port: int, within: float = 30):
    "Wait until the Redis server on loopback `port` answers PING"
    import socket
    deadline = time.time() + within
    while True:
        try:
            with socket.create_connection(('127.0.0.1', port), timeout=1) as s:
                s.sendall(b'PING\r\n')
                if s.recv(16).startswith(b'+PONG'): return
        except OSError: pass
        assert time.time() < deadline, f"redis-server on port {port} did not answer in {within:g} s"
        time.sleep(0.05)


@pytest.fixture(scope='session')
def redis_server():
    "A private Redis server on loopback (Debian's redis-server, installed by env/setup-test.sh), nothing saved; yields its URL"
    binary = shutil.which('redis-server') or '/usr/bin/redis-server'
    assert Path(binary).exists(), "redis-server is missing: env/setup-test.sh installs it"
    port, folder = free_port(), tempfile.mkdtemp(prefix='mlfin-redis-')
    server = subprocess.Popen([binary, '--port', str(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', folder],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        redis_answers(port)
        yield f"redis://127.0.0.1:{port}"
    finally:
        server.terminate(); server.wait(30); shutil.rmtree(folder, ignore_errors=True)


from mlfin.pictures import CHROMIUM   # Debian's, installed by env/setup-test.sh (Playwright's own download needs the internet)
CHROMIUM_FLAGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
                  '--disable-component-update', '--disable-sync']


@pytest.fixture(scope='session')
def browser():
    "Headless Chromium driven by Playwright, started once: each test opens pages (or a person's context) of its own"
    from playwright.sync_api import sync_playwright
    assert Path(CHROMIUM).exists(), "Debian chromium is missing: env/setup-test.sh installs it"
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture(params=['parquet', 'postgresql'])
def store_url(request, tmp_path):
    "An empty store of each kind: a folder, or a fresh database on the test server"
    if request.param == 'parquet': return str(tmp_path/'store')
    import psycopg, uuid
    base = request.getfixturevalue('postgres_server')
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"{base}/postgres", autocommit=True) as con: con.execute(f"CREATE DATABASE {name}")
    return f"{base}/{name}"


def store_snapshot(url: str) -> dict:
    "Everything a store holds, hashed: every file's bytes, or every table's rows"
    import hashlib
    if not url.startswith('postgresql://'):
        root = Path(url)
        return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob('*')) if p.is_file()}
    import psycopg
    with psycopg.connect(url) as con:
        tables = [r[0] for r in con.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")]
        return {t: hashlib.sha256(repr(con.execute(f"SELECT * FROM {t} ORDER BY 1, 2, 3").fetchall()).encode()).hexdigest() for t in tables}


# --- the service: `mlfin serve` as an operator starts it, on the registry of one pipeline run --------------------------

import httpx, pandas as pd
from mlfin import data

# the leaders, made production by hand whatever the promotion policy decided: the service needs a production model of each series
RUN = ['--symbols', 'SPX,ES:1m', '--start', '2010-01-01', '--models', 'logistic,lightgbm', '--folds', '3',
       '--promote-min-auc', '0', '--promote-min-sharpe', '-100']
ES = data.load_sample('ES')   # 2,264 real one-minute bars, 1-3 Sep 2013


@pytest.fixture(scope='session')
def served_golden(tmp_path_factory) -> Golden:
    "A pipeline run through the CLI: its registry (SPX 1d and ES 1m in production) is what the services serve"
    # the daily leader's probabilities need not beat the base rate: a person chooses it here
    promoted = [(*step, series, *why) for series in ('SPX:1d', 'ES:1m')
                for step, why in ((('models', 'promote'), ('--reason', 'the service tests serve the leaders')), (('models', 'release'), ()))]
    return built_once(tmp_path_factory, 'served', RUN, after=promoted)


@pytest.fixture
def served_home(served_golden, tmp_path) -> Path:
    "The served run's home, a copy of the test's own: a service writes its keys, people, log and signals into its home"
    return copied(served_golden, tmp_path)['home']


def new_database(base: str) -> str:
    "A fresh database on the server at `base`, made with PostgreSQL's `createdb` as the README makes MLflow's and Optuna's"
    import uuid
    from urllib.parse import urlsplit
    name, url = f"s_{uuid.uuid4().hex[:12]}", urlsplit(str(base))
    env = {**os.environ, 'PGHOST': url.hostname, 'PGPORT': str(url.port), 'PGUSER': url.username}
    subprocess.run(['createdb', name], env=env, check=True, capture_output=True, text=True, timeout=60)
    return f"{base}/{name}"


class Service:
    "`mlfin serve` as a user starts it, on a free loopback port, until stopped"
    wrap = ()   # a command it runs under (unshare ...)
    patience = 120   # seconds it has to answer /health
    grace = 60       # seconds it has to end after a signal, before it is killed
    def __init__(self, home: Path, *args: str, store: str | None = None, wrap: tuple = (), port: int | None = None):
        self.home, self.store, self.port, self.wrap = Path(home), store, port or free_port(), list(wrap)
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = ['serve', '--port', str(self.port), *(['--store', store] if store else []), *args]
        self.env = {**os.environ, 'MLFIN_HOME': str(home), 'PLOOMBER_STATS_ENABLED': 'false'}
        self.start()

    def start(self, scheme: str = 'http', verify=True):
        self.home.mkdir(parents=True, exist_ok=True)
        self.log = self.home/f"serve-{self.port}.log"
        self.process = ((not self.wrap and zygote.popen(sys.executable, MLFIN, self.args, self.env, ROOT, self.log, ZYGOTE_LOGS)) or
                        subprocess.Popen([*self.wrap, MLFIN, *self.args], cwd=ROOT, env=self.env, stdout=open(self.log, 'ab'), stderr=subprocess.STDOUT))
        try:
            deadline = time.time() + self.patience
            while time.time() < deadline:
                try:
                    if httpx.get(f"{scheme}://127.0.0.1:{self.port}/health", timeout=1, verify=verify).status_code == 200: return
                except httpx.HTTPError: pass
                if self.process.poll() is not None: raise AssertionError(f"mlfin serve exited {self.process.returncode}:\n{self.log.read_text()[-3000:]}")
                time.sleep(0.2)
            raise AssertionError(f"mlfin serve did not answer /health in {self.patience} s:\n{self.log.read_text()[-3000:]}")
        except BaseException:   # a start that failed (or was interrupted) leaves nothing running: the caller never gets a Service to stop
            self.stop()
            raise

    def stop(self, sig=signal.SIGTERM):
        "Signal it and wait; killed if it has not ended after `grace` seconds"
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try: self.process.wait(self.grace)
            except subprocess.TimeoutExpired:
                self.process.kill(); self.process.wait(self.grace)

    def key(self, role: str) -> str:
        "A new key, made with `mlfin keys create` as an operator makes one"
        return mlfin(self.home, 'keys', 'create', '--role', role, *(['--store', self.store] if self.store else [])).stdout.strip()

    def person(self, name: str, role: str, password: str = 'a passphrase of the tests, long enough') -> dict:
        "A person made with `mlfin users add` as an admin makes one: their password, second factor (pyotp) and recovery codes"
        import pyotp
        done = mlfin(self.home, 'users', 'add', name, '--role', role, '--password-stdin', *(['--store', self.store] if self.store else []),
                     input=password + '\n')
        uri, *codes = done.stdout.split()
        return {'name': name, 'password': password, 'totp': pyotp.parse_uri(uri), 'codes': codes}

    def login(self, person: dict, code: str | None = None, **form) -> httpx.Response:
        "POST /token with the OAuth2 password form, the code now shown by the person's authenticator app unless given"
        code = person['totp'].now() if code is None else code
        return self.client().post('/token', data={'grant_type': 'password', 'username': person['name'], 'password': person['password'],
                                                  **({'totp': code} if code else {}), **form})

    def client(self, key: str | None = None, token: str | None = None) -> httpx.Client:
        headers = {**({'X-API-Key': key} if key else {}), **({'Authorization': f"Bearer {token}"} if token else {})}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def errors(self) -> str:
        "Server errors in the log (a traceback means a 500 was answered)"
        text = self.log.read_text()
        return text if 'Traceback' in text else ''


@contextmanager
def service(home, *args, store=None, **kw):
    s = Service(home, *args, store=store, **kw)
    try: yield s
    finally: s.stop()


@contextmanager
def alertmanager(tmp_path: Path, hook: str):
    "A real Alertmanager on loopback delivering to the webhook `hook`, configured as mlfin writes it (groups notified after a second), once ready: its URL"
    from mlfin.monitor.alerting import alertmanager_config
    port = free_port()
    (tmp_path/'am.yml').write_text(yaml.safe_dump(alertmanager_config(hook, wait='1s', interval='1s', repeat='1h')))
    am = subprocess.Popen(['prometheus-alertmanager', f"--config.file={tmp_path/'am.yml'}", f"--storage.path={tmp_path/'am-data'}",
                           f"--web.listen-address=127.0.0.1:{port}", '--cluster.listen-address=', '--log.level=warn'],
                          stdout=open(tmp_path/'am.log', 'ab'), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60   # a hang guard: it answers once it listens
        while True:
            try:
                if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200: break
            except httpx.HTTPError: pass
            if am.poll() is not None or time.time() > deadline:
                raise AssertionError(f"Alertmanager did not start:\n{(tmp_path/'am.log').read_text()[-2000:]}")
            time.sleep(0.1)
        yield url
    finally: am.terminate(); am.wait(30)


def copy_rates(bars: pd.DataFrame) -> list[dict]:
    "Bars as MetaTrader 5's copy_rates records (epoch seconds, tick and real volume, spread in points)"
    return [{'time': int(t.timestamp()), 'open': r.open, 'high': r.high, 'low': r.low, 'close': r.close, 'tick_volume': r.volume,
             'spread': 0, 'real_volume': r.volume} for t, r in zip(bars.index, bars.itertuples())]


def market_data(bars: pd.DataFrame) -> list[dict]:
    "Bars in the seed systems' market_data shape (ts, open, high, low, close, volume, spread)"
    return [{'ts': t.isoformat(), 'open': r.open, 'high': r.high, 'low': r.low, 'close': r.close, 'volume': r.volume, 'spread': 0}
            for t, r in zip(bars.index, bars.itertuples())]


def wait_for(client: httpx.Client, job_id: str, states: set, seconds: float = 420) -> dict:
    "A job's record once it reaches one of `states` (a worker killed under the poll: the next one answers)"
    job, deadline = {'state': None}, time.time() + seconds
    while time.time() < deadline:
        try: job = client.get(f"/jobs/{job_id}").json()
        except httpx.TransportError: time.sleep(0.5); continue
        if job['state'] in states: return job
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} still {job['state']} after {seconds} s:\n{job.get('log')}")


@pytest.fixture
def webhook():
    "Alertmanager's webhook receiver on loopback: its URL, and the list each notification's JSON is appended to"
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    got = []
    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self):
            got.append(json.loads(self.rfile.read(int(self.headers['Content-Length']))))
            self.send_response(200); self.end_headers()
        def log_message(self, *args): pass
    server = ThreadingHTTPServer(('127.0.0.1', free_port()), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try: yield f"http://127.0.0.1:{server.server_port}/", got
    finally: server.shutdown()
