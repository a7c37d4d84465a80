"""The documentation site, built offline: every notebook in nbs/ a page, grouped by area, every link inside it checked.

Why not `nbdev_docs`: it hands the processed notebooks to Quarto, and Quarto cannot be installed here (PyPI's quarto-cli, each of
its 34 releases up to 1.10.19, is a 4.6 kB sdist whose build downloads Quarto's binary from GitHub; npm and Debian have none).
What stays of nbdev's way is all it does before Quarto: its own processors (`FilterDefaults`, the list `nbdev_docs` runs) take
each notebook's title and subtitle from its first cell, put a `show_doc` after each exported definition, drop hidden cells and
exported code, and link each name in backticks to the page that documents it (`mlfin/_modidx.py`). One processor is replaced:
nbdev's `exec_show_docs` re-runs a notebook's imports and exports in a kernel, and stops at a cell that mixes an import and a
check whose helpers it did not run (`raised` undefined in the notebook of `mlfin.errors`: the house writes such cells); here each `show_doc` is
evaluated among the names of the notebook's generated module, imported once, and its import cells'; so is each cell marked
`#| exec_doc` (nbdev's directive for a cell run when the page is made), its value's Markdown shown on the page. nbconvert's Markdown renderer
(mistune, pygments) writes the HTML with Pandoc's heading ids (the anchors nbdev's links point at); a page shell adds the sidebar.

    python tools/site.py [--out _docs] [--nbs nbs]    (make docs) the pages, the time and the size; each notebook that failed to
                                                        render and each broken link is a line of its own, and the exit code is 1
"""
import argparse, ast, html, importlib, re, shutil, sys, time, warnings
from functools import partial
from html.parser import HTMLParser
from inspect import isclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from execnb.nbio import read_nb
from fastcore.basics import AttrDict
from fastcore.docments import MarkdownRenderer
from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath
from nbdev.config import get_config
from nbdev.doclinks import NbdevLookup, _nbpath2html
from nbdev.frontmatter import _md2dict
from nbdev.process import NBProcessor
from nbdev.processors import FilterDefaults, _default_exp, exec_show_docs, insert_warning
from nbdev.showdoc import BasicMarkdownRenderer, show_doc
from pygments.formatters import HtmlFormatter

NBS = get_config().nbs_path   # the notebooks (settings.ini's nbs_path, nbdev's), and styles.css beside them
# the sidebar's groups for nbs/' folders, in its order: tutorials before the library's areas, the DAG's steps (pipeline.yaml) after
FOLDERS = {'tutorials': 'Tutorials', 'tasks': 'Pipeline tasks'}
TOP_MODULES = 'Foundations'   # the area of mlfin's top modules (config, errors, paths...): no package page names it
_lib = get_config().lib_name

class SiteError(Exception): "A notebook that does not render, said in one line: the cell and what failed"

# ---- which pages, under which area

def notebooks(nbs: Path) -> list:
    "Every notebook the site shows: nbdev's glob (no `_` or `.` names)"
    return sorted(p for p in nbs.rglob('*.ipynb') if not any(s[0] in '_.' for s in p.relative_to(nbs).parts))

def module_of(exp: str) -> str:
    "The module a `#| default_exp` names: `data.__init__` is `mlfin.data`"
    return '.'.join([_lib, *filter(None, [re.sub(r'\.?__init__$', '', exp)])])

def page_info(nb: Path, nbs: Path) -> dict:
    """A notebook's page: its name in the site (nbdev's, so `_modidx`'s links find it: the number dropped), its group (the
    number's leading digits, `01cb_` -> `01`: the area the numbers order; or its folder), and the title and subtitle nbdev's FrontmatterProc
    takes from the first Markdown cell (`# Title` / `> subtitle`)"""
    rel, cells = nb.relative_to(nbs), read_nb(nb).cells
    first, exp = next((c for c in cells if c.cell_type == 'markdown'), None), _default_exp(AttrDict(cells=cells))
    group = 'home' if rel.as_posix() == 'index.ipynb' else rel.parts[0] if len(rel.parts) > 1 else re.match(r'\d*', rel.name)[0]
    head = {'title': nb.stem, **((_md2dict(first.source) if first else None) or {})}
    # the whole subtitle: _md2dict keeps its first line, and the house wraps a long one over several `>` lines
    head['description'] = ' '.join(re.findall(r'^>\s*(.*?)\s*$', first.source, re.M)) if first else ''
    return dict(nb=nb, page=_nbpath2html(rel).as_posix(), group=group, source=nb.relative_to(nbs.parent).as_posix(),
                module=module_of(exp) if exp else '', **head)

