"""A penetration tester's attacks on the service and its login (issue 53), each through one real `mlfin serve` on loopback
shared by the module: a stranger locking an admin out, names told apart by the answers. Each test is one attack, from a
loopback address of its own (Linux routes all of 127/8 to this host), so one attack's attempts are not another's."""
import datetime as dt
import httpx, pytest
from conftest import mlfin, service
from mlfin.service import db as tables

pytestmark = pytest.mark.e2e   # a user's path end to end (make test-fast leaves it out)
# the login rules under attack: two failures from an address are free, then the next waits ten minutes (moved past through the
# database, as time passing would, never slept), the third locks the account from that address for fifteen minutes
RULES = ('--login-slow-after', '2', '--login-delay', '600', '--login-lock-after', '3', '--login-lock-minutes', '15')


@pytest.fixture(scope='module')
def svc(tmp_path_factory):
    "The service an operator starts as the README says (people, their second factor), on an empty home: no run is needed to log in"
    with service(tmp_path_factory.mktemp('attacks')/'home', '--no-jobs', *RULES) as running: yield running


def client(svc, address: str) -> httpx.Client:
    "A client whose requests come from `address` (a loopback address: the service sees it as the peer, no header involved)"
    return httpx.Client(base_url=svc.url, timeout=60, transport=httpx.HTTPTransport(local_address=address))


def log_in(http: httpx.Client, person: dict, password: str | None = None, code: str | None = None) -> httpx.Response:
    "POST /token with a person's form: their password and the code their app shows now unless told otherwise"
    return http.post('/token', data={'grant_type': 'password', 'username': person['name'], 'password': password or person['password'],
                                     'totp': person['totp'].now() if code is None else code})


def later(svc, name: str, address: str, seconds: float):
    "Time passes for an account's count at `address`: its last failure and its lock moved `seconds` into the past, in the service's database"
    failures, users, shift = tables.login_failures, tables.users, dt.timedelta(seconds=seconds)
    with tables.engine(str(svc.home/'store')).begin() as con:
        mine = (failures.c.user_id == users.select().with_only_columns(users.c.id).where(users.c.name == name).scalar_subquery()) & \
               (failures.c.address == address)
        row = con.execute(failures.select().where(mine)).mappings().one()
        con.execute(failures.update().where(mine).values(last_failure_at=row['last_failure_at'] - shift,
                                                         locked_until=row['locked_until'] and row['locked_until'] - shift))


def locks(svc, name: str) -> list[str]:
    "The lines `mlfin users ls` shows under an account: where it is locked from and until when"
    shown = mlfin(svc.home, 'users', 'ls').stdout.splitlines()
    at = next(i for i, line in enumerate(shown) if line.startswith(name + ' '))
    below = []
    for line in shown[at + 1:]:
        if not line.startswith(' '): break
        below.append(line.strip())
    return below


def test_a_stranger_cannot_lock_the_admin_out_and_a_lock_ends_with_its_count(svc):
    """Issue 53, attack 1: ten guesses at the admin, paced by the answers, kept the real admin out for as long as the attacker liked.
    Now failures count per account and address (OWASP's lockout with Django-axes' username + address key): the stranger's address is
    locked, the admin with their password and code is let in from theirs; the lock's end takes its count along (one more guess does not
    lock again); the admin's own address locks as anyone's does; `mlfin users ls` shows each lock and where it comes from"""
    admin = svc.person('lock-admin', 'admin')
    with client(svc, '127.0.0.66') as stranger, client(svc, '127.0.0.1') as desk, client(svc, '127.0.0.7') as phone:
        guesses = [log_in(stranger, admin, f"guess number {n}") for n in range(3)]
        assert [r.status_code for r in guesses] == [401, 401, 429], [r.text for r in guesses]   # the third waits: refused unchecked
        later(svc, 'lock-admin', '127.0.0.66', 600)   # ten minutes on
        assert log_in(stranger, admin, 'guess number 3').status_code == 429   # the third failure from there: locked from there
        assert log_in(stranger, admin).status_code == 429                    # the right password and code too, from there
        assert log_in(desk, admin).status_code == 200                        # the admin, from the desk: in
        shown = locks(svc, 'lock-admin')
        assert len(shown) == 1 and shown[0].startswith('locked from 127.0.0.66 until ') and shown[0].endswith('after 3 failed logins from there'), shown

        later(svc, 'lock-admin', '127.0.0.66', 15 * 60)   # the lock ends: its count with it
        assert log_in(stranger, admin, 'a guess after the lock').status_code == 401 and locks(svc, 'lock-admin') == []
        assert log_in(stranger, admin, 'and another').status_code == 401   # two free again: the count started afresh

        typos = [log_in(desk, admin, f"the admin's typo {n}").status_code for n in range(2)]   # the admin's own typos count as anyone's
        later(svc, 'lock-admin', '127.0.0.1', 600)
        assert typos + [log_in(desk, admin, "the admin's typo 2").status_code] == [401, 401, 429]
        assert log_in(desk, admin).status_code == 429 and log_in(phone, admin).status_code == 200   # locked at the desk, not on the phone
    events = [(e['outcome'], e['detail'], e['address']) for e in mlfin_audit(svc, 'user:lock-admin')]
    assert ('locked', 'wrong password', '127.0.0.66') in events and ('ok', '', '127.0.0.1') in events and ('ok', '', '127.0.0.7') in events
    assert svc.errors() == ''


def mlfin_audit(svc, actor: str) -> list[dict]:
    "The audit log of `actor`, newest first, as an admin's key reads it (GET /audit)"
    with svc.client(svc.key('admin')) as admin:
        return admin.get('/audit', params={'actor': actor, 'limit': 1000}).json()
