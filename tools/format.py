"""Bring notebook code within the line length of pyproject.toml's `[tool.ruff]` (`make format`; first in `make sync`);
mlfin/ follows by nbdev_export.

    .venv/bin/python tools/format.py             # rewrite the notebooks' over-long lines in place, list those it cannot
    .venv/bin/python tools/format.py nbs/X.ipynb # only these notebooks

Only what is too long is touched, so the house's dense style (one-line `if x: return y`, docments comments) stays:
1. a statement whose code is too long is formatted by ruff (`ruff format --range`: that statement alone);
2. a trailing comment that makes its line too long moves, wrapped, to the lines just above (docments reads a
   parameter's comment there too; after a multi-line string: above its statement);
3. a docstring that is too long is wrapped as the house writes a long one: triple-quoted, a one-line docstring
   made so, the rest of its paragraph re-wrapped;
4. a string literal that still runs past the limit is cut at spaces into adjacent literals (Python joins them:
   the value is the same), in parentheses where it stood bare;
5. a comment line that is too long is wrapped with the prose comment lines that follow it;
6. then, in every cell, long or not (`refill`): a bracket laid out one item per line (ruff's layout, and the house's
   code before) is filled back, on one line where it fits, else aligned under the opening bracket (hanging where that
   leaves too little room), its magic trailing comma dropped; a run of adjacent string literals inside it is re-cut
   into pieces of even length, so that no piece is an orphan fragment. A bracket with a comment inside (docments'
   parameters) is left as written;
7. then a statement still laid out over lines that are only closing brackets or end in an opening one (ruff's
   layout of a conditional, a sum, a comprehension, nested calls), or holding a string fragment, is laid out again as
   the house writes it (`relayout`): on one line where it fits, else broken at its lowest-precedence operator (a
   conditional's `if`/`else`, `or`, `and`, `+`) or between its string literals (re-cut evenly), its operands aligned,
   else its bracket's items filled and aligned under the opening bracket, hanging only where nothing else fits; a
   comment ends its item's line (or, too long for it, stands on the line above), a comment line stays before its
   item; a signature's comments (docments) and a comment inside an item are left as written; kept where that leaves
   fewer such lines in no more lines, its comments the same, in order.
A step's change is kept only when the cell's syntax tree is unchanged, strings' values included (for 3: its
docstrings' words, in order), so formatting cannot change what runs. Running it twice changes nothing.
What no step can shorten (an f-string whose fields are long, a string without spaces, SQL or CSS inside a
multi-line string) is listed by ruff's own check (E501), not changed: a person rewrites it, or marks it
`# noqa: E501` (a multi-line string: where it closes), which this and the check respect. tests/test_format.py
runs that check on every notebook and on mlfin/.
"""
from __future__ import annotations
import ast, io, json, keyword, re, subprocess, sys, textwrap, tokenize, tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / 'pyproject.toml'
LIMIT = tomllib.loads(CONFIG.read_text())['tool']['ruff']['line-length']
RUFF = Path(sys.executable).parent / 'ruff'
NOTEBOOKS = ('nbs/**/*.ipynb', 'dashboards/*.ipynb')
PRAGMA = re.compile(r'#\s*(noqa|type:|pragma|fmt:|pyright:|mypy:|nosec)')
NOQA = re.compile(r'#\s*noqa\b(?!:)|#\s*noqa:[\sA-Z0-9,]*\bE501\b')


def notebooks(names=()) -> list[Path]:
    "The notebooks to format: `names`, or every notebook of nbs/ (its folders too) and dashboards/"
    if names: return [Path(n).resolve() for n in names]
    return sorted(p for pattern in NOTEBOOKS for p in ROOT.glob(pattern) if '.ipynb_checkpoints' not in p.parts)


def code_cells(nb: dict):
    "(index, cell) of each code cell; a cell with IPython magics or shell lines is not Python: left alone"
    for i, cell in enumerate(nb['cells']):
        if cell['cell_type'] != 'code': continue
        source = ''.join(cell['source'])
        if any(line.lstrip().startswith(('%', '!')) for line in source.splitlines()): continue
        yield i, cell


def long_lines(source: str) -> list[int]:
    "Lines over the limit, but for those a person marked long on purpose (`# noqa: E501`, as ruff's check reads it)"
    return [i + 1 for i, line in enumerate(source.splitlines()) if len(line) > LIMIT and not NOQA.search(line)]


def docstrings(node: ast.AST):
    "The docstring nodes (a module's, a class's, a function's) under `node`"
    for n in ast.walk(node):
        body = getattr(n, 'body', None)
        if not isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) or not body: continue
        first = body[0].value if isinstance(body[0], ast.Expr) else None
        if isinstance(first, ast.Constant) and isinstance(first.value, str): yield first


class OneNamePerImport(ast.NodeTransformer):
    "`from m import a, b` as `from m import a` and `from m import b`: the same names bound, however lines split them"
    def visit_ImportFrom(self, node):
        return [ast.ImportFrom(module=node.module, names=[name], level=node.level) for name in node.names]


def tree(source: str, prose: bool = False) -> str | None:
    """The syntax tree of `source`, as text; `prose`: its docstrings' words only (their line breaks aside); None: no
    Python"""
    try: parsed = OneNamePerImport().visit(ast.parse(source))
    except SyntaxError: return None
    if prose:
        for doc in docstrings(parsed): doc.value = ' '.join(doc.value.split())
    return ast.dump(parsed)


def tokens(source: str) -> list[tokenize.TokenInfo]: return list(tokenize.generate_tokens(io.StringIO(source).readline))


def comment_at(toks, row: int):
    "The comment token that ends line `row`, if any"
    return next((t for t in toks if t.type == tokenize.COMMENT and t.start[0] == row), None)


def inside_string(toks, row: int) -> bool:
    "Whether line `row` begins inside a token that started on an earlier line (a multi-line string)"
    return any(t.start[0] < row <= t.end[0] for t in toks if t.type == tokenize.STRING)


def ruff_range(source: str, row: int) -> str:
    """`source` with the statement on line `row` formatted by ruff (its settings: pyproject.toml), or as it was where
    ruff refuses"""
    lines = source.splitlines(keepends=True)
    span = f'{row}:1-{row}:{len(lines[row - 1]) + 1}'
    out = subprocess.run([str(RUFF), 'format', '--config', str(CONFIG), '--range', span, '--stdin-filename', 'cell.py',
                          '-'], input=source, capture_output=True, text=True)
    return source if out.returncode else out.stdout