def with_areas(pages: list) -> list:
    """Pages with their area's title (the title of its own page, the fewest dots in its module: `data` of `data.*`; `TOP_MODULES`
    for a group of top modules, none of which names the others), in the sidebar's order"""
    areas = {}
    for p in pages: areas.setdefault(p['group'], []).append(p)
    for g, ps in areas.items():
        dots = sorted(p['module'].count('.') for p in ps)
        area = (FOLDERS.get(g, g.capitalize()) if not g[:1].isdigit() and g != 'home'
                else TOP_MODULES if dots[0] == 1 and dots[1:2] == [1] else min(ps, key=lambda p: p['module'].count('.'))['title'])
        for p in ps: p['area'] = area
    rank = lambda g: 0 if g == 'home' else 2 if g[:1].isdigit() else 1 + 2 * (g != 'tutorials')   # home, tutorials, areas, other folders
    return sorted(pages, key=lambda p: (rank(p['group']), p['source']))

# ---- a notebook, processed as nbdev_docs processes it, then rendered

class _Doc(BasicMarkdownRenderer):
    """show_doc's Markdown, less its `[source](...){...}` link (Pandoc attributes; `git_url` names no public host) and less a
    docstring the definition does not have (a pydantic model without one showed BaseModel's, with links into pydantic's docs)"""
    def __init__(self, sym, **kw):
        super().__init__(sym, **kw)   # every annotation's name is imported by its module (test_repo's flakes check)
        if isclass(sym) and vars(sym).get('__doc__') is None: self.docs = ''
    def _repr_markdown_(self):
        nm = self.nm.replace('_', r'\_')  # `__getattr__` is a name, not a bold `getattr`
        return f'{"#" * self.title_level} {nm}\n\n' + MarkdownRenderer._repr_markdown_(self)

def _code(src: str) -> list:
    "A cell's statements, its `#|` lines dropped; none when it does not parse"
    try: return ast.parse(re.sub(r'^\s*#\|.*$', '', src, flags=re.M)).body
    except SyntaxError: return []

class show_docs:
    """nbdev's `exec_show_docs` without a kernel: each `show_doc(...)` cell's Markdown, evaluated among its module's names and the
    notebook's import cells' (nbdev's kernel runs those too: a string annotation `pd.DataFrame` may need the notebook's `pd`); and,
    as nbdev does, each `#| exec_doc` cell run there for its page, its value's Markdown shown under it (a tutorial's table made
    from the code it describes, never restated by hand)"""
    def __init__(self, nb): self.nb, self.ns = nb, None
    def begin(self):
        exp = _default_exp(self.nb)
        if not exp and not any('exec_doc' in getattr(c, 'directives_', ()) for c in self.nb.cells): return
        with warnings.catch_warnings():  # what a module's libraries warn of on import (starlette's of httpx) is its tests' to say
            warnings.simplefilter('ignore')
            self.ns = {**(vars(importlib.import_module(module_of(exp))) if exp else {}), 'show_doc': partial(show_doc, renderer=_Doc)}
            for c in self.nb.cells:
                if c.cell_type == 'code' and (body := _code(c.source)) and all(isinstance(s, (ast.Import, ast.ImportFrom)) for s in body):
                    try: exec(c.source, self.ns)
                    except Exception as e: raise SiteError(f"cell {c.get('id', c.idx_)}: {c.source.strip()}: {type(e).__name__}: {e}") from None
    def __call__(self, cell):
        if cell.cell_type == 'code' and 'exec_doc' in getattr(cell, 'directives_', ()): return self.exec_doc(cell)
        if cell.cell_type != 'code' or not re.search(r'^show_doc\(', cell.source, re.M): return
        # the cell that exports the name (add_show_docs put this one after it): where the reader looks
        where = 'cell ' + next((c['id'] for c in reversed(self.nb.cells[:cell.idx_ + 1]) if c.get('id') and not getattr(c, 'has_sd', 0)), str(cell.idx_))
        if self.ns is None: raise SiteError(f'{where}: show_doc without a `#| default_exp` module to find its names in')
        calls = [ast.unparse(s) for s in _code(cell.source)]
        try: cell.md_ = '\n\n'.join(eval(c, self.ns)._repr_markdown_() for c in calls)
        except Exception as e: raise SiteError(f"{where}: {'; '.join(calls)}: {type(e).__name__}: {e}") from None
    def exec_doc(self, cell):
        "An `#| exec_doc` cell run among the page's names; the Markdown of its last expression's value (`_repr_markdown_`) goes under it"
        if not (body := _code(cell.source)): return
        *run, last = body
        try:
            with warnings.catch_warnings():
                warnings.simplefilter('ignore')
                exec(compile(ast.Module(run + ([] if isinstance(last, ast.Expr) else [last]), []), f"cell {cell.get('id')}", 'exec'), self.ns)
                value = eval(compile(ast.Expression(last.value), f"cell {cell.get('id')}", 'eval'), self.ns) if isinstance(last, ast.Expr) else None
        except Exception as e: raise SiteError(f"cell {cell.get('id', cell.idx_)}: exec_doc: {type(e).__name__}: {e}") from None
        if hasattr(value, '_repr_markdown_'): cell.out_ = value._repr_markdown_()

