"""Lines a reader can follow: every notebook's code and every module of mlfin/ within the line length of
pyproject.toml's [tool.ruff], as ruff's own check (E501) reads it; `make format` (tools/format.py) brings the
notebooks there. Static: a few seconds."""
import ast, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / 'tools'))
import format as fmt


def tracked(*patterns) -> list[str]:
    "The files git tracks that match `patterns`"
    return subprocess.run(['git', 'ls-files', *patterns], cwd=ROOT, capture_output=True, text=True).stdout.split()


def nbdev_own(line: str) -> bool:
    """Whether ruff's finding `line` ('mlfin/x.py:ROW:COL: E501 ...') is on a line nbdev writes, not a notebook's code:
    the module docstring (the notebook's subtitle, a line of Markdown) or the `__all__` list (wrapped by nbdev at 120
    before its 10-character `__all__ = `); mlfin/_modidx.py, nbdev's index, is not checked at all"""
    path, row = line.split(':')[:2]
    if not path.endswith('.py'): return False
    lines = (ROOT / path).read_text().splitlines()[:int(row)]
    if int(row) == 1: return lines[0].startswith('"""')
    start = next((i for i, l in enumerate(lines) if l.startswith('__all__ = [')), None)
    return start is not None and all(l.startswith(' ' * 11) for l in lines[start + 1:])


def test_lines_within_the_limit():
    "Every notebook code line and mlfin/ line is within the limit or marked `# noqa: E501`; a failure names where"
    modules = [p for p in tracked('mlfin/*.py') if not p.endswith('_modidx.py')]
    paths = tracked('nbs/*.ipynb', 'dashboards/*.ipynb') + modules
    assert len(paths) > 100, paths
    left = [line for line in fmt.over_limit(paths) if not nbdev_own(line)]
    said = f"{len(left)} lines over {fmt.LIMIT} characters: run `make format`, then rewrite or mark what it lists:\n"
    assert not left, said + '\n'.join(left[:50])


def test_check_finds_a_long_line(tmp_path):
    "The check is not blind: a module with one line over the limit is named, at that line"
    (tmp_path / 'long.py').write_text('x = 1\ny = ' + ' + '.join(['1'] * fmt.LIMIT) + '\n')
    left = fmt.over_limit([tmp_path / 'long.py'])
    assert len(left) == 1 and 'long.py:2:' in left[0], left


CELL = '''#| export
def performance(value: float,   # the value curve
                position: float | None = None, # held position per bar (1, 0, -1, or a fraction; a column per symbol of a portfolio): turnover
               ) -> dict:
    "Return, risk and trading figures of a value curve: risk annualised by the calendar's bars a year, returns by the time elapsed"
    # a year is the calendar's: the time from the first bar to the last (missing bars make no shorter year); without times, bars
    # count as the calendar's bars
    if value < 0: raise ValueError(f"value {value} is negative: a value curve of a portfolio never goes below zero, whatever it held")
    figures = dict(annual_return=1.0, volatility=2.0, sharpe=3.0, sortino=4.0, calmar=5.0, turnover=6.0, exposure=7.0, win_rate=8.0)
    return figures   # the figures, every one of them scaled to a year when the span is long enough for that to mean something at all
'''  # noqa: E501 (long on purpose: one line of each kind the formatter shortens)


def test_format_shortens_without_changing_the_code(tmp_path):
    """Each kind of long line (signature comment, docstring, comment, one-line `if`, call, trailing comment) comes
    within the limit; the syntax tree is the same (strings' values included; a docstring's words), the short lines
    stay as written, and a second pass changes nothing"""
    assert any(len(l) > fmt.LIMIT for l in CELL.splitlines())
    new = fmt.format_source(CELL)
    assert [l for l in new.splitlines() if len(l) > fmt.LIMIT] == [], new
    assert fmt.tree(new, prose=True) == fmt.tree(CELL, prose=True)
    code = lambda source: [ast.dump(s) for s in ast.parse(source).body[0].body[1:]]   # after the docstring
    assert code(new) == code(CELL)
    assert '    """Return, risk and trading figures' in new, new   # a long docstring as the house writes one
    assert new.splitlines()[:2] == CELL.splitlines()[:2]          # the dense lines that fit are not touched
    assert fmt.format_source(new) == new
    (tmp_path / 'cell.py').write_text(new)
    sys.path.insert(0, str(tmp_path))
    try: from cell import performance
    finally: sys.path.remove(str(tmp_path))
    from fastcore.docments import docments
    # a parameter's comment moved above it is still its docment (fastcore reads the lines above a parameter too)
    assert docments(performance)['position'].startswith('held position per bar'), docments(performance)