def format_code(source: str) -> str:
    """Statements whose code (its trailing comment aside) is too long, formatted by ruff, the last first so rows hold;
    a `from m import ...` split into several one-line imports instead (nbdev makes mlfin's own imports relative only
    on one line)"""
    for row in reversed(long_lines(source)):
        toks = tokens(source)
        line = source.splitlines()[row - 1]
        if inside_string(toks, row): continue
        comment = comment_at(toks, row)
        code = line[:comment.start[1]].rstrip() if comment else line
        if len(code) <= LIMIT and not (comment and defines_parameter(source, row)): continue
        source = split_import(source, row) or ruff_range(source, row)
    return source


def split_import(source: str, row: int) -> str | None:
    "The `from m import a, b, ...` that line `row` is part of, as one-line imports within the limit; None: not one"
    found = [n for n in ast.walk(ast.parse(source)) if type(n) is ast.ImportFrom and n.lineno <= row <= n.end_lineno]
    if not found: return None
    node, lines, toks = found[0], source.splitlines(keepends=True), tokens(source)
    last = lines[node.end_lineno - 1]
    after = last[node.end_col_offset:].strip()
    if after and not after.startswith('#'): return None   # another statement after a `;`
    if any(t.type == tokenize.COMMENT and node.lineno <= t.start[0] < node.end_lineno for t in toks): return None
    first = lines[node.lineno - 1]
    head = first[:node.col_offset] + 'from ' + '.' * node.level + (node.module or '') + ' import '
    imports = ['']
    for name in (a.name + (f' as {a.asname}' if a.asname else '') for a in node.names):
        if imports[-1] and len(head + imports[-1] + ', ' + name) > LIMIT: imports.append('')
        imports[-1] += (', ' if imports[-1] else '') + name
    lines[node.lineno - 1:node.end_lineno] = ['\n'.join(head + i for i in imports) + last[node.end_col_offset:]]
    return ''.join(lines)


def defines_parameter(source: str, row: int) -> bool:
    """Whether line `row` opens a `def` with a parameter on it: a comment moved above it would leave the function
    (docments)"""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.lineno == row:
            args = node.args
            return any(a.lineno == row
                       for a in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg] if a)
    return False


def comment_lines(text: str, indent: str) -> list[str]:
    "`text` (a comment's words) as comment lines of at most LIMIT characters at `indent`"
    return [indent + '# ' + part for part in textwrap.wrap(text, LIMIT - len(indent) - 2, break_long_words=False,
                                                           break_on_hyphens=False)] or [indent + '#']


def move_comments(source: str) -> str:
    """Trailing comments that make their line too long, moved (wrapped) to the lines above it (an import's reason too:
    tests/test_repo.py reads it on the import's line or on the comment lines right above it)"""
    for row in reversed(long_lines(source)):
        toks = tokens(source)
        lines = source.splitlines(keepends=True)
        line = lines[row - 1]
        comment = comment_at(toks, row)
        if not comment or line.lstrip().startswith('#') or PRAGMA.match(comment.string): continue   # a directive stays
        # after a multi-line string's close: above the statement it ends
        above = statement_start(source, row) if inside_string(toks, row) else row
        if above is None or above > 1 and lines[above - 2].rstrip('\n').endswith('\\'): continue   # a continued line
        if defines_parameter(source, row): continue
        more = continued(lines, row, comment.start[1])
        words = lambda comment: comment.strip().lstrip('#').strip()
        text = ' '.join(map(words, [comment.string, *lines[row:row + more]]))
        code, nl = line[:comment.start[1]].rstrip(), line[len(line.rstrip('\n')):]
        lines[row - 1:row + more] = [code + nl]
        indent = re.match(r'\s*', lines[above - 1])[0]
        lines.insert(above - 1, ''.join(l + '\n' for l in comment_lines(text, indent)))
        source = ''.join(lines)
    return source


def continued(lines: list[str], row: int, col: int) -> int:
    """How many comment lines after line `row` go on with its trailing comment (at column `col`): those aligned under
    it, or those followed by a blank line or the end (no lead-in to the next statement)"""
    n, comment = 0, lambda line: line.lstrip().startswith('#') and not line.lstrip().startswith('#|')
    while row + n < len(lines) and comment(lines[row + n]): n += 1
    aligned = all(len(l) - len(l.lstrip()) == col for l in lines[row:row + n])
    return n if n and (aligned or row + n == len(lines) or not lines[row + n].strip()) else 0


def statement_start(source: str, row: int) -> int | None:
    "The first line of the innermost simple statement that line `row` ends, if any"
    blocks = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.If, ast.For, ast.While, ast.With, ast.Try)
    ends = [n for n in ast.walk(ast.parse(source))
            if isinstance(n, ast.stmt) and not isinstance(n, blocks) and n.lineno < row == n.end_lineno]
    return max((n.lineno for n in ends), default=None)


def prose(line: str, indent: str) -> str | None:
    """The words of comment line `line` when it is prose at `indent` (not a directive, an indented item, a list entry),
    else None"""
    if not line.startswith(indent + '#') or line[len(indent):len(indent) + 2] in ('#|', '#!'): return None
    text = line[len(indent) + 1:].rstrip('\n')
    if not text.startswith(' ') or text[1:2] in ('', ' ', '-', '*', '|', '>') or re.match(r' \d+[.)] ', text):
        return None
    return text.strip()


def wrap_comments(source: str) -> str:
    """A comment line that is too long, re-wrapped with the prose comment lines after it (at its indent) so no word is
    left alone"""
    for row in reversed(long_lines(source)):
        toks = tokens(source)
        lines = source.splitlines(keepends=True)
        line = lines[row - 1]
        indent = line[:len(line) - len(line.lstrip())]
        if inside_string(toks, row) or prose(line, indent) is None: continue
        end = row
        while end < len(lines) and prose(lines[end], indent) is not None: end += 1
        words = ' '.join(prose(l, indent) for l in lines[row - 1:end])
        wrapped = comment_lines(words, indent)
        if any(len(l) > LIMIT for l in wrapped[:1]) and len(wrapped) == 1: continue
        nl = lines[end - 1][len(lines[end - 1].rstrip('\n')):]
        lines[row - 1:end] = ['\n'.join(wrapped) + nl]
        source = ''.join(lines)
    return source


