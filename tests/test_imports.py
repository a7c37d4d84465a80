"""How mlfin's modules import each other: a cycle given as the reason for an import inside a function is one hoisting
reproduces; every area's package is a name -> module map (`mlfin.lazy_area`) that offers what it offered before."""
import ast, importlib, os, re, shutil, subprocess, sys, textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]

# the words a reason uses for a cycle: "importing mlfin.data.quality imports this module", "the pages' modules import this
# one", "a cycle"; not "every task imports this module", which is a cost
CYCLE = re.compile(r"importing [\w.]+ imports this (module|one)|import this (module|one)\b|\bcycle\b|circular")


def _module(path: Path, package: Path) -> str:
    parts = list(path.relative_to(package.parent).with_suffix('').parts)
    return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def _targets(node: ast.Import | ast.ImportFrom, holder: str, is_package: bool) -> list[str]:
    "The modules an import statement names, absolute"
    if isinstance(node, ast.Import): return [a.name for a in node.names]
    if not node.level: return [node.module]
    base = holder.split('.') if is_package else holder.split('.')[:-1]
    base = base[:len(base) - node.level + 1]
    return ['.'.join(base + ([node.module] if node.module else []))]


def cycle_claims(package: Path = ROOT/'mlfin') -> dict[tuple[str, str], list]:
    """{(module, module it imports): [(file, import node, reason), ...]} for each import of the package's own modules
    inside a function whose reason (on its line or in the comments right above) is a cycle"""
    found = {}
    for path in sorted(package.rglob('*.py')):
        if path.name == '_modidx.py': continue
        lines = path.read_text().splitlines(); holder = _module(path, package)
        for fn in ast.walk(ast.parse('\n'.join(lines))):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)): continue
            for node in ast.walk(fn):
                if not isinstance(node, (ast.Import, ast.ImportFrom)): continue
                said, above = [lines[node.end_lineno - 1].partition('#')[2]], node.lineno - 2
                while above >= 0 and lines[above].strip().startswith('#'): said.insert(0, lines[above].strip()[1:]); above -= 1
                reason = ' '.join(s.strip() for s in said if s.strip())
                if not CYCLE.search(reason): continue
                for target in _targets(node, holder, path.name == '__init__.py'):
                    if target.split('.')[0] == package.name: found.setdefault((holder, target), []).append((path, node, reason))
    return found


def hoisted(package: Path, path: Path, nodes: list, into: Path) -> Path:
    "A copy of `package` under `into`, with `nodes` (imports inside functions of `path`) moved to the head of the module"
    copy = into/package.name
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns('__pycache__'))
    target = copy/path.relative_to(package); lines = target.read_text().splitlines(); moved = []
    for node in sorted(nodes, key=lambda n: -n.lineno):   # bottom up: the line numbers above stay right
        statement = textwrap.dedent('\n'.join(lines[node.lineno - 1:node.end_lineno])).partition('#')[0].rstrip()
        indent = len(lines[node.lineno - 1]) - len(lines[node.lineno - 1].lstrip())
        moved.insert(0, statement)
        lines[node.lineno - 1:node.end_lineno] = [' ' * indent + 'pass']
    at = 0   # below the module's head of imports
    for i, stmt in enumerate(ast.parse('\n'.join(lines)).body):
        if isinstance(stmt, (ast.Import, ast.ImportFrom)): at = stmt.end_lineno
        elif at: break
    lines[at:at] = moved
    target.write_text('\n'.join(lines) + '\n')
    return copy


def loads(where: Path, orders: list[list[str]]) -> list[str]:
    """Each order (modules imported in turn) in a fresh interpreter that finds the package under `where` first: '' where
    it loads, else the error's last line"""
    def one(order: list[str]) -> str:
        package = order[0].split('.')[0]
        code = f"import {package}; assert {package}.__file__.startswith({str(where)!r}), {package}.__file__; " + \
               '; '.join(f'import {m}' for m in order)
        env = {**os.environ, 'PYTHONPATH': str(where), 'PYTHONDONTWRITEBYTECODE': '1'}
        ran = subprocess.run([sys.executable, '-c', code], cwd=where, env=env, capture_output=True, text=True)
        return '' if ran.returncode == 0 else (ran.stderr.strip().splitlines() or ['exit status %d' % ran.returncode])[-1]
    with ThreadPoolExecutor(4) as pool: return list(pool.map(one, orders))


