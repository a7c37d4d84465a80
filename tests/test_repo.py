"The repository's own contracts: mlfin/ is what nbs/ exports, notebooks are committed clean, tasks keep their parameters."
import filecmp, shutil, subprocess, sys
from pathlib import Path
import nbformat

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted([*ROOT.glob('nbs/**/*.ipynb'), *ROOT.glob('dashboards/*.ipynb')])


def test_mlfin_is_what_nbs_exports(tmp_path):
    for name in ('nbs', 'mlfin'): shutil.copytree(ROOT/name, tmp_path/name)
    for name in ('settings.ini', 'pyproject.toml', 'setup.py'): shutil.copy(ROOT/name, tmp_path/name)
    nbdev_export = Path(sys.executable).with_name('nbdev_export')
    subprocess.run([str(nbdev_export)], cwd=tmp_path, check=True, capture_output=True)
    differ = _differences(filecmp.dircmp(ROOT/'mlfin', tmp_path/'mlfin', ignore=['__pycache__']))
    assert not differ, f"mlfin/ differs from what nbs/ exports ({differ}): run `make export` and commit"


def _differences(compare: filecmp.dircmp, prefix: str = '') -> list[str]:
    "Files that differ or exist on one side only, in this folder and every sub-package below it"
    found = [prefix + name for name in compare.diff_files + compare.left_only + compare.right_only]
    for name, sub in compare.subdirs.items(): found += _differences(sub, f"{prefix}{name}/")
    return found


def test_export_check_sees_sub_packages(tmp_path):
    for side in ('a', 'b'):
        (tmp_path/side/'models').mkdir(parents=True)
        (tmp_path/side/'models'/'core.py').write_text(f"x = '{side}'\n")
    assert _differences(filecmp.dircmp(tmp_path/'a', tmp_path/'b')) == ['models/core.py']


def test_notebooks_are_committed_clean():
    assert len(NOTEBOOKS) >= 15
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == 'code' and (c.outputs or c.execution_count)]
        assert not dirty, f"{path.relative_to(ROOT)} has outputs in cells {dirty}: run `make export` (nbdev_clean)"


def test_task_notebooks_keep_their_parameters_cell():
    spec = (ROOT/'pipeline.yaml').read_text()
    for path in sorted(ROOT.glob('nbs/tasks/*.ipynb')):
        nb = nbformat.read(path, as_version=4)
        tagged = [c for c in nb.cells if 'parameters' in c.metadata.get('tags', [])]
        assert len(tagged) == 1 and 'upstream = None' in tagged[0].source and 'product = None' in tagged[0].source, path.name
        assert f"nbs/tasks/{path.name}" in spec
        assert nb.metadata.kernelspec.name == 'mlfin'


def test_benchmarks_import_only_what_mlfin_has():
    "Benchmarks run by hand (make bench-*), not in CI: a name moved in mlfin must not break them unseen (their child scripts included)"
    import importlib, re
    found = []
    for path in sorted((ROOT/'tests'/'bench').glob('*.py')):
        text = path.read_text()
        compile(text, str(path), 'exec')
        for module, names in re.findall(r'^\s*from (mlfin(?:\.\w+)*) import ([\w, ]+?)\s*(?:#.*)?$', text, re.M):
            for name in (n.strip().split(' as ')[0] for n in names.split(',')):
                target = importlib.import_module(module)
                if not hasattr(target, name) and importlib.util.find_spec(f"{module}.{name}") is None:
                    found.append(f"{path.name}: from {module} import {name}")
                else: found.append(None)
        for module, name in re.findall(r'\b(backtest|data|features|labels|models|tracking|pipeline|report)\.(\w+)\(', text):
            if re.search(rf'from mlfin import [\w, ]*\b{module}\b', text) and not hasattr(importlib.import_module(f'mlfin.{module}'), name):
                found.append(f"{path.name}: {module}.{name}")
    assert [f for f in found if f] == [] and len(found) > 10


def area_imports(package: Path = ROOT/'mlfin') -> dict[tuple[str, str], str]:
    """(area, area it imports) -> the first place it does, for every import of one area of mlfin by another: module-level or
    inside a function (an import inside a function hides the shape of the house, it does not change it). An area is mlfin.X,
    a sub-package or a top module"""
    import ast
    area = lambda module: module.split('.')[1] if module.startswith('mlfin.') else None
    edges = {}
    for path in sorted(package.rglob('*.py')):
        if path.name == '_modidx.py': continue
        module = '.'.join(path.relative_to(package.parent).with_suffix('').parts).removesuffix('.__init__')
        here = area(module)
        if here is None: continue   # mlfin/__init__.py names every area (lazily): it is the house, not a room
        package_parts = module.split('.') if path.name == '__init__.py' else module.split('.')[:-1]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import): targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = package_parts[:len(package_parts) - node.level + 1] if node.level else []
                targets = ['.'.join(base + ([node.module] if node.module else []))] if node.level else [node.module or '']
            else: continue
            for target in targets:
                if (there := area(target)) and there != here: edges.setdefault((here, there), f"{path.relative_to(package.parent)}:{node.lineno}")
    return edges