ITEM = re.compile(r'\s*(?:[-*+]|\d+[.)])\s+')   # a Markdown list item's marker, with its indent and the space after


def _in_item(lines: list[str], row: int, doc) -> bool:
    "Whether docstring line `row` continues a list item (the nearest less indented line above it is one)"
    indent = len(lines[row - 1]) - len(lines[row - 1].lstrip())
    for above in range(row - 1, doc.lineno - 1, -1):
        line = lines[above - 1]
        if not line.strip(): return False
        if len(line) - len(line.lstrip()) < indent: return bool(ITEM.match(line))
    return False


def wrap_docstrings(source: str) -> str:
    """A triple-quoted docstring's line that is too long, re-wrapped with the rest of its paragraph (the words stay, in
    order)"""
    for row in reversed(long_lines(source)):
        lines = source.splitlines(keepends=True)
        doc = next((d for d in docstrings(ast.parse(source))
                    if d.lineno <= row <= d.end_lineno and d.lineno < d.end_lineno),
                   None)
        if doc is None:
            source = triple_quoted(source, row)
            continue
        first = lines[row - 1]
        own = first[:len(first) - len(first.lstrip())]
        # a line indented past the docstring's own lines and no list item's continuation: a usage block, kept as written
        if row != doc.lineno and len(own) > doc.col_offset and not ITEM.match(first) and not _in_item(lines, row, doc):
            continue
        item = ITEM.match(first) if row != doc.lineno else None
        end, deepest = row, item.end() if item else len(own) if row != doc.lineno else doc.col_offset
        # the paragraph: to a blank line, a more indented block, the next list item or a prompt
        while (end < doc.end_lineno and lines[end].strip() not in ('', '"""', "'''") and not ITEM.match(lines[end])
               and len(lines[end]) - len(lines[end].lstrip()) <= deepest
               and not lines[end].lstrip().startswith(('$ ', '>>> '))):
            end += 1
        lead = first[:doc.col_offset + 3] if row == doc.lineno else own
        if row == doc.lineno and lead.strip() not in ('"""', "'''"): continue
        text = ' '.join(l.strip() for l in lines[row - 1:end])[len(lead.strip()):].split()
        if not text: continue
        hang = ' ' * deepest   # a list item's lines under its words; the rest at their own indent
        wrapped = textwrap.wrap(' '.join(text), LIMIT, initial_indent=lead, subsequent_indent=hang,
                                break_long_words=False, break_on_hyphens=False)
        nl = lines[end - 1][len(lines[end - 1].rstrip('\n')):]
        lines[row - 1:end] = ['\n'.join(wrapped) + nl]
        source = ''.join(lines)
    return source


def triple_quoted(source: str, row: int) -> str:
    """A one-line docstring on line `row` that is too long, as the house writes a longer one: triple-quoted, wrapped at
    its indent"""
    doc = next((d for d in docstrings(ast.parse(source)) if d.lineno == d.end_lineno == row), None)
    lines = source.splitlines(keepends=True)
    if doc is None: return source
    line = lines[row - 1]
    m = STRING.match(line[doc.col_offset:doc.end_col_offset])
    if (not m or m['prefix'] or len(m['quote']) != 1 or '\\' in m['body'] or m['quote'] in m['body']
        or line[doc.end_col_offset :].strip()):
        return source
    quotes = m['quote'] * 3
    wrapped = textwrap.wrap(m['body'] + quotes, LIMIT, initial_indent=line[:doc.col_offset] + quotes,
                            subsequent_indent=' ' * doc.col_offset, break_long_words=False, break_on_hyphens=False)
    lines[row - 1] = '\n'.join(wrapped) + line[len(line.rstrip('\n')):]
    return ''.join(lines)


STRING = re.compile(r'(?P<prefix>[a-zA-Z]*)(?P<quote>\'\'\'|"""|\'|")(?P<body>.*)(?P=quote)$', re.S)


def cut_points(body: str, fstring: bool) -> list[int]:
    "Where `body` (a string literal's text) may be cut: after a space, outside f-string fields, not after a backslash"
    points, depth, i = [], 0, 0
    while i < len(body):
        ch = body[i]
        if ch == '\\': i += 2; continue
        if fstring and ch in '{}':
            if body[i:i + 2] in ('{{', '}}') and depth == 0: i += 2; continue
            depth += 1 if ch == '{' else -1
        elif ch == ' ' and depth == 0 and 0 < i < len(body) - 1: points.append(i + 1)
        i += 1
    return points


def cut_string(token: tokenize.TokenInfo, width: int, tail: int) -> list[str] | None:
    """The literal `token` as adjacent literals of at most `width` characters, the last leaving `tail` more; None: no
    cut fits"""
    m = STRING.match(token.string)
    if not m or '\n' in token.string: return None
    prefix, quote, body = m['prefix'], m['quote'], m['body']
    fstring = 'f' in prefix.lower()
    points, parts, start, frame = cut_points(body, fstring), [], 0, len(prefix) + 2 * len(quote)
    while frame + len(body) - start > width - tail:
        fitting = [p for p in points if p > start and frame + p - start <= width]
        if not fitting: return None
        parts.append(body[start:fitting[-1]]); start = fitting[-1]
    parts.append(body[start:])
    if len(parts) == 1: return None
    own = lambda part: (prefix if not fstring or re.search(r'(?<!\{)\{(?!\{)', part)
                        else prefix.replace('f', '').replace('F', ''))
    return [own(part) + quote + part + quote for part in parts]


def depth_at(toks, token) -> int:
    "How many brackets are open where `token` starts"
    depth = 0
    for t in toks:
        if t is token: return depth
        if t.type == tokenize.OP and t.string in '([{': depth += 1
        elif t.type == tokenize.OP and t.string in ')]}': depth -= 1
    return depth


