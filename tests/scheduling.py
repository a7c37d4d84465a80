"""Where pytest-xdist runs each test (a plugin: tests/conftest.py loads it). Tests spread one by one over the workers,
but a module marked `together` (its tests share module fixtures: a site, hosts, a tracking server, built once and
telling one story in file order) goes to one worker whole, in its order. A test whose time is mostly the wall clock's
(an alert's `for:`, Prometheus's rounds, a minute to turn) is marked `waits`: with three workers or more the last one is
their lane, which runs them first, so their minutes pass beside the tests that compute instead of holding a worker the
cores keep busy (the Makefile starts 4 on a 2-core machine), then takes what is left like the others; the others take a
waiting test only when nothing else is left.

All on pytest's and pytest-xdist's public hooks: the controller collects nothing, so each worker writes its tests' marks
(`pytest_collection_modifyitems`) to a folder the controller names (`pytest_configure_node`), and the scheduler
(`pytest_xdist_make_scheduler`: an object with the calls xdist's `DSession` makes, no xdist class subclassed) reads them
once every worker has collected. (xdist's own grouping, --dist loadgroup, renames each test's nodeid, which pytest 9.2
no longer takes: pytest-xdist issue 1386.)"""
import json, shutil, tempfile
from pathlib import Path
import pytest
from xdist.report import report_collection_diff
from xdist.workermanage import parse_tx_spec_config

MARKS = ('together', 'waits')   # the marks the scheduler reads (registered in pyproject.toml)
marks_folder = pytest.StashKey[Path]()


def pytest_configure(config):
    if not hasattr(config, 'workerinput'): config.stash[marks_folder] = Path(tempfile.mkdtemp(prefix='mlfin-marks-'))


def pytest_unconfigure(config):
    if marks_folder in config.stash: shutil.rmtree(config.stash[marks_folder], ignore_errors=True)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    node.workerinput['mlfin_marks'] = str(node.config.stash[marks_folder])


@pytest.hookimpl(trylast=True)   # after every other plugin has added its marks
def pytest_collection_modifyitems(config, items):
    "A worker: its tests' scheduling marks, {nodeid: [mark, ...]}, to the controller's folder (whole, by a rename)"
    if 'mlfin_marks' not in getattr(config, 'workerinput', {}): return
    marks = {item.nodeid: [m for m in MARKS if item.get_closest_marker(m)] for item in items}
    path = Path(config.workerinput['mlfin_marks'])/f"{config.workerinput['workerid']}.json"
    path.with_suffix('.part').write_text(json.dumps(marks)); path.with_suffix('.part').rename(path)


def pytest_fixture_setup(fixturedef, request):
    """A module fixture outside a `together` module is refused: run one by one, each worker would build it again, out of
    order"""
    if fixturedef.scope == 'module' and not request.node.get_closest_marker('together'):
        pytest.fail(f"{request.node.nodeid}: module fixture `{fixturedef.argname}` but no `together` mark: add "
                    "`pytestmark = pytest.mark.together` (tests/scheduling.py says why)", pytrace=False)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    return OneByOneButModules(config, log)


