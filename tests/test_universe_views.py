"""The universe's table in a real browser: fifty books sorted by a heading's click, filtered by a word or a verdict, each a
click from its tearsheet; what the report draws for fifty books, weighed. The run is SYNTHETIC (made here, figures drawn
at random: a table's behaviour, not a result): a 50-book run by `mlfin run` takes minutes, the table's function is what
every page calls."""
import numpy as np, pandas as pd
from mlfin.backtest.tearsheet import judge
from mlfin.backtest.page import PLOTLY_JS, TEARSHEET
from mlfin.report.universe import HANDFUL, figure_html, universe_figure, universe_frame, universe_table

BOOKS = 50
REPORT_LIMIT = 5_000_000      # issue 67: a 50-symbol report at most 5 MB
TEMPLATE = 600_000            # what nbconvert's page, the report's other tables and texts add, generously (measured ~0.4 MB)


def synthetic_run(books: int = BOOKS, seed: int = 67) -> dict:
    "SYNTHETIC: `books` symbols of a 1m run (figures at random, every verdict among them) and their portfolio's year of curves"
    rng = np.random.default_rng(seed)
    book = lambda i: {
        'timeframe': '1m', 'bars': int(rng.integers(90_000, 98_000)), 'model': ('logistic', 'lightgbm')[i % 2],
        'classification': {'auc': float(rng.uniform(0.47, 0.56))},
        'strategy': {'total_return': float(rng.normal(0, 0.3)), 'sharpe': float(rng.normal(0, 1.5)), 'trades': 5 if i % 11 == 3 else 400},
        'buy_and_hold': {'total_return': float(rng.normal(0.1, 0.2)), 'sharpe': float(rng.normal(0.5, 0.5))},
        'skill': {'sr': 0.02, 'psr': 0.99, 'dsr': float(rng.choice([0.2, 0.6, 0.96, 0.99])), 'trials': 24, 'n': 90_000},
        'pbo': {'pbo': float(rng.uniform(0.1, 0.7))}}
    symbols = {f"SYN{i:02d}": book(i) for i in range(books)}
    symbols['SYN05']['classification'] = {}   # a score not measured: an empty cell, sorted last
    minutes = pd.date_range('2024-01-02 14:30', periods=97_740, freq='1min', tz='UTC')
    value = 10_000 * np.exp(np.cumsum(rng.normal(0, 1e-4, (2, len(minutes))), axis=1))
    curves = pd.DataFrame({'symbol': 'PORTFOLIO', 'strategy': value[0], 'buy_and_hold': value[1]}, index=minutes)
    portfolio = {**book(0), 'timeframe': None, 'bars': None, 'model': None, 'classification': {}, 'clock': '1d'}
    return {'symbols': symbols, 'portfolio': portfolio, 'curves': curves, 'validation': {'tradeable': True}}


def test_fifty_books_sort_filter_and_link_in_chromium(browser, tmp_path):
    run = synthetic_run()
    frame = universe_frame(run)
    assert len(frame) == BOOKS + 1 > HANDFUL and set(frame['judged']) == {'skill', 'overfit', 'none', 'unjudged'}
    (tmp_path/'tearsheets').mkdir()
    (tmp_path/'tearsheets'/TEARSHEET.format(book='SYN07')).write_text("<h1>SYN07: tearsheet</h1>")
    report = tmp_path/'report.html'
    report.write_text(f"<!doctype html><meta charset='utf-8'><body>{universe_table(run)}</body>")
    page = browser.new_page()
    page.goto(report.as_uri())
    books = lambda: page.locator('tbody tr:not([hidden]) td:first-child').all_inner_texts()
    column = lambda name: page.locator('thead th').all_inner_texts().index(name)
    heading = lambda name: page.locator('thead th').nth(column(name))   # its accessible name gains the sort's arrow
    values = lambda name: [v if v == '' else float(v) for v in page.locator(f"tbody tr:not([hidden]) td:nth-child({column(name) + 1})").evaluate_all(
        "cells => cells.map(c => c.dataset.v)")]
    assert books() == list(frame['book'])                                   # the run's order first
    heading('Sharpe').click()      # a number: best first
    sharpe = values('Sharpe')
    assert sharpe == sorted(sharpe, reverse=True) and books()[0] == frame.loc[frame['Sharpe'].idxmax(), 'book']
    heading('Sharpe').click()      # again: the other way
    assert values('Sharpe') == sorted(sharpe)
    heading('AUC').click()
    auc = values('AUC')
    assert auc[-2:] == ['', ''] and auc[:-2] == sorted(auc[:-2], reverse=True)   # not measured (SYN05, the portfolio): last, either way
    heading('book').click()        # a text: A to Z
    assert books() == sorted(frame['book'])
    # a word filters (every word must be in the row), a verdict too; the count says how many are shown
    page.get_by_role('searchbox').fill('lightgbm')
    assert len(books()) == (frame['leader'] == 'lightgbm').sum() and page.locator('.mlfin-count').inner_text() == f"{len(books())} of {BOOKS + 1} books"
    page.get_by_label('verdict').select_option('skill')
    skilled = frame[(frame['leader'] == 'lightgbm') & (frame['judged'] == 'skill')]
    assert sorted(books()) == sorted(skilled['book']) and len(skilled) > 0
    page.get_by_role('searchbox').fill('')
    assert sorted(books()) == sorted(frame.loc[frame['judged'] == 'skill', 'book'])
    assert [judge(run['symbols'][b]) for b in books()] == ['skill'] * len(books())
    page.get_by_label('verdict').select_option('')
    page.get_by_role('searchbox').fill('syn07')
    assert books() == ['SYN07']
    page.get_by_role('link', name='SYN07').click()                           # a book's detail: one click
    page.wait_for_selector('text=SYN07: tearsheet')
    assert page.url.endswith('/tearsheets/tearsheet-SYN07.html')
    page.close()


def test_what_the_report_draws_for_fifty_books_fits_its_limit():
    "The report's universe (table and one chart of a year of 1m bars) weighs a small share of the 5 MB a 50-symbol report may"
    run = synthetic_run()
    drawn = universe_table(run) + figure_html(universe_figure(run), f"tearsheets/{PLOTLY_JS}")
    assert len(drawn.encode()) + TEMPLATE < REPORT_LIMIT / 4, len(drawn)
