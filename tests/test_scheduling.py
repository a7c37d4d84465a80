"""Where pytest-xdist runs each test (tests/scheduling.py), seen in a small real session with three workers: its reports say which
worker ran each test, in which order. No test here races the clock: what must happen first is made to by a gate, a file that
opens when the tests it waits for have run."""
import json, os, subprocess, sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

# the session's own conftest: the plugin under test, a gate the tests may wait at, and the controller's record of each report
CONFTEST = '''
import json, os, time
from pathlib import Path
import pytest
pytest_plugins = ['scheduling']
RAN = Path(os.environ['RAN'])

def pytest_runtest_logreport(report):
    if report.when == 'call' and hasattr(report, 'node'):   # the controller: which worker ran it (in each worker's order)
        with open(RAN, 'a') as f: f.write(json.dumps([report.node.gateway.id, report.nodeid, report.outcome]) + '\\n')

@pytest.fixture
def gate():
    "Wait until every test marked `waits` has run (a guard of 2 minutes against a scheduler that never runs them)"
    def wait(expected):
        for _ in range(1200):
            if len(list(Path(os.environ['WAITED']).iterdir())) >= expected: return
            time.sleep(0.1)
        pytest.fail('the tests marked waits never all ran')
    return wait

@pytest.fixture
def waited(request):
    yield
    (Path(os.environ['WAITED'])/request.node.name).touch()
'''

STORY = '''
import pytest
pytestmark = pytest.mark.together
told = []

@pytest.fixture(scope='module')
def story(): return told

''' + ''.join(f"def test_s{i}(story): story.append({i}); assert story == list(range({i + 1}))\n" for i in range(6))

PLAIN = '''
import pytest
@pytest.mark.parametrize('n', range(12))
def test_p(n, gate): gate(WAITING)
'''

WAITS = '''
import pytest
@pytest.mark.waits
def test_w0(waited): pass
def test_q(gate): gate(WAITING)
@pytest.mark.waits
@pytest.mark.parametrize('n', range(2))
def test_w1(n, waited): pass
@pytest.mark.waits
def test_w2(waited): pass
'''

HOSTS = '''
import pytest
pytestmark = [pytest.mark.together, pytest.mark.waits]

@pytest.fixture(scope='module')
def hosts(): return []

def test_h0(hosts, waited): hosts.append(0)
def test_h1(hosts, waited): assert hosts == [0]
'''


def session(folder: Path, files: dict[str, str], *args: str) -> tuple[subprocess.CompletedProcess, list[tuple[str, str, str]]]:
    "Run pytest on `files` in `folder` with the plugin; its output, and [(worker, nodeid, outcome)] in the order reported"
    (folder/'conftest.py').write_text(CONFTEST)
    for name, text in files.items(): (folder/name).write_text(text)
    (folder/'waited').mkdir()
    (folder/'pytest.ini').write_text('[pytest]\nmarkers =\n    together: one worker\n    waits: the lane\n')
    # only xdist of the installed plugins (schemathesis, hypothesis, anyio... would load in every worker: a third of the time)
    env = {**os.environ, 'PYTHONPATH': str(HERE), 'RAN': str(folder/'ran.jsonl'), 'WAITED': str(folder/'waited'),
           'PYTEST_DISABLE_PLUGIN_AUTOLOAD': '1'}
    (folder/'ran.jsonl').touch()
    done = subprocess.run([sys.executable, '-m', 'pytest', '-p', 'xdist.plugin', '-p', 'no:cacheprovider', *args], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=600)
    return done, [tuple(json.loads(line)) for line in (folder/'ran.jsonl').read_text().splitlines()]


