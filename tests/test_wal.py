"WAL archiving for a PostgreSQL store (issue 20): bars written after the full backup come back from pgBackRest's restore, replayed from the archive"
import os, shutil, subprocess, tempfile, time
from pathlib import Path
import pytest
from conftest import ES, free_port, mlfin

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(not (shutil.which('pgbackrest') and sorted(Path('/usr/lib/postgresql').glob('*/bin/initdb'))),
                                                  reason="pgbackrest and PostgreSQL are installed by env/setup-test.sh")]


class Cluster:
    "A private PostgreSQL cluster on loopback, run by Debian's postgres user when we are root (the server refuses root)"
    def __init__(self, root: Path, data: Path | None = None):
        self.bin = sorted(Path('/usr/lib/postgresql').glob('*/bin/initdb'))[-1].parent
        self.root, self.data, self.port = root, data or root/'data', free_port()
        self.owner = ['runuser', '-u', 'postgres', '--'] if os.geteuid() == 0 else []
        self.url = f"postgresql://mlfin@127.0.0.1:{self.port}"
    def run(self, *cmd, check=True):
        return subprocess.run([*self.owner, *map(str, cmd)], check=check, capture_output=True, text=True, timeout=300)
    def init(self):
        self.run(self.bin/'initdb', '-D', self.data, '-U', 'mlfin', '--auth=trust', '-E', 'UTF8', '--no-sync'); return self
    def start(self):
        self.run(self.bin/'pg_ctl', '-D', self.data, '-l', self.root/f'server-{self.port}.log', '-w', '-t', '120', 'start',
                 '-o', f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root}"); return self
    def stop(self, mode='fast'): self.run(self.bin/'pg_ctl', '-D', self.data, '-m', mode, '-w', 'stop', check=False)


@pytest.fixture
def cluster():
    root = Path(tempfile.mkdtemp(prefix='mlfin-wal-')); root.chmod(0o755)
    if os.geteuid() == 0: shutil.chown(root, 'postgres')
    made = Cluster(root).init().start()
    try: yield made
    finally:
        made.stop('immediate'); shutil.rmtree(root, ignore_errors=True)


def test_bars_written_after_the_full_backup_come_back_from_the_wal_archive(cluster, tmp_path):
    import psycopg
    from mlfin import data
    with psycopg.connect(f"{cluster.url}/postgres", autocommit=True) as con: con.execute("CREATE DATABASE store")
    store = f"{cluster.url}/store"
    data.ingest('sample:SPX', store=store)
    repo = cluster.root/'pgbackrest'   # the cluster's owner writes here
    owner = ['--owner', 'postgres'] if os.geteuid() == 0 else []
    first = mlfin(tmp_path, 'backup', 'wal', '--store', store, '--repo', str(repo), *owner)
    assert 'restart' in first.stdout, first.stdout   # archive_mode takes a restart
    cluster.stop(); cluster.start()
    second = mlfin(tmp_path, 'backup', 'wal', '--store', store, '--repo', str(repo), *owner)
    assert 'a full backup taken' in second.stdout, second.stdout + second.stderr
    data.ingest(ES, 'ES', '1m', calendar='CMES', store=store)   # after the full backup: only the WAL archive holds these
    with psycopg.connect(store, autocommit=True) as con:
        segment = con.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()[0]   # the segment holding them, closed
    deadline, last = time.time() + 180, None
    while time.time() < deadline:   # ... and archived by PostgreSQL's archive_command (pgbackrest archive-push)
        with psycopg.connect(store, autocommit=True) as con:
            last, failed = con.execute("SELECT last_archived_wal, failed_count FROM pg_stat_archiver").fetchone()
        if last is not None and last >= segment: break
        time.sleep(0.5)
    assert last is not None and last >= segment and failed == 0, (segment, last, failed)
    cluster.stop('immediate')   # the server is lost
    restored = Cluster(cluster.root, cluster.root/'restored')
    restored.run('pgbackrest', f"--config={repo/'pgbackrest.conf'}", '--stanza=mlfin', f"--pg1-path={restored.data}", 'restore')
    restored.start()
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                with psycopg.connect(f"{restored.url}/store", autocommit=True) as con:
                    if not con.execute("SELECT pg_is_in_recovery()").fetchone()[0]: break
            except psycopg.OperationalError: pass
            time.sleep(0.5)
        held = data.open_store(f"{restored.url}/store").ls().set_index('symbol')['bars'].to_dict()
        assert held == {'SPX': 5031, 'ES': len(ES)}, held
    finally: restored.stop('immediate')