def test_long_import_split_into_one_line_imports():
    "A long `from mlfin... import` becomes one-line imports: nbdev_export makes those relative (not a wrapped one)"
    source = 'from mlfin.backtest.tearsheet import ' + ', '.join(f'name_{i}' for i in range(20))
    new = fmt.format_source(f'#| export\n{source}\n').splitlines()[1:]
    assert len(new) > 1, new
    assert all(len(l) <= fmt.LIMIT and l.startswith('from mlfin.backtest.tearsheet import ') for l in new), new
    assert fmt.tree('\n'.join(new)) == fmt.tree(source)
    wrapped = source.replace('import ', 'import (', 1).replace('name_10, ', 'name_10,\n    ') + ')'   # first line long
    assert fmt.format_source(f'#| export\n{wrapped}\n').splitlines()[1:] == new


def test_an_imports_reason_moves_above_it():
    "An import's long trailing comment moves above it, wrapped, as any other: tests/test_repo.py reads an import's reason there too"
    reason = 'the service libraries cost 0.4 s to import, ' * 4
    new = fmt.format_source(f'def serve():\n    from mlfin.service.db import engine   # {reason}\n    return engine\n')
    lines = new.splitlines()
    assert lines[1].startswith('    # the service') and lines[3] == '    from mlfin.service.db import engine', new
    assert all(len(l) <= fmt.LIMIT for l in lines), new



EXPLODED = '''def f():
    made = Forecast(
        symbol,
        timeframe,
        value,
        bars.index[-1],
        manifest.get('label', ''),
        for_bar=bar_end(bars.index[-1], timeframe, bars.attrs.get('calendar', '')),
        walk_ratio=ratio if ratio == ratio else None,
        kind=predictor.kind,
        name=predictor.name,
    )
    t = (
        a,
    )
    kept = g(
        a,   # why a
        b,
    )
    raise BadInput(
        "threshold: a regressor's signal compares its predicted move with a round trip's cost; it takes no "
        "threshold"
    )
'''


def test_refill_fills_a_column_back_and_evens_a_run_of_literals():
    """What a formatter laid out one item per line comes back filled under its opening bracket; a run of adjacent
    literals is re-cut into pieces of even length (no orphan fragment); a bracket with a comment inside, and a one-item
    tuple's comma, stay; the syntax tree is the same, and a second pass changes nothing"""
    assert fmt.name_runs(EXPLODED) and fmt.orphans(EXPLODED)   # the checks see the column and the fragment
    new = fmt.format_source(EXPLODED)
    lines = new.splitlines()
    assert fmt.tree(new) == fmt.tree(EXPLODED) and fmt.format_source(new) == new, new
    assert lines[1].startswith('    made = Forecast(symbol, timeframe, value, bars.index[-1], ') and all(len(l) <= fmt.LIMIT for l in lines), new
    assert lines[2].startswith(' ' * len('    made = Forecast(')) and not lines[2][len('    made = Forecast('):].startswith(' '), new
    assert '    t = (a,)' in lines and lines[lines.index('    kept = g(a,  # why a') + 1] == ' ' * 13 + 'b)', new   # its comment kept on its item's line
    said = next(i for i, l in enumerate(lines) if l.startswith('    raise BadInput("threshold'))
    pieces = [len(l.strip()) for l in lines[said:said + 2]]
    assert lines[said + 1].startswith(' ' * len('    raise BadInput(')) and min(pieces) > 40, new   # even, no orphan
    assert fmt.name_runs(new) == [] and fmt.orphans(new) == [], new


RUFFED = '''def f(q, found, rows, m, tradeable, keys):
    where = (
        f"{q['trials']} on this question since {q['first_recorded'][:10]}, counted from its first record"
        if q.get('earlier_runs')
        else "all in this run" + ('' if q.get('left_out') else ", the first recorded on this question")
    )
    table = pd.DataFrame(
        {
            label: [shown(k, m['strategy'].get(k)), shown(k, m['buy_and_hold'].get(k))]
            for k, label, f in PERFORMANCE
            if keys is None or k in keys
        },
        index=['Strategy', 'Buy & hold'],
    ).T
    ranked = sorted(
        rows, key=lambda row, by: (row[by], row['name'])
    )
    t = (
        q,
    )
    raise BadInput(
        f"{where}: unknown time zone {q!r}; use an IANA name such as UTC, America/New_York or Etc/GMT-2, as the docs say"
    ) from None
    kept = call(
        a,   # why a
        b,
    )
'''


