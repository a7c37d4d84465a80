"""A team's record that no member can bend (issue 68), as three researchers share one: a PostgreSQL ledger for every home,
each home its own MLflow. Two runs started together on one question both read the ledger before either appends (the
test holds the ledger's writers' lock until both wait on it: an event, not a clock): the later counts the earlier's trials
at its append, its summary, its MLflow run and its ledger entry agree, and the earlier's count reads "then" and "now".
A member who logs a better headline on their MLflow run changes nothing `mlfin runs` shows, and is named there."""
import json, os, subprocess, time
from pathlib import Path
import psycopg, pytest
from conftest import MLFIN, ROOT, copied, mlfin, new_database, with_args
from mlfin.tracking.ledger import TABLE, Ledger
pytestmark = pytest.mark.e2e   # a user's path end to end (make test-fast leaves it out)


def summary(home: Path) -> dict:
    return json.loads((home/'run'/'summary.json').read_text())


def started(home: Path, args: list[str], ledger: str) -> subprocess.Popen:
    "`mlfin run` in `home` as a person starts it, in the background, appending to the team's ledger"
    env = {**os.environ, 'MLFIN_HOME': str(home), 'MLFIN_LEDGER': ledger, 'PLOOMBER_STATS_ENABLED': 'false'}
    return subprocess.Popen([MLFIN, 'run', *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def waiting_on_the_ledger(db, runs: list[subprocess.Popen], count: int):
    "Until `count` sessions wait for the ledger's writers' lock (each run at its append); fails if a run ends first"
    while db.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted").fetchone()[0] < count:
        for run in runs:
            if run.poll() is not None:
                out, err = run.communicate()
                raise AssertionError(f"a run ended (exit {run.returncode}) before it reached the ledger:\n{out[-2000:]}\n{err[-3000:]}")
        time.sleep(0.05)


def test_two_runs_on_one_question_at_once_the_later_counts_the_earliers_trials_and_mlflow_cannot_change_a_headline(
        small_golden, postgres_server, tmp_path):
    ledger = new_database(postgres_server)
    a, b = (copied(small_golden, tmp_path/who) for who in 'ab')   # two members' homes, each with the small run's MLflow record
    env = {'MLFIN_LEDGER': ledger}
    assert 'adopted 1 run(s) on question ' in mlfin(a['home'], 'ledger', 'adopt', env=env).stdout   # the team's ledger begins with it
    before = Ledger(ledger).check().length
    with psycopg.connect(ledger, autocommit=True) as db:
        db.execute("SELECT pg_advisory_lock(hashtext(%s))", (TABLE,))   # as a third writer holds it, for as long as it takes
        runs = {'a': started(a['home'], with_args(a['args'], threshold='0.53'), ledger),   # another signal threshold each:
                'b': started(b['home'], with_args(b['args'], threshold='0.57'), ledger)}   # one more configuration each
        waiting_on_the_ledger(db, list(runs.values()), 2)   # both read the ledger (at their report's start), neither appended
        db.execute("SELECT pg_advisory_unlock(hashtext(%s))", (TABLE,))
        for run in runs.values():
            out, err = run.communicate(timeout=1800)   # a hang guard
            assert run.returncode == 0, out[-2000:] + err[-3000:]
    found = Ledger(ledger).check()
    assert found.problem == '', found.problem
    filed = {e.content['source']: e for e in found.entries[before:] if e.kind == 'trials'}
    mine = {who: summary(h['home'])['symbols']['SPX'] for who, h in (('a', a), ('b', b))}
    entry = {who: filed[summary(h['home'])['mlflow']['SPX']] for who, h in (('a', a), ('b', b))}
    first, later = sorted('ab', key=lambda who: entry[who].seq)
    small = small_golden['summary']['symbols']['SPX']['skill']['trials']   # the adopted run's configurations
    # the first to append counted the small run's and its own one more; the later, the first's one more too
    assert (mine[first]['skill']['trials'], mine[later]['skill']['trials']) == (small + 1, small + 2), (mine[first]['skill'], mine[later]['skill'])
    for who in 'ab':   # the ledger's entry files the count and verdict of the run's summary: counted at the append
        said = entry[who].content['counted']
        assert said['skill']['trials'] == mine[who]['skill']['trials'] and said['skill']['dsr'] == pytest.approx(mine[who]['skill']['dsr'], abs=1e-12)
    assert entry[later].content['counted']['at'] >= entry[first].seq   # counted on a ledger that held the first's entry
    homes = {'a': a['home'], 'b': b['home']}
    from mlflow import MlflowClient
    client = {who: MlflowClient(f"sqlite:///{homes[who]/'mlflow.db'}") for who in 'ab'}
    ran = {who: summary(homes[who])['mlflow'] for who in 'ab'}
    assert client[later].get_run(ran[later]['SPX']).data.metrics['skill_trials'] == small + 2   # MLflow's figure amended to the append's
    # the first run's count then and now, in its own home
    shown = mlfin(homes[first], 'runs', env=env).stdout
    line = next(l for l in shown.splitlines() if l.startswith(ran[first]['parent'][:8]))
    assert f"{small + 1} then, {small + 2} now" in line, shown
    # its member logs a better headline on their run (MLflow lets them): `mlfin runs` shows the ledger's, and says what MLflow says
    mine_run = ran[first]['SPX']
    client[first].log_metric(mine_run, 'skill_dsr', 0.97); client[first].log_metric(mine_run, 'skill_trials', 1)
    client[first].set_tag(mine_run, 'verdict', 'evidence of skill')
    shown = mlfin(homes[first], 'runs', env=env).stdout
    line = next(l for l in shown.splitlines() if l.startswith(ran[first]['parent'][:8]))
    assert f"{small + 1} then, {small + 2} now" in line and '0.970' not in line, shown
    assert (f"{ran[first]['parent'][:8]} SPX: MLflow says trials 1, DSR 0.970, verdict 'evidence of skill': changed after the run "
            "(the ledger's figures are shown)") in shown, shown
