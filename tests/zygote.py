"""The `mlfin` command for the tests, forked from a process that imported its libraries once (tests/conftest.py's `mlfin`).

A fresh `mlfin` process spends most of a small command in imports: about 1.3 s of CPU for the CLI alone, and 10 to 12 s for
what a small `mlfin run` imports (MLflow, Ploomber, vectorbt and numba, skops, scikit-learn), of its 22 to 25 s of CPU. The suite types `mlfin` some 250 times, so each
test worker starts this server once: it imports what the commands import, then forks a child per command, which sets the
command's environment, folder, standard streams and arguments and runs the same entry point the `mlfin` script runs
(`mlfin.command:main`), which exits as an interpreter does (threads joined, atexit handlers run, streams flushed).

What a child shares with its server, and why that is safe here: the modules were imported under the suite's own environment
(mlfin reads its settings when called, not when imported; `config.runtime_env` is applied before the imports, as every mlfin
process applies it); Python's `random` is reseeded in each child (it registers an at-fork hook); Keras and JAX are never
imported here (KERAS_BACKEND and XLA_FLAGS are read as they are imported, and an LSTM run imports them in its own child).
The tests that start long-lived processes (services, dashboards, collectors) or signal them still start real processes; so
do the tests of what a fresh process does (imports, the first run's timings). MLFIN_TEST_FORK=0 runs every command as its
own process.

Protocol: a Unix socket; a request is one JSON line {args, env, cwd, stdin, stdout, stderr} (file paths); the answer is a line
with the command's pid, then a line with its exit status (negative: the signal that ended it), as `subprocess` reports it,
and the CPU seconds it used (its children's that it waited for included), which `CPU` adds up for the suite's per-test CPU
(tests/conftest.py).
"""
import json, os, signal, socket, sys, traceback

PRELOAD = ('mlfin.command', 'mlfin.cli', 'mlfin.pipeline', 'mlfin.ops.backup', 'mlfin.ops.restore', 'mlfin.ops.health', 'mlfin.service.app',
           'mlflow', 'mlflow.tracking', 'ploomber', 'papermill', 'vectorbt', 'skops.io', 'sklearn.linear_model', 'sklearn.ensemble',
           'lightgbm', 'xgboost', 'httpx')


def _command(request: dict, conn: socket.socket):
    "In the forked child: become the command, run it, and exit as a fresh interpreter would"
    conn.close()
    os.setpgrp()   # its own process group, as a command started by a shell: a test's kill of the group reaches its children
    for s in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP): signal.signal(s, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.chdir(request['cwd']); os.umask(request['umask'])
    os.environ.clear(); os.environ.update(request['env'])
    appended = lambda path: os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    opened = [os.open(request['stdin'], os.O_RDONLY), appended(request['stdout'])]
    opened.append(opened[1] if request['stderr'] == request['stdout'] else appended(request['stderr']))
    for fd, source in enumerate(opened): os.dup2(source, fd)
    for source in set(opened): os.close(source)
    # as a fresh interpreter makes them for files: stdout block-buffered, stderr line-buffered with backslashed bad characters
    sys.stdin, sys.stdout = open(0, 'r', encoding='utf-8', closefd=False), open(1, 'w', encoding='utf-8', closefd=False)
    sys.stderr = open(2, 'w', buffering=1, encoding='utf-8', errors='backslashreplace', closefd=False)
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = sys.stdin, sys.stdout, sys.stderr
    sys.argv = [request['argv0'], *request['args']]
    # the import path a fresh script has: its own folder first (the server's is tests/, whose modules would hide a library's of
    # the same name, or be found where a fresh command fails)
    sys.path[0] = os.path.dirname(os.path.realpath(request['argv0']))
    try: from mlfin.command import main   # the `mlfin` script's entry point
    except BaseException: traceback.print_exc(); os._exit(1)
    main(request['args'])   # exits as the `mlfin` script does, never returning here


def _session(conn: socket.socket):
    "In a forked child of the server: start the command, say its pid, wait for it and say how it ended"
    request = json.loads(conn.makefile('r').readline())
    pid = os.fork()
    if pid == 0: _command(request, conn)
    conn.sendall(f"{pid}\n".encode())
    _, status, usage = os.wait4(pid, 0)   # the command's CPU, which no process above it is told of (sessions are not waited)
    code = os.waitstatus_to_exitcode(status)
    try: conn.sendall(f"{code} {usage.ru_utime + usage.ru_stime:.3f}\n".encode())
    except OSError: pass
    os._exit(0)


def serve(path: str):
    "Import the commands' libraries, then fork a session per connection on the Unix socket `path`, until the parent goes"
    from mlfin.config import apply_runtime_env
    apply_runtime_env()
    import importlib
    for name in PRELOAD: importlib.import_module(name)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path); listener.listen(64)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)   # sessions reaped by the kernel
    print('ready', flush=True)
    parent = os.getppid()
    listener.settimeout(5)
    try:
        while os.getppid() == parent:   # the test worker that started it is gone: so is it
            try: conn, _ = listener.accept()
            except socket.timeout: continue
            if os.fork() == 0:
                try:
                    listener.close(); signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                    _session(conn)
                finally: os._exit(1)   # never back into the server's loop
            conn.close()
    finally: os.unlink(path)


if __name__ == '__main__': serve(sys.argv[1])