def cut_strings(source: str) -> str:
    "String literals that run past the limit, cut into adjacent literals aligned under the first"
    for row in reversed(long_lines(source)):
        toks = tokens(source)
        lines = source.splitlines(keepends=True)
        line = lines[row - 1]
        if inside_string(toks, row): continue
        on_row = [t for t in toks
                  if t.type == tokenize.STRING and t.start[0] == t.end[0] == row and t.start[1] < LIMIT - 20]
        if not on_row: continue
        # the one past the limit, or the last before a tail
        token = next((t for t in on_row if t.end[1] > LIMIT), on_row[-1])
        bare = depth_at(toks, token) == 0
        col = token.start[1] + bare
        tail = line[token.end[1]:].rstrip('\n')
        nl = line[len(line.rstrip('\n')):]
        parts = cut_string(token, LIMIT - col, len(tail) + bare)
        if not parts: continue
        head = line[:token.start[1]] + ('(' if bare else '')
        pad = ' ' * col
        lines[row - 1] = head + f'\n{pad}'.join(parts) + (')' if bare else '') + tail + nl
        source = ''.join(lines)
    return source


SKIP = (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT)


class Run:
    "Adjacent string literals as one body: re-cut into pieces of even length (`pieces`)"
    def __init__(self, texts: list[str], head: str = ''):
        found = [STRING.match(t) for t in texts]
        if not all(found) or any(len(m['quote']) == 3 for m in found):
            raise ValueError('not a run of one-line literals')
        kinds = {m['prefix'].lower().replace('f', '') for m in found}
        quotes = {m['quote'] for m in found}
        if len(kinds) != 1 or len(quotes) != 1: raise ValueError('mixed literals')
        self.kind, self.quote = kinds.pop(), quotes.pop()
        self.fstring = any('f' in m['prefix'].lower() for m in found)
        if self.fstring and 'r' in self.kind: raise ValueError('raw f-strings left alone')
        # a plain piece joined into an f-string: its braces doubled
        self.body = ''.join(m['body'].replace('{', '{{').replace('}', '}}')
                            if self.fstring and 'f' not in m['prefix'].lower() else m['body'] for m in found)
        self.texts, self.head = texts, head   # head: what stands before the first literal on its line (`error=`)

    def literal(self, part: str) -> str:
        "A piece as a literal: an f-string only where it holds a field (its doubled braces then single)"
        if self.fstring and not re.search(r'(?<!\{)\{(?!\{)', part):
            return self.kind + self.quote + part.replace('{{', '{').replace('}}', '}') + self.quote
        return ('f' if self.fstring else '') + self.kind + self.quote + part + self.quote

    def pieces(self, first: int, width: int, tail: int) -> list[str] | None:
        """Literals of even length: the first at most `first` characters, the others `width`, the last leaving `tail`;
        the fewest pieces that fit"""
        points, n = cut_points(self.body, self.fstring), len(self.body)
        frame = len(self.kind) + 2 * len(self.quote) + self.fstring
        for k in range(1, len(points) + 2):
            target, cuts, start = n / k, [], 0
            for piece in range(1, k):
                room = (first if piece == 1 else width) - frame
                fitting = [p for p in points if start < p <= start + room]
                if not fitting: break
                cut = min(fitting, key=lambda p: abs(p - piece * target))
                cuts.append(cut); start = cut
            if len(cuts) != k - 1: continue
            parts = [self.body[a:b] for a, b in zip([0, *cuts], [*cuts, n])]
            lits = [self.literal(p) for p in parts]
            sizes = [first] + [width] * (k - 1)
            if all(len(l) <= s for l, s in zip(lits, sizes)) and len(lits[-1]) + tail <= sizes[-1]: return lits
        return None


def joinable(real: list) -> bool:
    """Whether an item's lines join into one with a space at each break: each break between two tokens a space may
    separate (an operator, `if`, `else`, `and`, a name), never after an opening bracket, before a closing one, inside a
    multi-line token, or between two literals (a run: `Run`'s)"""
    if real[0].start[0] == real[-1].end[0] or any(r.start[0] != r.end[0] for r in real): return False
    for x, y in zip(real, real[1:]):
        if x.end[0] == y.start[0]: continue
        if x.string in '([{' and x.type == tokenize.OP or y.string in ')]},' and y.type == tokenize.OP: return False
        if x.type == y.type == tokenize.STRING or y.string == '.': return False
    return True


def candidates(toks):
    """(open index, close index, items): an opening bracket ending its line, each item on lines of its own (one line,
    or a run of string literals a line each), no comment inside, the closing bracket first on its line"""
    out = []
    for i, t in enumerate(toks):
        if t.type != tokenize.OP or t.string not in '([{' or i + 1 >= len(toks) or toks[i + 1].type != tokenize.NL:
            continue
        depth, j, items, start, ok = 0, i + 1, [], None, True
        while j < len(toks):
            u = toks[j]
            if u.type == tokenize.COMMENT: ok = False
            if u.type == tokenize.OP and u.string in '([{': depth += 1
            elif u.type == tokenize.OP and u.string in ')]}':
                if depth == 0: break
                depth -= 1
            if depth == 0 and u.type == tokenize.OP and u.string == ',':
                if start is not None: items.append((start, j - 1)); start = None
            elif u.type not in SKIP and start is None: start = j
            j += 1
        if j >= len(toks) or not ok: continue
        if start is not None: items.append((start, j - 1))
        if not items: continue
        row, good = t.start[0] + 1, True
        for a, b in items:
            real = [toks[k] for k in range(a, b + 1) if toks[k].type not in SKIP]
            one_line = real[0].start[0] == real[-1].end[0]
            first = next((n for n, r in enumerate(real) if r.type == tokenize.STRING), len(real))
            strings = real[first:]
            run = (len(strings) > 1 and all(r.type == tokenize.STRING and r.start[0] == r.end[0] for r in strings)
                   and [r.start[0] for r in strings] == list(range(real[0].start[0], real[0].start[0] + len(strings))))
            if real[0].start[0] != row or not (one_line or run or joinable(real)): good = False; break
            row = real[-1].end[0] + 1
        if good and toks[j].start[0] == row: out.append((i, j, items))
    return out