SIGNED = '''def f(a, # the first
      b=2, # the second
     ):
    return g(
        a  # inside the item: about `a`, not the call
        + b,
        c,
    )
'''


def test_relayout_lays_out_what_ruff_left_as_the_house_writes_it():
    """A conditional, a comprehension inside a call, a call that fits on a line, a long message: laid out again with no
    line that is only closing brackets or ends in an opening one, operands and items aligned, the message cut into
    even pieces; a one-item tuple keeps its comma, a comprehension's and a lambda's commas stay inside their item, a
    comment stays on its item's line; a signature's comments (docments) and a comment inside an item stay as written;
    the syntax tree and the comments are the same, and a second pass changes nothing"""
    new = fmt.format_source(RUFFED)
    lines = new.splitlines()
    assert fmt.tree(new) == fmt.tree(RUFFED) and fmt.format_source(new) == new, new
    assert all(len(l) <= fmt.LIMIT for l in lines) and fmt.badness(lines) == 0, new
    assert '    ranked = sorted(rows, key=lambda row, by: (row[by], row[\'name\']))' in lines and '    t = (q,)' in lines, new
    cond = lines.index('    where = (f"{q[\'trials\']} on this question since {q[\'first_recorded\'][:10]}, counted from its first record"')
    assert lines[cond + 1].startswith(' ' * 13 + "if q.get('earlier_runs')") and lines[cond + 2].startswith(' ' * 13 + 'else'), new
    assert ' ' * len('    table = pd.DataFrame({') + 'for k, label, f in PERFORMANCE if keys is None or k in keys},' in lines, new
    said = next(i for i, l in enumerate(lines) if l.startswith('    raise BadInput(f"'))
    assert lines[said + 1].startswith(' ' * len('    raise BadInput(') + '"') and lines[said + 1].endswith(') from None'), new
    assert min(len(l.strip()) for l in lines[said:said + 2]) > 40, new   # even pieces, no fragment
    assert lines[-2:] == ['    kept = call(a,  # why a', ' ' * 16 + 'b)'], new   # a comment ends its item's line
    commented = fmt.format_source(SIGNED)
    assert commented == SIGNED, commented   # docments' parameters, and a comment inside an item, as written


def test_relayout_joins_a_statement_onto_fewer_lines_where_it_fits_and_never_sets_two_literals_side_by_side():
    """A statement laid out over more lines than it needs (no comment in it) is laid out again on fewer; one whose only
    shorter layout would set two string literals side by side on a line, or that holds a comment, stays as written"""
    spread = ("costs = {s: costs_for(settings.cost_class(s, calendars[s]), settings.fees)\n"
              "         for s in leaders}\n")
    assert fmt.relayout(spread) == "costs = {s: costs_for(settings.cost_class(s, calendars[s]), settings.fees) for s in leaders}\n"
    pieces = ('raise BadInput(f"{where}: column {column}: times without "\n'
              '               "a time zone; give them with one or state a rule")\n')
    noted = "total = add(first,  # the one before\n            second)\n"
    assert fmt.relayout(pieces) == pieces and fmt.relayout(noted) == noted


def test_the_notebooks_hold_no_column_or_fragment_and_no_more_ruff_lines_than_now():
    """No run of one-name lines in a bracket and no string fragment in any notebook's code (issue 71: each is laid out
    again by `refill` and `relayout`, or was rewritten by hand); and a ratchet, a count that only falls, on lines that
    are only closing brackets or end in an opening one (1,546 and 1,690 before issue 71; what is left is mostly
    docments' signatures, whose closing `):` is the house's own, and brackets too long for any other layout)"""
    import json
    columns, fragments, ruffed = [], [], 0
    for path in tracked('nbs/*.ipynb', 'nbs/**/*.ipynb', 'dashboards/*.ipynb'):
        for cell in json.loads((ROOT / path).read_text())['cells']:
            if cell['cell_type'] != 'code': continue
            source = ''.join(cell['source'])
            columns += [f"{path} {cell['id']}:{row}" for row in fmt.name_runs(source)]
            fragments += [f"{path} {cell['id']}:{row}" for row in fmt.orphans(source)]
            ruffed += fmt.badness(source.splitlines())
    assert columns == [] and fragments == [] and ruffed <= 154, (columns, fragments, ruffed)



