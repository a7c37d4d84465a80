"""A team's record that no member can bend (issue 68), as researchers share one: one PostgreSQL set up by `mlfin team init`
(its owner's), each member appending to the trial ledger through their own login, each home its own MLflow.

A member may read and append the ledger and use the store, and nothing else: every change of the ledger (its rows, its
guard, the tables) is refused, and the service's people and audit, moved out of their reach, cannot be read or changed.
Two runs started together on one question both read the ledger before either appends (the test holds the ledger's
writers' lock until both wait on it: an event, not a clock): the later counts the earlier's trials at its append, its
summary, its MLflow run and its ledger entry agree, and the earlier's count reads "then" and "now". A member who logs a
better headline on their MLflow run changes nothing `mlfin runs` shows, and is named there."""
import hashlib, json, os, subprocess, sys, time
from pathlib import Path
import psycopg, pytest
from conftest import MLFIN, ROOT, TrackingServer, copied, mlfin, new_database, with_args
from mlfin.report.evidence import filed_verdicts
from mlfin.tracking.ledger import TABLE, Ledger, place
pytestmark = pytest.mark.e2e   # a user's path end to end (make test-fast leaves it out)


def login(url: str, who: str) -> str:
    "The team database's URL as `who` logs in (the test server admits every login on loopback: no password)"
    return url.replace('//mlfin@', f"//{who}@", 1)


def recipe() -> list[str]:
    "The `mlfin team init` line of the tutorial's team recipe ('A team's database'), its arguments after the URL, as typed"
    import nbformat, shlex
    nb, = (ROOT/'nbs'/'tutorials').glob('*past_one_machine.ipynb')
    text = '\n\n'.join(c.source for c in nbformat.read(nb, as_version=4).cells if c.cell_type == 'markdown')
    section = text.split("\n### A team's database\n", 1)[1].split('\n### ', 1)[0]
    line, = [l.split('  #', 1)[0] for l in section.splitlines() if l.startswith('mlfin team init ')]
    return shlex.split(line)[4:]   # after `mlfin team init URL`


def team_database(postgres_server, tmp_path: Path) -> str:
    "A fresh database set up as the tutorial's recipe says: `mlfin team init` by its owner (members ana, ben, cy; promoter lead)"
    url = new_database(postgres_server)
    mlfin(tmp_path/'owner', 'team', 'init', url, *recipe())
    return url


