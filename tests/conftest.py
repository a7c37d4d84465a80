"Shared fixtures: one real pipeline run on a small slice of the embedded data, in a throw-away MLFIN_HOME."
import json, os, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
MLFIN = str(Path(sys.executable).with_name('mlfin'))
# a slice of real data: two daily series (index and stock, NYSE) and hourly FX (24/5)
SLICE = ['--symbols', 'SPX,GOOGL,EURUSD', '--start', '2016-01-01', '--end', '2017-12-31', '--folds', '3']


def mlfin(home: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    "Run the `mlfin` command as a user types it, with state under `home`"
    env = {**os.environ, 'MLFIN_HOME': str(home), 'PLOOMBER_STATS_ENABLED': 'false'}
    done = subprocess.run([MLFIN, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    if check and done.returncode != 0:
        raise AssertionError(f"mlfin {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done


@pytest.fixture(scope='session')
def pipeline_run(tmp_path_factory):
    "The pipeline run once, end to end, through the CLI; returns its home, reports folder and summary"
    home = tmp_path_factory.mktemp('mlfin-home')
    reports = home/'reports'
    done = mlfin(home, 'run', *SLICE, '--reports', str(reports))
    summary = json.loads((home/'run'/'summary.json').read_text())
    return {'home': home, 'reports': reports, 'summary': summary, 'stdout': done.stdout, 'args': [*SLICE, '--reports', str(reports)]}
