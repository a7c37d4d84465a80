"The repository's own contracts: mlfin/ is what nbs/ exports, notebooks are committed clean, tasks keep their parameters."
import filecmp, json, shutil, subprocess, sys
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