def loops(edges: dict[tuple[str, str], str]) -> list[list[str]]:
    "The groups of areas that reach each other through their imports (Tarjan's strongly connected components of size > 1)"
    graph = {}
    for a, b in edges: graph.setdefault(a, set()).add(b); graph.setdefault(b, set())
    index, low, stack, on, found = {}, {}, [], set(), []
    def visit(v):
        index[v] = low[v] = len(index); stack.append(v); on.add(v)
        for w in sorted(graph[v]):
            if w not in index: visit(w); low[v] = min(low[v], low[w])
            elif w in on: low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop(); on.discard(w); group.append(w)
                if w == v: break
            if len(group) > 1: found.append(sorted(group))
    for v in sorted(graph):
        if v not in index: visit(v)
    return found


def test_the_loop_check_finds_a_loop_hidden_in_a_function(tmp_path):
    (tmp_path/'mlfin'/'low').mkdir(parents=True)
    (tmp_path/'mlfin'/'__init__.py').write_text("from . import low, high\n")   # the package's own file names every area: no loop
    (tmp_path/'mlfin'/'low'/'__init__.py').write_text("def f():\n    from ..high import g   # upwards, inside a function\n")
    (tmp_path/'mlfin'/'high.py').write_text("from .low import f\n")
    (tmp_path/'mlfin'/'apart.py').write_text("import mlfin.low\n")
    edges = area_imports(tmp_path/'mlfin')
    assert set(edges) == {('low', 'high'), ('high', 'low'), ('apart', 'low')}
    assert loops(edges) == [['high', 'low']]


def test_no_loop_between_areas():
    "Each area imports only areas below it: no two areas reach each other, whether the import is at a module's head or in a function"
    edges = area_imports()
    found = loops(edges)
    where = [f"{a} -> {b} ({at})" for (a, b), at in sorted(edges.items()) if any(a in g and b in g for g in found)]
    assert not found, f"areas tied in a loop: {found}; their imports: {where}"


def notebook_numbers(nbs: Path = ROOT/'nbs') -> dict[str, str]:
    "The library notebooks' numbers by the module each exports (`#| default_exp`): '05b' for nbs/05b_tracking.runs.ipynb"
    import re
    found = {}
    for path in sorted(nbs.glob('[0-9]*.ipynb')):
        exp = re.search(r'^#\|\s*default_exp\s+([\w.]+)', ''.join(c.source for c in nbformat.read(path, as_version=4).cells), re.M)
        assert exp, f"{path.name} exports no module (`#| default_exp`)"
        found[exp[1].removesuffix('.__init__')] = path.name.split('_')[0]
    return found


def test_notebooks_are_numbered_once_in_the_order_areas_depend_on_each_other():
    """Every library notebook has a number of its own; an area's notebooks share its two digits, and an area imports only areas
    numbered before it (a top module such as `config` is an area of one notebook): reading the site in order, nothing is used
    before its page"""
    numbers = notebook_numbers()
    twice = sorted(n for n in set(numbers.values()) if list(numbers.values()).count(n) > 1)
    assert not twice, f"notebook numbers used twice: {twice}"
    area = {m: numbers[m.split('.')[0]] if m.split('.')[0] in numbers else None for m in numbers}
    strays = sorted(f"{m} ({numbers[m]})" for m in numbers if area[m] is None or numbers[m][:2] != area[m][:2])
    assert not strays, f"notebooks numbered outside their area's two digits (or an area without its own notebook): {strays}"
    late = [f"{a} ({area[a]}) imports {b} ({area[b]}) at {at}" for (a, b), at in sorted(area_imports().items()) if area[a] <= area[b]]
    assert not late, f"areas numbered before an area they import (renumber the notebooks): {late}"


def test_the_run_products_the_code_reads_are_the_ones_the_pipeline_writes():
    "summary.json and dataset.parquet are named once in code (paths.SUMMARY, DATASET), and pipeline.yaml's products are those names"
    import yaml
    from mlfin.paths import DATASET, SUMMARY
    products = {name: path for task in yaml.safe_load((ROOT/'pipeline.yaml').read_text())['tasks'] for name, path in task['product'].items()}
    assert (products['summary'], products['dataset']) == (f"{{{{home}}}}/run/{SUMMARY}", f"{{{{home}}}}/run/{DATASET}")