class OneByOneButModules:
    """The scheduler `DSession` calls (xdist.scheduler.protocol.Scheduling). Work is a queue of units, each a list of
    node ids: one test, or a `together` module whole; a worker is sent a unit whenever it holds fewer than two tests (a
    worker runs a test only once it knows the next one, or that there is none: it holds one back until told to stop)"""
    def __init__(self, config: pytest.Config, log=None):
        self.config, self.numnodes = config, len(parse_tx_spec_config(config))
        self.log = log.mlfinsched if log else (lambda *args: None)
        # node: its collection; node: the indices sent to it and not done, in order
        self.collections, self.held = {}, {}
        self.collection, self.marks, self.units = None, {}, []   # units: [(node ids, waits)], in collection order
        self.lane = f"gw{self.numnodes - 1}" if self.numnodes >= 3 else None

    nodes = property(lambda self: list(self.held))
    collection_is_completed = property(lambda self: len(self.collections) >= self.numnodes)
    has_pending = property(lambda self: bool(self.units) or any(self.held.values()))

    @property
    def tests_finished(self) -> bool:
        return self.collection_is_completed and not self.units and all(len(held) < 2 for held in self.held.values())

    def add_node(self, node): self.held[node] = []

    def add_node_collection(self, node, collection):
        if self.collection is not None and list(collection) != self.collection:  # a worker started for a crashed one
            self.log(report_collection_diff(self.collection, collection, self.nodes[0].gateway.id, node.gateway.id))
            return
        self.collections[node] = list(collection)

    def schedule(self):
        if self.collection is None:
            (first, collection), *others = self.collections.items()
            for node, theirs in others:
                if diff := report_collection_diff(collection, theirs, first.gateway.id, node.gateway.id):
                    self.log(diff)
                    self.config.hook.pytest_collectreport(report=pytest.CollectReport(node.gateway.id, 'failed', diff,
                                                                                      []))
                    return
            self.collection, self.marks = collection, read_marks(self.config, first.gateway.id)
            self.units = units(collection, self.marks)
        for node in self.nodes: self.refill(node)

    def refill(self, node):
        "Send `node` units until it holds two tests; the lane takes the waiting ones first, the others take them last"
        # (a worker started for a crashed one collects first)
        if node.shutting_down or node not in self.collections: return
        while self.units and len(self.held[node]) < 2:
            mine = node.gateway.id == self.lane
            # the lane with nothing left to wait for takes what is left like the others: a third worker for the suite's
            # last minutes (measured: the lane was idle for the last 15 of 35 minutes while the two others were busy)
            ids, _ = self.units.pop(next((i for i, (_, waits) in enumerate(self.units) if self.lane and waits == mine),
                                         0))
            indices = [self.collections[node].index(nodeid) for nodeid in ids]
            self.held[node] += indices; node.send_runtest_some(indices)
        if not self.units: node.shutdown()   # it runs what it holds, then stops

    def mark_test_complete(self, node, item_index: int, duration: float = 0):
        self.held[node].remove(item_index); self.refill(node)

    def mark_test_pending(self, item: str):
        "A test to run again (a plugin's `pytest_handlecrashitem`): first in the queue"
        self.units[:0] = units([item], self.marks)
        for node in self.nodes: self.refill(node)

    def remove_pending_tests_from_node(self, node, indices): raise NotImplementedError("only --dist worksteal asks")

    def remove_node(self, node) -> str | None:
        """A worker gone: its tests not done go back to the queue's front, as one unit (a module's rest stays together);
        the crashed one"""
        held = self.held.pop(node)
        if not held: return None
        ids = [self.collection[i] for i in held]
        if ids[1:]: self.units.insert(0, (ids[1:], all('waits' in self.marks.get(i, ()) for i in ids[1:])))
        for other in self.nodes: self.refill(other)
        return ids[0]


def read_marks(config: pytest.Config, worker: str) -> dict[str, list[str]]:
    path = config.stash[marks_folder]/f"{worker}.json"
    if not path.exists():
        raise RuntimeError(f"worker {worker} wrote no marks to {path}: is tests/scheduling.py loaded on the workers?")
    return json.loads(path.read_text())


def units(collection: list[str], marks: dict[str, list[str]]) -> list[tuple[list[str], bool]]:
    """The collection as units of work in its order: a test, or a `together` module's tests; a unit waits when all its
    tests do"""
    found = {}
    for nodeid in collection:
        found.setdefault(nodeid.split('::')[0] if 'together' in marks.get(nodeid, ()) else nodeid, []).append(nodeid)
    return [(ids, all('waits' in marks.get(i, ()) for i in ids)) for ids in found.values()]
