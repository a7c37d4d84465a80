"""The researcher's loop in notebooks (issue 66), played as a researcher plays it on a run built once: a notebook of their
own, outside nbs/tasks, added to pipeline.yaml as a task; rerun when it is edited or its parameter set from the command
line, and only then; its executed notebook kept as .ipynb beside its HTML, in the finished copy the pages read and on a
record of its own under the run's MLflow record, each version kept. Published (`mlfin publish`), it is a page of the
dashboards a read_only colleague finds on the index and reads in Chromium, and their visit runs nothing of it."""
import copy, json, re, sqlite3
import nbformat, pandas as pd
from conftest import MOMENTUM, MOMENTUM_NOTEBOOK, files_state, mlfin, own_project
from test_dashboard import person, until, voila
from test_pages import log_in
from mlfin.config import code_version
from mlfin.report.products import finished_notebook


def ran(done) -> list[str]:
    "The tasks `mlfin run` said it ran"
    found = re.search(r"^mlfin: \d+ task\(s\) ran \(([^)]*)\)", done.stdout, re.M)
    assert found, done.stdout + done.stderr
    return [] if found.group(1) == 'nothing changed' else found.group(1).split(', ')


def table_said(path) -> str:
    "What the executed notebook's last cell showed (its table, as text)"
    return nbformat.read(path, 4).cells[-1].outputs[0]['data']['text/plain']


def test_a_notebook_of_your_own_is_a_task_rerun_when_it_changes_its_executed_notebook_kept_and_recorded(small_copy, tmp_path,
                                                                                                      monkeypatch):
    home, args = small_copy['home'], small_copy['args']
    project = own_project(tmp_path/'project', [MOMENTUM], {MOMENTUM['source']: MOMENTUM_NOTEBOOK})
    # added to a run that is up to date: only it runs, and the run says what it made
    done = mlfin(home, 'run', *args, cwd=project)
    assert ran(done) == ['momentum']
    assert re.search(r"^  momentum \(\d+\.\d s\): momentum\.html, momentum\.ipynb in \S+/reports; momentum\.parquet in \S+/run$",
                     done.stdout, re.M), done.stdout
    assert pd.read_parquet(home/'run'/'momentum.parquet')['window'].tolist() == [20]
    # the library's code version is one of its parameters: a change to mlfin reruns it, as it reruns mlfin's tasks
    assert json.loads((home/'run'/'reports'/'.momentum.html.metadata').read_text())['params']['code_version'] == code_version()
    # kept: the executed .ipynb (its outputs) published beside its HTML, and in the finished copy the pages read
    kept = home/'reports'/'momentum.ipynb'
    assert 'rows' in table_said(kept) and (home/'reports'/'momentum.html').is_file()
    assert finished_notebook('momentum', home/'run').read_bytes() == kept.read_bytes()

    # edited in the notebook itself: it reruns, nothing else does
    edited = nbformat.read(project/MOMENTUM['source'], 4)
    edited.cells[-1].source = edited.cells[-1].source.replace('assign(window=window)', 'assign(window=window, edited=True)')
    nbformat.write(edited, project/MOMENTUM['source'])
    assert ran(mlfin(home, 'run', *args, cwd=project)) == ['momentum']
    assert 'edited' in table_said(kept)
    # its parameter from the command line (pipeline.yaml declares it, with its default): it reruns, nothing else does
    assert ran(mlfin(home, 'run', *args, '--task-params', 'momentum.window=5', cwd=project)) == ['momentum']
    assert pd.read_parquet(home/'run'/'momentum.parquet')['window'].tolist() == [5]
    assert ran(mlfin(home, 'run', *args, '--task-params', 'momentum.window=5', cwd=project)) == []
    wrong = mlfin(home, 'run', *args, '--task-params', 'momentum.windw=5', cwd=project, check=False)
    assert (wrong.returncode, wrong.stderr.strip()) == (
        2, "mlfin: error: --task-params: momentum.windw: momentum declares no parameter windw in pipeline.yaml (its parameters: "
           "window)"), wrong.stderr

    # each version on a record of its own under the run's: three, the first still holding the first table
    monkeypatch.setenv('MLFIN_HOME', str(home))
    from mlfin.tracking import configured_mlflow, runs
    records, parent = runs('task'), json.loads((home/'run'/'summary.json').read_text())['mlflow']['parent']
    assert len(records) == 3 and set(records['tags.mlflow.parentRunId']) == {parent}, records
    client, first = configured_mlflow().MlflowClient(), records.sort_values('start_time')['run_id'].iloc[0]
    assert {a.path for a in client.list_artifacts(first, 'reports')} == {'reports/momentum.ipynb', 'reports/momentum.html'}
    back = client.download_artifacts(first, 'reports/momentum.ipynb', str(tmp_path))
    assert 'rows' in table_said(back) and 'edited' not in table_said(back)