def test_modules_together_waits_on_the_lane_others_spread(tmp_path):
    waiting = 6   # test_w0, test_w1[0], test_w1[1], test_w2, test_h0, test_h1
    # the story first: scheduled one by one, its first tests would go to two workers at once
    files = {'test_a_story.py': STORY, 'test_b_plain.py': PLAIN.replace('WAITING', str(waiting)),
             'test_c_waits.py': WAITS.replace('WAITING', str(waiting)), 'test_d_hosts.py': HOSTS}
    done, ran = session(tmp_path, files, '-n', '3')
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(ran) == 12 + 6 + 5 + 2 and {outcome for *_, outcome in ran} == {'passed'}, ran
    where = {nodeid: worker for worker, nodeid, _ in ran}
    by_worker = {w: [nodeid for worker, nodeid, _ in ran if worker == w] for w in sorted(set(where.values()))}
    # a `together` module: one worker, in file order (its tests also assert their order through the module fixture)
    story = [n for n in ran if 'story' in n[1]]
    assert len({w for w, *_ in story}) == 1 and [n for _, n, _ in story] == [f"test_a_story.py::test_s{i}" for i in range(6)]
    # the lane (the last worker) runs every waiting test, before anything else; a waiting module whole, in its order
    lane = by_worker['gw2']
    waits = {n for n in where if '::test_w' in n or '::test_h' in n}
    assert set(lane[:waiting]) == waits, by_worker
    assert lane.index('test_d_hosts.py::test_h1') == lane.index('test_d_hosts.py::test_h0') + 1
    # the others took the rest one by one: the plain module's tests on both of them (each holds some before the gate opens)
    assert {where[f"test_b_plain.py::test_p[{n}]"] for n in range(12)} >= {'gw0', 'gw1'}, by_worker


def test_a_module_fixture_needs_together(tmp_path):
    "A module fixture in a module not marked `together` fails its tests, with one line that names the file"
    files = {'test_shared.py': "import pytest\n@pytest.fixture(scope='module')\ndef site(): return 1\ndef test_one(site): pass\n",
             'test_fine.py': "def test_two(): pass\n"}
    done, ran = session(tmp_path, files, '-n', '2', '-rE')
    assert done.returncode == 1, done.stdout
    assert ("\ntest_shared.py: module fixture `site` but no `together` mark: add `pytestmark = pytest.mark.together` "
            "(tests/scheduling.py says why)\n") in done.stdout, done.stdout
    assert ('test_fine.py::test_two', 'passed') in {(n, o) for _, n, o in ran}



class Worker:
    "As much of xdist's WorkerController as the scheduler uses: what it was sent, and whether it was told to stop"
    def __init__(self, id): self.gateway, self.sent, self.shutting_down = type('Gateway', (), {'id': id}), [], False
    def send_runtest_some(self, indices): self.sent.append(indices)
    def shutdown(self): self.shutting_down = True


def test_a_crashed_workers_module_goes_on_whole(tmp_path):
    "A worker gone mid-module: the test it was running is the crashed one; the module's rest goes to one worker, whole, in order"
    from types import SimpleNamespace
    from scheduling import OneByOneButModules, marks_folder
    collection = ['s.py::s0', 's.py::s1', 's.py::s2', 'p.py::p0', 'p.py::p1', 'p.py::p2', 'p.py::p3', 'w.py::w0']
    (tmp_path/'gw0.json').write_text(json.dumps({**{f"s.py::s{i}": ['together'] for i in range(3)}, 'w.py::w0': ['waits']}))
    config = SimpleNamespace(getvalue=lambda name: ['3*popen'], stash={marks_folder: tmp_path})
    scheduler, workers = OneByOneButModules(config), [Worker(f"gw{i}") for i in range(3)]
    for w in workers: scheduler.add_node(w); scheduler.add_node_collection(w, collection)
    scheduler.schedule()
    assert [w.sent for w in workers] == [[[0, 1, 2]], [[3], [4]], [[7], [5]]]   # the module whole; the lane: waiting first
    scheduler.mark_test_complete(workers[0], 0)
    assert scheduler.remove_node(workers[0]) == 's.py::s1'
    scheduler.mark_test_complete(workers[1], 3)
    assert workers[1].sent[-1] == [2] and not scheduler.tests_finished   # s2, its module's rest
    for i in (4, 2, 6): scheduler.mark_test_complete(workers[1], i)
    for i in (7, 5): scheduler.mark_test_complete(workers[2], i)
    assert sorted(sum(workers[1].sent + workers[2].sent, [])) == [2, 3, 4, 5, 6, 7] and all(w.shutting_down for w in workers[1:])
    assert scheduler.tests_finished and not scheduler.has_pending