# --- the tests' side -------------------------------------------------------------------------------------------------------
import subprocess, tempfile, threading
from pathlib import Path

# what an interpreter or a native library reads as it starts or loads: a command given other values than the server's runs as a
# process of its own
STARTUP = ('PYTHON', 'OMP_', 'OPENBLAS', 'MKL_', 'NUMBA_', 'NUMEXPR', 'KERAS_', 'XLA_', 'LD_', 'MALLOC', 'JAX_', 'CUDA', 'TF_')
_server: dict = {}
_lock = threading.Lock()
CPU = {'commands': 0.0}   # CPU seconds of every forked command this test worker saw end


def _started(python: str, folder: Path) -> dict | None:
    "This test worker's server (started on first use); None when MLFIN_TEST_FORK=0 or it could not start"
    with _lock:
        if os.environ.get('MLFIN_TEST_FORK', '1') == '0': return None
        found = _server.get('this')
        if found and found['process'].poll() is None: return found
        found = _server['this'] = started(python, folder, {**os.environ, 'PLOOMBER_STATS_ENABLED': 'false'})
        return found


def started(python: str, folder: Path, env: dict) -> dict | None:
    "A server started with `env` (its messages appended to `folder`/zygote.log), once it is ready; None if it could not start"
    folder.mkdir(parents=True, exist_ok=True)
    path = tempfile.mktemp(prefix='mlfin-zygote-', suffix='.sock', dir='/tmp')   # a Unix socket's path is at most 107 bytes
    process = subprocess.Popen([python, __file__, path], env=env, cwd=Path(__file__).resolve().parents[1], stdout=subprocess.PIPE,
                               stderr=open(folder/'zygote.log', 'ab'), text=True)
    return {'process': process, 'path': path, 'env': env} if process.stdout.readline().strip() == 'ready' else None


def _startup_differs(server: dict, env: dict) -> bool:
    keys = {k for k in (*server['env'], *env) if k.startswith(STARTUP)}
    return any(server['env'].get(k) != env.get(k) for k in keys)


class Forked:
    "A command forked by the server, as much of `subprocess.Popen` as the tests use: pid, poll, wait, returncode, send_signal, terminate, kill"
    def __init__(self, server: dict, argv0: str, args: list, env: dict, cwd: str, stdin: str, stdout: str, stderr: str):
        umask = os.umask(0o022); os.umask(umask)
        self.conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.conn.connect(server['path'])
        self.conn.sendall((json.dumps({'argv0': argv0, 'args': [str(a) for a in args], 'env': env, 'cwd': str(cwd), 'umask': umask,
                                       'stdin': stdin, 'stdout': stdout, 'stderr': stderr}) + '\n').encode())
        self.answers = self.conn.makefile('r')
        self.pid, self.returncode, self.args = int(self.answers.readline()), None, [argv0, *args]

    def wait(self, timeout: float | None = None) -> int:
        import select
        if self.returncode is not None: return self.returncode
        if not select.select([self.conn], [], [], timeout)[0]: raise subprocess.TimeoutExpired(self.args, timeout)
        line = self.answers.readline().split()   # the session writes the line whole, once the command has ended
        self.returncode = int(line[0]) if line else -9
        CPU['commands'] += float(line[1]) if len(line) > 1 else 0.0
        self.conn.close()
        return self.returncode

    def poll(self) -> int | None:
        if self.returncode is not None: return self.returncode
        try: return self.wait(0)
        except subprocess.TimeoutExpired: return None

    def send_signal(self, sig):
        if self.returncode is None:
            try: os.kill(self.pid, sig)
            except ProcessLookupError: pass
    def terminate(self): self.send_signal(signal.SIGTERM)
    def kill(self): self.send_signal(signal.SIGKILL)


def run(python: str, argv0: str, args: list, env: dict, cwd, input: str | None, timeout: float, folder: Path,
        server: dict | None = None) -> subprocess.CompletedProcess | None:
    """`subprocess.run(capture_output=True, text=True)`'s answer for the command, forked by the server (this worker's, or the
    `server` given: `started`'s); None: run it as a process instead"""
    server = server or _started(python, folder)
    if server is None or _startup_differs(server, env): return None
    with tempfile.TemporaryDirectory(prefix='mlfin-cmd-') as d:
        streams = {name: os.path.join(d, name) for name in ('stdin', 'stdout', 'stderr')}
        Path(streams['stdin']).write_text(input or '') if input is not None else None
        for name in ('stdout', 'stderr'): Path(streams[name]).touch()
        command = Forked(server, argv0, args, env, cwd, streams['stdin'] if input is not None else os.devnull, streams['stdout'], streams['stderr'])
        try: code = command.wait(timeout)
        except subprocess.TimeoutExpired:
            command.kill(); command.wait(60); raise
        read = lambda name: Path(streams[name]).read_text(encoding='utf-8')
        return subprocess.CompletedProcess([argv0, *args], code, read('stdout'), read('stderr'))


def popen(python: str, argv0: str, args: list, env: dict, cwd, log: Path, folder: Path) -> Forked | None:
    "A long-lived command (a service) forked by the server, its output appended to `log`; None: start it as a process instead"
    server = _started(python, folder)
    if server is None or _startup_differs(server, env): return None
    return Forked(server, argv0, args, env, cwd, os.devnull, str(log), str(log))