def imports_inside_functions(package: Path = ROOT/'mlfin') -> list[tuple[str, int, str]]:
    "(file, line, the line) of every import of an mlfin module inside a function: the house's shape, hidden"
    import ast
    found = []
    for path in sorted(package.rglob('*.py')):
        if path.name == '_modidx.py': continue
        lines = path.read_text().splitlines()
        for fn in ast.walk(ast.parse('\n'.join(lines))):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)): continue
            for node in ast.walk(fn):
                mlfin_import = (isinstance(node, ast.ImportFrom) and (node.level or (node.module or '').split('.')[0] == 'mlfin')) or \
                               (isinstance(node, ast.Import) and any(a.name.split('.')[0] == 'mlfin' for a in node.names))
                if mlfin_import:   # the import's last line, and the comment line right above the import, if any
                    above = lines[node.lineno - 2].strip() if node.lineno > 1 else ''
                    found.append((str(path.relative_to(package.parent)), node.end_lineno,
                                  lines[node.end_lineno - 1] + ('   ' + above if above.startswith('#') else '')))
    return sorted(set(found))


def test_an_import_inside_a_function_says_why():
    """An mlfin module imported inside a function, not at the top, says why on its line or in the comment right above it:
    the seconds it adds to importing the module (measured), or the cycle a top-level import would close. Without a reason it
    belongs at the top."""
    silent = [f"{path}:{line}: {text.strip()}" for path, line, text in imports_inside_functions() if '#' not in text]
    assert not silent, f"{len(silent)} imports inside functions give no reason:\n" + '\n'.join(silent[:20])


def flakes(package: Path = ROOT/'mlfin') -> list[str]:
    """pyflakes' unused imports and local names and its undefined names in the package (pyflakes comes with ploomber). An area's
    __init__ imports to re-export, and a line marked `noqa` says why it keeps a name (a preload): neither is reported"""
    import ast
    from pyflakes import checker, messages
    wanted = (messages.UnusedImport, messages.UnusedVariable, messages.UndefinedName, messages.UndefinedLocal, messages.UndefinedExport)
    found = []
    for path in sorted(package.rglob('*.py')):
        if path.name == '_modidx.py': continue
        text = path.read_text(); lines = text.splitlines()
        for m in checker.Checker(ast.parse(text), filename=str(path)).messages:
            if not isinstance(m, wanted) or 'noqa' in lines[m.lineno - 1]: continue
            if path.name == '__init__.py' and isinstance(m, messages.UnusedImport): continue
            found.append((str(path.relative_to(package.parent)), m.lineno, m.message % m.message_args))
    return [f"{path}:{line}: {said}" for path, line, said in sorted(found)]


def test_the_flakes_check_finds_an_unused_import_and_an_undefined_name(tmp_path):
    (tmp_path/'area').mkdir(); (tmp_path/'area'/'__init__.py').write_text('from .m import json\n')   # a re-export: meant
    (tmp_path/'area'/'m.py').write_text('import json, os\nimport re   # noqa: F401 preloaded\ndef f() -> pd.DataFrame:\n    x = 1\n    return json\n')
    assert flakes(tmp_path/'area') == ["area/m.py:1: 'os' imported but unused", "area/m.py:3: undefined name 'pd'",
                                       "area/m.py:4: local variable 'x' is assigned to but never used"]


def test_no_unused_import_or_undefined_name():
    "An import nothing uses is a false neighbour in the module's head; a name never defined (an annotation's `pd`) breaks the docs' signatures"
    found = flakes() + flakes(ROOT/'tests')
    assert not found, f"{len(found)} findings (in mlfin/, fix them in the notebook's export cell):\n" + '\n'.join(found[:20])


def patched_across_modules(package: Path) -> list[str]:
    """`@patch`ed methods whose class is defined in another module of `package` (issue 71): a class is whole in one
    place, its parts named classes of their own (`data.stores.ParquetStore(ParquetReads, ParquetWrites, ...)`)"""
    import ast
    trees = {path: ast.parse(path.read_text()) for path in sorted(package.rglob('*.py'))}
    defined = {path: {n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef)} for path, tree in trees.items()}
    ours = set().union(*defined.values())
    found = []
    for path, tree in trees.items():
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) or not fn.args.args: continue
            if not any(isinstance(d, ast.Name) and d.id == 'patch' or isinstance(d, ast.Call) and getattr(d.func, 'id', '') == 'patch'
                       for d in fn.decorator_list): continue
            owner = fn.args.args[0].annotation
            name = owner.id if isinstance(owner, ast.Name) else owner.value if isinstance(owner, ast.Constant) else None
            if name in ours and name not in defined[path]: found.append(f"{path.relative_to(package.parent)}: {name}.{fn.name}")
    return found


def test_a_class_is_patched_only_in_its_own_module(tmp_path):
    (tmp_path/'pkg').mkdir()
    (tmp_path/'pkg'/'a.py').write_text("class Store: pass\n")
    (tmp_path/'pkg'/'b.py').write_text("from fastcore.basics import patch\nfrom .a import Store\n"
                                       "class Own: pass\n@patch\ndef read(self: Own): pass\n@patch\ndef write(self:Store): pass\n")
    assert patched_across_modules(tmp_path/'pkg') == ['pkg/b.py: Store.write']   # the check sees one
    assert patched_across_modules(ROOT/'mlfin') == []