def processors() -> list:
    "nbdev_docs' processors, `exec_show_docs` replaced (the module's docstring says why), the HTML comment in each page dropped"
    return [show_docs if p is exec_show_docs else p for p in FilterDefaults().base_procs() if p is not insert_warning]

def heading_id(text: str, seen: dict) -> str:
    "Pandoc's identifier for a heading, as Quarto writes it and `_modidx` links to it: `Costs.round_trip` -> `costs.round_trip`"
    s = re.sub(r'[^\w\s.-]', '', html.unescape(re.sub(r'<[^>]+>', '', text)).lower())
    s = re.sub(r'^[^a-z]+', '', re.sub(r'\s+', '-', s.strip())) or 'section'
    n = seen.get(s, 0); seen[s] = n + 1
    return f'{s}-{n}' if n else s

class _Renderer(IPythonRenderer):
    "nbconvert's renderer (math left for the reader, code coloured by pygments), headings with Pandoc's ids, kept for the contents"
    def __init__(self): super().__init__(escape=False); self.seen, self.headings = {}, []
    def heading(self, text, level, **attrs):
        i = heading_id(text, self.seen); self.headings.append((level, i, text))
        return f'<h{level} id="{i}">{text}<a class="anchor" href="#{i}" aria-label="link to this section">¶</a></h{level}>\n'

def _options(src: str) -> tuple:
    "The Quarto cell options the processors leave at the top of a cell (`#| echo: false`), and the code under them"
    lines, opts = src.splitlines(), {}
    while lines and (m := re.match(r'#\|\s*([\w-]+):\s*(.*)', lines[0])): opts[m[1]] = m[2].strip().strip('"\''); lines.pop(0)
    return opts, '\n'.join(lines).strip('\n')

def render(nb_path: Path) -> tuple:
    "One notebook processed by nbdev's processors, as HTML, with its headings (level, id, text); a failure is a SiteError"
    nb = read_nb(nb_path); nb.path_ = str(nb_path)
    try: NBProcessor(nb=nb, procs=processors()).process()
    except SiteError: raise
    except Exception as e: raise SiteError(f'{type(e).__name__}: {e}'.splitlines()[0]) from None
    r = _Renderer(); md = MarkdownWithMath(renderer=r).render; out = []
    for c in nb.cells:
        if c.cell_type == 'markdown': out.append(md(c.source))
        if c.cell_type != 'code': continue  # the raw cell is FrontmatterProc's: the title and subtitle, shown by the shell
        opts, code = _options(c.source)
        if opts.get('include') == 'false': continue
        if code and opts.get('echo') != 'false':
            block = md(f'```python\n{code}\n```')
            out.append(f'<details class="fold"><summary>{html.escape(opts.get("code-summary", "Code"))}</summary>{block}</details>'
                       if 'code-fold' in opts else f'<div class="cell">{block}</div>')
        if getattr(c, 'md_', None): out.append(f'<div class="doc">{md(NbdevLookup().linkify(c.md_))}</div>')
        if getattr(c, 'out_', None): out.append(f'<div class="output">{md(NbdevLookup().linkify(c.out_))}</div>')
    return '\n'.join(out), r.headings