LISTED = '''"""What a module holds, with a usage block and a list, which a paragraph's wrap must not run together, ever, in any cell

Usage:

    mlfin run --symbols SPX --start 2016-01-01 --end 2017-12-31 --folds 3 --spec macro --models logistic,lightgbm,lightgbm_without_macro

- a first item, whose words are long enough that the line goes past the limit of one hundred and twenty characters, by far
- a second item
  continued here
1. a numbered item that is also too long to fit on a single line of one hundred and twenty characters, so that it wraps below
"""
x = 1
'''  # noqa: E501 (long on purpose)


def test_a_docstrings_usage_block_and_list_keep_their_shape():
    "A long list item wraps under its own words, the items stay apart, a usage block is left as written, the closing quotes alone"
    new = fmt.format_source(LISTED)
    assert new.splitlines()[1:] == [
        '', 'Usage:', '',
        next(l for l in LISTED.splitlines() if 'mlfin run' in l),   # too long, but a command: listed by `make format`, not broken
        '',
        '- a first item, whose words are long enough that the line goes past the limit of one hundred and twenty characters, by',
        '  far', '- a second item', '  continued here',
        '1. a numbered item that is also too long to fit on a single line of one hundred and twenty characters, so that it wraps',
        '   below', '"""', 'x = 1'], new
    assert fmt.tree(new, prose=True) == fmt.tree(LISTED, prose=True) and fmt.format_source(new) == new


RUFFS = '''def latest_returns(
    earlier: pd.DataFrame,  # trials recorded before (a `LEDGER` frame with `source`), oldest first
    kept: dict[str, pd.DataFrame],  # source -> its configurations' returns (columns: configuration ids), as the train task keeps them
    *,
    deep: dict = dict(a=1,
                      b=2),
) -> pd.DataFrame:
    "Each configuration's returns"
    return earlier


def too_long_for_the_def_line(
    path: str,  # where the secret is kept (a backup repository's password, a server's admin password, and others besides)
):
    return path
'''  # noqa: E501 (long on purpose)


def test_a_docments_signature_in_ruffs_layout_takes_the_houses(tmp_path):
    """Parameters one per line under `def f(`: the first goes on the def line, the rest align under it with their comments,
    `)` under the bracket; a comment that would pass the limit moves above its parameter; where the first does not fit, as
    written. fastcore's docments reads every comment where it was"""
    new = fmt.align_signatures(RUFFS)
    assert new.splitlines()[:9] == [
        'def latest_returns(earlier: pd.DataFrame,  # trials recorded before (a `LEDGER` frame with `source`), oldest first',
        "                   # source -> its configurations' returns (columns: configuration ids), as the train task keeps them",
        '                   kept: dict[str, pd.DataFrame],',
        '                   *,',
        '                   deep: dict = dict(a=1,',
        '                                     b=2),',
        '                  ) -> pd.DataFrame:',
        '    "Each configuration\'s returns"', '    return earlier'], new
    assert new.split('\n\n\n')[1] == RUFFS.split('\n\n\n')[1]   # `path` and its comment pass 120 on the def line
    assert fmt.tree(new) == fmt.tree(RUFFS) and fmt.align_signatures(new) == new
    from fastcore.docments import docments
    (tmp_path/'aligned.py').write_text('import pandas as pd\n' + new); (tmp_path/'ruffs.py').write_text('import pandas as pd\n' + RUFFS)
    sys.path.insert(0, str(tmp_path))
    try: import aligned, ruffs
    finally: sys.path.remove(str(tmp_path))
    assert docments(aligned.latest_returns) == docments(ruffs.latest_returns), docments(aligned.latest_returns)
    assert docments(aligned.latest_returns)['kept'].startswith('source -> its'), docments(aligned.latest_returns)


def test_no_module_of_450_lines_and_no_function_of_40():
    """Issue 71's figures held: no module of mlfin/ over 450 lines and no function of 40 lines or more (a module that
    grows past it is split into rooms, a function into named steps); nbdev's own `_modidx.py` aside"""
    import ast
    big, long = [], []
    for path in sorted((ROOT/'mlfin').rglob('*.py')):
        if path.name == '_modidx.py': continue
        text = path.read_text()
        if len(text.splitlines()) > 450: big.append(f"{path.relative_to(ROOT)}: {len(text.splitlines())} lines")
        long += [f"{path.relative_to(ROOT)}:{n.lineno} {n.name}: {n.end_lineno - n.lineno + 1} lines"
                 for n in ast.walk(ast.parse(text))
                 if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 >= 40]
    assert big == [] and long == [], (big, long)