def layout(prefix: str, items: list, suffix: str, indent: str) -> list[str] | None:
    "Items after `prefix` filled under the opening bracket (else hanging), a `Run` re-cut evenly; None: nothing fits"
    if all(isinstance(x, str) for x in items) and len(one := prefix + ', '.join(items) + suffix) <= LIMIT: return [one]
    for hang in (False, True):
        pad = indent + '    ' if hang else ' ' * len(prefix)
        if len(pad) > LIMIT - 40: continue
        lines, cur = ([prefix.rstrip()], pad) if hang else ([], prefix)
        fresh = lambda: cur in (prefix, pad)
        ok = True
        for k, item in enumerate(items):
            sep = ', ' if k < len(items) - 1 else suffix
            if isinstance(item, Run):   # on a line of its own, its pieces aligned under the first
                if not fresh(): lines.append(cur.rstrip()); cur = pad
                cur += item.head
                col = ' ' * len(cur)
                parts = item.pieces(LIMIT - len(cur), LIMIT - len(col), len(sep.rstrip()))
                if parts is None: ok = False; break
                for part in parts[:-1]: lines.append(cur + part); cur = col
                cur += parts[-1] + sep
                continue
            piece = item + sep
            if not fresh() and len(cur + piece.rstrip()) > LIMIT: lines.append(cur.rstrip()); cur = pad
            cur += piece
        lines.append(cur.rstrip())
        if ok and all(len(l) <= LIMIT for l in lines): return lines
    return None


def refill_once(source: str, before: str, tried: set) -> str | None:
    toks, lines = tokens(source), source.splitlines()
    for i, j, items in reversed(candidates(toks)):
        open_, close = toks[i], toks[j]
        row, crow = open_.start[0], close.start[0]
        if (key := (row, lines[row - 1], crow)) in tried: continue
        tried.add(key)
        prefix, suffix = lines[row - 1][:open_.end[1]], lines[crow - 1][close.start[1]:]
        texts = []
        for a, b in items:
            real = [toks[k] for k in range(a, b + 1) if toks[k].type not in SKIP]
            if real[0].start[0] == real[-1].end[0]:
                texts.append(lines[real[0].start[0] - 1][real[0].start[1] : real[-1].end[1]])
            elif joinable(real):   # a conditional, a sum, a test laid out one operand per line: one line again
                texts.append(' '.join(lines[r - 1].strip() for r in range(real[0].start[0], real[-1].end[0] + 1)))
            else:
                first = next(n for n, r in enumerate(real) if r.type == tokenize.STRING)
                head = lines[real[0].start[0] - 1][real[0].start[1]:real[first].start[1]] if first else ''
                try: texts.append(Run([r.string for r in real[first:]], head))
                except ValueError: texts = None; break
        if texts is None: continue
        before_open = toks[i - 1] if i else None
        call = before_open is not None and (before_open.type == tokenize.NAME
                                            and not keyword.iskeyword(before_open.string)
                                            or before_open.type == tokenize.STRING or before_open.string in (')', ']'))
        trailing = any(toks[k].type == tokenize.OP and toks[k].string == ',' for k in range(items[-1][1] + 1, j))
        if trailing and len(items) == 1 and open_.string == '(' and not call and isinstance(texts[-1], str):
            texts[-1] += ','
        indent = lines[row - 1][:len(lines[row - 1]) - len(lines[row - 1].lstrip())]
        new = layout(prefix, texts, suffix, indent)
        if new is None: continue
        changed = '\n'.join(lines[:row - 1] + new + lines[crow:]) + ('\n' if source.endswith('\n') else '')
        if changed != source and tree(changed) == before: return changed
    return None


def refill(source: str) -> str:
    "Every bracket that may be refilled, innermost first, until none (each tried once per layout)"
    if (before := tree(source)) is None: return source
    tried = set()
    while (changed := refill_once(source, before, tried)) is not None: source = changed
    return source


OPEN, CLOSE = '([{', ')]}'
# an item is broken before these words, a binary + or |, a method called on a call's result, or between adjacent
# string literals: each operand then follows on its line, aligned under the item's start
BREAK_WORDS = ('if', 'else', 'and', 'or', 'for')
BARE_CLOSE = re.compile(r'\s*[)\]}][)\]},:]*\s*')


NOTE = '\0'   # in a line being laid out: where its comment begins (two spaces when it is written)


class Group:
    """A bracket and its items (each a list of elements: tokens and groups), split at its own commas, with the comments
    among them: `notes` (item -> the comment ending its line), `leads` (item -> the comment lines before it)"""
    def __init__(self, open_, items, trailing, close, notes=None, leads=None):
        self.open, self.items, self.trailing, self.close = open_, items, trailing, close
        self.notes, self.leads = notes or {}, leads or {}


class NotFlat(ValueError): "Elements holding a comment: never on one line"


def first(e): return e.open if isinstance(e, Group) else e
def last(e): return e.close if isinstance(e, Group) else e
def is_tok(e, type_, strings=None) -> bool:
    "Whether `e` is a token of `type_` (and one of `strings`)"
    return e is not None and not isinstance(e, Group) and e.type == type_ and (strings is None or e.string in strings)


def grouped(toks: list, i: int = 0, closing: bool = False):
    "The elements of toks[i:], each bracket a `Group`, up to the bracket closing (when `closing`): (elements, index)"
    elems = []
    while i < len(toks):
        t = toks[i]
        if is_tok(t, tokenize.OP, CLOSE):
            if closing: return elems, i
            raise ValueError('unbalanced')
        if is_tok(t, tokenize.OP, OPEN):
            inner, j = grouped(toks, i + 1, True)
            items, cur, notes, leads, before, upto = [], [], {}, {}, t, None
            # a comprehension is one item; a lambda's parameters stay with its body
            whole = any(is_tok(e, tokenize.NAME, ('for',)) for e in inner)
            for e in inner:
                if is_tok(e, tokenize.COMMENT):   # ending an item's line, or a line of its own before the next item
                    if last(before).end[0] == e.start[0] and (cur or items):
                        notes[len(items) - (not cur)], upto = e.string, len(cur) if cur else None
                    elif not cur: leads.setdefault(len(items), []).append(e.string)
                    else: raise ValueError('a comment inside an item')
                    continue
                before = e
                at = [k for k, x in enumerate(cur) if is_tok(x, tokenize.NAME, ('lambda',))]
                lambda_open = bool(at) and not any(is_tok(x, tokenize.OP, (':',)) for x in cur[at[-1]:])
                if upto is not None and len(cur) > upto and not is_tok(e, tokenize.OP, ','):
                    raise ValueError('a comment inside an item')  # it is about what precedes it there
                if is_tok(e, tokenize.OP, ',') and not whole and not lambda_open:
                    items.append(cur)
                    cur = []
                    upto = None
                else: cur.append(e)
            trailing = bool(items) and not cur
            if cur: items.append(cur)
            if any(k >= len(items) for k in leads) or whole and (notes or leads):
                raise ValueError('a comment after the last item')
            elems.append(Group(t, items, trailing, toks[j], notes, leads)); i = j + 1
            continue
        if is_tok(t, tokenize.COMMENT) and not closing: raise ValueError('a comment outside a bracket')
        elems.append(t); i += 1
    if closing: raise ValueError('unclosed')
    return elems, i


