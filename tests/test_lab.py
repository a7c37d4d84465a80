"""`make lab` as a researcher meets it: JupyterLab started by env/lab.sh (the command line `make lab` runs) on a project folder of
the test's own, with a copy of the small golden run's home. Every extension the environment installs is on; a notebook opened in
Chromium runs on the project's `mlfin` kernel and is saved with its output; the train task's notebook arrives with Ploomber's
injected cell, naming the home's upstream products and the run's parameters, and is saved back without it."""
import json, os, re, secrets, shutil, subprocess, tempfile, time
from pathlib import Path
import httpx, nbformat, pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from jupyter_server.extension.config import ExtensionConfigManager
from conftest import ROOT, copied, free_port
from mlfin.config import read_yaml
pytestmark = pytest.mark.e2e   # a user's path end to end (make test-fast leaves it out)

LAB = ROOT/'env'/'lab.sh'
TRAIN = 'nbs/tasks/train.ipynb'


def project_of(folder: Path, args: list[str]) -> Path:
    """A project in `folder`: the checkout's declarations and task notebooks, and an env.yaml setting what the `mlfin run` `args`
    set (the golden run's, so that the injected parameters are the ones its products were made with)"""
    folder.mkdir()
    for name in ('pipeline.yaml', 'features.yaml', 'models.yaml', 'settings.ini'): shutil.copy(ROOT/name, folder)
    shutil.copytree(ROOT/'nbs'/'tasks', folder/'nbs'/'tasks')
    pairs = dict(zip(args[::2], args[1:][::2]))
    (folder/'env.yaml').write_text(''.join(f"{k.removeprefix('--').replace('-', '_')}: '{v}'\n" for k, v in pairs.items()
                                           if k != '--reports'))
    return folder