def stale_cycles(package: Path, tmp_path: Path) -> list[str]:
    """Each claimed cycle that does not happen: the imports of one module from another hoisted to the head, the module
    loads both alone and after the one it imports"""
    claims = list(cycle_claims(package).items())
    def check(i_claim):
        i, ((holder, target), found) = i_claim
        copy = hoisted(package, found[0][0], [node for _, node, _ in found], tmp_path/str(i))
        errors = loads(copy.parent, [[holder], [target, holder]])
        return None if any(errors) else f"{found[0][0].relative_to(package.parent)}:{found[0][1].lineno}: {found[0][2]!r}"
    with ThreadPoolExecutor(2) as pool: return [s for s in pool.map(check, enumerate(claims)) if s]


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (tmp_path/'pkg'/name).parent.mkdir(parents=True, exist_ok=True); (tmp_path/'pkg'/name).write_text(textwrap.dedent(text))
    return tmp_path/'pkg'


def test_the_cycle_check_tells_a_cycle_from_a_stale_reason(tmp_path):
    package = _package(tmp_path, {
        '__init__.py': '',
        'low.py': "from pkg.high import shout\ndef whisper(): return shout().lower()\n",
        'high.py': "def shout():\n    from pkg.low import whisper   # here, not at the top: importing pkg.low imports this module\n"
                   "    return 'A'\n",
        'alone.py': "def f():\n    # here, not at the top: importing pkg.other imports this module\n    from .other import g\n"
                    "    return g()\n",
        'other.py': "def g(): return 1\n",
        'costly.py': "def h():\n    from pkg.other import g   # every task imports this module\n    return g()\n"})
    claims = cycle_claims(package)
    assert sorted(claims) == [('pkg.alone', 'pkg.other'), ('pkg.high', 'pkg.low')]   # a cost is no cycle claim
    assert stale_cycles(package, tmp_path/'copies') == ["pkg/alone.py:3: 'here, not at the top: importing pkg.other imports this module'"]


def test_a_cycle_given_as_a_reason_is_one_hoisting_reproduces(tmp_path):
    """An import inside a function that says a top-level import would close a cycle: moved to the top of its module in a
    copy of mlfin, the module fails to load, alone or after the module it imports. Where it loads, the reason is stale:
    hoist the import (or, if it costs, say what it adds to the import, measured)"""
    stale = stale_cycles(ROOT/'mlfin', tmp_path)
    assert not stale, f"{len(stale)} imports inside functions claim a cycle hoisting does not close:\n" + '\n'.join(stale)


# The areas whose package offered every public name of its modules (`from .facade import *`, ...) before the map: the
# map still offers each
WHOLE_MODULES = ('data', 'backtest', 'models')
# mlfin.cli is the command: its package registers every command on `app` as it is imported, so it imports them all
NOT_LAZY = ('cli',)


def _areas() -> list[str]:
    return sorted(p.parent.name for p in (ROOT/'mlfin').glob('*/__init__.py') if not p.parent.name.startswith('_'))


@pytest.mark.parametrize('area', [a for a in _areas() if a not in NOT_LAZY])
def test_an_area_is_a_map_of_names_to_its_modules(area):
    package = importlib.import_module(f'mlfin.{area}')
    where = vars(package)['_WHERE']
    assert type(package).__name__ == '_Area' and package.__all__ == [*where]
    missing = [f"{name} -> {module}" for name, module in where.items()
               if not hasattr(importlib.import_module(f'mlfin.{area}.{module}'), name)]
    assert not missing, f"mlfin.{area}._WHERE names what its module does not define: {missing}"
    assert {*where} <= {*dir(package)}
    if area in WHOLE_MODULES:
        left_out = [f"{module}.{name}" for module in sorted({*where.values()})
                    for name in importlib.import_module(f'mlfin.{area}.{module}').__all__ if name not in where]
        assert not left_out, f"mlfin.{area} no longer offers {left_out}: add them to its _WHERE"