def gap(a, b) -> str:
    "What stands between two elements on one line: their own spacing where they were on one line already"
    x, y = last(a), first(b)
    if x.end[0] == y.start[0]: return ' ' * (y.start[1] - x.end[1])
    return '' if x.string in OPEN or y.string in CLOSE or y.string in (',', ':', '.') else ' '


def keep_comma(g: Group) -> bool: return g.trailing and len(g.items) == 1   # `(x,)`, `t[x,]`: a tuple's


def noted(elems: list) -> bool:
    "Whether a comment stands among `elems` (in any of their brackets)"
    return any(isinstance(e, Group) and (e.notes or e.leads or any(noted(item) for item in e.items)) for e in elems)


def flat(elems: list) -> str:
    "`elems` on one line (`NotFlat` where a comment stands among them)"
    if noted(elems): raise NotFlat('a comment inside')
    out = ''
    for k, e in enumerate(elems):
        if k: out += gap(elems[k - 1], e)
        out += (e.open.string + ', '.join(flat(item) for item in e.items) + (',' if keep_comma(e) else '')
                + e.close.string if isinstance(e, Group) else e.string)
    return out


LEVELS = ({'if', 'else', 'for'}, {'or'}, {'and'}, {'|'}, {'+'}, 'strings', 'calls')   # the lowest precedence first


def operands(elems: list) -> list[list]:
    """`elems` cut before each operator of the lowest precedence it holds outside its brackets (a conditional's `if`
    and `else`, a comprehension's `for` and `if`, then `or`, `and`, a binary `|` or `+`), else between adjacent string
    literals, else before each method called on a call's result"""
    for level in LEVELS:
        parts, cur = [], []
        for k, e in enumerate(elems):
            prev = elems[k - 1] if k else None
            if level == 'strings': cut = is_tok(e, tokenize.STRING) and is_tok(prev, tokenize.STRING)
            elif level == 'calls': cut = is_tok(e, tokenize.OP, ('.',)) and isinstance(prev, Group) and len(cur) > 1
            elif '+' in level or '|' in level:
                binary = isinstance(prev, Group) or prev is not None and prev.type != tokenize.OP
                cut = is_tok(e, tokenize.OP, level) and binary
            else: cut = is_tok(e, tokenize.NAME, level)
            if cut and cur: parts.append(cur); cur = []
            cur.append(e)
        if parts: return [*parts, cur]
    return [elems]


def string_run(elems: list):
    """(head, literals): `elems` ending in one-line string literals (one or several adjacent) after a head with no
    bracket"""
    k = len(elems)
    while k and is_tok(elems[k - 1], tokenize.STRING) and elems[k - 1].start[0] == elems[k - 1].end[0]: k -= 1
    if k == len(elems) or any(isinstance(e, Group) for e in elems[:k]): return None
    return elems[:k], [e.string for e in elems[k:]]


def lay(elems: list, col: int, tail: int, base: int, ops: bool = True) -> list[str] | None:
    """`elems` laid out from column `col` (its first line from there, the others whole), `tail` characters following
    its last line, `base` the indentation of the line it starts on: on one line where it fits, else its operands
    (`ops`: inside a bracket), else a bracket's items filled aligned under it, hanging only where nothing else fits"""
    if noted(elems): ops = False   # only a bracket holding the comments is broken
    elif col + len(text := flat(elems)) + tail <= LIMIT: return [text]
    if ops and (run := string_run(elems)):
        head = flat(run[0]) + (gap(run[0][-1], elems[len(run[0])]) if run[0] else '')
        room = LIMIT - col - len(head)   # pieces of at least 40 characters: none a fragment
        try: pieces = Run(run[1], head).pieces(room, room, tail) if room >= 40 else None
        except ValueError: pieces = None
        if pieces: return [head + pieces[0], *(' ' * (col + len(head)) + p for p in pieces[1:])]
    if ops and len(parts := operands(elems)) > 1:
        cut = [(p, '', gap(parts[n - 1][-1], p[0]) if n else '') for n, p in enumerate(parts)]
        if (done := fill(cut, col, tail)) is not None: return done
    groups = [k for k, e in enumerate(elems) if isinstance(e, Group) and e.items]
    for hang in (False, True):
        for k in reversed(groups):
            g, after = elems[k], elems[k + 1:]
            try:
                prefix = flat(elems[:k]) + (gap(elems[k - 1], g) if k else '') + g.open.string
                suffix = g.close.string + (gap(g, after[0]) + flat(after) if after else '')
            except NotFlat: continue
            at = base + 4 if hang else col + len(prefix)
            if at > LIMIT - 30 or col + len(prefix) > LIMIT or hang and at >= col + len(prefix): continue
            if 0 in g.leads and not hang: continue   # a comment before the first item: on a line of its own
            seps = [','] * (len(g.items) - 1) + [',' if keep_comma(g) else '']
            body = fill([(item, sep, ' ', g.notes.get(n), g.leads.get(n, ()))
                         for n, (item, sep) in enumerate(zip(g.items, seps))], at, len(suffix) + tail, hang)
            if body is None: continue
            body[-1] = ended(body[-1], suffix)
            return [prefix, ' ' * at + body[0], *body[1:]] if hang else [prefix + body[0], *body[1:]]
    return None


def ended(line: str, text: str) -> str:
    "`text` added to the code of a line being laid out, before its comment"
    code, mark, note = line.partition(NOTE)
    return code + text + mark + note