def test_members_read_and_append_the_ledger_and_nothing_else_and_the_services_people_are_out_of_their_reach(postgres_server, tmp_path):
    url = new_database(postgres_server)
    # the one-account setup before: the service's tables made by the shared account, in public, a person in them
    from mlfin.service.db import engine
    engine(url).dispose()
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("INSERT INTO mlfin_users (id, name, role, password_hash, second_factor, failures, created_at) "
                   "VALUES ('u1', 'ana', 'analyst', 'x', 1, 0, now())")
    first = mlfin(tmp_path, 'team', 'init', url, *recipe()).stdout   # the tutorial's line
    assert 'mlfin_member: may read and append the ledger, never change it, and use the store; granted to ana, ben, cy' in first, first
    assert 'moved there from public: mlfin_keys' in first and 'mlfin_audit' in first, first
    again = mlfin(tmp_path, 'team', 'init', url, *recipe()).stdout   # idempotent: nothing left to move
    assert again == first.replace(first[first.index(' (moved there'):first.index(')', first.index(' (moved there')) + 1], ''), again
    book = Ledger(login(url, 'ana'))
    book.append('trials', 'a' * 16, {'source': 'ana-run'})   # a member appends
    assert (book.check().problem, book.check().length) == ('', 2)
    with psycopg.connect(login(url, 'ana'), autocommit=True) as db:
        for sql in (f"UPDATE {TABLE} SET body = '{{}}' WHERE seq = 2", f"DELETE FROM {TABLE} WHERE seq = 2", f"TRUNCATE {TABLE}",
                    f"DELETE FROM {TABLE}_returns", f"ALTER TABLE {TABLE} DISABLE TRIGGER USER", f"DROP TRIGGER {TABLE}_rows ON {TABLE}",
                    f"DROP TABLE {TABLE}", f"ALTER TABLE {TABLE} OWNER TO ana",
                    "SELECT name FROM mlfin_service.mlfin_users", "UPDATE mlfin_service.mlfin_users SET role = 'admin'",
                    "DELETE FROM mlfin_service.mlfin_audit", "CREATE TABLE public.mlfin_users (id text)"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                db.execute(sql)
        assert db.execute("SELECT count(*) FROM mlfin_bars").fetchone() == (0,)   # the store is theirs to use
        # what a member may insert is the chain's next entry as mlfin makes it, and nothing else
        last_seq, last_hash = db.execute(f"SELECT seq, hash FROM {TABLE} ORDER BY seq DESC LIMIT 1").fetchone()
        def insert(kind: str, body: str, seq: int = last_seq + 1, prev: str = last_hash, good: bool = True):
            when = '2026-11-28T12:00:00+00:00'
            digest = hashlib.sha256('\x1f'.join((prev, str(seq), when, kind, 'a' * 16, body)).encode()).hexdigest()
            db.execute(f"INSERT INTO {TABLE} (seq, recorded, kind, family, body, prev, hash) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                       (seq, when, kind, 'a' * 16, body, prev, digest if good else '0' * 64))
        for attempt, refused in ((lambda: insert('trials', '{}', good=False), 'its hash is not of what it says'),
                                 (lambda: insert('trials', '{}', seq=last_seq + 5), 'next entry is'),
                                 (lambda: insert('trials', '[1, 2]'), 'its body is not a JSON object'),
                                 (lambda: insert('reset', '{"replaced": []}'), 'a reset by ana refused'),
                                 (lambda: (db.execute("CREATE TEMP VIEW pg_roles AS SELECT 'x'::name AS rolname WHERE false"),
                                           insert('promotion', '{"act": "promote"}')), 'a promotion by ana refused')):
            with pytest.raises(psycopg.errors.RaiseException, match=refused):
                attempt()
        with pytest.raises(psycopg.errors.CheckViolation):   # a kept return is the bytes its digest names
            db.execute(f"INSERT INTO {TABLE}_returns (digest, data) VALUES (%s, %s)", ('0' * 64, b'not those bytes'))
    assert (Ledger(url).check().problem, Ledger(url).check().length) == ('', 2)
    import mlfin.tracking.ledger as ledger
    with psycopg.connect(login(url, 'ben'), autocommit=True) as held, pytest.MonkeyPatch.context() as patch:
        held.execute("SELECT pg_advisory_lock(hashtext(%s))", (TABLE,))   # a colleague's session that never lets go
        patch.setattr(ledger, 'LOCK_WAIT', '1s')
        with pytest.raises(Exception, match="its writers' lock has been held for 1s by ben"):
            book.append('trials', 'a' * 16, {'source': 'ana-run-2'})
    assert Ledger(url).check().length == 2   # nothing appended
    # the service's own login finds its people where the setup moved them (its search_path), and makes nothing in public
    with psycopg.connect(login(url, 'mlfin_service'), autocommit=True) as db:
        assert db.execute("SELECT name, role FROM mlfin_users").fetchall() == [('ana', 'analyst')]
    engine(login(url, 'mlfin_service')).dispose()   # the service starting: its tables all there, in its schema
    with psycopg.connect(url, autocommit=True) as db:
        where = dict(db.execute("SELECT table_name, table_schema FROM information_schema.tables WHERE table_name LIKE 'mlfin_%'").fetchall())
    assert {t: where[t] for t in ('mlfin_users', 'mlfin_audit', 'mlfin_sessions', 'mlfin_keys')} == dict.fromkeys(
        ('mlfin_users', 'mlfin_audit', 'mlfin_sessions', 'mlfin_keys'), 'mlfin_service'), where
    assert where[TABLE] == 'public'


def summary(home: Path) -> dict:
    return json.loads((home/'run'/'summary.json').read_text())


def started(home: Path, args: list[str], env: dict) -> subprocess.Popen:
    "`mlfin run` in `home` as a person starts it, in the background, with their settings (`member`)"
    env = {**os.environ, 'MLFIN_HOME': str(home), 'PLOOMBER_STATS_ENABLED': 'false', **env}
    return subprocess.Popen([MLFIN, 'run', *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def member(who: str, ledger: str, server: TrackingServer) -> dict:
    """What a member sets, as the tutorial's recipe says: the team's ledger as their PostgreSQL login, the team's MLflow server
    as their MLflow login (an account the admin made)"""
    return {'MLFIN_LEDGER': login(ledger, who), 'MLFLOW_TRACKING_URI': server.url, 'MLFLOW_TRACKING_USERNAME': who,
            'MLFLOW_TRACKING_PASSWORD': f"{who}-long-enough-password"}


def team_tracking(postgres_server, tmp_path: Path, *people: str) -> TrackingServer:
    """The team's MLflow server as the tutorial starts it (`mlfin tracking serve` on PostgreSQL: members read what others made),
    each of `people` added by its admin as the tutorial says (`mlfin tracking member`, the password on standard input)"""
    server = TrackingServer(tmp_path/'mlflow-home', new_database(postgres_server), tmp_path/'mlflow-artifacts')
    for who in people:
        password = f"{who}-long-enough-password"
        said = mlfin(tmp_path/'admin', 'tracking', 'member', who, '--tracking', server.url, input=f"{password}\n{password}\n",
                     env=server.client_env()).stdout
        assert said.strip().endswith(f"mlfin: {who}: account made, role mlfin-members (reads every run, changes their own, registers "
                                     "versions of any model)"), said
    # refused in one line: a password MLflow finds too short; a member adding a member
    colleague = {**server.client_env(), 'MLFLOW_TRACKING_USERNAME': people[0], 'MLFLOW_TRACKING_PASSWORD': f"{people[0]}-long-enough-password"}
    for env, password, said in ((server.client_env(), 'short', "INVALID_PARAMETER_VALUE: Password must be at least 12 characters."),
                                (colleague, 'eve-long-enough-password', f"{server.url} refused: adding a member is its admin's "
                                                                        "(MLFLOW_TRACKING_USERNAME=admin and its password)")):
        refused = mlfin(tmp_path/'admin', 'tracking', 'member', 'eve', '--tracking', server.url, input=f"{password}\n{password}\n", env=env,
                        check=False)
        assert refused.returncode == 2 and refused.stderr.strip().splitlines()[-1] == f"mlfin: error: member 'eve': {said}", refused.stderr
    return server


def waiting_on_the_ledger(db, runs: list[subprocess.Popen], count: int):
    "Until `count` sessions wait for the ledger's writers' lock (each run at its append); fails if a run ends first"
    while db.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted").fetchone()[0] < count:
        for run in runs:
            if run.poll() is not None:
                out, err = run.communicate()
                raise AssertionError(f"a run ended (exit {run.returncode}) before it reached the ledger:\n{out[-2000:]}\n{err[-3000:]}")
        time.sleep(0.05)


def test_two_runs_on_one_question_at_once_the_later_counts_the_earliers_trials_and_mlflow_cannot_change_a_headline(
        small_golden, postgres_server, tmp_path, monkeypatch):
    """The team recipe of the tutorial end to end: one PostgreSQL set up by `mlfin team init`, the team's MLflow server
    (`mlfin tracking serve`, its logins), ana's and ben's homes, lead the promoter, a dashboards home of the team's"""
    ledger = team_database(postgres_server, tmp_path)   # the owner's URL: what the test reads and holds; members log in as themselves
    server = team_tracking(postgres_server, tmp_path, 'ana', 'ben', 'lead')
    try: _the_teams_runs(small_golden, ledger, server, tmp_path, monkeypatch)
    finally: server.stop()


def _the_teams_runs(small_golden, ledger: str, server: TrackingServer, tmp_path: Path, monkeypatch):
    a, b = (copied(small_golden, tmp_path/who) for who in 'ab')   # ana's and ben's homes, each with the small run's MLflow record
    who = {'a': 'ana', 'b': 'ben'}
    people = {w: member(name, ledger, server) for w, name in who.items()}
    env = {'MLFIN_LEDGER': login(ledger, 'ana')}   # ana's home's own MLflow record (the small run) begins the team's ledger
    assert 'adopted 1 run(s) on question ' in mlfin(a['home'], 'ledger', 'adopt', env=env).stdout
    before = Ledger(ledger).check().length
    with psycopg.connect(ledger, autocommit=True) as db:
        db.execute("SELECT pg_advisory_lock(hashtext(%s))", (TABLE,))   # as a third writer holds it, for as long as it takes
        runs = {'a': started(a['home'], with_args(a['args'], threshold='0.53', tracking=server.url), people['a']),   # another threshold
                'b': started(b['home'], with_args(b['args'], threshold='0.57', tracking=server.url), people['b'])}   # each: one more
        waiting_on_the_ledger(db, list(runs.values()), 2)   # both read the ledger (at their report's start), neither appended
        db.execute("SELECT pg_advisory_unlock(hashtext(%s))", (TABLE,))
        for run in runs.values():
            out, err = run.communicate(timeout=1800)   # a hang guard
            assert run.returncode == 0, out[-2000:] + err[-3000:]
    found = Ledger(ledger).check()
    assert found.problem == '', found.problem
    filed = {e.content['source']: e for e in found.entries[before:] if e.kind == 'trials'}
    mine = {w: summary(h['home'])['symbols']['SPX'] for w, h in (('a', a), ('b', b))}
    entry = {w: filed[summary(h['home'])['mlflow']['SPX']] for w, h in (('a', a), ('b', b))}
    first, later = sorted('ab', key=lambda w: entry[w].seq)
    small = small_golden['summary']['symbols']['SPX']['skill']['trials']   # the adopted run's configurations
    # the first to append counted the small run's and its own one more; the later, the first's one more too
    assert (mine[first]['skill']['trials'], mine[later]['skill']['trials']) == (small + 1, small + 2), (mine[first]['skill'], mine[later]['skill'])
    for w in 'ab':   # the ledger's entry files the count and verdict of the run's summary: counted at the append
        said = entry[w].content['counted']
        assert said['skill']['trials'] == mine[w]['skill']['trials'] and said['skill']['dsr'] == pytest.approx(mine[w]['skill']['dsr'], abs=1e-12)
    assert entry[later].content['counted']['at'] >= entry[first].seq   # counted on a ledger that held the first's entry
    homes = {'a': a['home'], 'b': b['home']}
    from mlflow import MlflowClient
    def client(w: str) -> MlflowClient:   # the server as member `w` (MLflow's client reads its login from the environment)
        for key, value in people[w].items(): monkeypatch.setenv(key, value)
        return MlflowClient(server.url)
    ran = {w: summary(homes[w])['mlflow'] for w in 'ab'}
    assert client(later).get_run(ran[later]['SPX']).data.metrics['skill_trials'] == small + 2   # MLflow's figure amended to the append's
    # the team's dashboards home, where no one runs: its pages show the team's newest run, named, from the server
    shown = subprocess.run([sys.executable, '-c', "from mlfin.dashboards.common import run_status, shown_folder; import json; "
                            "from mlfin.report.products import load_run; print(json.dumps([run_status(), load_run(shown_folder(), frames=False)['by']]))"],
                           env={**os.environ, **member('lead', ledger, server), 'MLFIN_HOME': str(tmp_path/'dashboards')},
                           capture_output=True, text=True, timeout=600)
    newest = max('ab', key=lambda w: client(w).get_run(ran[w]['parent']).info.start_time)
    assert shown.returncode == 0, shown.stderr[-3000:]
    (kind, said), by = json.loads(shown.stdout.splitlines()[-1])
    assert kind == 'ok' and by == who[newest] and said.startswith(
        f"No run in this home: the pages show the team's newest, run {ran[newest]['parent'][:8]} by {who[newest]}, started "), said
    # the first run's count then and now, in its own home: `mlfin runs` reads the team's server, each run named by its member
    env = people[first]
    shown = mlfin(homes[first], 'runs', env=env).stdout
    line = next(l for l in shown.splitlines() if l.startswith(ran[first]['parent'][:8]))
    assert f"{small + 1} then, {small + 2} now" in line, shown
    assert f" {who[first]} " in line, shown   # filed by its member's login, as PostgreSQL stamped it
    # a colleague may read the run, not change it: each member records to an experiment of their own, the team reads it
    from mlflow.exceptions import MlflowException
    colleague = client(later)
    assert colleague.get_run(ran[first]['SPX']).info.run_id == ran[first]['SPX']
    for change in (lambda: colleague.log_metric(ran[first]['SPX'], 'skill_dsr', 0.97), lambda: colleague.set_tag(ran[first]['SPX'], 'verdict', 'x'),
                   lambda: colleague.create_run(colleague.get_run(ran[first]['SPX']).info.experiment_id)):
        with pytest.raises(MlflowException, match='Permission denied'): change()
    assert {e.name for e in colleague.search_experiments() if e.name.startswith('mlfin')} >= {'mlfin/ana', 'mlfin/ben'}
    # its member logs a better headline on their run (MLflow lets them): `mlfin runs` shows the ledger's, and says what MLflow says
    mine_run = ran[first]['SPX']
    editor = client(first)
    editor.log_metric(mine_run, 'skill_dsr', 0.97); editor.log_metric(mine_run, 'skill_trials', 1)
    editor.set_tag(mine_run, 'verdict', 'evidence of skill')
    # and the other member appends a better verdict for it to the ledger (they may append): it stands beside, named, not instead
    forged = {**entry[first].content, 'counted': {**entry[first].content['counted'], 'verdict': 'evidence of skill'}}
    Ledger(login(ledger, who[later])).append('trials', entry[first].family, forged | {'trials': []})
    shown = mlfin(homes[first], 'runs', env=env).stdout
    line = next(l for l in shown.splitlines() if l.startswith(ran[first]['parent'][:8]))
    now = filed_verdicts(Ledger(ledger).check(), [mine_run])[mine_run]['verdict_now']   # the run's own verdict, as its question stands
    assert f"{small + 1} then, {small + 2} now" in line and '0.970' not in line and line.rstrip().endswith(f" {now}") and now != 'evidence of skill', shown
    assert (f"{ran[first]['parent'][:8]} SPX: MLflow says trials 1, DSR 0.970, verdict 'evidence of skill': changed after the run "
            "(the ledger's figures are shown); the ledger holds another verdict for this run, appended later (entry "
            f"{Ledger(ledger).check().length} by {who[later]}): the run's own is shown") in shown, shown

    # promotion is the promoter's act: a member's is refused by the ledger before production moves; the promoter's is filed, named
    before = [l for l in mlfin(homes[first], 'models', 'ls', env=env).stdout.splitlines() if 'production' in l]
    refused = mlfin(homes[first], 'models', 'promote', 'SPX:1d', '1', '--reason', 'mine is better', env=env, check=False)
    assert refused.returncode == 2 and refused.stderr.strip() == (
        f"mlfin: error: mlfin.SPX.1d: promote refused by the team's ledger (a promotion by {who[first]} refused: only the team's "
        "promoters (role mlfin_promoter) promote or reset)"), refused.stderr
    assert [l for l in mlfin(homes[first], 'models', 'ls', env=env).stdout.splitlines() if 'production' in l] == before
    mlfin(homes[first], 'models', 'promote', 'SPX:1d', '1', '--reason', 'the desk asked', env=member('lead', ledger, server))
    listed = mlfin(homes[first], 'models', 'ls', env=env).stdout
    assert next(l for l in listed.splitlines() if ' production' in l).split()[:2] == ['mlfin.SPX.1d', '1'] and ' lead ' in listed, listed
    filed = [e for e in Ledger(ledger).entries() if e.kind == 'promotion']
    assert [(e.login, e.content['act'], e.content['version'], e.content['reason']) for e in filed] == [('lead', 'promote', 1, 'the desk asked')]
    # a member moves production through MLflow's own API (the permission that registers a version sets an alias too): no
    # one serves it, and every reader is told
    other = max(int(v.version) for v in client(first).search_model_versions("name = 'mlfin.SPX.1d'"))
    client(first).set_registered_model_alias('mlfin.SPX.1d', 'production', str(other))
    client(first).delete_registered_model_tag('mlfin.SPX.1d', 'mlfin.pinned')   # and the tag that said a person holds it
    line = (f"mlfin.SPX.1d: production names v{other}, which the trial ledger at {place(ledger)} does not (its last filed move names "
            f"v1 (by hand, lead, entry {filed[-1].seq})): moved outside mlfin, or filed in another ledger; not served until a promoter "
            "files the choice here (`mlfin models promote SPX:1d VERSION`)")
    assert f"not served: {line}" in mlfin(homes[first], 'models', 'ls', env=env).stdout.splitlines()
    served = subprocess.run([sys.executable, '-c', "from mlfin.models.registry import load, pinned; print(pinned('mlfin.SPX.1d')); "
                             "load('production', 'SPX', '1d')"],
                            env={**os.environ, **member('lead', ledger, server), 'MLFIN_HOME': str(homes[first])}, capture_output=True,
                            text=True, timeout=600)   # what a service loads
    assert served.returncode == 1 and served.stderr.strip().splitlines()[-1] == f"mlfin.errors.Unavailable: {line}", served.stderr[-2000:]
    assert served.stdout.strip().splitlines()[-1] == 'v1: the desk asked'   # still held by hand: the ledger says so, not the tag

def test_after_a_rewrite_the_check_and_every_verdict_say_the_same_until_the_one_repair_and_after_it(small_copy):
    """The ledger cut short behind the home's back (its owner may): `mlfin ledger check` and the next run's verdict both say
    so; `mlfin ledger adopt` files back what MLflow holds and acknowledges the heads the ledger no longer matches; then the
    check and the verdict both say to count afresh from the same moment, and a run that does is judged."""
    import sqlite3
    from mlfin.backtest.tearsheet import judge
    home, args = small_copy['home'], small_copy['args']
    with sqlite3.connect(home/"ledger.db") as db:   # the small run's trials entry, its last, taken out (the home and its MLflow run noted one head)
        db.execute(f"DELETE FROM {TABLE} WHERE seq = (SELECT max(seq) FROM {TABLE})")
    checked = mlfin(home, 'ledger', 'check', check=False)
    assert checked.returncode == 1 and 'it was cut short' in checked.stdout, checked.stdout
    done = mlfin(home, 'ledger', 'adopt').stdout
    assert 'adopted 1 run(s) on question ' in done and 'acknowledged 1 noted head(s) the ledger no longer matches' in done, done
    mended = mlfin(home, 'ledger', 'check').stdout
    since = mended.split('(--trials-since ')[1].split(')')[0]
    assert f"mlfin: whole from {since}: " in mended and '(1 noted head(s) it no longer matched)' in mended, mended
    mlfin(home, 'run', *with_args(args, threshold='0.53'))   # the next run: the same moment, the same words
    said = summary(home)['symbols']['SPX']['skill']['record']['problem']
    assert said == (f"the trial record was reset on {since[:10]} (1 noted head(s) it no longer matched): the trials only it held "
                    f"cannot be counted; count afresh with --trials-since {since}"), said
    mlfin(home, 'run', *with_args(args, threshold='0.53', trials_since=since))   # counting afresh, as both say
    judged = summary(home)['symbols']['SPX']
    assert judged['skill']['record']['problem'] == '' and judge(judged) != 'unjudged', judged['skill']


def test_a_home_copied_under_another_account_counts_what_it_filed_before_or_withholds_its_verdict(small_copy, tmp_path):
    """A home run under another account, whose default ledger is another file, with its MLflow store deleted, runs the best
    configuration again: it counts the trials it filed in its old ledger (readable here); with that ledger gone, the check
    and the next verdict name it, until `mlfin ledger adopt` names it lost and both say to count afresh"""
    import shutil
    home, args = small_copy['home'], small_copy['args']
    small = small_copy['summary']['symbols']['SPX']['skill']['trials']
    old = home/'ledger.db'
    noted = json.loads((home/'ledger.json').read_text())   # the copy's record names the golden home's file: this home's, here
    (home/'ledger.json').write_text(json.dumps({**noted, 'location': str(old)}))
    elsewhere = {'MLFIN_LEDGER': str(tmp_path/'other-account'/'ledger.db')}   # the other account's default: another file
    (home/'mlflow.db').unlink(); shutil.rmtree(home/'mlartifacts', ignore_errors=True)   # and no tracking store to read
    mlfin(home, 'run', *with_args(args, threshold='0.53'), env=elsewhere)
    mine = summary(home)['symbols']['SPX']['skill']
    assert (mine['trials'], mine['record']['problem']) == (small + 1, ''), mine   # the old ledger's trials counted
    old.rename(tmp_path/'moved-away.db')   # now it cannot be read from here
    checked = mlfin(home, 'ledger', 'check', env=elsewhere, check=False)
    assert checked.returncode == 1 and (f"mlfin: not whole: this home appended to trial ledger {noted['head'][:8]} at {old} ("
                                        in checked.stdout), checked.stdout
    assert 'mlfin: named lost 1 ledger(s) this home appended to elsewhere' in mlfin(home, 'ledger', 'adopt', env=elsewhere).stdout
    mended = mlfin(home, 'ledger', 'check', env=elsewhere).stdout
    assert 'mlfin: whole from ' in mended and ' lost)' in mended, mended