def recorded(home) -> tuple[dict, int]:
    "The home's run products and published reports (each file's size and time), and how many runs its MLflow store holds"
    with sqlite3.connect(f"file:{home/'mlflow.db'}?mode=ro", uri=True) as db: count = db.execute('SELECT COUNT(*) FROM runs').fetchone()[0]
    return {'run': files_state(home/'run'), 'reports': files_state(home/'reports')}, count


def test_a_published_notebook_is_a_page_on_the_index_that_a_read_only_colleague_reads_and_their_visit_runs_nothing(small_copy, tmp_path,
                                                                                                                   browser):
    home, args = small_copy['home'], small_copy['args']
    charted = copy.deepcopy(MOMENTUM_NOTEBOOK)   # its table, then a chart of it, as a researcher draws one
    charted.cells.append(nbformat.v4.new_code_cell("import plotly.express as px\npx.bar(table.reset_index(), x='symbol', y='rows')"))
    project = own_project(tmp_path/'project', [MOMENTUM], {MOMENTUM['source']: charted})
    assert ran(mlfin(home, 'run', *args, cwd=project)) == ['momentum']
    done = mlfin(home, 'publish', 'momentum', cwd=project)
    assert done.stdout.startswith("mlfin: published momentum as dashboards/momentum.ipynb, on the index as 'Momentum'"), done.stdout
    table = pd.read_parquet(home/'run'/'momentum.parquet')
    reader, before = person(home, 'reader', 'read_only'), recorded(home)
    with voila(home, 'index.ipynb', login=True, args=('--preheat', '0'), cwd=project) as url:
        context = browser.new_context(viewport={'width': 1280, 'height': 1200})
        page = context.new_page()
        log_in(page, url.split('/voila/')[0], reader)   # the login leads to the meeting view, which links the index
        page.goto(url)
        listed = page.locator('.mlfin-published li')
        listed.first.wait_for(timeout=120_000)
        assert listed.all_inner_texts() == ['Momentum Rows per symbol and the window asked for: a research notebook run as a task of the DAG.']
        listed.get_by_role('link', name='Momentum').click()
        page.wait_for_selector('.mlfin-notebook table.mlfin-table', timeout=120_000)
        body = page.inner_text('body')
        assert page.locator('h1').inner_text() == 'Momentum' and 'Signed in as reader (read_only)' in body, body[:800]
        assert 'with window=20: its notes and outputs as they were; this page runs none of its code' in body, body[:1500]
        cells = page.locator('.mlfin-notebook table.mlfin-table tbody tr').first.locator('th, td').all_inner_texts()
        assert cells == [*table.index, *map(str, table.iloc[0])], (cells, table)   # the table the notebook made: SPX, its rows, the window
        assert 'groupby' not in body and 'Traceback' not in body   # its code is not shown
        until(page, "!!document.querySelector('.mlfin-notebook .js-plotly-plot .trace.bars')")   # its chart, as the pages draw charts
        context.close()
    assert recorded(home) == before   # nothing trained, written or logged by the visit
