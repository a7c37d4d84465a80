"""The `mlfin` command forked by tests/zygote.py's server is the command a user types: the suite's most used commands (an
ingest, a failing one, a bad argument, one that reads its answer from standard input, a listing, help) give the same exit
status, standard output and standard error forked as run fresh (`mlfin ...` in a process of its own), and a command whose
library is missing fails the same way forked as fresh (a server that imported libraries once could hide that)."""
import os, subprocess, sys
from pathlib import Path
import pytest
import zygote
from conftest import MLFIN, ROOT, ZYGOTE_LOGS, mlfin

pytestmark = pytest.mark.skipif(os.environ.get('MLFIN_TEST_FORK', '1') == '0', reason="MLFIN_TEST_FORK=0: nothing is forked")


_OWN: dict = {}   # start-up values -> a server started with them


def server_for(env: dict) -> dict | None:
    """This worker's server, or, where a test before this one changed this process's start-up values (an in-process
    run sets numba's and the BLAS's), one started with the values `env` has now: forked, not refused as another start"""
    found = zygote._started(sys.executable, ZYGOTE_LOGS)
    if found is not None and not zygote._startup_differs(found, env): return found
    key = tuple(sorted((k, v) for k, v in env.items() if k.startswith(zygote.STARTUP)))
    if key not in _OWN or _OWN[key] is None or _OWN[key]['process'].poll() is not None:
        _OWN[key] = zygote.started(sys.executable, ZYGOTE_LOGS, {**os.environ, 'PLOOMBER_STATS_ENABLED': 'false'})
    return _OWN[key]


def both(tmp_path: Path, args: list[str], input: str | None = None, setup: tuple = (), env: dict | None = None,
         server=None) -> tuple[tuple, tuple]:
    """(exit status, stdout, stderr) of the command forked, then fresh, each in a home of its own made alike by the `setup`
    commands (their paths, the same length, written HOME in what they say)"""
    said = []
    for way in ('a', 'b'):
        home = tmp_path/way
        for command in setup: mlfin(home, *command)
        e = {**os.environ, 'MLFIN_HOME': str(home), 'PLOOMBER_STATS_ENABLED': 'false', **(env or {})}
        if way == 'a':
            done = zygote.run(sys.executable, MLFIN, args, e, ROOT, input, 600, ZYGOTE_LOGS, server=server or server_for(e))
            assert done is not None, "the command was not forked"
        else:
            done = subprocess.run([MLFIN, *args], cwd=ROOT, env=e, capture_output=True, text=True, timeout=600, input=input,
                                  **({} if input is not None else {'stdin': subprocess.DEVNULL}))   # the server's: /dev/null
        said.append((done.returncode, *(s.replace(str(home), 'HOME') for s in (done.stdout, done.stderr))))
    return tuple(said)


COMMANDS = {   # the suite's most typed commands, one of each path (help, a write, a refusal, click's usage error, a read, MLflow),
               # and what each must say (so that both ways doing nothing cannot pass)
    'help': (['--help'], [], 0, 'Usage: mlfin'),
    'ingest': (['ingest', 'sample:SPX'], [], 0, 'SPX 1d: 5,031 good row(s)'),
    'ingest refused': (['ingest', 'sample:NOSUCH'], [], 2, "unknown sample 'NOSUCH'"),
    'bad argument': (['run', '--no-such-option'], [], 2, 'No such option'),
    'data show': (['data', 'show', 'SPX', '--last', '2'], [['ingest', 'sample:SPX']], 0, '2018-12-31'),
    'models ls': (['models', 'ls'], [], 0, 'the registry is empty'),
}


@pytest.mark.parametrize('name', COMMANDS)
def test_forked_as_fresh(tmp_path, name):
    args, setup, code, says = COMMANDS[name]
    forked, fresh = both(tmp_path, args, setup=setup)
    assert forked == fresh
    assert forked[0] == code and says in forked[1] + forked[2], forked


@pytest.mark.parametrize('answer, code', [('n\n', 1), ('y\n', 0)])
def test_an_answer_on_stdin(tmp_path, answer, code):
    "`data rm` asks before it removes: the answer read from standard input, declined or taken, alike"
    forked, fresh = both(tmp_path, ['data', 'rm', 'SPX:1d', '--start', '2018-12-01'], input=answer, setup=[['ingest', 'sample:SPX']])
    assert forked == fresh
    assert forked[0] == code and '[y/N]' in forked[1], forked


def test_a_missing_library_fails_alike(tmp_path):
    """`models ls` imports alembic as it runs (the server has not): with alembic missing (a stand-in on PYTHONPATH that fails to
    import, given to a server of this test's own and to the fresh command alike) it fails forked as fresh, naming it"""
    missing = tmp_path/'missing'; (missing/'alembic').mkdir(parents=True)
    (missing/'alembic'/'__init__.py').write_text("raise ModuleNotFoundError(\"No module named 'alembic'\", name='alembic')\n")
    env = {'PYTHONPATH': str(missing)}
    server = zygote.started(sys.executable, tmp_path, {**os.environ, 'PLOOMBER_STATS_ENABLED': 'false', **env})
    assert server is not None, (tmp_path/'zygote.log').read_text()
    try: forked, fresh = both(tmp_path, ['models', 'ls'], env=env, server=server)
    finally: server['process'].kill(); server['process'].wait(30); Path(server['path']).unlink(missing_ok=True)
    assert forked == fresh
    assert forked[0] == 1 and "No module named 'alembic'" in forked[2], forked


def test_a_forked_commands_cpu_is_counted_for_the_test_that_ran_it(tmp_path):
    "The fork server reports each command's CPU (wait4): the suite's per-test CPU (tests/conftest.py) would miss it otherwise"
    before = zygote.CPU['commands']
    done = zygote.run(sys.executable, MLFIN, ['data', 'ls'], {**os.environ, 'MLFIN_HOME': str(tmp_path)}, ROOT, None, 600,
                      ZYGOTE_LOGS, server=server_for(os.environ))
    assert done is not None and done.returncode == 0, done
    assert zygote.CPU['commands'] > before
