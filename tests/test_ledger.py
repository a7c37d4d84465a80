"""The trial ledger as a team keeps it (issue 51): in PostgreSQL next to the tracking server, two researchers' runs
appending at once both follow one chain; PostgreSQL refuses an edit, a delete or a truncate of an entry or of kept
returns, its owner's included (issue 68); an entry edited, or the table cut short, once the owner has disabled that is
found; the file ledger on several processes."""
import subprocess, sys
import pandas as pd, psycopg, pytest
from conftest import new_database
from mlfin.tracking.ledger import TABLE, Ledger

APPEND = ("import sys; from mlfin.tracking.ledger import Ledger; book = Ledger(sys.argv[1])\n"
          "for i in range(15): book.append('trials', 'a' * 16, {'writer': sys.argv[2], 'i': i})")


def appended_at_once(location: str) -> Ledger:
    "Two processes appending 15 entries each to the ledger at `location`, at the same time"
    writers = [subprocess.Popen([sys.executable, '-c', APPEND, location, w], stderr=subprocess.PIPE, text=True) for w in 'ab']
    for w in writers: assert w.wait(timeout=600) == 0, w.stderr.read()
    return Ledger(location)


def test_a_teams_ledger_in_postgresql_keeps_one_chain(postgres_server):
    url = new_database(postgres_server)
    book = appended_at_once(url)
    found = book.check()
    assert (found.problem, found.length, len(found.id)) == ('', 31, 16)   # the genesis and every writer's entries, one chain
    assert sorted(e.content['writer'] for e in found.entries[1:]) == ['a'] * 15 + ['b'] * 15
    noted = [('a run', found.head)]
    book.keep_returns(pd.DataFrame({'c1': [0.01, -0.02]}))   # a run's per-bar returns, kept beside the chain
    with psycopg.connect(url, autocommit=True) as db:   # the database refuses any change, its owner's included
        for sql in (f"UPDATE {TABLE} SET body = '{{}}' WHERE seq = 7", f"DELETE FROM {TABLE} WHERE seq >= 20",
                    f"TRUNCATE {TABLE}", f"DELETE FROM {TABLE}_returns", f"TRUNCATE {TABLE}_returns"):
            with pytest.raises(psycopg.Error, match='the trial ledger is append-only: (UPDATE|DELETE|TRUNCATE) on mlfin_ledger'):
                db.execute(sql)
    assert (book.check().problem, book.check().length) == ('', 31)
    # an owner who disables the triggers first: the chain finds what they change then
    with psycopg.connect(url, autocommit=True) as db:
        db.execute(f"ALTER TABLE {TABLE} DISABLE TRIGGER USER")
        db.execute(f"UPDATE {TABLE} SET body = '{{\"writer\": \"c\", \"i\": 0}}' WHERE seq = 7")
    assert book.check().problem.startswith('entry 7 of the trial ledger (trials, recorded '), book.check().problem
    with psycopg.connect(url) as db: db.execute(f"DELETE FROM {TABLE} WHERE seq >= 20")
    assert book.against(book.check(), noted) == 'a run noted 31 entries in the trial ledger, which now holds 19: it was cut short'


def test_the_file_ledger_keeps_one_chain_under_two_writers(tmp_path):
    found = appended_at_once(str(tmp_path/'ledger.db')).check()
    assert (found.problem, found.length) == ('', 31)