def fill(parts: list, col: int, tail: int,
         lead: bool = False,   # whether its first line may be a comment's (hanging: a line of its own)
        ) -> list[str] | None:
    """Parts (elements, separator after, space before[, comment ending its line, comment lines before it]) filled from
    column `col`, the last leaving `tail`: each where it fits on the line, else on the next, laid out (`lay`) where it
    is too long for a line of its own; a part with a comment ends its line, one with comment lines starts after them"""
    lines, cur = [], None
    push = lambda text: lines.append(text if not lines else ' ' * col + text)
    for n, (elems, sep, space, *comments) in enumerate(parts):
        note, leads = comments or (None, ())
        end = (tail if n == len(parts) - 1 else 0) + (len(note) + 2 if note else 0)
        try: fits = col + len(flat(elems) + sep) + end <= LIMIT
        except NotFlat: fits = True
        if note and not fits: leads, note, end = (*leads, note), None, end - len(note) - 2   # above it, not beside
        if leads and cur is not None: push(cur); cur = None
        if leads and not lines and not lead: return None   # a comment right after the opening bracket
        if any(col + len(said) > LIMIT for said in leads): return None   # too long at this column: hanging may fit
        for said in leads: push(said)
        try: text = flat(elems) + sep
        except NotFlat: text = None
        if text is not None and cur is not None and col + len(cur) + len(space) + len(text) + end <= LIMIT:
            cur += space + text
        else:
            if cur is not None: push(cur); cur = None
            if text is not None and col + len(text) + end <= LIMIT: cur = text
            else:
                sub = lay(elems, col, len(sep) + end, col)
                if sub is None: return None
                sub[-1] = ended(sub[-1], sep)
                push(sub[0]); lines.extend(sub[1:])
        if note:   # it ends the line
            if cur is not None: push(cur + NOTE + note); cur = None
            else: lines[-1] = ended(lines[-1], '') + NOTE + note if NOTE not in lines[-1] else None
            if lines[-1] is None: return None
    if cur is not None: push(cur)
    return lines


def badness(lines: list[str]) -> int:
    "Lines that are only closing brackets, or end in an opening one: what ruff's layout leaves and the house's does not"
    return sum(bool(BARE_CLOSE.fullmatch(l)) or l.rstrip().endswith(tuple(OPEN)) for l in lines)


def statements(toks: list):
    "(first token index, last token index) of each logical line"
    start = None
    for k, t in enumerate(toks):
        if t.type in (tokenize.NL, tokenize.INDENT, tokenize.DEDENT) or t.type == tokenize.COMMENT and start is None:
            continue
        if t.type in (tokenize.NEWLINE, tokenize.ENDMARKER):
            if start is not None: yield start, k - 1
            start = None
        elif start is None: start = k


def relayout(source: str) -> str:
    "`relayout_once` until it changes nothing (a comment ending a statement's last line may move above it next time)"
    for _ in range(5):
        if (changed := relayout_once(source)) == source: break
        source = changed
    return source


def relayout_once(source: str) -> str:
    """Every statement laid out over several lines with a line that is only closing brackets or ends in an opening one,
    or a string fragment (`orphans`), laid out again in the house's form (`lay`) where that leaves fewer such lines in
    no more lines: its comments kept, each ending the line of its item or on a line of its own before it (one after the
    statement stays at its end, or moves above it); a signature's (docments) left as written; its syntax tree and its
    comments unchanged"""
    if (before := tree(source)) is None: return source
    toks, lines, fragments = tokens(source), source.splitlines(), set(orphans(source))
    said = [t.string for t in toks if t.type == tokenize.COMMENT]
    # what a statement's layout costs: lines of ruff's kind, and string fragments (`orphans`)
    cost = lambda text, indent: badness(text) + len(orphans('\n'.join(l[indent:] for l in text)))
    for a, b in reversed(list(statements(toks))):
        span = toks[a:b + 1]
        note = span.pop() if len(span) > 1 and span[-1].type == tokenize.COMMENT else None
        top, bottom = span[0].start[0], span[-1].end[0]
        if top == bottom or any(t.type == tokenize.STRING and t.start[0] != t.end[0] for t in span): continue
        inside = [t for t in span if t.type == tokenize.COMMENT]
        if inside and (span[0].string in ('def', 'class', 'async', '@')
                       or any(PRAGMA.search(t.string) for t in inside)):
            continue   # docments' parameters as written; a pragma stays on its line
        if note is not None and (note.start[0] != bottom or PRAGMA.search(note.string)): continue
        old = lines[top - 1:bottom]
        if any(l.endswith('\\') for l in old) or old[0][:span[0].start[1]].strip(): continue
        ruffed = badness(old) or any(top <= row <= bottom for row in fragments)
        if lines[bottom - 1][span[-1].end[1]:].strip() != (note.string if note else ''): continue
        try: elems, _ = grouped([t for t in span if t.type != tokenize.NL])
        except ValueError: continue
        indent = span[0].start[1]
        new = lay(elems, indent, 0, indent, ops=False)
        if new is None: continue
        new = [' ' * indent + new[0], *new[1:]]
        if note is not None:   # at the end where it fits, its spacing kept; else on the line above
            after = new[-1] + ' ' * max(note.start[1] - span[-1].end[1], 2) + note.string
            new = ([*new[:-1], after] if len(after) <= LIMIT and NOTE not in new[-1]
                   else [' ' * indent + note.string, *new])
        new = [l.replace(NOTE, '  ') for l in new]
        better = not inside and note is None and len(new) < len(old) and cost(new, indent) <= cost(old, indent) or \
            ruffed and len(new) <= len(old) and cost(new, indent) < cost(old, indent)
        if not better or any(len(l) > LIMIT or ADJACENT.search(l) for l in new): continue
        changed = lines[:top - 1] + new + lines[bottom:]
        text = '\n'.join(changed) + ('\n' if source.endswith('\n') else '')
        if tree(text) == before and [t.string for t in tokens(text) if t.type == tokenize.COMMENT] == said:
            lines = changed
    return '\n'.join(lines) + ('\n' if source.endswith('\n') and lines else '')


ADJACENT = re.compile(r'[\'"] +[rRbBfFuU]{0,2}[\'"]')   # two string literals side by side on a line: one literal
SIGNATURE = re.compile(r'(\s*(?:async\s+)?def\s+\w+\()\s*$')   # a `def` line ruff ended at its opening bracket
SHUT = re.compile(r'\)(\s*->.*)?:\s*(#.*)?$')                    # the signature's closing line: `):`, `) -> T:`