def local_links(body: str, page: str, ids: dict, base: str) -> str:
    """Links made local, so the site reads from a folder: a notebook's name becomes its page (as Quarto does), and each name nbdev
    linked (absolute, under `doc_host`) goes to its anchor; a method documented only with its class (show_doc follows a class, not
    each method in it) goes to the class; a private name (`_x`: nbdev never documents one) stays code, not a dead link"""
    root = '../' * page.count('/')
    def named(m):
        path, frag, text = m[1], m[2] or '', m[3]
        known = ids.get(path, ())
        if frag and frag not in known:
            if '.' in frag and frag.split('.')[0] in known: frag = frag.split('.')[0]
            elif any(s.startswith('_') for s in frag.split('.')): return text
        return f'<a href="{root}{path}{"#" + frag if frag else ""}">{text}</a>'  # a public name still unknown: check_links says so
    body = re.sub(fr'<a href="{re.escape(base)}([^"#]*)(?:#([^"]*))?">(.*?)</a>', named, body)
    return re.sub(r'href="(?![a-z]+:|#)([^"#]+)\.ipynb(#[^"]*)?"', lambda m: f'href="{_nbpath2html(Path(m[1] + ".ipynb")).as_posix()}{m[2] or ""}"', body)

def site_url(cfg) -> str:
    "Where nbdev's links point: settings.ini's doc_host and doc_baseurl"
    return f'{cfg.doc_host.rstrip("/")}/{cfg.doc_baseurl.strip("/")}/'.replace(':///', '://')

# ---- the page shell

def _sidebar(pages: list, here: str, root: str) -> str:
    "Every page, by area, in reading order; the reader's area open"
    areas, out = {}, []
    for p in pages: areas.setdefault((p['group'], p['area']), []).append(p)
    for (g, area), ps in areas.items():
        links = ''.join(f'<li{" class=active" if p["page"] == here else ""}><a href="{root}{p["page"]}" title="{html.escape(p["module"])}">'
                        f'{html.escape(p["title"])}</a></li>' for p in ps)
        out.append(f'<ul class="home">{links}</ul>' if g == 'home' else
                   f'<details{" open" if any(p["page"] == here for p in ps) else ""}><summary>{html.escape(area)}</summary><ul>{links}</ul></details>')
    return '\n'.join(out)

def inline_md(text: str) -> str:
    "A subtitle's Markdown (`code`, *emphasis*) as HTML, without the paragraph around it"
    return re.sub(r'^<p>|</p>\s*$', '', MarkdownWithMath(renderer=IPythonRenderer(escape=False)).render(text).strip())

def shell(p: dict, body: str, headings: list, pages: list, site: dict) -> str:
    "A page: the header, the sidebar, the notebook, its contents (its second- and third-level headings)"
    root, sub = '../' * p['page'].count('/'), inline_md(p['description'])
    toc = ''.join(f'<li class="h{lvl}"><a href="#{i}">{re.sub(r"<[^>]+>", "", t)}</a></li>' for lvl, i, t in headings if lvl in (2, 3))
    return f'''<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(p["title"])} – {html.escape(site["title"])}</title><meta name="description" content="{html.escape(p["description"])}">
<link rel="stylesheet" href="{root}styles.css"><link rel="stylesheet" href="{root}pygments.css"></head>
<body><header><a class="site" href="{root}index.html">{html.escape(site["title"])}</a><span>{html.escape(site["description"])}</span>
<a href="{root}modules.html">Modules</a></header>
<nav class="sidebar">{_sidebar(pages, p["page"], root)}</nav>
<main><h1 class="title">{html.escape(p["title"])}</h1><p class="subtitle">{sub}</p>
<p class="source">{html.escape(p["source"])}{" · " + html.escape(p["module"]) if p["module"] else ""}</p>
{body}</main>
<aside class="toc"><h2>On this page</h2><ul>{toc}</ul></aside></body></html>
'''

def modules_page(pages: list) -> tuple:
    "The map of the package, generated: each module's page and what it is for, by area (the README kept one by hand, out of date)"
    rows, headings, seen, area = [], [], {}, None
    for p in pages:
        if not p['group'][:1].isdigit(): continue  # the library's modules, not the home page nor the folders' notebooks
        if p['area'] != area:
            area = p['area']; i = heading_id(area, seen); headings.append((2, i, area)); rows.append(f'<h2 id="{i}">{html.escape(area)}</h2>')
        rows.append(f'<p><a href="{p["page"]}"><code>{html.escape(p["module"] or p["page"])}</code></a> {html.escape(p["title"])}: '
                    f'{inline_md(p["description"])}</p>')
    return dict(page='modules.html', title='Modules', description='Every module of the package, by area, in reading order',
                source='generated from the notebooks', module='', group='', area=''), '\n'.join(rows), headings