def started(project: Path, home: Path, token: str, log) -> tuple[subprocess.Popen, str]:
    "JupyterLab as `make lab PORT=... ARGS=--ServerApp.token=...` starts it in `project`, once its port answers: (process, base URL)"
    port = free_port()
    config = Path(tempfile.mkdtemp(dir=project.parent))   # Lab's user settings and workspaces: none of the user's ~/.jupyter
    env = {**os.environ, 'PORT': str(port), 'MLFIN_HOME': str(home), 'JUPYTER_CONFIG_DIR': str(config),
           'JUPYTER_RUNTIME_DIR': str(config/'runtime'), 'PLOOMBER_STATS_ENABLED': 'false'}
    lab = subprocess.Popen(['bash', str(LAB), f'--ServerApp.token={token}'], cwd=project, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180   # a hang guard for a busy machine
    while True:
        try:
            if httpx.get(f"{base}/api/status", headers={'Authorization': f'token {token}'}, timeout=5).status_code == 200: return lab, base
        except httpx.TransportError: pass
        assert lab.poll() is None, f"env/lab.sh exited {lab.returncode}:\n{said(log)[-3000:]}"
        assert time.monotonic() < deadline, f"JupyterLab did not answer on port {port}:\n{said(log)[-3000:]}"
        time.sleep(0.1)


def connected(api: httpx.Client, notebook: str, lab: subprocess.Popen, log):
    "Once the notebook's kernel has a connection (the page's websocket) and is idle, as the server's sessions say"
    deadline = time.monotonic() + 180   # a hang guard for a busy machine
    while True:
        kernels = [s['kernel'] for s in api.get('/api/sessions').raise_for_status().json() if s['path'] == notebook]
        if any(k['connections'] >= 1 and k['execution_state'] == 'idle' for k in kernels): return
        assert lab.poll() is None, f"env/lab.sh exited {lab.returncode}:\n{said(log)[-3000:]}"
        assert time.monotonic() < deadline, f"{notebook}'s kernel never connected: {kernels}\n{said(log)[-3000:]}"
        time.sleep(0.1)


def said(log) -> str:
    "What the server has logged so far (read at an offset: the file's own offset is the server's, not moved)"
    return os.pread(log.fileno(), os.fstat(log.fileno()).st_size, 0).decode(errors='replace')


def injected(nb: dict) -> dict:
    "The values of a notebook's injected cell ({} without one)"
    cells = [c for c in nb['cells'] if 'injected-parameters' in c['metadata'].get('tags', [])]
    values = {}
    if cells: exec(cells[0]['source'], values)
    return {k: v for k, v in values.items() if not k.startswith('__')}


def test_lab_opens_runs_and_saves_with_every_extension(small_golden, browser, tmp_path):
    home = copied(small_golden, tmp_path)['home']
    project = project_of(tmp_path/'project', small_golden['args'])
    probe = nbformat.v4.new_notebook(metadata={'kernelspec': {'name': 'mlfin', 'display_name': 'mlfin', 'language': 'python'}})
    probe.cells = [nbformat.v4.new_code_cell("from mlfin.paths import home\nprint('mlfin home', home())")]
    nbformat.write(probe, project/'probe.ipynb')
    token = secrets.token_hex(16)
    with tempfile.TemporaryFile() as log:   # the server's lines: a file, not a pipe nobody reads
        lab, base = started(project, home, token, log)
        try:
            api = httpx.Client(base_url=base, headers={'Authorization': f'token {token}'}, timeout=120)

            # every extension the environment enables is loaded, the Lab's own (front end) ones included, none turned off
            switches = ExtensionConfigManager(read_config_path=[str(ROOT/'.venv'/'etc'/'jupyter')]).get_jpserver_extensions()
            assert {'jupyterlab_jupytext', 'ploomber', 'ploomber_extension', 'jupyter_lsp'} <= set(switches) and all(switches.values())
            loaded = set(re.findall(r"\] (\S+) \| extension was successfully loaded", said(log)))
            assert set(switches) <= loaded, f"server extensions not loaded: {set(switches) - loaded}"
            page_config = json.loads(re.search(r'<script id="jupyter-config-data" type="application/json">(.*?)</script>',
                                               api.get('/lab').text, re.S)[1])
            front = {e['name'] for e in page_config['federated_extensions']}
            assert {'jupyterlab-jupytext', 'ploomber-extension'} <= front
            assert not front & set(page_config['disabledExtensions']), page_config['disabledExtensions']

            # the train task's notebook: Ploomber's cell with the run's parameters and the home's upstream products
            opened = api.get(f'/api/contents/{TRAIN}').raise_for_status().json()
            values = injected(opened['content'])
            upstream = {t['name']: t.get('upstream', []) for t in read_yaml(project/'pipeline.yaml')['tasks']}['train']
            assert sorted(values['upstream']) == sorted(upstream)
            paths = [Path(p) for products in values['upstream'].values() for p in products.values()]
            assert all(p.is_relative_to(home) and p.exists() for p in paths), paths
            args = small_golden['args']
            assert values['params']['folds'] == int(args[args.index('--folds') + 1])
            # saved back: the file on disk is the task's notebook as it was, and Ploomber marks the task's products outdated
            metadata = [Path(p).with_name(f".{Path(p).name}.metadata") for p in values['product'].values()]
            assert all(m.exists() for m in metadata)
            api.put(f'/api/contents/{TRAIN}', json={'type': 'notebook', 'format': 'json', 'content': opened['content']}).raise_for_status()
            saved, before = json.loads((project/TRAIN).read_text()), json.loads((ROOT/TRAIN).read_text())
            assert [(c['source'], c['metadata']) for c in saved['cells']] == [(c['source'], c['metadata']) for c in before['cells']]
            assert 'papermill' not in saved['metadata'] and not any(m.exists() for m in metadata)

            # a notebook opened in the Lab, run on the project's kernel once it is ready, saved with its output
            page = browser.new_page(viewport={'width': 1280, 'height': 900})
            expected = f"mlfin home {home.resolve()}"
            try:
                page.goto(f"{base}/lab/tree/probe.ipynb?token={token}", timeout=120_000)
                # the page's kernel connected, as the server sees it (the toolbar reads idle before a kernel is attached, and
                # Shift+Enter is then dropped: seen on a loaded machine)
                connected(api, 'probe.ipynb', lab, log)
                page.locator('.jp-NotebookPanel .jp-Notebook-ExecutionIndicator[data-status="idle"]').wait_for(timeout=120_000)
                page.locator('.jp-NotebookPanel .jp-Cell .cm-content').first.click()
                page.keyboard.press('Shift+Enter')
                page.locator('.jp-OutputArea-output', has_text=expected).wait_for(timeout=120_000)
                page.locator('.lm-TabBar-tab.jp-mod-current.jp-mod-dirty', has_text='probe.ipynb').wait_for(timeout=60_000)
                page.keyboard.press('Control+s')
                page.locator('.lm-TabBar-tab.jp-mod-current:not(.jp-mod-dirty)', has_text='probe.ipynb').wait_for(timeout=60_000)
            except PlaywrightTimeout as e:
                page.screenshot(path=str(tmp_path/'lab.png'))
                raise AssertionError(f"{e}\nthe page: {tmp_path/'lab.png'}; the server's log:\n{said(log)[-3000:]}") from None
            kept = nbformat.read(project/'probe.ipynb', as_version=4)
            assert kept.metadata.kernelspec.name == 'mlfin'
            assert [o.get('text') for o in kept.cells[0].outputs] == [expected + '\n'], kept.cells[0].outputs
            page.close()
        finally:   # its kernel shut down with it; killed when a loaded machine takes longer than the grace
            lab.terminate()
            try: lab.wait(timeout=60)
            except subprocess.TimeoutExpired: lab.kill(); lab.wait()