def comment_words(source: str) -> list[str]:
    "Every comment's words, in order (a comment re-wrapped onto more lines says the same)"
    return ' '.join(t.string.lstrip('#').strip() for t in tokens(source) if t.type == tokenize.COMMENT).split()


def align_signatures(source: str) -> str:
    """A signature laid out one parameter per line under a `def f(` line, in the house's (fastcore's docments) form: the
    first parameter on the `def` line, the rest aligned under it with their comments, `)` under the bracket; a comment
    that would pass the limit moves above its parameter, where docments reads it too. Left as written where the first
    parameter's line would not fit or its line is a comment, and where the syntax tree or the comments' words change"""
    if (before := tree(source)) is None: return source
    said, lines = comment_words(source), source.splitlines()
    defs = [n for n in ast.walk(ast.parse(source)) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    for fn in sorted(defs, key=lambda n: -n.lineno):
        top = fn.lineno - 1
        if not (head := SIGNATURE.fullmatch(lines[top])): continue
        shut = next((k for k in range(top + 1, fn.body[0].lineno - 1) if SHUT.match(lines[k].strip())), None)
        if shut is None or shut == top + 1 or lines[top + 1].strip().startswith('#'): continue
        col, base = len(head[1]), len(lines[top + 1]) - len(lines[top + 1].lstrip())
        new = [head[1] + lines[top + 1].strip()]
        for line in lines[top + 2:shut]:
            deeper = max(len(line) - len(line.lstrip()) - base, 0)
            new.append(' ' * (col + deeper) + line.strip())
        new.append(' ' * (col - 1) + lines[shut].strip())
        if len(new[0]) > LIMIT: continue
        fitted = []
        for k, line in enumerate(new):   # a parameter's comment past the limit: on the lines above it
            code, _, note = line.partition('  # ')
            if k and len(line) > LIMIT and note and len(code.rstrip()) <= LIMIT:
                fitted += comment_lines(note.strip(), ' ' * (len(code) - len(code.lstrip()))) + [code.rstrip()]
            else: fitted.append(line)
        if any(len(l) > LIMIT for l in fitted) or len(fitted) > shut - top + 1: continue
        changed = lines[:top] + fitted + lines[shut + 1:]
        text = '\n'.join(changed) + ('\n' if source.endswith('\n') else '')
        if tree(text) == before and comment_words(text) == said: lines = changed
    return '\n'.join(lines) + ('\n' if source.endswith('\n') and lines else '')


def orphans(source: str, shortest: int = 25) -> list[int]:
    "Lines that hold only a short piece of a run of adjacent string literals (under `shortest` characters): fragments"
    try: toks = [t for t in tokens(source) if t.type not in (tokenize.NL, tokenize.COMMENT)]
    except (tokenize.TokenError, IndentationError, SyntaxError): return []
    lines, found = source.splitlines(), []
    for k, t in enumerate(toks):
        if t.type != tokenize.STRING or t.start[0] != t.end[0]: continue
        adjacent = any(0 <= m < len(toks) and toks[m].type == tokenize.STRING for m in (k - 1, k + 1))
        alone = re.fullmatch(r'\s*' + re.escape(t.string) + r'\s*[,)\]}]*\s*', lines[t.start[0] - 1])
        if adjacent and alone and len(t.string) < shortest: found.append(t.start[0])
    return found


def name_runs(source: str, run: int = 3) -> list[int]:
    "First lines of `run` or more lines in a row that each hold one name (and a comma): a column `refill` would fill"
    found, streak = [], 0
    for row, line in enumerate(source.splitlines(), 1):
        streak = streak + 1 if re.fullmatch(r'\s*[A-Za-z_][A-Za-z0-9_.]*,?\s*', line) else 0
        if streak == run: found.append(row - run + 1)
    return found


def format_source(source: str) -> str:
    """A cell's source brought within the limit by the five steps, then refilled (`refill`) and laid out again
    (`relayout`); a step that would change its syntax tree is left out"""
    if (before := tree(source)) is None: return source
    new, words = source, tree(source, prose=True)
    for step in (format_code, move_comments, wrap_docstrings, cut_strings, wrap_comments) if long_lines(source) else ():
        try: changed = step(new)
        except (SyntaxError, tokenize.TokenError, IndentationError): continue
        if tree(changed) == before or step is wrap_docstrings and tree(changed, prose=True) == words:
            new, before = changed, tree(changed)
    try: return align_signatures(relayout(refill(new)))
    except (SyntaxError, tokenize.TokenError, IndentationError): return new


def nb_text(nb: dict) -> str:
    "The notebook's text as nbdev_clean writes it"
    return json.dumps(nb, sort_keys=True, indent=1, ensure_ascii=False) + '\n'


def format_notebook(path: Path) -> bool:
    "Format `path` in place; whether it changed"
    text = path.read_text(encoding='utf-8')
    nb = json.loads(text)
    for _, cell in code_cells(nb):
        source = ''.join(cell['source'])
        new = format_source(source)
        if new != source: cell['source'] = new.splitlines(keepends=True)
    new_text = nb_text(nb)
    changed = new_text != text and new_text != nb_text(json.loads(text))
    if changed: path.write_text(new_text, encoding='utf-8')
    return changed


def over_limit(paths: list[Path]) -> list[str]:
    """ruff's check of the line length (E501) on `paths`: 'file:cell N:line:column: E501 ...' for each line over the
    limit"""
    check = [str(RUFF), 'check', '--config', str(CONFIG), '--select', 'E501', '--no-cache', '--output-format=concise']
    out = subprocess.run([*check, '--quiet', *map(str, paths)], capture_output=True, text=True, cwd=ROOT)
    return [line for line in out.stdout.splitlines() if ': E501 ' in line]


def main(args: list[str]) -> int:
    paths = notebooks(args)
    changed = sum(format_notebook(path) for path in paths)
    left = over_limit(paths)
    for line in left: print(line)
    print(f'{len(paths)} notebooks, {changed} rewritten; {len(left)} code lines over {LIMIT} characters that no step '
          'can shorten: rewrite them, or mark one long on purpose with `# noqa: E501`', file=sys.stderr)
    return 0


if __name__ == '__main__': sys.exit(main(sys.argv[1:]))
