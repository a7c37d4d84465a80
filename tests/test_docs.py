"""The documentation site as `make docs` builds it (tools/site.py): every notebook a page, every link inside it resolving; and a
notebook that fails to render, a broken link or two notebooks on one page each said in one line, with exit code 1."""
import json, re, subprocess, sys
from pathlib import Path
import pytest
from conftest import ROOT

SITE = ROOT/'tools'/'site.py'


def built(out: Path, *args) -> subprocess.CompletedProcess:
    "`make docs`' command into `out`, from the repository's root (settings.ini)"
    return subprocess.run([sys.executable, str(SITE), '--out', str(out), *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.mark.e2e
def test_every_notebook_is_a_page(tmp_path):
    "The whole site from the checkout's notebooks: each one a page named as nbdev names it, the documented names' anchors there"
    done = built(tmp_path/'site')
    assert done.returncode == 0, done.stdout + done.stderr[-4000:]
    assert 'every link inside it resolves' in done.stdout, done.stdout
    nbs = [p.relative_to(ROOT/'nbs') for p in (ROOT/'nbs').rglob('*.ipynb') if not any(s[0] in '_.' for s in p.relative_to(ROOT/'nbs').parts)]
    pages = {p.with_name(re.sub(r'^\d+[a-zA-Z0-9]*_', '', p.name.lower())).with_suffix('.html') for p in nbs}
    assert len(pages) == len(nbs) > 100
    assert not [p for p in pages if not (tmp_path/'site'/p).is_file()]
    assert re.search(rf'^{len(nbs) + 1} pages from {len(nbs)} notebooks', done.stdout), done.stdout   # and the modules' map
    portfolio = (tmp_path/'site'/'backtest.portfolio.html').read_text()
    assert 'id="buy_and_hold"' in portfolio and 'The baseline: buy at the open' in portfolio      # show_doc, from the module
    assert 'href="backtest.portfolio.html"' in (tmp_path/'site'/'modules.html').read_text()
    # the README's links into the site (`_docs/PAGE#ANCHOR`) resolve in the site built, and it links every tutorial
    links = re.findall(r'\]\(_docs/([^)#\s]+)(?:#([^)\s]+))?\)', (ROOT/'README.md').read_text())
    ids = {page: set(re.findall(r' id="([^"]+)"', (tmp_path/'site'/page).read_text())) for page, _ in links if (tmp_path/'site'/page).is_file()}
    broken = [f"_docs/{p}{'#' + a if a else ''}" for p, a in links if p not in ids or a and a not in ids[p]]
    assert links and not broken, f"README links to pages or anchors the site lacks: {broken}"
    tutorials = {p.with_name(re.sub(r'^\d+_', '', p.name)).with_suffix('.html').as_posix() for p in nbs if p.parts[0] == 'tutorials'}
    assert len(tutorials) >= 8 and tutorials <= {p for p, _ in links}, f"tutorials the README does not link: {tutorials - {p for p, _ in links}}"


def _nb(path: Path, *cells):
    "A notebook of (kind, source) cells, as nbdev_clean leaves one"
    path.write_text(json.dumps({'cells': [{'cell_type': k, 'id': f'c{i}', 'metadata': {}, 'source': s,
                                           **({'outputs': [], 'execution_count': None} if k == 'code' else {})} for i, (k, s) in enumerate(cells)],
                                'metadata': {'kernelspec': {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'}},
                                'nbformat': 4, 'nbformat_minor': 5}))


def test_what_is_broken_is_said(tmp_path):
    """A definition exported in a notebook but not in its module (nbdev_export not run), links to a missing page and anchor, two pages
    on one name, an `#| exec_doc` cell that fails; and one that works shows its value's Markdown (a table made from code), not its code"""
    nbs = tmp_path/'nbs'; nbs.mkdir()
    _nb(nbs/'index.ipynb', ('markdown', '# Home\n\n> where the header links'))
    _nb(nbs/'01_stale.ipynb', ('code', '#| default_exp errors'), ('markdown', '# Stale\n\n> exported, never written to the module'),
        ('code', '#| export\ndef not_in_the_module(): "shown by show_doc, found nowhere"'))
    _nb(nbs/'02_links.ipynb', ('markdown', '# Links\n\n> three of them go nowhere'),
        ('markdown', '## Here\n\n[the bars](01_data.nowhere.ipynb), [a section](#no-such-section), [this one](#here), [stale](01_stale.ipynb)'))
    _nb(nbs/'03_twice.ipynb', ('markdown', '# Twice')); _nb(nbs/'03a_twice.ipynb', ('markdown', '# Twice again'))
    (nbs/'tutorials').mkdir(); _nb(nbs/'tutorials'/'01_own_data.ipynb', ('markdown', '# Your own data'), ('markdown', 'Back to [links](../02_links.ipynb#here)'),
                                   ('code', 'from IPython.display import Markdown\nfrom fractions import Fraction'),
                                   ('code', "#| echo: false\n#| exec_doc\nkinds = [Fraction]\nMarkdown('| kind |\\n|---|\\n' + '\\n'.join(f'| {k.__name__} made here |' for k in kinds))"))
    _nb(nbs/'tutorials'/'02_fails.ipynb', ('markdown', '# Fails'), ('code', '#| exec_doc\n1 / 0'))
    done = built(tmp_path/'site', '--nbs', nbs)
    own = (tmp_path/'site'/'tutorials'/'own_data.html').read_text()
    assert 'href="../links.html#here"' in own                                                            # a folder's page, linked across
    assert re.search(r'<div class="output"><table>.*<td>Fraction made here</td>.*</table>', own, re.S) and 'kinds = ' not in own   # exec_doc: its table, not its code
    sidebar = (tmp_path/'site'/'links.html').read_text()
    assert sidebar.index('<summary>Tutorials') < sidebar.index('<summary>Links'), 'tutorials come before the library in the sidebar'
    assert done.returncode == 1, done.stdout + done.stderr
    said = done.stderr.splitlines()
    assert "did not render: nbs/01_stale.ipynb: cell c2: show_doc(not_in_the_module): NameError: name 'not_in_the_module' is not defined" in said, said
    assert 'did not render: nbs/03_twice.ipynb and nbs/03a_twice.ipynb both render to twice.html' in said, said
    assert 'broken link: links.html: data.nowhere.html (no such page)' in said, said
    assert 'broken link: links.html: #no-such-section (no such anchor)' in said, said
    assert 'broken link: links.html: stale.html (no such page)' in said, said         # the page that did not render
    assert 'did not render: nbs/tutorials/02_fails.ipynb: cell c1: exec_doc: ZeroDivisionError: division by zero' in said, said
    assert len(said) == 6, said                                                         # `#here` resolves; nothing else said
    assert '3 did not render, 3 broken links' in done.stdout, done.stdout