# ---- the build, and the check of every link in it

def build(out: Path, nbs: Path = NBS) -> dict:
    "Every notebook in `nbs` rendered into `out` (emptied first), and what went wrong: notebooks that failed, broken links"
    cfg, t0 = get_config(), time.time()
    site, nb_paths = dict(title=cfg.title, description=cfg.description), notebooks(nbs)
    pages = with_areas([page_info(nb, nbs) for nb in nb_paths])
    failures = [f'{p["source"]} and {q["source"]} both render to {p["page"]}' for i, p in enumerate(pages) for q in pages[i+1:] if p['page'] == q['page']]
    rendered = {}
    for p in pages:
        try: rendered[p['page']] = render(p['nb'])
        except SiteError as e: failures.append(f'{p["source"]}: {e}')
    ids = {page: {i for _, i, _ in heads} for page, (_, heads) in rendered.items()}
    pages = [p for p in pages if p['page'] in rendered]  # a page that failed is said once, not again by each link to it in the shell
    shutil.rmtree(out, ignore_errors=True); out.mkdir(parents=True)
    for p in pages:
        body, heads = rendered[p['page']]
        (out/p['page']).parent.mkdir(parents=True, exist_ok=True)
        (out/p['page']).write_text(shell(p, local_links(body, p['page'], ids, site_url(cfg)), heads, pages, site))
    m, body, heads = modules_page(pages)
    (out/m['page']).write_text(shell(m, body, heads, pages, site))
    shutil.copy(NBS/'styles.css', out/'styles.css')
    (out/'pygments.css').write_text(HtmlFormatter().get_style_defs('.highlight'))
    return dict(pages=len(rendered) + 1, notebooks=len(nb_paths), failures=failures, broken=check_links(out, cfg),
                seconds=time.time() - t0, bytes=sum(f.stat().st_size for f in out.rglob('*') if f.is_file()))

class _Refs(HTMLParser):
    "A page's ids and the addresses it links to"
    def __init__(self): super().__init__(); self.ids, self.refs = set(), []
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get('id'): self.ids.add(a['id'])
        self.refs += [a[k] for k in ('href', 'src') if a.get(k) is not None]

def check_links(out: Path, cfg=None) -> list:
    "Each link inside the site to a page or an anchor that does not exist, as `page: link (why)`; other hosts' are not followed"
    out, base, parsed, broken = out.resolve(), site_url(cfg or get_config()), {}, []
    for f in sorted(out.rglob('*.html')): (r := _Refs()).feed(f.read_text()); parsed[f] = r
    for f, r in parsed.items():
        here = f.relative_to(out).as_posix()
        for ref in r.refs:
            u = urlsplit('../' * here.count('/') + ref[len(base):] if ref.startswith(base) else ref)
            if u.scheme or u.netloc: continue
            target = (f.parent/unquote(u.path)).resolve() if u.path else f
            if not target.is_file() or out not in target.parents: broken.append(f'{here}: {ref} (no such page)')
            elif u.fragment and target in parsed and unquote(u.fragment) not in parsed[target].ids: broken.append(f'{here}: {ref} (no such anchor)')
    return broken

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--out', help="the site's folder (default: settings.ini's doc_path, _docs)")
    ap.add_argument('--nbs', default=str(NBS), help='the notebooks (default: nbs/)')
    a = ap.parse_args(argv)
    out = Path(a.out) if a.out else get_config().doc_path
    r = build(out, Path(a.nbs))
    for line in r['failures']: print(f'did not render: {line}', file=sys.stderr)
    for line in r['broken']: print(f'broken link: {line}', file=sys.stderr)
    print(f"{r['pages']} pages from {r['notebooks']} notebooks in {out} ({r['bytes']/1e6:.1f} MB) in {r['seconds']:.1f} s; "
          + (f"{len(r['failures'])} did not render, {len(r['broken'])} broken links" if r['failures'] or r['broken'] else 'every link inside it resolves'))
    return 1 if r['failures'] or r['broken'] else 0

if __name__ == '__main__': sys.exit(main())
